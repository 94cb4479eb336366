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

/// Parses a mapping CSV: `sourceUpn,targetUpn` per row (`,` or `;`, quoted or not, with or
/// without a byte-order mark: see `tenantry_csv`); a header row and `#` comments are skipped.
pub fn parse_user_csv(text: &str) -> Result<Vec<UserMapping>, LedgerError> {
    let invalid = |message: String| LedgerError::invalid("InvalidUserMapping", message);
    let rows = tenantry_csv::read_rows(text.as_bytes(), |first| !first.field(0).contains('@'))
        .map_err(|e| invalid(e.to_string()))?;
    rows.into_iter()
        .map(|row| match row.fields.as_slice() {
            [source, target] if source.contains('@') && target.contains('@') => Ok(UserMapping {
                source_upn: source.clone(),
                target_upn: target.clone(),
            }),
            fields => Err(invalid(format!(
                "line {}: expected `sourceUpn,targetUpn` (two addresses), found {} field(s): {}",
                row.line,
                fields.len(),
                fields.join(" | ")
            ))),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LibraryMapping {
    /// `webdav(s)://host/path` URL, a local path, `sharepoint://{host}/sites/{site}/{library}/…`
    /// or `onedrive://{userPrincipalName}/…`. `onedrive://{user}/…` on both sides stands for
    /// each moving user's OneDrive: one library step per user, source UPN to target UPN.
    pub source: String,
    pub target: String,
    /// Connection profiles of each side: the WebDAV user and password, or for SharePoint and
    /// OneDrive a profile of kind `graph` (the side's `…Graph` profile when none is named).
    #[serde(default)]
    pub source_profile: Option<String>,
    #[serde(default)]
    pub target_profile: Option<String>,
}

/// The mail server of one side. IMAP: the admin (master) user and its password live in an
/// encrypted connection profile; each mailbox is opened with AUTHENTICATE PLAIN as that admin on
/// behalf of the user (authorization identity = the user's UPN). Exchange Online (`exchange://`):
/// each user's mailbox (its UPN after the domain rewrite) through Microsoft Graph, with the app
/// of a `graph` profile (the side's `…Graph` profile when none is named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailServer {
    /// `imaps://host:port`, `imap://host:port` on loopback only, or `exchange://`.
    pub url: String,
    /// Name of the connection profile with the admin user and password (IMAP) or the app
    /// (`graph`, Exchange).
    #[serde(default)]
    pub profile: String,
}

/// A CalDAV or CardDAV server of one side. Its connection profile (kind `webdav`) holds a
/// service login that may read (source) or write (target) every moving user's home, as the
/// IMAP admin does for mailboxes; each user's home is found by discovery (RFC 6764).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DavServer {
    /// `caldavs://host[:port]/[context/]` (calendars) or `carddavs://…` (contacts); the forms
    /// without `s` speak plain HTTP. A path of `/` starts discovery at `/.well-known/…`.
    pub url: String,
    /// Name of the connection profile with the service user and password.
    pub profile: String,
}

/// The calendar and contact servers of a move: calendars (and task lists) move when both
/// CalDAV servers are named, address books when both CardDAV servers are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PimServers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_caldav: Option<DavServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_caldav: Option<DavServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_carddav: Option<DavServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_carddav: Option<DavServer>,
}

/// Calendars or address books: which pair of servers of a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PimKind {
    Calendars,
    Contacts,
}

impl PimKind {
    pub const ALL: [PimKind; 2] = [PimKind::Calendars, PimKind::Contacts];

    /// `calendars` / `contacts`: step keys and state names.
    pub fn name(self) -> &'static str {
        match self {
            PimKind::Calendars => "calendars",
            PimKind::Contacts => "contacts",
        }
    }

    /// The URL schemes a server of this kind may use (plain, TLS).
    pub fn schemes(self) -> [&'static str; 2] {
        match self {
            PimKind::Calendars => ["caldav://", "caldavs://"],
            PimKind::Contacts => ["carddav://", "carddavs://"],
        }
    }

    fn field(self, side: &str) -> String {
        match self {
            PimKind::Calendars => format!("{side}Caldav"),
            PimKind::Contacts => format!("{side}Carddav"),
        }
    }
}

impl PimServers {
    /// (source, target) servers of a kind.
    pub fn of(&self, kind: PimKind) -> (Option<&DavServer>, Option<&DavServer>) {
        match kind {
            PimKind::Calendars => (self.source_caldav.as_ref(), self.target_caldav.as_ref()),
            PimKind::Contacts => (self.source_carddav.as_ref(), self.target_carddav.as_ref()),
        }
    }

    /// The kinds this move carries (both servers named).
    pub fn kinds(&self) -> Vec<PimKind> {
        PimKind::ALL
            .into_iter()
            .filter(|k| matches!(self.of(*k), (Some(_), Some(_))))
            .collect()
    }

    /// Every URL is of its kind's scheme, names a host and no credentials, query or fragment,
    /// and has a profile.
    pub fn validate(&self) -> Result<(), LedgerError> {
        for kind in PimKind::ALL {
            let (source, target) = self.of(kind);
            for (side, server) in [("source", source), ("target", target)] {
                let Some(server) = server else { continue };
                let field = kind.field(side);
                let invalid = |why: String| {
                    LedgerError::invalid("InvalidDavServer", format!("{field}: {why}"))
                };
                let [plain, tls] = kind.schemes();
                let Some(rest) = server
                    .url
                    .strip_prefix(plain)
                    .or_else(|| server.url.strip_prefix(tls))
                else {
                    return Err(invalid(format!(
                        "the URL must start with {tls} (or {plain} for plain HTTP)"
                    )));
                };
                if userinfo(&server.url).is_some() {
                    return Err(LedgerError::invalid(
                        "CredentialsInUrl",
                        format!("{field}: the URL must not name a user or password: put them in a connection profile"),
                    ));
                }
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                if authority.is_empty() || authority.starts_with(':') {
                    return Err(invalid("the URL names no host".into()));
                }
                if let Some((_, port)) = authority
                    .rsplit_once(':')
                    .filter(|_| !authority.ends_with(']'))
                {
                    if port.parse::<u16>().map_or(true, |p| p == 0) {
                        return Err(invalid(format!("{port:?} is not a port number")));
                    }
                }
                if rest.contains(['?', '#']) {
                    return Err(invalid("the URL cannot have a query or a fragment".into()));
                }
                if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        "the URL cannot contain spaces or control characters".into(),
                    ));
                }
                if server.profile.trim().is_empty() {
                    return Err(LedgerError::invalid(
                        "ProfileRequired",
                        format!(
                            "{field} needs a connection profile (its service user and password)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// In a library location, each moving user's UPN: `onedrive://{user}/…`.
pub const USER_PLACEHOLDER: &str = "{user}";

impl LibraryMapping {
    /// Each moving user's OneDrive (`onedrive://{user}/…`), rather than one fixed library.
    pub fn per_user(&self) -> bool {
        self.source.contains(USER_PLACEHOLDER) || self.target.contains(USER_PLACEHOLDER)
    }

    /// The mapping of one moving user: the placeholder replaced by their source UPN on the
    /// source side and their target UPN on the target side, each as one path segment (a
    /// source UPN comes from the source tenant, perhaps through Graph: a `/`, `%`, `?` or `#`
    /// in it must not add segments or escapes to the location).
    pub fn for_user(&self, source_upn: &str, target_upn: &str) -> LibraryMapping {
        LibraryMapping {
            source: self
                .source
                .replace(USER_PLACEHOLDER, &as_segment(source_upn)),
            target: self
                .target
                .replace(USER_PLACEHOLDER, &as_segment(target_upn)),
            ..self.clone()
        }
    }
}

/// `upn` as one percent-encoded path segment: letters, digits and `@._-` as they are, every
/// other byte `%XX` (the location parser decodes segments back).
fn as_segment(upn: &str) -> String {
    let mut out = String::with_capacity(upn.len());
    for b in upn.bytes() {
        if b.is_ascii_alphanumeric() || b"@._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `location` is `onedrive://{user}` with an optional path, the one place the
/// placeholder may stand.
fn is_per_user_onedrive(location: &str) -> bool {
    location
        .strip_prefix("onedrive://{user}")
        .is_some_and(|rest| {
            (rest.is_empty() || rest.starts_with('/')) && !rest.contains(USER_PLACEHOLDER)
        })
}

/// `sharepoint://…` and `onedrive://…`: libraries reached through Microsoft Graph.
pub fn is_graph_library(location: &str) -> bool {
    location.starts_with("sharepoint://") || location.starts_with("onedrive://")
}

/// `exchange://`: mailboxes in Exchange Online, reached through Microsoft Graph.
pub fn is_exchange(url: &str) -> bool {
    url.starts_with("exchange://")
}

/// What the shape of a Graph library location lacks (the files engine parses it in full).
fn graph_library_problem(location: &str) -> Option<&'static str> {
    if location.contains(['?', '#']) {
        return Some("a sharepoint:// or onedrive:// location has no query or fragment");
    }
    if let Some(rest) = location.strip_prefix("sharepoint://") {
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let ok =
            segs.len() >= 4 && !segs[0].contains('@') && (segs[1] == "sites" || segs[1] == "teams");
        return (!ok).then_some("expected sharepoint://{host}/sites/{site}/{library}[/{path}]");
    }
    let upn = location
        .strip_prefix("onedrive://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    (!upn.contains('@') || upn.contains(':'))
        .then_some("expected onedrive://{userPrincipalName}[/{path}]")
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
    /// The connection profile (kind `graph`) the source is reached through; `None`: the
    /// source tenant lives in this server's ledger. Absent from older specs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_graph: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_graph: Option<String>,
    /// CalDAV / CardDAV servers (`sourceCaldav`, `targetCaldav`, `sourceCarddav`,
    /// `targetCarddav`); absent from older specs. Boxed: most moves name none.
    #[serde(flatten)]
    pub pim: Box<PimServers>,
}

/// Whether the authority of `url` (after `scheme://`) carries a user or password.
fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map(|(info, _)| info)
}

impl MoveSpec {
    /// The tenants kept in this server's ledger (those not reached through Graph).
    pub fn local_tenants(&self) -> Vec<TenantId> {
        let mut out = Vec::new();
        if self.source_graph.is_none() {
            out.push(self.source_tenant_id);
        }
        if self.target_graph.is_none() {
            out.push(self.target_tenant_id);
        }
        out
    }

    /// Names the side's `graph` profile where a Graph location or an `exchange://` server names
    /// none, so that the stored move says which app each side's data is reached with.
    pub fn with_graph_defaults(mut self) -> MoveSpec {
        let (source_graph, target_graph) = (self.source_graph.clone(), self.target_graph.clone());
        for (server, graph) in [
            (&mut self.source_mail, &source_graph),
            (&mut self.target_mail, &target_graph),
        ] {
            if let (Some(server), Some(graph)) = (server, graph) {
                if is_exchange(&server.url) && server.profile.trim().is_empty() {
                    server.profile = graph.clone();
                }
            }
        }
        for library in &mut self.libraries {
            for (location, profile, graph) in [
                (&library.source, &mut library.source_profile, &source_graph),
                (&library.target, &mut library.target_profile, &target_graph),
            ] {
                let unnamed = profile.as_deref().is_none_or(|p| p.trim().is_empty());
                if is_graph_library(location) && unnamed {
                    *profile = graph.clone();
                }
            }
        }
        self
    }

    /// Checks what can be checked before anything is stored. Credentials belong in connection
    /// profiles: a URL carrying them is refused without repeating it (it would show in the
    /// move, its report and logs).
    pub fn validate(&self) -> Result<(), LedgerError> {
        self.validate_exchange()?;
        for (side, server) in [("source", &self.source_mail), ("target", &self.target_mail)] {
            let Some(server) = server else { continue };
            if is_exchange(&server.url) {
                continue;
            }
            if !(server.url.starts_with("imaps://") || server.url.starts_with("imap://")) {
                return Err(LedgerError::invalid(
                    "InvalidMailServer",
                    format!(
                        "the {side} mail server must be an imaps://, imap:// or exchange:// URL"
                    ),
                ));
            }
            if userinfo(&server.url).is_some() {
                return Err(LedgerError::invalid(
                    "CredentialsInUrl",
                    format!("the {side} mail server URL must not name a user or password: put them in a connection profile"),
                ));
            }
            if server.profile.trim().is_empty() {
                return Err(LedgerError::invalid(
                    "ProfileRequired",
                    format!("the {side} mail server needs a connection profile (its admin user and password)"),
                ));
            }
        }
        self.pim.validate()?;
        for (index, library) in self.libraries.iter().enumerate() {
            if library.per_user()
                && !(is_per_user_onedrive(&library.source) && is_per_user_onedrive(&library.target))
            {
                return Err(LedgerError::invalid(
                    "InvalidLibrary",
                    format!(
                        "library {}: {USER_PLACEHOLDER} stands for each moving user's OneDrive:                          use onedrive://{USER_PLACEHOLDER}/… as both the source and the target",
                        index + 1
                    ),
                ));
            }
            // The shape is checked on a user's mapping (the placeholder is no UPN).
            let library = &library.for_user("user@example.com", "user@example.com");
            for (side, location, profile) in [
                ("source", &library.source, &library.source_profile),
                ("target", &library.target, &library.target_profile),
            ] {
                if is_graph_library(location) {
                    if let Some(problem) = graph_library_problem(location) {
                        return Err(LedgerError::invalid(
                            "InvalidLibrary",
                            format!("library {}: {problem}", index + 1),
                        ));
                    }
                    if profile.as_deref().is_none_or(|p| p.trim().is_empty()) {
                        return Err(LedgerError::invalid(
                            "GraphProfileRequired",
                            format!(
                                "library {}: the {side} is in SharePoint/OneDrive, reached through \
                                 Microsoft Graph: name a connection profile of kind graph \
                                 ({side}Profile) or the move's {side}Graph",
                                index + 1
                            ),
                        ));
                    }
                } else if location.contains("://") {
                    if !(location.starts_with("webdav://") || location.starts_with("webdavs://")) {
                        return Err(LedgerError::invalid(
                            "InvalidLibrary",
                            format!("library {}: use a path, webdav://, webdavs://, sharepoint:// or onedrive://", index + 1),
                        ));
                    }
                    if userinfo(location).is_some_and(|info| info.contains(':')) {
                        return Err(LedgerError::invalid(
                            "CredentialsInUrl",
                            format!("library {}: a password in the URL is refused: put it in a connection profile", index + 1),
                        ));
                    }
                } else if location.trim().is_empty() {
                    return Err(LedgerError::invalid(
                        "InvalidLibrary",
                        format!(
                            "library {}: the source and the target are both required",
                            index + 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `exchange://` alone on a side (each user's mailbox is named by the move's mapping), with
    /// a `graph` profile, and as a source only towards another Exchange (mailbox
    /// import/export carries every item; an IMAP target cannot take them).
    fn validate_exchange(&self) -> Result<(), LedgerError> {
        let invalid = |message: String| Err(LedgerError::invalid("InvalidMailServer", message));
        for (side, server) in [("source", &self.source_mail), ("target", &self.target_mail)] {
            let Some(server) = server.as_ref().filter(|s| is_exchange(&s.url)) else {
                continue;
            };
            if !server.url["exchange://".len()..]
                .trim_matches('/')
                .is_empty()
            {
                return invalid(format!(
                    "the {side} mail server: use exchange:// alone; a move opens each user's \
                     mailbox by the user's UPN (after the domain rewrite on the target)"
                ));
            }
            if server.profile.trim().is_empty() {
                return Err(LedgerError::invalid(
                    "GraphProfileRequired",
                    format!(
                        "the {side} mail server is Exchange Online, reached through Microsoft \
                         Graph: name a connection profile of kind graph ({side}Mail.profile) or \
                         the move's {side}Graph"
                    ),
                ));
            }
        }
        let exchange = |s: &Option<MailServer>| s.as_ref().is_some_and(|s| is_exchange(&s.url));
        if exchange(&self.source_mail) && self.target_mail.is_some() && !exchange(&self.target_mail)
        {
            return invalid(
                "an exchange:// source needs an exchange:// target (mailbox import/export); \
                 an IMAP target cannot take calendars, contacts and tasks"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MoveSpec {
        MoveSpec {
            source_tenant_id: TenantId::new_random(),
            target_tenant_id: TenantId::new_random(),
            path: MovePath::RetireSource,
            users: vec![],
            domain_rewrite: None,
            allow_purchase: true,
            source_mail: None,
            target_mail: None,
            libraries: vec![],
            source_graph: None,
            target_graph: None,
            pim: Default::default(),
        }
    }

    fn dav(url: &str) -> Option<DavServer> {
        Some(DavServer {
            url: url.into(),
            profile: "dav".into(),
        })
    }

    #[test]
    fn dav_servers_are_checked_with_the_field_named() {
        let mut s = spec();
        s.pim.source_caldav = dav("caldavs://dav.example:8443/");
        s.pim.target_caldav = dav("caldav://127.0.0.1:5232/remote.php/dav/");
        s.pim.source_carddav = dav("carddavs://dav.example/");
        s.validate().unwrap();
        assert_eq!(
            s.pim.kinds(),
            vec![PimKind::Calendars],
            "contacts need both sides"
        );
        for (url, code, words) in [
            (
                "carddavs://dav.example/",
                "InvalidDavServer",
                "targetCaldav: the URL must start with caldavs://",
            ),
            ("https://dav.example/", "InvalidDavServer", "caldavs://"),
            (
                "caldavs://svc:S3cret@dav.example/",
                "CredentialsInUrl",
                "targetCaldav",
            ),
            ("caldavs:///alice/", "InvalidDavServer", "names no host"),
            (
                "caldavs://dav.example:99999/",
                "InvalidDavServer",
                "not a port number",
            ),
            ("caldavs://dav.example/?x=1", "InvalidDavServer", "query"),
            ("caldavs://dav.example/a b/", "InvalidDavServer", "spaces"),
        ] {
            s.pim.target_caldav = dav(url);
            let err = s.validate().unwrap_err();
            assert_eq!(err.code, code, "{url}: {err:?}");
            assert!(err.detail.contains(words), "{url}: {}", err.detail);
            assert!(!err.detail.contains("S3cret"), "{}", err.detail);
        }
        s.pim.target_caldav = Some(DavServer {
            url: "caldavs://dav.example/".into(),
            profile: " ".into(),
        });
        assert_eq!(s.validate().unwrap_err().code, "ProfileRequired");
    }

    #[test]
    fn specs_without_dav_servers_read_and_write_as_before() {
        let mut s = spec();
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("sourceCaldav").is_none(), "{json}");
        let back: MoveSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        s.pim.target_carddav = dav("carddav://127.0.0.1:5232/");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["targetCarddav"]["url"], "carddav://127.0.0.1:5232/");
        assert_eq!(serde_json::from_value::<MoveSpec>(json).unwrap(), s);
    }

    #[test]
    fn credentials_in_urls_are_refused_without_being_repeated() {
        let mut s = spec();
        s.libraries.push(LibraryMapping {
            source: "webdavs://svc:S3cret@dav.example/site".into(),
            target: "/srv/x".into(),
            source_profile: None,
            target_profile: None,
        });
        let err = s.validate().unwrap_err();
        assert_eq!(err.code, "CredentialsInUrl");
        assert!(!err.detail.contains("S3cret"));
        let mut s = spec();
        s.source_mail = Some(MailServer {
            url: "imaps://admin:pw@mail.example".into(),
            profile: "p".into(),
        });
        assert_eq!(s.validate().unwrap_err().code, "CredentialsInUrl");
        let mut s = spec();
        s.source_mail = Some(MailServer {
            url: "imaps://mail.example:993".into(),
            profile: "p".into(),
        });
        s.libraries.push(LibraryMapping {
            source: "/srv/share".into(),
            target: "webdav://alice@dav.example/".into(),
            source_profile: None,
            target_profile: None,
        });
        s.validate().unwrap();
    }

    fn library(source: &str, target: &str) -> LibraryMapping {
        LibraryMapping {
            source: source.into(),
            target: target.into(),
            source_profile: None,
            target_profile: None,
        }
    }

    #[test]
    fn graph_libraries_need_a_graph_profile_on_their_side() {
        let mut s = spec();
        s.libraries.push(library(
            "/srv/share",
            "sharepoint://contoso.sharepoint.com/sites/Finance/Shared%20Documents/2024",
        ));
        let e = s.clone().with_graph_defaults().validate().unwrap_err();
        assert_eq!(e.code, "GraphProfileRequired");
        assert!(
            e.detail.contains("library 1") && e.detail.contains("targetProfile"),
            "{}",
            e.detail
        );
        // The source's graph profile does not reach the target's library.
        s.source_graph = Some("fabrikam-graph".into());
        assert_eq!(
            s.clone().with_graph_defaults().validate().unwrap_err().code,
            "GraphProfileRequired"
        );
        // The target's does: the stored move names it.
        s.target_graph = Some("contoso-graph".into());
        let named = s.clone().with_graph_defaults();
        named.validate().unwrap();
        assert_eq!(
            named.libraries[0].target_profile.as_deref(),
            Some("contoso-graph")
        );
        assert_eq!(
            named.libraries[0].source_profile, None,
            "a local path needs none"
        );
        // A profile named on the library wins.
        s.libraries[0].target_profile = Some("sp-app".into());
        let named = s.with_graph_defaults();
        assert_eq!(named.libraries[0].target_profile.as_deref(), Some("sp-app"));
    }

    #[test]
    fn a_per_user_onedrive_library_has_the_placeholder_on_both_sides() {
        let graph = |l: LibraryMapping| LibraryMapping {
            source_profile: Some("g".into()),
            target_profile: Some("g".into()),
            ..l
        };
        for bad in [
            library("onedrive://{user}/", "/srv/homes"),
            library("/srv/homes/{user}", "onedrive://{user}/"),
            library("onedrive://{user}/", "onedrive://adele@contoso.com/"),
            library(
                "onedrive://{user}/",
                "sharepoint://h/sites/{user}/Documents",
            ),
            library("onedrive://{user}x/", "onedrive://{user}/"),
        ] {
            let mut s = spec();
            s.libraries.push(graph(bad.clone()));
            let e = s.validate().unwrap_err();
            assert_eq!(e.code, "InvalidLibrary", "{bad:?}");
        }
        let mut s = spec();
        let each = graph(library(
            "onedrive://{user}",
            "onedrive://{user}/From Fabrikam",
        ));
        s.libraries.push(each.clone());
        s.validate().unwrap();
        assert!(each.per_user());
        let one = each.for_user("adele@fabrikam.com", "adele@contoso.com");
        assert_eq!(one.source, "onedrive://adele@fabrikam.com");
        assert_eq!(one.target, "onedrive://adele@contoso.com/From Fabrikam");
        assert!(!one.per_user());
        assert_eq!(one.target_profile.as_deref(), Some("g"));
        // A name the source tenant sends cannot add path segments, escapes, a query or a
        // fragment: it stays one segment, which the location parser decodes back.
        let hostile = each.for_user("x/../../y%2F?#@fabrikam.com", "o'neil+a@contoso.com");
        assert_eq!(
            hostile.source,
            "onedrive://x%2F..%2F..%2Fy%252F%3F%23@fabrikam.com"
        );
        assert_eq!(
            hostile.target,
            "onedrive://o%27neil%2Ba@contoso.com/From Fabrikam"
        );
    }

    #[test]
    fn graph_library_locations_are_checked_for_their_shape() {
        for bad in [
            "sharepoint://contoso.sharepoint.com/Finance",
            "sharepoint://contoso.sharepoint.com/sites/Finance",
            "sharepoint://u@contoso.sharepoint.com/sites/Finance/Documents",
            "onedrive://adele/Projects",
            "onedrive://adele:pw@contoso.com/x",
            "onedrive://adele@contoso.com/x?y=1",
        ] {
            let mut s = spec();
            s.libraries.push(LibraryMapping {
                target_profile: Some("g".into()),
                ..library("/srv/share", bad)
            });
            let e = s.validate().unwrap_err();
            assert_eq!(e.code, "InvalidLibrary", "{bad}");
            assert!(!e.detail.contains(":pw"), "{}", e.detail);
        }
        let mut s = spec();
        s.libraries.push(LibraryMapping {
            source_profile: Some("g".into()),
            ..library("onedrive://adele@contoso.com/", "/srv/x")
        });
        s.libraries.push(LibraryMapping {
            target_profile: Some("g".into()),
            ..library(
                "/srv/y",
                "sharepoint://contoso.sharepoint.com/teams/Ops/Documents",
            )
        });
        s.validate().unwrap();
        s.libraries.push(library("/srv/z", "smb://files/share"));
        let e = s.validate().unwrap_err();
        assert!(e.detail.contains("sharepoint://"), "{}", e.detail);
    }

    #[test]
    fn exchange_mailboxes_need_a_graph_profile_and_exchange_on_the_target() {
        let server = |url: &str, profile: &str| {
            Some(MailServer {
                url: url.into(),
                profile: profile.into(),
            })
        };
        let mut s = spec();
        s.source_mail = server("imaps://mail.fabrikam.com", "src-imap");
        s.target_mail = server("exchange://", "");
        let e = s.clone().with_graph_defaults().validate().unwrap_err();
        assert_eq!(e.code, "GraphProfileRequired");
        assert!(e.detail.contains("targetGraph"), "{}", e.detail);
        s.target_graph = Some("contoso-graph".into());
        let named = s.clone().with_graph_defaults();
        named.validate().unwrap();
        assert_eq!(named.target_mail.unwrap().profile, "contoso-graph");
        // One mailbox for the whole move makes no sense: each user's is opened by its UPN.
        s.target_mail = server("exchange://adele@contoso.com", "g");
        let e = s.validate().unwrap_err();
        assert_eq!(e.code, "InvalidMailServer");
        assert!(e.detail.contains("exchange:// alone"), "{}", e.detail);
        // Exchange → IMAP: the import/export items have nowhere to go.
        let mut s = spec();
        s.source_mail = server("exchange://", "g");
        s.target_mail = server("imaps://mail.contoso.com", "dst-imap");
        assert!(s
            .validate()
            .unwrap_err()
            .detail
            .contains("needs an exchange:// target"));
        s.target_mail = server("exchange:///", "g2");
        s.validate().unwrap();
        s.target_mail = server("pop3://mail.contoso.com", "p");
        assert!(s.validate().unwrap_err().detail.contains("exchange://"));
    }
}
