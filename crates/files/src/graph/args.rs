//! Command-line options for `sharepoint://` and `onedrive://` locations. A cross-tenant copy
//! has one app per tenant (`--source-…`, `--target-…`); the unprefixed options set both sides.
//! The client secret comes from a file or the environment, never from argv.

use std::path::PathBuf;

use clap::Args;

use super::SmallUpload;

#[derive(Debug, Args, Default, Clone)]
pub struct GraphArgs {
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
    /// Graph requests in flight per tenant (all transfers share them).
    #[arg(long, default_value_t = tenantry_graph::config::DEFAULT_MAX_IN_FLIGHT)]
    pub graph_max_in_flight: usize,
    /// How files of at most 4 MiB reach SharePoint/OneDrive: `session` keeps their modification
    /// time (two requests); `put` uses one request, and the service stamps the upload time.
    #[arg(long, value_enum, default_value_t = SmallUpload::Session)]
    pub graph_small_files: SmallUpload,
}

/// Which side a location is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

/// The credentials of one side, before the secret is read.
pub struct SideCredentials<'a> {
    pub tenant_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub secret_file: Option<&'a std::path::Path>,
    pub secret_env: &'static str,
}

impl GraphArgs {
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
    pub fn secret(&self) -> anyhow::Result<tenantry_graph::ClientSecret> {
        if let Some(f) = self.secret_file {
            let s = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("reading client secret file {}: {e}", f.display()))?;
            return Ok(tenantry_graph::ClientSecret::new(
                s.trim_end_matches(['\r', '\n']),
            ));
        }
        for var in [self.secret_env, "TENANTRY_CLIENT_SECRET"] {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    return Ok(tenantry_graph::ClientSecret::new(v));
                }
            }
        }
        anyhow::bail!(
            "no client secret: give --client-secret-file (or the --source-/--target- variant), \
             or set {} or TENANTRY_CLIENT_SECRET",
            self.secret_env
        )
    }
}
