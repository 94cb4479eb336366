//! Turns a `--source`/`--target` argument into an endpoint: a local path, or `webdav://` /
//! `webdavs://` (also `http://`, `https://`) with the user in the URL and the password from a
//! file or the environment — never from the command line, where `ps` would show it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::endpoint::{Endpoint, UploadPolicy};
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
    fn read(&self) -> anyhow::Result<Option<String>> {
        if let Some(f) = self.file {
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("reading password file {}", f.display()))?;
            return Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(std::env::var(self.env).ok())
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

pub fn open(
    loc: &str,
    secret: Secret<'_>,
    client: &reqwest::Client,
    retry: RetryPolicy,
    upload: UploadPolicy,
) -> anyhow::Result<Arc<dyn Endpoint>> {
    let Some(url) = remote_url(loc) else {
        if loc.contains("://") {
            bail!("unsupported location scheme (use a path, webdav://, webdavs://, sharepoint:// or onedrive://)");
        }
        return Ok(Arc::new(LocalEndpoint::new(loc)));
    };
    // Do not echo the URL in errors: it could hold a password.
    let mut u = reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("invalid URL: {e}"))?;
    if u.password().is_some() {
        bail!(
            "a password in the URL is refused (it would show in the process list): \
             use --source-password-file/--target-password-file or {}",
            secret.env
        );
    }
    let user = percent_encoding::percent_decode_str(u.username())
        .decode_utf8_lossy()
        .into_owned();
    let _ = u.set_username("");
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
    Ok(Arc::new(
        WebDavEndpoint::new(client.clone(), u.as_str(), user, password, retry)?
            .with_upload_policy(upload),
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
            UploadPolicy::Auto
        )
        .is_err());
        assert_eq!(display_name("webdavs://u@h:8/a%20b"), "https://u@h:8/a%20b");
    }
}
