//! Finding collections and their members. A location names either one collection of the
//! command's kind, or anything else (a user's home, a principal): then its child collections of
//! that kind are the ones moved. Every href a server lists goes through
//! `tenantry_files::webdav::propfind::HrefRoot` and must lie directly inside the URL listed;
//! anything else is refused by name (reported) while the rest goes on.

use reqwest::Url;
use tenantry_files::endpoint::RefusedEntry;
use tenantry_files::webdav::propfind::{encode_path, HrefRoot};

use crate::dav::{Dav, DavError};
use crate::kind::Kind;
use crate::xml::{self, CollectionProps, DavResponse};

#[derive(Clone, Debug)]
pub struct Collection {
    /// The decoded last segment of its URL (kept on the target in home mode).
    pub name: String,
    pub url: Url,
    pub props: CollectionProps,
    pub sync_token: Option<String>,
    pub max_resource_size: Option<u64>,
}

/// What a location turned out to be.
#[derive(Debug)]
pub enum Found {
    /// Nothing there (404).
    Missing,
    /// One collection of the command's kind.
    Collection(Collection),
    /// Something else, holding these collections of the command's kind.
    Home {
        collections: Vec<Collection>,
        refused: Vec<RefusedEntry>,
    },
}

fn root(url: &Url) -> Result<HrefRoot, DavError> {
    HrefRoot::new(url).map_err(DavError::Protocol)
}

fn refused(href: &str, reason: impl Into<String>) -> RefusedEntry {
    RefusedEntry {
        path: format!("{href:?}"),
        reason: reason.into(),
    }
}

/// The child `name` of collection URL `parent` (a collection when `dir`).
pub fn child_url(parent: &Url, name: &str, dir: bool) -> Result<Url, DavError> {
    parent
        .join(&encode_path(name, dir))
        .map_err(|e| DavError::Protocol(format!("bad name {name:?}: {e}")))
}

/// The decoded last segment of a URL's path.
pub fn last_segment(url: &Url) -> String {
    let seg = url
        .path_segments()
        .and_then(|mut s| s.rfind(|x| !x.is_empty()))
        .unwrap_or("");
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

fn collection(name: String, url: Url, r: &DavResponse) -> Collection {
    Collection {
        name,
        url,
        props: r.props.clone(),
        sync_token: r.sync_token.clone().filter(|t| !t.is_empty()),
        max_resource_size: r.max_resource_size,
    }
}

/// Which end of a run a server is. Only a source's collections are asked for their sync
/// tokens: a server may compute one over every object of the collection (Radicale does, on
/// each request), and a target's are never used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

/// Looks at what the location names: a Depth 0 PROPFIND, then — unless it is a collection of
/// the kind, whose Depth 1 answer would list every object — a Depth 1 one for its children
/// and, for a source, a Depth 0 one for each collection of the kind's sync token.
pub async fn find(dav: &Dav, kind: Kind, side: Side) -> Result<Found, DavError> {
    let base = dav.base().clone();
    match probe(dav, &base, side).await? {
        None => return Ok(Found::Missing),
        Some(r) if r.is(kind.collection_type()) => {
            return Ok(Found::Collection(collection(last_segment(&base), base, &r)))
        }
        Some(_) => {}
    }
    // Without sync tokens: the home also holds the other kind's collections, and a server may
    // compute each token over every object of its collection (Radicale does). A source's
    // collections of the kind are asked for theirs one by one below.
    let body = xml::propfind_collections(false);
    let ms = match dav.propfind(&base, "1", &body).await {
        Ok(ms) => ms,
        Err(DavError::NotFound) => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    let root = root(&base)?;
    let mut own = None;
    let mut collections = Vec::new();
    let mut refused_list = Vec::new();
    for r in &ms.responses {
        match root.resolve(&r.href) {
            Ok(p) if p.is_empty() => own = Some(r.clone()),
            Ok(p) if !p.contains('/') => {
                // Scheduling inboxes and outboxes are never read or written (no iTIP traffic).
                if r.is(kind.collection_type())
                    && !r.is("schedule-inbox")
                    && !r.is("schedule-outbox")
                {
                    let url = child_url(&base, &p, true)?;
                    collections.push(collection(p, url, r));
                }
            }
            Ok(_) => refused_list.push(refused(
                &r.href,
                "listed in the location but does not lie directly inside it",
            )),
            Err(reason) => refused_list.push(refused(&r.href, format!("refused: {reason}"))),
        }
    }
    let mut found = match own {
        Some(r) if r.is(kind.collection_type()) => {
            Found::Collection(collection(last_segment(&base), base, &r))
        }
        _ => {
            collections.sort_by(|a, b| a.name.cmp(&b.name));
            Found::Home {
                collections,
                refused: refused_list,
            }
        }
    };
    if side == Side::Source {
        let listed = match &mut found {
            Found::Collection(c) => std::slice::from_mut(c),
            Found::Home { collections, .. } => collections.as_mut_slice(),
            Found::Missing => &mut [],
        };
        for c in listed {
            c.sync_token = probe(dav, &c.url, Side::Source)
                .await?
                .and_then(|r| r.sync_token)
                .filter(|t| !t.is_empty());
        }
    }
    Ok(found)
}

/// The properties of one collection (Depth 0), or `None` when it does not exist: a 404, or
/// (Xandikos) a 207 whose only response has the status 404.
pub async fn probe(dav: &Dav, url: &Url, side: Side) -> Result<Option<DavResponse>, DavError> {
    let body = xml::propfind_collections(side == Side::Source);
    match dav.propfind(url, "0", &body).await {
        Ok(ms) => Ok(ms
            .responses
            .into_iter()
            .next()
            .filter(|r| r.status != Some(404))),
        Err(DavError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One object of a collection, by its resource name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub etag: Option<String>,
}

#[derive(Debug, Default)]
pub struct Members {
    /// Present (new or changed, for an incremental sync).
    pub present: Vec<Member>,
    /// Removed since the token (sync only).
    pub removed: Vec<String>,
    pub refused: Vec<RefusedEntry>,
    /// The server's new sync token.
    pub token: Option<String>,
}

/// The members of a collection: a sync-collection report from `token` (`Some("")`: all of
/// them), or a Depth 1 PROPFIND when the server has no sync (`None`).
pub async fn members(dav: &Dav, url: &Url, token: Option<&str>) -> Result<Members, DavError> {
    let ms = match token {
        Some(t) => dav.sync_collection(url, t).await?,
        None => dav.propfind(url, "1", xml::PROPFIND_ETAGS).await?,
    };
    let root = root(url)?;
    let mut out = Members {
        token: ms.sync_token.clone(),
        ..Default::default()
    };
    for r in ms.responses {
        match root.resolve(&r.href) {
            Ok(p) if p.is_empty() => {}
            Ok(p) if !p.contains('/') => {
                if r.status == Some(404) {
                    out.removed.push(p);
                } else if !r.is("collection") {
                    out.present.push(Member {
                        name: p,
                        etag: r.etag,
                    });
                }
            }
            Ok(_) => out.refused.push(refused(
                &r.href,
                "listed in the collection but does not lie directly inside it",
            )),
            Err(reason) => out
                .refused
                .push(refused(&r.href, format!("refused: {reason}"))),
        }
    }
    out.present.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
