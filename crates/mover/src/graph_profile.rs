//! A connection profile of kind `graph`: one app registration in one Microsoft Entra tenant (or
//! a tenantry server's `/v1.0` surface), and where its token endpoint and Graph are. The whole
//! profile is sealed as JSON (the secret with it); the client id is the profile's user name.

use crate::secrets::Secret;
use serde::{Deserialize, Serialize};
use tenantry_graph::config::{DEFAULT_AUTHORITY, DEFAULT_GRAPH_URL};
use tenantry_graph::{ClientSecret, GraphConfig};
use tenantry_ledger::LedgerError;

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphProfile {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
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
    /// Checks and normalises the fields; empty URLs take Microsoft's endpoints.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        client_secret: &str,
        authority: Option<&str>,
        graph_url: Option<&str>,
    ) -> Result<GraphProfile, LedgerError> {
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
            client_secret: required("clientSecret", client_secret)?,
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

    pub fn config(&self) -> GraphConfig {
        let mut cfg = GraphConfig::from_env(
            &self.tenant_id,
            &self.client_id,
            ClientSecret::new(self.client_secret.clone()),
        );
        cfg.authority = self.authority.clone();
        cfg.graph_url = self.graph_url.clone();
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_microsofts_endpoints_and_the_secret_stays_out_of_debug() {
        let p = GraphProfile::new("t", "c", "hunter2-secret", None, Some("")).unwrap();
        assert_eq!(p.authority, "https://login.microsoftonline.com");
        assert_eq!(p.graph_url, "https://graph.microsoft.com");
        assert!(!format!("{p:?}").contains("hunter2"));
        let back = GraphProfile::from_sealed(&Secret(p.to_plain())).unwrap();
        assert_eq!(back.client_secret, "hunter2-secret");
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let e = GraphProfile::new("", "c", "s", None, None).unwrap_err();
        assert!(e.detail.contains("tenantId"), "{}", e.detail);
        let e = GraphProfile::new("t", "c", "s", Some("ftp://x"), None).unwrap_err();
        assert!(e.detail.contains("authority"), "{}", e.detail);
        let e =
            GraphProfile::new("t", "c", "s", None, Some("https://u:p@graph.example")).unwrap_err();
        assert_eq!(e.code, "CredentialsInUrl");
        let p = GraphProfile::new("t", "c", "s", Some("http://127.0.0.1:8080/"), None).unwrap();
        assert_eq!(p.authority, "http://127.0.0.1:8080");
    }
}
