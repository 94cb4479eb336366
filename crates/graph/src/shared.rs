//! One [`GraphClient`] per app, endpoint and purpose in this process, so that its token is
//! reused from step to step and from run to run, whoever asks (the move runner's tenant port,
//! its data engines, the files CLI).
//!
//! The key holds the credential's fingerprint (a SHA-256 of the secret, or the certificate's
//! thumbprint), never the credential: a profile whose secret is replaced gets a new client at
//! once, instead of a cached one whose token and secret no longer work. The throttling budget is
//! shared by app and tenant in [`crate::budget`], whatever client asks.

use crate::{ClientCredential, GraphClient, GraphConfig};
use ring::digest;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// (app and tenant, Graph URL, purpose) → (credential fingerprint, client).
type Clients = HashMap<(String, String, &'static str), (String, GraphClient)>;

/// The client for `cfg` and `purpose` (a caller's own name for HTTP settings and retries that
/// differ, e.g. "probe", "files"); `http` builds the HTTP client when a new one is needed. A new
/// credential for the same app replaces the old client (the map holds one per app and purpose).
pub fn shared_client<E>(
    cfg: GraphConfig,
    purpose: &'static str,
    http: impl FnOnce() -> Result<reqwest::Client, E>,
) -> Result<GraphClient, E> {
    static CLIENTS: OnceLock<Mutex<Clients>> = OnceLock::new();
    let key = (cfg.budget_key(), cfg.graph_url.clone(), purpose);
    let fingerprint = fingerprint(&cfg.credential);
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((known, client)) = clients.get(&key) {
        if *known == fingerprint {
            return Ok(client.clone());
        }
    }
    let client = GraphClient::new(cfg, http()?);
    clients.insert(key, (fingerprint, client.clone()));
    Ok(client)
}

/// Tells credentials apart without keeping them: SHA-256 of a secret, a certificate's
/// `x5t#S256` thumbprint (its key was checked to belong to it).
fn fingerprint(credential: &ClientCredential) -> String {
    match credential {
        ClientCredential::Secret(secret) => {
            let hash = digest::digest(&digest::SHA256, secret.expose().as_bytes());
            format!("secret:{}", hex(hash.as_ref()))
        }
        ClientCredential::Certificate(cert) => format!("cert:{}", cert.thumbprint_s256()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientSecret;

    fn config(secret: &str) -> GraphConfig {
        let mut cfg =
            GraphConfig::from_env("tenant-shared-test", "client", ClientSecret::new(secret));
        cfg.graph_url = "http://127.0.0.1:9".into();
        cfg.authority = "http://127.0.0.1:9".into();
        cfg
    }

    fn get(secret: &str, purpose: &'static str) -> GraphClient {
        shared_client(config(secret), purpose, || {
            Ok::<_, ()>(reqwest::Client::new())
        })
        .unwrap()
    }

    #[test]
    fn one_client_per_app_and_purpose_and_a_new_one_for_a_new_secret() {
        let first = get("old secret", "probe");
        assert!(first.same_client(&get("old secret", "probe")), "reused");
        assert!(
            !first.same_client(&get("old secret", "files")),
            "another purpose"
        );
        let rotated = get("new secret", "probe");
        assert!(!first.same_client(&rotated), "a new secret, a new client");
        assert!(rotated.same_client(&get("new secret", "probe")));
    }

    #[test]
    fn fingerprints_never_hold_the_secret() {
        let f = fingerprint(&ClientSecret::new("hunter2-secret").into());
        assert!(!f.contains("hunter2"));
        assert_eq!(f.len(), "secret:".len() + 64);
    }
}
