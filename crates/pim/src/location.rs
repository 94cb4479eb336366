//! Turns `--source`/`--target` into a server address: `caldav://user@host:port/path/`
//! (`caldavs://` over TLS; `carddav://`, `carddavs://` for contacts; `http(s)://` too), the user
//! from the URL, the password from a file or the environment (`tenantry_files::location::Secret`)
//! — never from the command line or the URL, where `ps` and logs would show it.

use anyhow::bail;
pub use tenantry_files::location::Secret;

use crate::kind::Kind;

/// A server location with its credentials.
#[derive(Clone)]
pub struct Access {
    /// `http(s)://host:port/path/`, without credentials, always ending in `/`.
    pub url: reqwest::Url,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A location in the HTTP form it stands for: the kind's schemes (`caldavs://h/` →
/// `https://h/`), and `http(s)://` as it is when `plain_http` allows it. `None`: another scheme.
fn http_form(kind: Kind, loc: &str, plain_http: bool) -> Option<String> {
    let plain = [("http://", "http://"), ("https://", "https://")];
    kind.schemes()
        .into_iter()
        .chain(plain.into_iter().filter(|_| plain_http))
        .find_map(|(from, to)| loc.strip_prefix(from).map(|rest| format!("{to}{rest}")))
}

/// A location names a collection: its path ends in `/`.
fn as_collection(u: &mut reqwest::Url) {
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
}

/// A tenant move's server URL (`caldav[s]://host[:port]/[context/]`, or `carddav[s]://…`;
/// its login is the connection profile's, so the URL carries none) as the HTTP URL it stands
/// for, ending in `/`.
pub fn server_url(kind: Kind, url: &str) -> anyhow::Result<reqwest::Url> {
    let http = http_form(kind, url, false).ok_or_else(|| {
        let [(plain, _), (tls, _)] = kind.schemes();
        anyhow::anyhow!(
            "{url}: a {} server is a {tls} (or {plain}) URL",
            kind.name()
        )
    })?;
    let mut u =
        reqwest::Url::parse(&http).map_err(|e| anyhow::anyhow!("{url}: invalid URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        bail!("a server URL must not carry credentials: they belong in its profile");
    }
    as_collection(&mut u);
    Ok(u)
}

/// Parses a location; reads the password only when the URL names a user.
pub fn parse(kind: Kind, loc: &str, secret: Secret<'_>) -> anyhow::Result<Access> {
    let Some(url) = http_form(kind, loc, true) else {
        let [(plain, _), (tls, _)] = kind.schemes();
        bail!("unsupported location (use {plain}user@host:port/path/ or {tls}...)");
    };
    // Never echo the URL in errors: it could hold a password.
    let mut u = reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("invalid URL: {e}"))?;
    // Checked first, so that a bad URL is refused before a password is read.
    if u.query().is_some() || u.fragment().is_some() {
        bail!("a location URL cannot have a query or a fragment");
    }
    let (user, password) = secret.login(&mut u)?;
    as_collection(&mut u);
    Ok(Access {
        url: u,
        user,
        password,
    })
}

/// A stable name of a location without any secret, for reports and the state-file key.
pub fn display_name(kind: Kind, loc: &str) -> String {
    match http_form(kind, loc, true).and_then(|u| reqwest::Url::parse(&u).ok()) {
        Some(mut u) => {
            let _ = u.set_password(None);
            as_collection(&mut u);
            u.to_string()
        }
        None => loc.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unset() -> Secret<'static> {
        Secret {
            file: None,
            env: "TENANTRY_TEST_UNSET_VAR",
        }
    }

    #[test]
    fn schemes_per_kind_and_no_passwords_in_urls() {
        let e = parse(Kind::Calendars, "caldav://u:hunter2@h/x/", unset())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2") && e.contains("refused"), "{e}");
        assert!(parse(Kind::Calendars, "carddav://h/x/", unset()).is_err());
        assert!(parse(Kind::Contacts, "webdav://h/x/", unset()).is_err());
        let e = parse(Kind::Contacts, "carddav://bob@h/x/", unset()).unwrap_err();
        assert!(e.to_string().contains("no password for user bob"), "{e}");
        let a = parse(Kind::Calendars, "caldavs://h:8443/dav/alice", unset()).unwrap();
        assert_eq!(a.url.as_str(), "https://h:8443/dav/alice/");
        assert_eq!(a.user, None);
        assert_eq!(
            display_name(Kind::Contacts, "carddav://alice@h:5232/alice"),
            "http://alice@h:5232/alice/"
        );
    }

    #[test]
    fn server_urls_become_http_urls_of_their_kind() {
        assert_eq!(
            server_url(Kind::Calendars, "caldavs://dav.example:8443/dav")
                .unwrap()
                .as_str(),
            "https://dav.example:8443/dav/"
        );
        assert_eq!(
            server_url(Kind::Contacts, "carddav://127.0.0.1:5232/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5232/"
        );
        let e = server_url(Kind::Contacts, "caldav://h/").unwrap_err();
        assert!(e.to_string().contains("carddavs://"), "{e}");
        // A move's server is one of its kind's schemes, not a plain HTTP URL.
        assert!(server_url(Kind::Calendars, "https://h/").is_err());
        let e = server_url(Kind::Calendars, "caldav://u:hunter2@h/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
