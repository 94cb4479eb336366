//! The token endpoint's certificate credential: a client assertion checked as Entra ID
//! documents it (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>):
//! a JWT whose header names the certificate by `x5t#S256` (base64url SHA-256 of its DER), signed
//! RS256 or PS256 by that certificate's key, with `aud` = the token endpoint's URL,
//! `iss` = `sub` = the client id, a `jti`, and `nbf`/`exp` bracketing now.
//!
//! Refusals carry the AADSTS codes of
//! <https://learn.microsoft.com/entra/identity-platform/reference-error-codes>: 700027 (the
//! certificate is not registered, or the signature does not verify), 700024 (not within its
//! valid time range), 700021 (`iss`/`sub` are not the client id), 700023 (wrong audience).
//! Stricter than documented: `x5t#S256` is required (a SHA-1 `x5t` alone is refused) and a
//! `jti` is accepted once.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew tolerated on `nbf` (Entra ID allows a few minutes).
const SKEW_SECS: i64 = 300;

/// The certificates registered on the fake's app, and the assertion ids already used.
#[derive(Default)]
pub struct Registered {
    /// (x5t#S256, DER).
    certificates: Vec<(String, Vec<u8>)>,
    used_jti: HashSet<String>,
}

/// Why an assertion is refused: (OAuth error, description).
pub type Refusal = (&'static str, String);

pub fn thumbprint_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

impl Registered {
    /// Registers the first certificate of a PEM text; returns its `x5t#S256`.
    pub fn add_pem(&mut self, pem: &[u8]) -> String {
        let der = CertificateDer::from_pem_slice(pem).expect("a CERTIFICATE block");
        let t = thumbprint_s256(&der);
        self.certificates.push((t.clone(), der.to_vec()));
        t
    }

    /// Checks `assertion` for `client_id` at the token endpoint `audience` at `now` (Unix seconds).
    pub fn verify(
        &mut self,
        assertion: &str,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<(), Refusal> {
        let malformed = || {
            (
                "invalid_client",
                "AADSTS50027: JWT token is invalid or malformed.".to_string(),
            )
        };
        let mut parts = assertion.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let json = |part: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
        };
        let (Some(header), Some(claims), Ok(signature)) =
            (json(h), json(c), URL_SAFE_NO_PAD.decode(s))
        else {
            return Err(malformed());
        };
        let not_registered = || {
            (
                "invalid_client",
                format!(
                    "AADSTS700027: The certificate with identifier used to sign the client \
                     assertion is not registered on application. [Reason - The key was not \
                     found., Thumbprint of key used by client: '{}']",
                    header["x5t#S256"].as_str().unwrap_or("(none)")
                ),
            )
        };
        let Some(der) = header["x5t#S256"].as_str().and_then(|t| {
            self.certificates
                .iter()
                .find(|(k, _)| k == t)
                .map(|(_, d)| d)
        }) else {
            return Err(not_registered());
        };
        let alg = match header["alg"].as_str() {
            Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            _ => {
                return Err((
                    "invalid_client",
                    "the client assertion's alg must be RS256 or PS256".into(),
                ))
            }
        };
        let cert = CertificateDer::from(der.as_slice());
        let signed = webpki::EndEntityCert::try_from(&cert)
            .map_err(|_| not_registered())?
            .verify_signature(alg, format!("{h}.{c}").as_bytes(), &signature);
        if signed.is_err() {
            return Err((
                "invalid_client",
                "AADSTS700027: Client assertion failed signature validation.".into(),
            ));
        }
        if claims["aud"].as_str() != Some(audience) {
            return Err((
                "invalid_client",
                "AADSTS700023: Client assertion audience claim does not match Realm issuer.".into(),
            ));
        }
        if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
            return Err((
                "invalid_client",
                "AADSTS700021: Client assertion application identifier doesn't match \
                 'client_id' parameter."
                    .into(),
            ));
        }
        let (Some(nbf), Some(exp)) = (claims["nbf"].as_i64(), claims["exp"].as_i64()) else {
            return Err(malformed());
        };
        if now + SKEW_SECS < nbf || now >= exp {
            return Err((
                "invalid_client",
                format!(
                    "AADSTS700024: Client assertion is not within its valid time range. \
                     Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}."
                ),
            ));
        }
        let Some(jti) = claims["jti"].as_str().filter(|j| !j.is_empty()) else {
            return Err(malformed());
        };
        if !self.used_jti.insert(jti.to_string()) {
            return Err((
                "invalid_client",
                "the client assertion's jti was used before (the fake refuses a replay)".into(),
            ));
        }
        Ok(())
    }
}
