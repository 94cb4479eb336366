//! What a move is: two tenants, a path, a user mapping, and where the data lives on each side.

use serde::{Deserialize, Serialize};
use tenantry_ledger::{LedgerError, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MovePath {
    /// The source tenant will no longer be used: cancel its subscriptions at the end.
    RetireSource,
    /// The source tenant stays: reduce its purchased seats to what stays in use.
    KeepSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMapping {
    pub source_upn: String,
    pub target_upn: String,
}

/// Rewrites `alias@from` to `alias@to` for users the explicit mapping does not name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainRewrite {
    pub from: String,
    pub to: String,
}

impl DomainRewrite {
    pub fn apply(&self, upn: &str) -> Option<String> {
        let (alias, domain) = upn.rsplit_once('@')?;
        domain
            .eq_ignore_ascii_case(&self.from)
            .then(|| format!("{alias}@{}", self.to))
    }
}

/// Parses a mapping CSV: `sourceUpn,targetUpn` per line; a header line and `#` comments are skipped.
pub fn parse_user_csv(text: &str) -> Result<Vec<UserMapping>, LedgerError> {
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        if number == 0 && fields.first().is_some_and(|f| !f.contains('@')) {
            continue; // header
        }
        match fields.as_slice() {
            [source, target] if source.contains('@') && target.contains('@') => {
                out.push(UserMapping {
                    source_upn: source.to_string(),
                    target_upn: target.to_string(),
                })
            }
            _ => {
                return Err(LedgerError::invalid(
                    "InvalidUserMapping",
                    format!(
                        "line {}: expected `sourceUpn,targetUpn`, found `{line}`",
                        number + 1
                    ),
                ))
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LibraryMapping {
    /// `webdav(s)://host/path` URL or a local path.
    pub source: String,
    pub target: String,
    /// Connection profiles holding the WebDAV user and password of each side.
    #[serde(default)]
    pub source_profile: Option<String>,
    #[serde(default)]
    pub target_profile: Option<String>,
}

/// An IMAP server of one side. The admin (master) user and its password live in an encrypted
/// connection profile; each mailbox is opened with AUTHENTICATE PLAIN as that admin on behalf of
/// the user (authorization identity = the user's UPN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailServer {
    /// `imaps://host:port`, or `imap://host:port` on loopback only.
    pub url: String,
    /// Name of the connection profile with the admin user and password.
    pub profile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveSpec {
    pub source_tenant_id: TenantId,
    pub target_tenant_id: TenantId,
    pub path: MovePath,
    pub users: Vec<UserMapping>,
    pub domain_rewrite: Option<DomainRewrite>,
    /// Buy seats in the target when it has too few; when false, missing seats are a blocker.
    pub allow_purchase: bool,
    pub source_mail: Option<MailServer>,
    pub target_mail: Option<MailServer>,
    pub libraries: Vec<LibraryMapping>,
}
