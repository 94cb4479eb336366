//! A connection profile of kind `graph`: one app registration in one Microsoft Entra tenant (or
//! a tenantry server's `/v1.0` surface), and where its token endpoint and Graph are. The app
//! proves who it is with a client secret or a certificate (a PEM text holding the certificate
//! and its private key). The whole profile is sealed as JSON (the secret or the key with it);
//! the client id is the profile's user name.

use crate::secrets::Secret;
use serde::{Deserialize, Serialize};
use tenantry_graph::config::{DEFAULT_AUTHORITY, DEFAULT_GRAPH_URL};
use tenantry_graph::{ClientCertificate, ClientCredential, ClientSecret, GraphConfig};
use tenantry_ledger::LedgerError;

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphProfile {
    pub tenant_id: String,
    pub client_id: String,
    /// Empty when the profile holds a certificate (profiles sealed before certificates existed
    /// always have a secret).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// The certificate and its private key, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    pub authority: String,
    pub graph_url: String,
}

impl std::fmt::Debug for GraphProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphProfile")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority)
            .field("graph_url", &self.graph_url)
            .finish_non_exhaustive()
    }
}

/// A certificate and its key take 3-5 KB as PEM; more is not a credential.
const MAX_CERTIFICATE_PEM: usize = 64 * 1024;

fn http_url(field: &str, value: &str) -> Result<String, LedgerError> {
    let value = value.trim().trim_end_matches('/');
    let ok = (value.starts_with("https://") || value.starts_with("http://"))
        && !value["https://".len().min(value.len())..].is_empty();
    if !ok {
        return Err(LedgerError::invalid(
            "InvalidGraphProfile",
            format!("{field} must be an https:// URL (http:// only for a server on this machine)"),
        ));
    }
    let authority = value.split_once("://").map_or("", |(_, r)| r);
    if authority.split('/').next().unwrap_or("").contains('@') {
        return Err(LedgerError::invalid(
            "CredentialsInUrl",
            format!("{field} must not carry a user or password"),
        ));
    }
    Ok(value.to_string())
}

impl GraphProfile {
    /// Checks and normalises the fields; empty URLs take Microsoft's endpoints. Exactly one of
    /// `client_secret` and `client_certificate` is given; a certificate must parse and its key
    /// belong to it (the error names the problem, never the content).
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        client_secret: Option<&str>,
        client_certificate: Option<&str>,
        authority: Option<&str>,
        graph_url: Option<&str>,
    ) -> Result<GraphProfile, LedgerError> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.trim().is_empty())
        }
        let (client_secret, client_certificate) =
            match (given(client_secret), given(client_certificate)) {
                (Some(_), Some(_)) => {
                    return Err(LedgerError::invalid(
                        "InvalidGraphProfile",
                        "give clientSecret or clientCertificate, not both",
                    ))
                }
                (None, None) => {
                    return Err(LedgerError::invalid(
                        "InvalidGraphProfile",
                        "clientSecret or clientCertificate is required",
                    ))
                }
                (Some(secret), None) => (secret, None),
                (None, Some(pem)) => {
                    if pem.len() > MAX_CERTIFICATE_PEM {
                        return Err(LedgerError::invalid(
                            "InvalidGraphProfile",
                            format!("clientCertificate is over {MAX_CERTIFICATE_PEM} bytes"),
                        ));
                    }
                    ClientCertificate::from_pem(pem.as_bytes()).map_err(|e| {
                        LedgerError::invalid(
                            "InvalidClientCertificate",
                            format!("clientCertificate: {e}"),
                        )
                    })?;
                    ("", Some(pem.to_string()))
                }
            };
        let required = |name: &str, v: &str| {
            if v.trim().is_empty() || v.len() > 256 {
                Err(LedgerError::invalid(
                    "InvalidGraphProfile",
                    format!("{name} is required (at most 256 characters)"),
                ))
            } else {
                Ok(v.trim().to_string())
            }
        };
        let or_default =
            |v: Option<&str>, d: &str| v.filter(|s| !s.trim().is_empty()).unwrap_or(d).to_string();
        Ok(GraphProfile {
            tenant_id: required("tenantId", tenant_id)?,
            client_id: required("clientId", client_id)?,
            client_secret: if client_certificate.is_some() {
                String::new()
            } else {
                required("clientSecret", client_secret)?
            },
            client_certificate,
            authority: http_url("authority", &or_default(authority, DEFAULT_AUTHORITY))?,
            graph_url: http_url("graphUrl", &or_default(graph_url, DEFAULT_GRAPH_URL))?,
        })
    }

    pub fn from_sealed(plain: &Secret) -> Result<GraphProfile, String> {
        serde_json::from_str(&plain.0)
            .map_err(|_| "the graph profile is damaged (not the JSON this server wrote)".into())
    }

    pub fn to_plain(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The client configuration; the certificate was checked when the profile was created, so
    /// an error here means the sealed profile was changed.
    pub fn config(&self) -> Result<GraphConfig, String> {
        let credential: ClientCredential = match &self.client_certificate {
            // Parsed once while a client uses it, not at each of the profile's lookups.
            Some(pem) => ClientCredential::Certificate(
                ClientCertificate::parsed(pem.as_bytes())
                    .map_err(|e| format!("the graph profile's certificate: {e}"))?,
            ),
            None => ClientSecret::new(self.client_secret.clone()).into(),
        };
        let mut cfg = GraphConfig::from_env(&self.tenant_id, &self.client_id, credential);
        cfg.authority = self.authority.clone();
        cfg.graph_url = self.graph_url.clone();
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_microsofts_endpoints_and_the_secret_stays_out_of_debug() {
        let p = GraphProfile::new("t", "c", Some("hunter2-secret"), None, None, Some("")).unwrap();
        assert_eq!(p.authority, "https://login.microsoftonline.com");
        assert_eq!(p.graph_url, "https://graph.microsoft.com");
        assert!(!format!("{p:?}").contains("hunter2"));
        let back = GraphProfile::from_sealed(&Secret(p.to_plain())).unwrap();
        assert_eq!(back.client_secret, "hunter2-secret");
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let e = GraphProfile::new("", "c", Some("s"), None, None, None).unwrap_err();
        assert!(e.detail.contains("tenantId"), "{}", e.detail);
        let e = GraphProfile::new("t", "c", Some("s"), None, Some("ftp://x"), None).unwrap_err();
        assert!(e.detail.contains("authority"), "{}", e.detail);
        let e = GraphProfile::new(
            "t",
            "c",
            Some("s"),
            None,
            None,
            Some("https://u:p@graph.example"),
        )
        .unwrap_err();
        assert_eq!(e.code, "CredentialsInUrl");
        let p = GraphProfile::new(
            "t",
            "c",
            Some("s"),
            None,
            Some("http://127.0.0.1:8080/"),
            None,
        )
        .unwrap();
        assert_eq!(p.authority, "http://127.0.0.1:8080");
        let e = GraphProfile::new("t", "c", None, None, None, None).unwrap_err();
        assert!(
            e.detail.contains("clientSecret or clientCertificate"),
            "{}",
            e.detail
        );
        let e = GraphProfile::new("t", "c", Some("s"), Some("pem"), None, None).unwrap_err();
        assert!(e.detail.contains("not both"), "{}", e.detail);
        let e = GraphProfile::new("t", "c", None, Some("not a pem"), None, None).unwrap_err();
        assert_eq!(e.code, "InvalidClientCertificate");
        assert!(!e.detail.contains("not a pem"), "{}", e.detail);
    }

    #[test]
    fn a_profiles_certificate_is_parsed_once_for_all_its_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let cert = tenantry_testkit::tls::app_certificate(dir.path(), "app");
        let pem = String::from_utf8(std::fs::read(&cert.pem_file).unwrap()).unwrap();
        let profile = GraphProfile::new("t", "c", None, Some(&pem), None, None).unwrap();
        // Each lookup opens the sealed profile afresh, as `Mover::graph_profile` does.
        let lookup = || {
            GraphProfile::from_sealed(&Secret(profile.to_plain()))
                .unwrap()
                .config()
                .unwrap()
        };
        let (first, second) = (lookup(), lookup());
        let (ClientCredential::Certificate(a), ClientCredential::Certificate(b)) =
            (&first.credential, &second.credential)
        else {
            panic!("a certificate credential");
        };
        assert!(std::sync::Arc::ptr_eq(a, b), "the PEM was parsed again");
        let key_line = String::from_utf8(cert.key_pem.clone())
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        let shown = format!("{first:?} {profile:?}");
        assert!(!shown.contains(&key_line), "{shown}");
    }
}
