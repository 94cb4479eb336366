//! `exchange://{userPrincipalName}` and the app registration that reaches it. A cross-tenant
//! copy has one app per tenant (`--source-…`, `--target-…`); the unprefixed options set both.
//! Client secrets come from a file or the environment, never from argv.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use tenantry_graph::{ClientSecret, GraphClient, GraphConfig};

use crate::session::Side;

pub const SCHEME: &str = "exchange://";

pub fn is_exchange(loc: &str) -> bool {
    loc.starts_with(SCHEME)
}

/// The userPrincipalName of `exchange://{upn}`; `None` for a bare `exchange://` (batch mode,
/// where each CSV line names the mailbox).
pub fn parse(loc: &str) -> Result<Option<String>> {
    let Some(rest) = loc.strip_prefix(SCHEME) else {
        bail!("'{loc}': expected exchange://USER@DOMAIN");
    };
    let upn = percent_encoding::percent_decode_str(rest.trim_end_matches('/'))
        .decode_utf8()
        .context("exchange:// location is not UTF-8")?
        .into_owned();
    if upn.is_empty() {
        return Ok(None);
    }
    if upn.contains([':', '/', '?', '#']) || !upn.contains('@') {
        bail!(
            "'{loc}': expected exchange://USER@DOMAIN (a userPrincipalName, no password or path)"
        );
    }
    Ok(Some(upn))
}

#[derive(Debug, Args, Default, Clone)]
pub struct ExchangeArgs {
    /// Entra ID tenant (GUID or domain) of the app, for both sides (exchange:// only).
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Application (client) id of the app registration, for both sides.
    #[arg(long)]
    pub client_id: Option<String>,
    /// File holding the app's client secret, for both sides (else env TENANTRY_CLIENT_SECRET).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    #[arg(long)]
    pub source_tenant_id: Option<String>,
    #[arg(long)]
    pub source_client_id: Option<String>,
    /// Else env TENANTRY_SOURCE_CLIENT_SECRET, then the options for both sides.
    #[arg(long)]
    pub source_client_secret_file: Option<PathBuf>,
    #[arg(long)]
    pub target_tenant_id: Option<String>,
    #[arg(long)]
    pub target_client_id: Option<String>,
    /// Else env TENANTRY_TARGET_CLIENT_SECRET, then the options for both sides.
    #[arg(long)]
    pub target_client_secret_file: Option<PathBuf>,
}

impl ExchangeArgs {
    /// The Graph client of one side (`TENANTRY_GRAPH_URL` / `TENANTRY_AUTHORITY` override
    /// Microsoft's endpoints).
    pub fn client(&self, side: Side) -> Result<GraphClient> {
        let (t, c, f, env) = match side {
            Side::Source => (
                &self.source_tenant_id,
                &self.source_client_id,
                &self.source_client_secret_file,
                "TENANTRY_SOURCE_CLIENT_SECRET",
            ),
            Side::Target => (
                &self.target_tenant_id,
                &self.target_client_id,
                &self.target_client_secret_file,
                "TENANTRY_TARGET_CLIENT_SECRET",
            ),
        };
        let tenant = t
            .as_deref()
            .or(self.tenant_id.as_deref())
            .with_context(|| {
                format!("{side}: exchange:// needs --{side}-tenant-id or --tenant-id")
            })?;
        let client = c
            .as_deref()
            .or(self.client_id.as_deref())
            .with_context(|| {
                format!("{side}: exchange:// needs --{side}-client-id or --client-id")
            })?;
        let secret = match f.as_deref().or(self.client_secret_file.as_deref()) {
            Some(f) => {
                let s = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read client secret file {}", f.display()))?;
                ClientSecret::new(s.trim_end_matches(['\r', '\n']))
            }
            None => [env, "TENANTRY_CLIENT_SECRET"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
                .map(ClientSecret::new)
                .with_context(|| {
                    format!(
                        "{side}: no client secret: give --client-secret-file (or --{side}-client-secret-file), or set {env} or TENANTRY_CLIENT_SECRET"
                    )
                })?,
        };
        let cfg = GraphConfig::from_env(tenant, client, secret);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(std::time::Duration::from_secs(30))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .context("HTTP client")?;
        Ok(GraphClient::new(cfg, http))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse("exchange://adele%40contoso.com").unwrap().as_deref(),
            Some("adele@contoso.com")
        );
        assert_eq!(
            parse("exchange://a@b.org/").unwrap().as_deref(),
            Some("a@b.org")
        );
        assert_eq!(parse("exchange://").unwrap(), None);
        assert!(
            parse("exchange://a:pw@b.org").is_err(),
            "no password in the URL"
        );
        assert!(parse("exchange://nobody").is_err());
        assert!(parse("imaps://a@b").is_err());
    }
}
