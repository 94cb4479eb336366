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

fn http_form(kind: Kind, loc: &str) -> Option<String> {
    kind.schemes()
        .into_iter()
        .chain([("http://", "http://"), ("https://", "https://")])
        .find_map(|(from, to)| loc.strip_prefix(from).map(|rest| format!("{to}{rest}")))
}

/// Parses a location; reads the password only when the URL names a user.
pub fn parse(kind: Kind, loc: &str, secret: Secret<'_>) -> anyhow::Result<Access> {
    let Some(url) = http_form(kind, loc) else {
        let [(plain, _), (tls, _)] = kind.schemes();
        bail!("unsupported location (use {plain}user@host:port/path/ or {tls}...)");
    };
    // Never echo the URL in errors: it could hold a password.
    let mut u = reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("invalid URL: {e}"))?;
    if u.password().is_some() {
        bail!(
            "a password in the URL is refused (it would show in the process list): \
             use --source-password-file/--target-password-file or {}",
            secret.env
        );
    }
    if u.query().is_some() || u.fragment().is_some() {
        bail!("a location URL cannot have a query or a fragment");
    }
    let user = percent_encoding::percent_decode_str(u.username())
        .decode_utf8_lossy()
        .into_owned();
    let _ = u.set_username("");
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    let (user, password) = if user.is_empty() {
        (None, None)
    } else {
        match secret.read()? {
            Some(p) => (Some(user), Some(p)),
            None => bail!(
                "no password for user {user}: give a password file or set {}",
                secret.env
            ),
        }
    };
    Ok(Access {
        url: u,
        user,
        password,
    })
}

/// A stable name of a location without any secret, for reports and the state-file key.
pub fn display_name(kind: Kind, loc: &str) -> String {
    match http_form(kind, loc).and_then(|u| reqwest::Url::parse(&u).ok()) {
        Some(mut u) => {
            let _ = u.set_password(None);
            if !u.path().ends_with('/') {
                let p = format!("{}/", u.path());
                u.set_path(&p);
            }
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
}
