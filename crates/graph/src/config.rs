//! Where Graph and its token endpoint are, and the app's credentials.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::certificate::ClientCertificate;

/// Microsoft's endpoints; tests and sovereign clouds point elsewhere by configuration only.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Requests in flight per tenant unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// Bounds on what one answer, and one listing, may bring. Microsoft's own answers stay far
/// below them (a page holds at most a few thousand items); they exist for endpoints that
/// misbehave, whose address comes from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one JSON answer (one page of a listing).
    pub max_page_bytes: usize,
    /// Items one listing (`get_all`, one delta run) gathers.
    pub max_listing_items: usize,
    /// Pages one listing follows (empty pages count too).
    pub max_listing_pages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_page_bytes: 64 << 20,
            max_listing_items: 10_000_000,
            max_listing_pages: 1_000_000,
        }
    }
}

/// A client secret. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// How the app proves who it is at the token endpoint: a secret, or a certificate whose
/// private key signs a short-lived assertion ([`crate::certificate`]).
#[derive(Clone, Debug)]
pub enum ClientCredential {
    Secret(ClientSecret),
    Certificate(Arc<ClientCertificate>),
}

impl From<ClientSecret> for ClientCredential {
    fn from(s: ClientSecret) -> Self {
        ClientCredential::Secret(s)
    }
}

impl From<ClientCertificate> for ClientCredential {
    fn from(c: ClientCertificate) -> Self {
        ClientCredential::Certificate(Arc::new(c))
    }
}

/// One app registration in one tenant, and where to reach Graph.
#[derive(Clone, Debug)]
pub struct GraphConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub credential: ClientCredential,
    /// `https://login.microsoftonline.com` (no trailing slash).
    pub authority: String,
    /// `https://graph.microsoft.com` (no trailing slash); requests go to `{graph_url}/v1.0/...`.
    pub graph_url: String,
    pub max_in_flight: usize,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Longest single wait obeyed; a longer Retry-After is cut to this, then the server is asked again.
    pub max_wait: Duration,
    pub limits: Limits,
}

impl GraphConfig {
    /// A configuration with Microsoft's endpoints, overridden by `TENANTRY_GRAPH_URL` and
    /// `TENANTRY_AUTHORITY` when they are set.
    pub fn from_env(
        tenant_id: &str,
        client_id: &str,
        credential: impl Into<ClientCredential>,
    ) -> Self {
        let env = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| d.to_string())
                .trim_end_matches('/')
                .to_string()
        };
        Self {
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            credential: credential.into(),
            authority: env("TENANTRY_AUTHORITY", DEFAULT_AUTHORITY),
            graph_url: env("TENANTRY_GRAPH_URL", DEFAULT_GRAPH_URL),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            attempts: 8,
            max_wait: Duration::from_secs(300),
            limits: Limits::default(),
        }
    }

    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority,
            percent_encoding::utf8_percent_encode(&self.tenant_id, crate::client::PATH_SEGMENT)
        )
    }

    /// The `.default` scope of the Graph resource the requests go to.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.graph_url)
    }

    /// The key requests share a budget and a token under: one app in one tenant.
    pub fn budget_key(&self) -> String {
        format!("{}|{}|{}", self.authority, self.tenant_id, self.client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = GraphConfig::from_env("t", "c", ClientSecret::new("hunter2-secret"));
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("<redacted>"));
    }

    #[test]
    fn token_url_and_scope() {
        let mut c = GraphConfig::from_env("contoso.onmicrosoft.com", "c", ClientSecret::new("s"));
        c.authority = "https://login.microsoftonline.com".into();
        c.graph_url = "https://graph.microsoft.com".into();
        assert_eq!(
            c.token_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(c.scope(), "https://graph.microsoft.com/.default");
    }
}
