//! A certificate credential: the app proves who it is with a JWT signed by the private key of a
//! certificate registered on its app registration, instead of sending a secret
//! (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>).
//!
//! The assertion, as that page documents it:
//! - header `alg` PS256, `typ` JWT, `x5t#S256` = base64url SHA-256 of the certificate's DER
//!   (and `x5t`, the SHA-1 thumbprint older documentation asks for: Entra ID accepts either);
//! - claims `aud` = the token endpoint's URL, `iss` = `sub` = the client id, `jti` unique,
//!   `nbf`/`iat` now and `exp` ten minutes later ("keep it short - 5-10 minutes after nbf at most").
//!
//! It is sent as `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//! and `client_assertion` in place of `client_secret`
//! (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-credentials-flow>).
//!
//! The credential is read from one PEM file holding the certificate and its RSA private key
//! (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, unencrypted), the form Azure's own tools
//! write. Errors name what is wrong with the file, never its content.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PSS_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `client_assertion_type` of a signed JWT (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: the documentation's upper bound.
pub const ASSERTION_LIFETIME_SECS: u64 = 600;

/// What is wrong with a certificate credential file. Never carries the file's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("no CERTIFICATE block in the PEM file")]
    NoCertificate,
    #[error("no PRIVATE KEY or RSA PRIVATE KEY block in the PEM file (an encrypted key must be decrypted first)")]
    NoPrivateKey,
    #[error("the private key is not a usable RSA key (2048 bits or more, PKCS#8 or PKCS#1)")]
    NotRsa,
    #[error("the certificate cannot be parsed as X.509")]
    BadCertificate,
    #[error("the private key does not belong to the certificate in the same file")]
    KeyMismatch,
}

/// A certificate and its private key. `Debug` shows the thumbprint only.
pub struct ClientCertificate {
    key: RsaKeyPair,
    /// base64url SHA-256 of the certificate's DER (`x5t#S256`).
    x5t_s256: String,
    /// base64url SHA-1 of the certificate's DER (`x5t`).
    x5t: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// The first certificate and the first private key of a PEM file; the key must be the
    /// certificate's (checked here, so a mix-up is named before Entra ID refuses it).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertificateError> {
        let cert =
            CertificateDer::from_pem_slice(pem).map_err(|_| CertificateError::NoCertificate)?;
        let key =
            match PrivateKeyDer::from_pem_slice(pem).map_err(|_| CertificateError::NoPrivateKey)? {
                PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
                PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
                _ => return Err(CertificateError::NotRsa),
            }
            .map_err(|_| CertificateError::NotRsa)?;
        let end_entity =
            webpki::EndEntityCert::try_from(&cert).map_err(|_| CertificateError::BadCertificate)?;
        let probe = b"tenantry: does this key belong to this certificate?";
        let signature = sign(&key, probe).map_err(|_| CertificateError::NotRsa)?;
        end_entity
            .verify_signature(
                webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                probe,
                &signature,
            )
            .map_err(|_| CertificateError::KeyMismatch)?;
        Ok(Self {
            key,
            x5t_s256: URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &cert)),
            x5t: URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert)),
        })
    }

    /// [`ClientCertificate::from_pem`], once per PEM text in this process: a caller that
    /// rebuilds its configuration for every request (a connection profile opened from the
    /// database) shares the parsed key instead of parsing and checking it again each time. The
    /// cache holds each text's SHA-256, never the text, and only weak references: a key no
    /// client uses any more is gone from memory, as it would be without the cache.
    pub fn parsed(pem: &[u8]) -> Result<Arc<Self>, CertificateError> {
        static PARSED: OnceLock<Mutex<HashMap<[u8; 32], Weak<ClientCertificate>>>> =
            OnceLock::new();
        let mut key = [0; 32];
        key.copy_from_slice(digest::digest(&digest::SHA256, pem).as_ref());
        let cache = PARSED.get_or_init(Default::default);
        let lock = || cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cert) = lock().get(&key).and_then(Weak::upgrade) {
            return Ok(cert);
        }
        // Parsed outside the lock: two first callers may both parse, and the last one is kept.
        let cert = Arc::new(Self::from_pem(pem)?);
        let mut cached = lock();
        cached.retain(|_, c| c.strong_count() > 0);
        cached.insert(key, Arc::downgrade(&cert));
        Ok(cert)
    }

    /// The certificate's SHA-256 thumbprint, base64url (`x5t#S256`): what identifies it.
    pub fn thumbprint_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// A fresh signed assertion for `client_id` at the token endpoint `audience`.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, CertificateError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = serde_json::json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            sign(&self.key, signing_input.as_bytes()).map_err(|_| CertificateError::NotRsa)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

fn sign(key: &RsaKeyPair, msg: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PSS_SHA256, &SystemRandom::new(), msg, &mut signature)?;
    Ok(signature)
}
