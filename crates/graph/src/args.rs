//! The app-only credential options of a Graph location, shared by every engine that reaches
//! Microsoft Graph (document libraries, Exchange mailboxes). A cross-tenant copy has one app
//! registration per tenant (`--source-…`, `--target-…`); the unprefixed options set both sides.
//! The client secret comes from a file or the environment, never from argv.
//!
//! Behind the `clap` feature, so that the client itself does not depend on a parser.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::ClientSecret;

#[derive(Debug, Args, Default, Clone)]
pub struct AppCredentialArgs {
    /// Entra ID tenant (GUID or domain) of the app, for both sides.
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

/// Which side of a copy a location is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    /// The prefix of this side's options: `--source-` or `--target-`.
    pub fn option_prefix(self) -> &'static str {
        match self {
            Side::Source => "--source-",
            Side::Target => "--target-",
        }
    }
}

/// The credentials of one side, before the secret is read.
pub struct SideCredentials<'a> {
    pub tenant_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub secret_file: Option<&'a Path>,
    pub secret_env: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading client secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no client secret: give --client-secret-file (or the --source-/--target- variant), \
         or set {env} or TENANTRY_CLIENT_SECRET"
    )]
    Missing { env: &'static str },
}

impl AppCredentialArgs {
    /// A side's own options, else the options for both sides.
    pub fn side(&self, side: Side) -> SideCredentials<'_> {
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
        SideCredentials {
            tenant_id: t.as_deref().or(self.tenant_id.as_deref()),
            client_id: c.as_deref().or(self.client_id.as_deref()),
            secret_file: f.as_deref().or(self.client_secret_file.as_deref()),
            secret_env: env,
        }
    }
}

impl SideCredentials<'_> {
    /// The side's file, else its environment variable, else `TENANTRY_CLIENT_SECRET`.
    pub fn secret(&self) -> Result<ClientSecret, CredentialError> {
        if let Some(f) = self.secret_file {
            let s = std::fs::read_to_string(f).map_err(|source| CredentialError::Read {
                path: f.to_path_buf(),
                source,
            })?;
            return Ok(ClientSecret::new(s.trim_end_matches(['\r', '\n'])));
        }
        [self.secret_env, "TENANTRY_CLIENT_SECRET"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .map(ClientSecret::new)
            .ok_or(CredentialError::Missing {
                env: self.secret_env,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_falls_back_to_the_options_for_both() {
        let a = AppCredentialArgs {
            tenant_id: Some("both".into()),
            client_id: Some("app".into()),
            target_tenant_id: Some("theirs".into()),
            ..Default::default()
        };
        assert_eq!(a.side(Side::Source).tenant_id, Some("both"));
        assert_eq!(a.side(Side::Target).tenant_id, Some("theirs"));
        assert_eq!(a.side(Side::Target).client_id, Some("app"));
        assert_eq!(
            a.side(Side::Target).secret_env,
            "TENANTRY_TARGET_CLIENT_SECRET"
        );
    }
}
