//! `exchange://{userPrincipalName}` and the app registration that reaches it. A cross-tenant
//! copy has one app per tenant (`--source-…`, `--target-…`); the unprefixed options set both.
//! Client secrets come from a file or the environment, never from argv.

use anyhow::{bail, Context, Result};
use clap::Args;
use tenantry_graph::args::{AppCredentialArgs, Side as GraphSide};
use tenantry_graph::{GraphClient, GraphConfig};

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

#[derive(Debug, Args, Clone)]
pub struct ExchangeArgs {
    /// The app registration of each side (exchange:// only here).
    #[command(flatten)]
    pub app: AppCredentialArgs,
    /// Bytes uploaded per Exchange mailbox within --exchange-upload-window (Outlook's limit is
    /// 150 MB per 5 minutes; the copy paces itself to stay below it instead of meeting 429s).
    #[arg(long, default_value_t = super::pacing::DEFAULT_UPLOAD_BUDGET,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub exchange_upload_budget: u64,
    /// Seconds of the upload budget's window.
    #[arg(long, value_name = "SECS", default_value_t = super::pacing::DEFAULT_UPLOAD_WINDOW.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub exchange_upload_window: u64,
}

impl ExchangeArgs {
    /// The app registration of one side, its secret (file or environment) or certificate read.
    pub fn config(&self, side: Side) -> Result<GraphConfig> {
        let creds = self.app.side(match side {
            Side::Source => GraphSide::Source,
            Side::Target => GraphSide::Target,
        });
        let tenant = creds
            .tenant_id
            .with_context(|| format!("{side}: needs --{side}-tenant-id or --tenant-id"))?;
        let client = creds
            .client_id
            .with_context(|| format!("{side}: needs --{side}-client-id or --client-id"))?;
        let credential = creds.credential().with_context(|| format!("{side}"))?;
        Ok(GraphConfig::from_env(tenant, client, credential))
    }

    /// The Graph client of one side (`TENANTRY_GRAPH_URL` / `TENANTRY_AUTHORITY` override
    /// Microsoft's endpoints).
    pub fn client(&self, side: Side) -> Result<GraphClient> {
        let cfg = self.config(side)?;
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
