//! RFC 6764 discovery, for a location that names only a server (`caldav://alice@host/`): the
//! `/.well-known/caldav` (or `carddav`) entry point, one same-server redirect at most, the
//! user's `current-user-principal` (RFC 5397), then its `calendar-home-set` /
//! `addressbook-home-set` (RFC 4791 §6.2.1, RFC 6352 §7.1.1). Every href and redirect must stay
//! on the server named (checked by `HrefRoot` against its root).

use reqwest::Url;
use tenantry_files::webdav::propfind::HrefRoot;

use crate::collections::child_url;
use crate::dav::{Dav, DavError};
use crate::kind::Kind;
use crate::xml::{self, Multistatus};

/// A same-server URL for an href (or a redirect's `Location`), checked segment by segment.
fn same_server(origin: &Url, href: &str) -> Result<Url, String> {
    let root = HrefRoot::new(&origin.join("/").map_err(|e| e.to_string())?)?;
    // Absolute hrefs are checked as sent (joining would resolve `%2e%2e` first); a relative
    // one (seen in `Location`) is joined first.
    let absolute = if href.starts_with('/') || href.contains("://") {
        href.to_string()
    } else {
        origin
            .join(href)
            .map_err(|e| format!("bad href {href:?}: {e}"))?
            .to_string()
    };
    let path = root
        .resolve(&absolute)
        .map_err(|why| format!("href {href:?} refused: {why}"))?;
    let root_url = origin.join("/").map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Ok(root_url);
    }
    child_url(&root_url, &path, true).map_err(|e| e.to_string())
}

/// Why discovery's first PROPFIND failed: at the well-known entry point (or where it
/// redirected), or at the location itself when there is no well-known entry to ask.
/// A redirect that would leave the server is refused.
enum EntryError {
    At(Url, DavError),
    Location(DavError),
    Refused(String),
}

impl EntryError {
    fn into_dav(self) -> DavError {
        match self {
            EntryError::At(_, e) | EntryError::Location(e) => e,
            EntryError::Refused(e) => DavError::Protocol(format!("discovery: {e}")),
        }
    }
}

/// The answer of the server's entry point to the principal PROPFIND (`body`): when the location
/// is the server's root, `/.well-known/caldav|carddav` (one same-server redirect followed);
/// otherwise, or when there is no well-known entry, the location itself.
async fn entry_point(dav: &Dav, kind: Kind, body: &str) -> Result<Multistatus, EntryError> {
    let origin = dav.base().clone();
    if origin.path() == "/" {
        let mut at = origin
            .join(match kind {
                Kind::Calendars => "/.well-known/caldav",
                Kind::Contacts => "/.well-known/carddav",
            })
            .map_err(|e| EntryError::Refused(e.to_string()))?;
        for _ in 0..2 {
            match dav.propfind(&at, "0", body).await {
                Ok(ms) => return Ok(ms),
                Err(DavError::Redirect {
                    location: Some(l), ..
                }) => at = same_server(&origin, &l).map_err(EntryError::Refused)?,
                Err(DavError::NotFound | DavError::Redirect { .. } | DavError::Refused { .. }) => {
                    break
                }
                Err(e) => return Err(EntryError::At(at, e)),
            }
        }
    }
    dav.propfind(&origin, "0", body)
        .await
        .map_err(EntryError::Location)
}

/// The href of a principal's home of the kind (`calendar-home-set` / `addressbook-home-set`);
/// `None` when the principal names none.
async fn home_href(dav: &Dav, principal: &Url, body: &str) -> Result<Option<String>, DavError> {
    let ms = dav.propfind(principal, "0", body).await?;
    Ok(ms.responses.into_iter().find_map(|r| r.home))
}

/// When the location's path is `/`, finds the user's home of the kind and points `dav` at it.
/// Returns the home found, or `None` when the location named a path of its own.
pub async fn resolve_home(dav: &mut Dav, kind: Kind) -> anyhow::Result<Option<Url>> {
    if dav.base().path() != "/" {
        return Ok(None);
    }
    let origin = dav.base().clone();
    let body = xml::propfind_principal(kind);
    let ms = entry_point(dav, kind, &body).await.map_err(|e| match e {
        EntryError::At(at, e) => anyhow::anyhow!("discovery at {}: {e}", at.path()),
        EntryError::Location(e) => anyhow::anyhow!(
            "discovery: the server has no well-known entry and its root answered {e}"
        ),
        EntryError::Refused(e) => anyhow::Error::msg(e),
    })?;
    let principal = ms
        .responses
        .iter()
        .find_map(|r| r.principal.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "discovery: the server names no current-user-principal; give the URL of the home"
            )
        })?;
    let principal = same_server(&origin, &principal).map_err(anyhow::Error::msg)?;
    let home = home_href(dav, &principal, &body)
        .await
        .map_err(|e| anyhow::anyhow!("discovery at the principal {}: {e}", principal.path()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "discovery: the principal {} names no {} home",
                principal.path(),
                kind.name()
            )
        })?;
    let home = same_server(&origin, &home).map_err(anyhow::Error::msg)?;
    dav.rebase(home.clone());
    Ok(Some(home))
}

/// Another user's home of a kind, seen through a service login (the move's connection
/// profile), as the IMAP admin opens other users' mailboxes: the entry point (the location's
/// path, or `/.well-known/caldav|carddav` with one same-server redirect when it is `/`), where
/// the server keeps its users' principals (the parent of the login's own
/// `current-user-principal`, else `principal-collection-set`), `user`'s principal below it, and that principal's
/// `calendar-home-set` / `addressbook-home-set`. `Ok(None)`: the server has no such principal
/// or it names no home of the kind (the user has no calendars or address books there).
pub async fn user_home(dav: &Dav, kind: Kind, user: &str) -> Result<Option<Url>, DavError> {
    let origin = dav.base().clone();
    let body = xml::propfind_principal(kind);
    let refused = |e: String| DavError::Protocol(format!("discovery: {e}"));
    let ms = entry_point(dav, kind, &body)
        .await
        .map_err(EntryError::into_dav)?;
    let first = |f: fn(&xml::DavResponse) -> Option<String>| ms.responses.iter().find_map(f);
    // The login's own principal sits beside the users' (`/principals/users/svc/` on SabreDAV,
    // whose principal-collection-set names only `/principals/`): its parent first.
    let principals = match first(|r| r.principal.clone()) {
        Some(own) => {
            let own = same_server(&origin, &own).map_err(refused)?;
            own.join("..").map_err(|e| refused(e.to_string()))?
        }
        None => {
            let href = first(|r| r.principal_collection.clone()).ok_or_else(|| {
                refused(
                    "the server names neither current-user-principal nor \
                     principal-collection-set"
                        .into(),
                )
            })?;
            same_server(&origin, &href).map_err(refused)?
        }
    };
    let principal = child_url(&principals, user, true)?;
    match home_href(dav, &principal, &body).await {
        Ok(Some(home)) => Ok(Some(same_server(&origin, &home).map_err(refused)?)),
        Ok(None) | Err(DavError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_hrefs_stay_on_the_server() {
        let o = Url::parse("https://dav.example:8443/").unwrap();
        assert_eq!(
            same_server(&o, "/alice/").unwrap().as_str(),
            "https://dav.example:8443/alice/"
        );
        assert_eq!(
            same_server(&o, "https://dav.example:8443/p/al%20ice")
                .unwrap()
                .as_str(),
            "https://dav.example:8443/p/al%20ice/"
        );
        assert_eq!(
            same_server(&o, "/").unwrap().as_str(),
            "https://dav.example:8443/"
        );
        // Only the path of an href is used: a server behind TLS offload naming itself over
        // plain HTTP is still asked over HTTPS.
        assert_eq!(
            same_server(&o, "http://dav.example/alice/")
                .unwrap()
                .as_str(),
            "https://dav.example:8443/alice/"
        );
        for bad in [
            "https://evil.example/alice/",
            "/a/%2e%2e/%2e%2e/etc/",
            "/a%2Fb/",
        ] {
            assert!(same_server(&o, bad).is_err(), "{bad}");
        }
    }
}
