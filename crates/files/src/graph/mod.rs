//! SharePoint Online and OneDrive document libraries through Microsoft Graph, as an `Endpoint`.
//!
//! Addressing is by path inside the library's drive (`/drives/{id}/root:/{path}:`); listing is
//! a delta query whose link is kept in the state store; downloads use the item's pre-authenticated
//! `@microsoft.graph.downloadUrl` with range resume; uploads are one `PUT …:/content` or an
//! upload session (see `upload`). All requests go through the shared `tenantry_graph` client
//! (one token cache and one throttling budget per tenant).

pub mod args;
pub mod listing;
pub mod location;
pub mod store;
mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use reqwest::Method;
use tenantry_graph::client::{encode_path, Call};
use tenantry_graph::{GraphClient, GraphError};
use tokio::sync::OnceCell;

use crate::endpoint::{
    parent, ByteStream, Endpoint, EndpointError, FileTimes, Listing, MtimeSupport, PutOutcome,
    UploadChoice,
};
use crate::relpath;
use store::{GraphStore, Rewrite};

/// Where the library lives: resolved to a drive id on first use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriveRef {
    /// `https://{host}/{site_path}` and a library by title or URL name.
    Library {
        host: String,
        site_path: String,
        library: String,
    },
    /// A user's OneDrive.
    User { upn: String },
}

/// How files of at most 4 MiB are uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SmallUpload {
    /// An upload session like larger files: two requests, the times kept with the upload.
    #[default]
    Session,
    /// One `PUT …:/content`, then a PATCH of `fileSystemInfo` for the times: also two
    /// requests, and on a library with versioning the PATCH makes a second version.
    Put,
}

pub struct GraphEndpoint {
    client: GraphClient,
    display: String,
    drive_ref: DriveRef,
    /// The drive's id and the decoded path of its `webUrl` (`sites/Team/Shared Documents`).
    drive_id: OnceCell<(String, String)>,
    /// Folder inside the drive, decoded, without slashes at either end.
    prefix: String,
    store: Option<GraphStore>,
    small: SmallUpload,
    /// A source's folder must exist (a typo must not look like an empty library); a target's
    /// is created.
    must_exist: bool,
    /// List from scratch and leave the saved listing alone (`verify`: the service's current
    /// hashes, not those of the last delta).
    fresh_listing: bool,
    fragment: usize,
    /// 0 unknown, 1 kept (Graph keeps every time it is sent).
    mtime: AtomicU8,
    notices: Mutex<Vec<String>>,
    rewrites: Mutex<HashMap<String, Rewrite>>,
}

/// Upload fragments: 16 × 320 KiB = 5 MiB (a multiple of 320 KiB, under 60 MiB).
pub const DEFAULT_FRAGMENT: usize = 16 * 320 * 1024;
/// Largest file sent with one `PUT …:/content`.
pub const SIMPLE_UPLOAD_MAX: u64 = 4 * 1024 * 1024;

impl GraphEndpoint {
    pub fn new(
        client: GraphClient,
        display: String,
        drive_ref: DriveRef,
        prefix: String,
        store: Option<GraphStore>,
        small: SmallUpload,
    ) -> Self {
        let rewrites = store
            .as_ref()
            .and_then(|s| s.rewrites().ok())
            .unwrap_or_default();
        Self {
            client,
            display,
            drive_ref,
            drive_id: OnceCell::new(),
            prefix: prefix.trim_matches('/').to_string(),
            store,
            small,
            must_exist: false,
            fresh_listing: false,
            fragment: DEFAULT_FRAGMENT,
            mtime: AtomicU8::new(0),
            notices: Mutex::new(Vec::new()),
            rewrites: Mutex::new(rewrites),
        }
    }

    /// For a source: listing a folder that is not in the library is an error.
    pub fn must_exist(mut self) -> Self {
        self.must_exist = true;
        self
    }

    /// For `verify`: every listing is a full enumeration and none is saved; the state store
    /// is only read for the files the service rewrote.
    pub fn fresh_listing(mut self) -> Self {
        self.fresh_listing = true;
        self
    }

    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    async fn drive(&self) -> Result<&str, EndpointError> {
        Ok(self.drive_info().await?.0.as_str())
    }

    async fn drive_info(&self) -> Result<&(String, String), EndpointError> {
        self.drive_id
            .get_or_try_init(|| async {
                let drive = match &self.drive_ref {
                    DriveRef::User { upn } => self
                        .client
                        .get_json(&format!("/users/{}/drive", encode_path(upn)))
                        .await
                        .map_err(map_err)?,
                    DriveRef::Library {
                        host,
                        site_path,
                        library,
                    } => {
                        // https://learn.microsoft.com/graph/api/site-getbypath
                        let site = self
                            .client
                            .get_json(&format!("/sites/{host}:/{}", encode_path(site_path)))
                            .await
                            .map_err(map_err)?;
                        let site_id = id_of(&site)?;
                        let drives = self
                            .client
                            .get_all(&format!("/sites/{}/drives", encode_path(&site_id)))
                            .await
                            .map_err(map_err)?;
                        let id = find_library(&drives, library)?;
                        drives
                            .into_iter()
                            .find(|d| d["id"].as_str() == Some(id.as_str()))
                            .unwrap_or_default()
                    }
                };
                Ok((id_of(&drive)?, web_path(&drive)))
            })
            .await
    }

    fn full_path(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        }
    }

    /// `/drives/{id}/root` or `/drives/{id}/root:/{path}:` (path addressing).
    async fn address(&self, path: &str) -> Result<String, EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        let drive = encode_path(self.drive().await?);
        let full = self.full_path(path);
        Ok(if full.is_empty() {
            format!("/drives/{drive}/root")
        } else {
            format!("/drives/{drive}/root:/{}:", encode_path(&full))
        })
    }

    async fn list_with_delta(&self) -> Result<Listing, EndpointError> {
        let drive = self.drive().await?.to_string();
        let fresh = format!("/drives/{}/root/delta", encode_path(&drive));
        let store = self.store.as_ref().filter(|_| !self.fresh_listing);
        let saved = match store {
            Some(s) => s.load_listing()?,
            None => None,
        };
        let (mut items, mut root, start) = match saved {
            Some(l) => (l.items, Some(l.root), l.link),
            None => (HashMap::new(), None, fresh.clone()),
        };
        let page = match self.client.delta(&start).await {
            Ok(p) => p,
            // An expired delta link: enumerate again from scratch.
            Err(e) if e.status() == Some(410) && start != fresh => {
                items.clear();
                root = None;
                if let Some(s) = store {
                    s.forget_listing()?;
                }
                self.client.delta(&fresh).await.map_err(map_err)?
            }
            Err(e) => return Err(map_err(e)),
        };
        listing::apply_delta(&mut items, &mut root, &page.items);
        let Some(root) = root else {
            return Err(EndpointError::Permanent(
                "the drive's delta did not name its root item".into(),
            ));
        };
        if let Some(s) = store {
            s.save_listing(&items, &root, &page.delta_link)?;
        }
        if self.must_exist && !listing::folder_exists(&items, &root, &self.prefix) {
            return Err(EndpointError::NotFound(format!(
                "{}: no folder {:?} in the library",
                self.display, self.prefix
            )));
        }
        let rewrites = self.rewrites.lock().expect("rewrites lock").clone();
        Ok(listing::entries(&items, &root, &self.prefix, &rewrites))
    }

    /// PATCH of the client-set times (`fileSystemInfo` is read-write); answers the item.
    async fn patch_times(
        &self,
        address: &str,
        fsi: &serde_json::Value,
    ) -> Result<serde_json::Value, EndpointError> {
        self.client
            .json(&times_patch(address, fsi))
            .await
            .map_err(map_err)
    }

    fn note(&self, s: String) {
        self.notices.lock().expect("notices lock").push(s);
    }
}

/// The PATCH that sets an item's `fileSystemInfo` (its client-side times).
fn times_patch(address: &str, fsi: &serde_json::Value) -> Call {
    Call::new(Method::PATCH, address.to_string())
        .json(&serde_json::json!({ "fileSystemInfo": fsi }))
}

fn id_of(v: &serde_json::Value) -> Result<String, EndpointError> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| EndpointError::Permanent("Graph returned an object without an id".into()))
}

/// The decoded path of a drive's `webUrl`, without the host: `sites/Team/Shared Documents`,
/// `personal/adele_contoso_com/Documents`; empty when the drive has none.
fn web_path(drive: &serde_json::Value) -> String {
    let Some(url) = drive["webUrl"].as_str() else {
        return String::new();
    };
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split_once('/')
        .map_or("", |(_, path)| path);
    percent_encoding::percent_decode_str(path.trim_matches('/'))
        .decode_utf8_lossy()
        .into_owned()
}

/// A library by its title (`Documents`) or its URL name (`Shared Documents`, the last segment
/// of its `webUrl`), case-insensitively.
pub fn find_library(drives: &[serde_json::Value], library: &str) -> Result<String, EndpointError> {
    let url_name = |d: &serde_json::Value| {
        d["webUrl"].as_str().and_then(|u| {
            let last = u.trim_end_matches('/').rsplit('/').next()?;
            Some(
                percent_encoding::percent_decode_str(last)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
    };
    let hit = drives.iter().find(|d| {
        d["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(library))
            || url_name(d).is_some_and(|n| n.eq_ignore_ascii_case(library))
    });
    match hit {
        Some(d) => id_of(d),
        None => {
            let names: Vec<&str> = drives.iter().filter_map(|d| d["name"].as_str()).collect();
            Err(EndpointError::NotFound(format!(
                "no library named {library:?} on the site (libraries: {})",
                names.join(", ")
            )))
        }
    }
}

/// Graph's errors in the engine's terms.
pub fn map_err(e: GraphError) -> EndpointError {
    match &e {
        GraphError::Throttled {
            status,
            retry_after,
            ..
        } => EndpointError::Throttled {
            status: *status,
            retry_after: Some(*retry_after),
        },
        GraphError::Transient { .. } => EndpointError::Transient(e.to_string()),
        GraphError::Auth { .. } => EndpointError::Refused(e.to_string()),
        GraphError::Permanent { status, code, .. } => match (status, code.as_deref()) {
            (404, _) => EndpointError::NotFound(e.to_string()),
            (507, _) | (_, Some("quotaLimitReached")) | (_, Some("insufficientStorage")) => {
                EndpointError::InsufficientStorage
            }
            _ => EndpointError::Permanent(e.to_string()),
        },
    }
}

#[async_trait::async_trait]
impl Endpoint for GraphEndpoint {
    fn describe(&self) -> String {
        self.display.clone()
    }

    async fn path_prefix(&self) -> Result<String, EndpointError> {
        let web = &self.drive_info().await?.1;
        Ok([web.as_str(), self.prefix.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| format!("{s}/"))
            .collect())
    }

    async fn list(&self) -> Result<Listing, EndpointError> {
        self.list_with_delta().await
    }

    async fn read(&self, path: &str, listed: u64) -> Result<ByteStream, EndpointError> {
        let item = self
            .client
            .get_json(&self.address(path).await?)
            .await
            .map_err(map_err)?;
        let Some(url) = item["@microsoft.graph.downloadUrl"].as_str() else {
            return Err(EndpointError::Permanent(format!(
                "{path}: the service gave no download URL (a folder?)"
            )));
        };
        let size = item["size"].as_u64().unwrap_or(0);
        // Never more than the listing said: the copy's size and hash were planned on it.
        Ok(crate::endpoint::limit_to_listed(
            upload::download_stream(self.client.clone(), url.to_string(), size),
            listed,
            path,
        ))
    }

    async fn mkdir(&self, path: &str) -> Result<(), EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        // The endpoint's own folder may be several levels deep: create each level.
        let full = self.full_path(path);
        let levels: Vec<&str> = if path.is_empty() {
            full.split('/').filter(|s| !s.is_empty()).collect()
        } else {
            vec![]
        };
        let targets: Vec<String> = if path.is_empty() {
            (1..=levels.len()).map(|n| levels[..n].join("/")).collect()
        } else {
            vec![full]
        };
        let drive = encode_path(self.drive().await?);
        for t in targets {
            let (p, name) = (parent(&t), t.rsplit('/').next().unwrap_or(&t));
            let url = if p.is_empty() {
                format!("/drives/{drive}/root/children")
            } else {
                format!("/drives/{drive}/root:/{}:/children", encode_path(p))
            };
            // https://learn.microsoft.com/graph/api/driveitem-post-children
            let body = serde_json::json!({
                "name": name,
                "folder": {},
                "@microsoft.graph.conflictBehavior": "fail",
            });
            match self
                .client
                .json(&Call::new(Method::POST, url).json(&body))
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("nameAlreadyExists") || e.status() == Some(409) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }

    async fn put(
        &self,
        path: &str,
        size: u64,
        times: FileTimes,
        body: ByteStream,
    ) -> Result<PutOutcome, EndpointError> {
        let address = self.address(path).await?;
        let simple = size == 0
            || (size <= SIMPLE_UPLOAD_MAX && (self.small == SmallUpload::Put || times.is_empty()));
        let mut done = if simple {
            upload::simple(&self.client, &address, body).await?
        } else {
            upload::session(self, path, &address, size, times, body).await?
        };
        let fsi = listing::file_system_info(times);
        if simple {
            // One PUT carries no fileSystemInfo (an empty file cannot go through a session:
            // no Content-Range for zero bytes), so the times are set afterwards
            // (https://learn.microsoft.com/graph/api/driveitem-update).
            if let Some(fsi) = &fsi {
                done.item = self.patch_times(&address, fsi).await?;
            }
        }
        let mtime_kept = times.modified_ns.is_some();
        if mtime_kept {
            let _ = self.mtime.fetch_max(1, Ordering::Relaxed);
        }
        self.check_hash(path, size, &done)?;
        Ok(PutOutcome {
            etag: done.item["eTag"].as_str().map(str::to_string),
            mtime_kept,
        })
    }

    /// Writing a folder's children changes its times, so the engine stamps folders last,
    /// deepest first (`migrate`).
    async fn set_dir_times(&self, path: &str, times: FileTimes) -> Result<bool, EndpointError> {
        let Some(fsi) = listing::file_system_info(times) else {
            return Ok(true);
        };
        let address = self.address(path).await?;
        self.patch_times(&address, &fsi).await?;
        Ok(true)
    }

    /// The same PATCHes through JSON batching, up to 20 to a request: a tree of 1,600 folders
    /// costs some 80 round trips, not 1,600. Within a batch Graph runs requests in no order, so
    /// each run of folders at one depth is its own batch (a parent after all its children).
    async fn set_dirs_times(&self, dirs: &[(String, FileTimes)]) -> Vec<(String, EndpointError)> {
        let mut failures = Vec::new();
        let mut rest = dirs;
        while let Some((first, _)) = rest.first() {
            let depth = first.matches('/').count();
            let n = rest
                .iter()
                .take_while(|(d, _)| d.matches('/').count() == depth)
                .count();
            let (level, tail) = rest.split_at(n);
            rest = tail;
            let mut calls = Vec::new();
            let mut paths = Vec::new();
            for (d, times) in level {
                let Some(fsi) = listing::file_system_info(*times) else {
                    continue;
                };
                match self.address(d).await {
                    Ok(address) => {
                        calls.push(times_patch(&address, &fsi));
                        paths.push(d);
                    }
                    Err(e) => failures.push((d.clone(), e)),
                }
            }
            for (d, result) in paths.into_iter().zip(self.client.batch(&calls).await) {
                if let Err(e) = result {
                    failures.push((d.clone(), map_err(e)));
                }
            }
        }
        failures
    }

    async fn delete(&self, path: &str) -> Result<(), EndpointError> {
        let address = self.address(path).await?;
        match self.client.send(&Call::new(Method::DELETE, address)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    fn mtime_support(&self) -> MtimeSupport {
        match self.mtime.load(Ordering::Relaxed) {
            0 => MtimeSupport::Unknown,
            1 => MtimeSupport::Kept,
            _ => MtimeSupport::NotSupported,
        }
    }

    fn upload_choice(&self) -> UploadChoice {
        UploadChoice::new(
            crate::endpoint::UploadMode::Direct,
            "Graph upload sessions: the file appears when its last fragment arrives",
        )
    }

    fn notices(&self) -> Vec<String> {
        let mut v = self.notices.lock().expect("notices lock").clone();
        let (waited, times) = self.client.budget().throttled_stats();
        if times > 0 {
            v.push(format!(
                "Microsoft Graph throttled this tenant {times} time(s); requests paused {:.1}s in total",
                waited.as_secs_f64()
            ));
        }
        v
    }
}

/// Office documents and PDFs: SharePoint may write its metadata into them after upload.
fn rewritten_by_service(path: &str) -> bool {
    let l = path.to_ascii_lowercase();
    [
        ".docx", ".docm", ".dotx", ".xlsx", ".xlsm", ".pptx", ".pptm", ".vsdx", ".pdf",
    ]
    .iter()
    .any(|ext| l.ends_with(ext))
}

impl GraphEndpoint {
    /// quickXorHash of what we sent against the service's. A difference on an Office document
    /// or PDF is the service's own rewrite: reported with both hashes and remembered so it is
    /// not uploaded again; anywhere else it is a corrupted upload, retried.
    fn check_hash(&self, path: &str, size: u64, done: &upload::Done) -> Result<(), EndpointError> {
        let theirs = done.item["file"]["hashes"]["quickXorHash"].as_str();
        let their_size = done.item["size"].as_u64();
        if theirs == Some(done.qxh.as_str()) && their_size == Some(size) {
            return Ok(());
        }
        if theirs.is_none() {
            // OneDrive personal reports other hashes; nothing to compare.
            return Ok(());
        }
        if rewritten_by_service(path) {
            let r = Rewrite {
                sent_size: size,
                sent_qxh: done.qxh.clone(),
                service_size: their_size.unwrap_or(0),
                service_qxh: theirs.map(str::to_string),
                service_etag: done.item["eTag"].as_str().map(str::to_string),
            };
            self.note(format!(
                "{path}: changed by the service after upload (SharePoint writes metadata into Office documents and PDFs): sent {} bytes, quickXorHash {}; stored {} bytes, quickXorHash {}",
                r.sent_size,
                r.sent_qxh,
                r.service_size,
                r.service_qxh.as_deref().unwrap_or("-")
            ));
            if let Some(s) = &self.store {
                s.save_rewrite(path, &r)?;
            }
            self.rewrites
                .lock()
                .expect("rewrites lock")
                .insert(path.to_string(), r);
            return Ok(());
        }
        Err(EndpointError::Transient(format!(
            "{path}: the service stored other content than was sent (quickXorHash sent {}, stored {}; size sent {size}, stored {})",
            done.qxh,
            theirs.unwrap_or("-"),
            their_size.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn libraries_by_title_or_url_name() {
        let drives = vec![
            json!({"id": "d1", "name": "Documents", "webUrl": "https://h/sites/s/Shared%20Documents"}),
            json!({"id": "d2", "name": "Archive", "webUrl": "https://h/sites/s/Archive"}),
        ];
        assert_eq!(find_library(&drives, "Documents").unwrap(), "d1");
        assert_eq!(web_path(&drives[0]), "sites/s/Shared Documents");
        assert_eq!(web_path(&json!({"id": "x"})), "");
        assert_eq!(find_library(&drives, "shared documents").unwrap(), "d1");
        assert_eq!(find_library(&drives, "Archive").unwrap(), "d2");
        let e = find_library(&drives, "Nope").unwrap_err().to_string();
        assert!(e.contains("Documents, Archive"), "{e}");
    }

    #[test]
    fn office_files_and_pdfs_may_be_rewritten() {
        assert!(rewritten_by_service("a/B.DOCX"));
        assert!(rewritten_by_service("x.pdf"));
        assert!(!rewritten_by_service("x.txt"));
    }
}
