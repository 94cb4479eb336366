//! Turns a `--source`/`--target` argument into an endpoint: a local path, or `webdav://` /
//! `webdavs://` (also `http://`, `https://`) with the user in the URL and the password from a
//! file or the environment — never from the command line, where `ps` would show it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::endpoint::{Endpoint, UploadPolicy};
use crate::limits::Limits;
use crate::local::LocalEndpoint;
use crate::retry::RetryPolicy;
use crate::webdav::WebDavEndpoint;

/// Where a password comes from.
pub struct Secret<'a> {
    pub file: Option<&'a Path>,
    /// Name of the environment variable (`TENANTRY_SOURCE_PASSWORD`...).
    pub env: &'a str,
}

impl Secret<'_> {
    pub fn read(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = self.file {
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("reading password file {}", f.display()))?;
            return Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(std::env::var(self.env).ok())
    }

    /// The login a command-line location names, taken out of its URL: the user from the URL
    /// (percent-decoded), the password from this file or variable, never from the URL, where
    /// the process list and logs would show it. No user: no login (and nothing is read).
    /// Errors never echo the URL.
    pub fn login(&self, u: &mut reqwest::Url) -> anyhow::Result<(Option<String>, Option<String>)> {
        if u.password().is_some() {
            bail!(
                "a password in the URL is refused (it would show in the process list): \
                 use --source-password-file/--target-password-file or {}",
                self.env
            );
        }
        let user = percent_encoding::percent_decode_str(u.username())
            .decode_utf8_lossy()
            .into_owned();
        let _ = u.set_username("");
        if user.is_empty() {
            return Ok((None, None));
        }
        match self.read()? {
            Some(p) => Ok((Some(user), Some(p))),
            None => bail!(
                "no password for user {user}: give a password file or set {}",
                self.env
            ),
        }
    }
}

/// The URL form of a location if it is remote (`webdav://` becomes `http://`).
fn remote_url(loc: &str) -> Option<String> {
    for (from, to) in [
        ("webdav://", "http://"),
        ("webdavs://", "https://"),
        ("http://", "http://"),
        ("https://", "https://"),
    ] {
        if let Some(rest) = loc.strip_prefix(from) {
            return Some(format!("{to}{rest}"));
        }
    }
    None
}

/// A stable name of a location without any secret, for reports and the state-file key.
pub fn display_name(loc: &str) -> String {
    if crate::graph::location::is_graph(loc) {
        return loc.to_string();
    }
    match remote_url(loc).and_then(|u| reqwest::Url::parse(&u).ok()) {
        Some(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        None => std::path::absolute(loc)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| loc.to_string()),
    }
}

/// Who a WebDAV endpoint logs in as when credentials can come from two places: a user in the
/// URL (`webdav://alice@host/lib`) and a connection profile (user, password). The rule: the
/// profile holds the credentials; a user in the URL is accepted only as the same user (or as
/// the user of a profile that holds only a password), so exactly one `Authorization` header is
/// ever sent, for the user the operator can see. A password in the URL is refused.
///
/// Returns the URL without user info, and the user and password to send.
pub fn resolve_login(
    url: &str,
    profile_user: Option<&str>,
    profile_password: Option<&str>,
) -> Result<(String, Option<String>, Option<String>), String> {
    // Do not echo the URL in errors: it could hold a password.
    let mut u = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if u.password().is_some() {
        return Err(
            "a password in the library URL is refused: keep it in the connection profile".into(),
        );
    }
    let url_user = percent_encoding::percent_decode_str(u.username())
        .decode_utf8_lossy()
        .into_owned();
    let _ = u.set_username("");
    let password = profile_password.map(str::to_string);
    let user = match (url_user.as_str(), profile_user) {
        ("", user) => user.map(str::to_string),
        (url_user, Some(profile)) if url_user != profile => {
            return Err(format!(
                "the library URL names user {url_user:?} but its connection profile logs in as \
                 {profile:?}: name the user in one place (the profile)"
            ))
        }
        (url_user, _) if password.is_none() => {
            return Err(format!(
                "the library URL names user {url_user:?} but there is no password for it: \
                 put the user and password in a connection profile"
            ))
        }
        (url_user, _) => Some(url_user.to_string()),
    };
    Ok((u.to_string(), user, password))
}

pub fn open(
    loc: &str,
    secret: Secret<'_>,
    client: &reqwest::Client,
    retry: RetryPolicy,
    upload: UploadPolicy,
    limits: Limits,
) -> anyhow::Result<Arc<dyn Endpoint>> {
    let Some(url) = remote_url(loc) else {
        if loc.contains("://") {
            bail!("unsupported location scheme (use a path, webdav://, webdavs://, sharepoint:// or onedrive://)");
        }
        return Ok(Arc::new(LocalEndpoint::new(loc)));
    };
    // Do not echo the URL in errors: it could hold a password.
    let mut u = reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("invalid URL: {e}"))?;
    let (user, password) = secret.login(&mut u)?;
    Ok(Arc::new(
        WebDavEndpoint::new(client.clone(), u.as_str(), user, password, retry)?
            .with_upload_policy(upload)
            .with_limits(limits),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_refused_without_being_echoed() {
        let c = reqwest::Client::new();
        let s = Secret {
            file: None,
            env: "TENANTRY_TEST_UNSET_VAR",
        };
        let e = open(
            "webdav://u:hunter2@h/x",
            s,
            &c,
            RetryPolicy::default(),
            UploadPolicy::Auto,
            Limits::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let s = Secret {
            file: None,
            env: "TENANTRY_TEST_UNSET_VAR",
        };
        assert!(open(
            "webdav://u@h/x",
            s,
            &c,
            RetryPolicy::default(),
            UploadPolicy::Auto,
            Limits::default()
        )
        .is_err());
        assert_eq!(display_name("webdavs://u@h:8/a%20b"), "https://u@h:8/a%20b");
    }

    /// The one rule of both engines' command lines (files and pim): user from the URL, password
    /// from the file or variable only.
    #[test]
    fn a_locations_login_is_its_urls_user_and_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let from_file = Secret {
            file: Some(&file),
            env: "TENANTRY_TEST_UNSET_VAR",
        };
        let mut u = reqwest::Url::parse("http://al%20ice@h/x/").unwrap();
        assert_eq!(
            from_file.login(&mut u).unwrap(),
            (Some("al ice".to_string()), Some("s3cret".to_string()))
        );
        assert_eq!(u.as_str(), "http://h/x/");
        // No user: nothing is read (a missing file is no error).
        let missing = Secret {
            file: Some(&dir.path().join("none")),
            env: "TENANTRY_TEST_UNSET_VAR",
        };
        let mut u = reqwest::Url::parse("http://h/x/").unwrap();
        assert_eq!(missing.login(&mut u).unwrap(), (None, None));
        let mut u = reqwest::Url::parse("http://bob:hunter2@h/x/").unwrap();
        let e = from_file.login(&mut u).unwrap_err().to_string();
        assert!(e.contains("refused") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn one_login_whether_the_user_is_in_the_url_or_the_profile() {
        let login = |url, user, pw| resolve_login(url, user, pw);
        let ok =
            |u: &str, p: &str| Ok(("http://h/lib".to_string(), Some(u.into()), Some(p.into())));
        assert_eq!(
            login("http://h/lib", Some("bob"), Some("pw")),
            ok("bob", "pw")
        );
        assert_eq!(
            login("http://bob@h/lib", Some("bob"), Some("pw")),
            ok("bob", "pw")
        );
        assert_eq!(
            login("http://b%C3%B6b@h/lib", None, Some("pw")),
            ok("böb", "pw")
        );
        assert_eq!(
            login("http://h/lib", None, None),
            Ok(("http://h/lib".to_string(), None, None))
        );
        let e = login("http://alice@h/lib", Some("bob"), Some("pw")).unwrap_err();
        assert!(e.contains("\"alice\"") && e.contains("\"bob\""), "{e}");
        let e = login("http://alice@h/lib", None, None).unwrap_err();
        assert!(e.contains("no password"), "{e}");
        let e = login("http://bob:hunter2@h/lib", Some("bob"), Some("pw")).unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("refused"), "{e}");
    }
}
