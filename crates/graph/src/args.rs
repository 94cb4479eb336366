//! The app-only credential options of a Graph location, shared by every engine that reaches
//! Microsoft Graph (document libraries, Exchange mailboxes). A cross-tenant copy has one app
//! registration per tenant (`--source-…`, `--target-…`); the unprefixed options set both sides.
//! The app proves who it is with a client secret (from a file or the environment, never from
//! argv) or with a certificate: `--client-certificate FILE`, one PEM file holding the
//! certificate and its unencrypted RSA private key. On each side the most specific options win
//! (`--source-…` and `TENANTRY_SOURCE_CLIENT_SECRET` before the options for both sides); a
//! secret and a certificate at the same level are refused as ambiguous.
//!
//! Behind the `clap` feature, so that the client itself does not depend on a parser.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::certificate::{CertificateError, ClientCertificate};
use crate::config::{ClientCredential, ClientSecret};

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
    /// PEM file holding the app's certificate and its private key, for both sides (instead of a
    /// client secret).
    #[arg(long, value_name = "FILE")]
    pub client_certificate: Option<PathBuf>,
    #[arg(long)]
    pub source_tenant_id: Option<String>,
    #[arg(long)]
    pub source_client_id: Option<String>,
    /// Else env TENANTRY_SOURCE_CLIENT_SECRET, then the options for both sides.
    #[arg(long)]
    pub source_client_secret_file: Option<PathBuf>,
    /// The source app's certificate and private key (PEM), instead of a secret.
    #[arg(long, value_name = "FILE")]
    pub source_client_certificate: Option<PathBuf>,
    #[arg(long)]
    pub target_tenant_id: Option<String>,
    #[arg(long)]
    pub target_client_id: Option<String>,
    /// Else env TENANTRY_TARGET_CLIENT_SECRET, then the options for both sides.
    #[arg(long)]
    pub target_client_secret_file: Option<PathBuf>,
    /// The target app's certificate and private key (PEM), instead of a secret.
    #[arg(long, value_name = "FILE")]
    pub target_client_certificate: Option<PathBuf>,
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

/// The credentials of one side, before the secret or certificate is read.
pub struct SideCredentials<'a> {
    pub tenant_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// The side's own options, then the options for both sides.
    pub levels: [CredentialOptions<'a>; 2],
}

/// The secret and certificate options of one level (one side's own, or both sides').
#[derive(Clone, Copy)]
pub struct CredentialOptions<'a> {
    /// `--source-`, `--target-` or `--`: how the level's options are spelled.
    pub prefix: &'static str,
    pub secret_file: Option<&'a Path>,
    pub secret_env: &'static str,
    pub certificate: Option<&'a Path>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    // `reason`, not `source`: the message shows it once (a `source` would be shown again by
    // anyhow's chain).
    #[error("reading client secret file {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("reading client certificate file {path}: {reason}")]
    ReadCertificate {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("client certificate file {path}: {reason}")]
    Certificate {
        path: PathBuf,
        reason: CertificateError,
    },
    #[error(
        "no client secret or certificate: give --client-secret-file or --client-certificate \
         (or the --source-/--target- variant), or set {env} or TENANTRY_CLIENT_SECRET"
    )]
    Missing { env: &'static str },
    #[error(
        "both a client secret ({secret}) and {prefix}client-certificate are given: \
         give one of them"
    )]
    Ambiguous {
        prefix: &'static str,
        secret: String,
    },
}

impl AppCredentialArgs {
    /// A side's own options, else the options for both sides.
    pub fn side(&self, side: Side) -> SideCredentials<'_> {
        let (t, c, f, cert, env) = match side {
            Side::Source => (
                &self.source_tenant_id,
                &self.source_client_id,
                &self.source_client_secret_file,
                &self.source_client_certificate,
                "TENANTRY_SOURCE_CLIENT_SECRET",
            ),
            Side::Target => (
                &self.target_tenant_id,
                &self.target_client_id,
                &self.target_client_secret_file,
                &self.target_client_certificate,
                "TENANTRY_TARGET_CLIENT_SECRET",
            ),
        };
        SideCredentials {
            tenant_id: t.as_deref().or(self.tenant_id.as_deref()),
            client_id: c.as_deref().or(self.client_id.as_deref()),
            levels: [
                CredentialOptions {
                    prefix: side.option_prefix(),
                    secret_file: f.as_deref(),
                    secret_env: env,
                    certificate: cert.as_deref(),
                },
                CredentialOptions {
                    prefix: "--",
                    secret_file: self.client_secret_file.as_deref(),
                    secret_env: "TENANTRY_CLIENT_SECRET",
                    certificate: self.client_certificate.as_deref(),
                },
            ],
        }
    }
}

impl SideCredentials<'_> {
    /// The side's own secret file, environment variable or certificate, else those for both
    /// sides. A secret and a certificate at the same level are refused: which one was meant?
    pub fn credential(&self) -> Result<ClientCredential, CredentialError> {
        for level in &self.levels {
            let env_secret = std::env::var(level.secret_env)
                .ok()
                .filter(|s| !s.is_empty());
            let secret_given = match (level.secret_file, &env_secret) {
                (Some(_), _) => Some(format!("{}client-secret-file", level.prefix)),
                (None, Some(_)) => Some(level.secret_env.to_string()),
                (None, None) => None,
            };
            match (level.certificate, secret_given) {
                (Some(_), Some(secret)) => {
                    return Err(CredentialError::Ambiguous {
                        prefix: level.prefix,
                        secret,
                    })
                }
                (Some(path), None) => return read_certificate(path).map(Into::into),
                (None, Some(_)) => {
                    if let Some(f) = level.secret_file {
                        return read_secret(f).map(Into::into);
                    }
                    return Ok(ClientSecret::new(env_secret.unwrap_or_default()).into());
                }
                (None, None) => {}
            }
        }
        Err(CredentialError::Missing {
            env: self.levels[0].secret_env,
        })
    }
}

fn read_secret(f: &Path) -> Result<ClientSecret, CredentialError> {
    let s = std::fs::read_to_string(f).map_err(|reason| CredentialError::Read {
        path: f.to_path_buf(),
        reason,
    })?;
    Ok(ClientSecret::new(s.trim_end_matches(['\r', '\n'])))
}

fn read_certificate(f: &Path) -> Result<ClientCertificate, CredentialError> {
    let pem = std::fs::read(f).map_err(|reason| CredentialError::ReadCertificate {
        path: f.to_path_buf(),
        reason,
    })?;
    ClientCertificate::from_pem(&pem).map_err(|reason| CredentialError::Certificate {
        path: f.to_path_buf(),
        reason,
    })
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
            a.side(Side::Target).levels[0].secret_env,
            "TENANTRY_TARGET_CLIENT_SECRET"
        );
    }

    #[test]
    fn a_secret_and_a_certificate_at_one_level_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("app.secret");
        std::fs::write(&secret, "s3cret-value\n").unwrap();
        let a = AppCredentialArgs {
            client_secret_file: Some(secret.clone()),
            target_client_certificate: Some(dir.path().join("app.pem")),
            source_client_secret_file: Some(secret.clone()),
            source_client_certificate: Some(dir.path().join("app.pem")),
            ..Default::default()
        };
        let e = a.side(Side::Source).credential().unwrap_err().to_string();
        assert!(
            e.contains("--source-client-secret-file") && e.contains("--source-client-certificate"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        // The target's own certificate wins over the secret for both sides: it is read (and
        // here it is missing, which the error names).
        let e = a.side(Side::Target).credential().unwrap_err().to_string();
        assert!(e.contains("reading client certificate file"), "{e}");
        let both = AppCredentialArgs {
            client_secret_file: Some(secret),
            client_certificate: Some(dir.path().join("app.pem")),
            ..Default::default()
        };
        let e = both
            .side(Side::Target)
            .credential()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--client-certificate"), "{e}");
    }
}
