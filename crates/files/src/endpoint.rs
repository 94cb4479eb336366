//! The one trait every source and target implements, and the error type they share.
//!
//! Paths are relative, `/`-separated, decoded (no percent-encoding), without a leading slash;
//! the root is `""`. Each endpoint translates them to its own addressing.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

/// Prefix of the temporary names uploads are written under before they are renamed into place.
/// A crash leaves at most such files behind; the next run deletes them.
pub const TEMP_PREFIX: &str = ".tenantry-part-";

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, EndpointError>> + Send>>;

/// One file or folder in a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (WebDAV only has whole seconds).
    pub mtime_ns: Option<i64>,
    /// Creation time, where the source has one (a local file's birth time, Graph's
    /// `fileSystemInfo.createdDateTime`).
    pub created_ns: Option<i64>,
    pub etag: Option<String>,
    /// The content hash the service itself reports, so `verify` need not download the file.
    pub service_hash: Option<ServiceHash>,
}

/// A hash the service computed over what it stores (SharePoint / OneDrive for Business:
/// quickXorHash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHash {
    /// quickXorHash, base64, as Graph reports it.
    pub quick_xor: String,
    /// The quickXorHash of what we sent, when the service rewrote the file after our upload
    /// (metadata written into Office documents and PDFs) and it is unchanged since.
    pub sent_quick_xor: Option<String>,
}

/// The times a copy should keep. Targets keep what they can: a local folder the modification
/// time only (Linux cannot set a file's birth time), SharePoint / OneDrive both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileTimes {
    pub modified_ns: Option<i64>,
    pub created_ns: Option<i64>,
}

impl FileTimes {
    pub fn modified(ns: i64) -> Self {
        Self {
            modified_ns: Some(ns),
            created_ns: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.modified_ns.is_none() && self.created_ns.is_none()
    }
}

impl Entry {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// An entry a listing left out because the server gave a path that is not safe to use (see
/// `relpath`): reported by name, while the rest of the listing goes on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefusedEntry {
    /// What the server sent (an href, or a path), escaped for display.
    pub path: String,
    pub reason: String,
}

/// What `Endpoint::list` returns: the usable entries, and those refused.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub refused: Vec<RefusedEntry>,
}

impl From<Vec<Entry>> for Listing {
    fn from(entries: Vec<Entry>) -> Self {
        Self {
            entries,
            refused: Vec::new(),
        }
    }
}

/// Whether a target keeps the modification time we send with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtimeSupport {
    /// Not known yet (no file written so far).
    Unknown,
    Kept,
    /// The server sets the time itself (plain Apache mod_dav: getlastmodified is protected).
    NotSupported,
}

/// How uploads become visible on a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadMode {
    /// Written under a temporary name (`TEMP_PREFIX`), then renamed or MOVEd into place.
    Staged,
    /// Sent straight to the final name: the server itself writes the body aside and renames it
    /// into place once complete (Apache mod_dav_fs, nginx, Nextcloud), so a reader never sees
    /// part of a file and an interrupted upload leaves the old version. Saves one request per
    /// file.
    Direct,
}

/// The upload mode of a run, and why it was chosen (for the report, as `upload_mode` and
/// `upload_mode_reason`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UploadChoice {
    #[serde(rename = "upload_mode")]
    pub mode: UploadMode,
    #[serde(rename = "upload_mode_reason")]
    pub reason: String,
}

impl UploadChoice {
    pub fn new(mode: UploadMode, reason: impl Into<String>) -> Self {
        Self {
            mode,
            reason: reason.into(),
        }
    }

    pub fn staged(reason: impl Into<String>) -> Self {
        Self::new(UploadMode::Staged, reason)
    }
}

/// Which upload mode to use on a WebDAV target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UploadPolicy {
    /// Direct when a probe upload shows the server keeps partial uploads out of sight, staged
    /// otherwise (and for runs too small for the probe to pay off).
    #[default]
    Auto,
    Direct,
    Staged,
}

/// What a completed upload reports back.
#[derive(Clone, Debug, Default)]
pub struct PutOutcome {
    pub etag: Option<String>,
    pub mtime_kept: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("throttled by the server (HTTP {status}){}", .retry_after.map(|d| format!(", asked to wait {}s", d.as_secs())).unwrap_or_default())]
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Network trouble or a 5xx that may pass: worth retrying.
    #[error("{0}")]
    Transient(String),
    #[error("the target is out of storage space (HTTP 507 Insufficient Storage / quota exceeded): free space or raise the quota, then re-run; files already copied are kept")]
    InsufficientStorage,
    #[error("the server refused the file as too large (HTTP 413): raise its upload limit (Apache: LimitRequestBody 0)")]
    TooLarge,
    #[error("authentication failed (HTTP {0}): check the user in the URL and the password file or environment variable")]
    Auth(u16),
    /// A service refused the app's credentials (Microsoft Graph: the message says what to check).
    #[error("{0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other HTTP status that retrying will not change.
    #[error("{path}: HTTP {status}{}", if *.status == 409 { " (parent folder missing?)" } else { "" })]
    Http { status: u16, path: String },
    #[error("{0}")]
    Permanent(String),
}

impl EndpointError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A path that must not be used (it would leave the endpoint's root).
    pub fn unsafe_path(e: crate::relpath::UnsafePath) -> Self {
        Self::Permanent(e.to_string())
    }

    pub fn io(context: &str, e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound => Self::NotFound(context.to_string()),
            Interrupted | TimedOut | WouldBlock => Self::Transient(format!("{context}: {e}")),
            _ if e.raw_os_error() == Some(28) => Self::InsufficientStorage, // ENOSPC
            _ => Self::Permanent(format!("{context}: {e}")),
        }
    }
}

/// A place files come from or go to: a local folder, a WebDAV server, later Microsoft Graph.
///
/// Writes are atomic from a reader's point of view: `put` must never leave a partial file at
/// `path` (write elsewhere, then rename/MOVE, or rely on a server that does so itself), so a
/// crash can only leave `TEMP_PREFIX` debris.
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync {
    /// A human description without secrets, for reports and logs.
    fn describe(&self) -> String;

    /// Every folder and file below the root, recursively (the root itself excluded). Every
    /// entry's path has passed `relpath::check`; those that did not are in `refused`.
    async fn list(&self) -> Result<Listing, EndpointError>;

    /// Streams the content of a file listed with `size` bytes. More bytes than that fail the
    /// stream (`limit_to_listed`) before they are passed on; fewer end it early, and the caller
    /// records what it got.
    async fn read(&self, path: &str, size: u64) -> Result<ByteStream, EndpointError>;

    /// Creates a folder; succeeds when it already exists. Parents are created first by the caller.
    async fn mkdir(&self, path: &str) -> Result<(), EndpointError>;

    /// Writes a whole file atomically, with `size` bytes from `body`, keeping `times` where it can.
    async fn put(
        &self,
        path: &str,
        size: u64,
        times: FileTimes,
        body: ByteStream,
    ) -> Result<PutOutcome, EndpointError>;

    /// Deletes a file or a folder with everything below it; succeeds when it is already gone.
    async fn delete(&self, path: &str) -> Result<(), EndpointError>;

    /// The decoded path the service puts in front of every path below this endpoint, when it
    /// limits whole paths (SharePoint's 400 characters count the site, the library and the
    /// folder: `sites/Team/Shared Documents/Import/`); empty elsewhere.
    async fn path_prefix(&self) -> Result<String, EndpointError> {
        Ok(String::new())
    }

    /// Sets a folder's times, where the endpoint can. Returns whether it did.
    async fn set_dir_times(&self, _path: &str, _times: FileTimes) -> Result<bool, EndpointError> {
        Ok(false)
    }

    /// Sets the times of many folders, `dirs` ordered so that a folder comes after every folder
    /// below it (writing into a folder moves its time). Returns the folders that failed, with
    /// why. One `set_dir_times` after another, unless the endpoint can do better (Graph sends
    /// them in batches).
    async fn set_dirs_times(&self, dirs: &[(String, FileTimes)]) -> Vec<(String, EndpointError)> {
        let mut failures = Vec::new();
        for (d, times) in dirs {
            match self.set_dir_times(d, *times).await {
                Ok(true) => {}
                // The endpoint keeps no folder times: no use asking for the others.
                Ok(false) => break,
                Err(e) => failures.push((d.clone(), e)),
            }
        }
        failures
    }

    /// Whether files written so far kept their modification time.
    fn mtime_support(&self) -> MtimeSupport;

    /// Called once before a run uploads `files` files, so the endpoint can settle how it writes.
    async fn prepare_uploads(&self, _files: u64) {}

    /// How uploads are made visible (settled by `prepare_uploads`).
    fn upload_choice(&self) -> UploadChoice {
        UploadChoice::staged("written under a temporary name, then renamed")
    }

    /// Things the run's report should say about this endpoint (files the service rewrote after
    /// upload, time spent throttled).
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Joins a relative path and a name.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The parent of a relative path (`""` for top-level entries).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// Whether two modification times are the same to the second (WebDAV's precision).
pub fn same_second(a: i64, b: i64) -> bool {
    a.div_euclid(1_000_000_000) == b.div_euclid(1_000_000_000)
}

/// Whether a name is one of our temporary upload names.
pub fn is_temp_name(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .unwrap_or(path)
        .starts_with(TEMP_PREFIX)
}

/// A fresh temporary name for an upload beside `path`.
pub fn temp_path_for(path: &str) -> String {
    let n: u64 = rand::random();
    join(parent(path), &format!("{TEMP_PREFIX}{n:016x}"))
}

/// Passes on at most `size` bytes of `inner`; a byte more fails the stream instead. A server (or a
/// file that grew since it was listed) cannot make a copy larger than what was planned, hashed
/// for and announced to the target as the upload's length.
pub fn limit_to_listed(inner: ByteStream, size: u64, path: &str) -> ByteStream {
    let path = path.to_string();
    let mut seen = 0u64;
    Box::pin(futures_util::StreamExt::map(inner, move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > size {
            return Err(EndpointError::Permanent(format!(
                "{path}: the source sent more than the {size} bytes it listed; \
                 the file was not written (run again to copy it if it grew)"
            )));
        }
        Ok(chunk)
    }))
}

/// Regroups a stream's small chunks (HTTP bodies arrive in pieces of a few KiB) into chunks of
/// at least `min` bytes, so a PUT downstream writes with few large syscalls. Memory stays
/// bounded by `min` plus one incoming chunk.
pub fn rebuffer(inner: ByteStream, min: usize) -> ByteStream {
    Box::pin(Rebuffer {
        inner,
        buf: bytes::BytesMut::new(),
        min,
        done: false,
    })
}

struct Rebuffer {
    inner: ByteStream,
    buf: bytes::BytesMut,
    min: usize,
    done: bool,
}

impl Stream for Rebuffer {
    type Item = Result<Bytes, EndpointError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            if self.done {
                let rest = self.buf.split().freeze();
                return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    if self.buf.is_empty() && b.len() >= self.min {
                        return Poll::Ready(Some(Ok(b)));
                    }
                    self.buf.extend_from_slice(&b);
                    if self.buf.len() >= self.min {
                        return Poll::Ready(Some(Ok(self.buf.split().freeze())));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => self.done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn limit_to_listed_fails_past_the_size_and_passes_up_to_it() {
        let parts = || -> ByteStream {
            Box::pin(futures_util::stream::iter(
                [b"abc".as_slice(), b"def", b"g"].map(|b| Ok(Bytes::from_static(b))),
            ))
        };
        let got: Vec<_> = limit_to_listed(parts(), 6, "f").collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().as_ref(), b"abc");
        assert_eq!(got[1].as_ref().unwrap().as_ref(), b"def");
        let err = got[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("more than the 6 bytes"), "{err}");
        let all: Vec<_> = limit_to_listed(parts(), 7, "f").collect().await;
        assert!(all.iter().all(Result::is_ok));
        let short: Vec<_> = limit_to_listed(parts(), 100, "f").collect().await;
        assert_eq!(short.len(), 3, "fewer bytes than listed pass as they are");
    }

    #[tokio::test]
    async fn rebuffer_keeps_bytes_and_order() {
        let parts: Vec<Result<Bytes, EndpointError>> = (0..10u8)
            .map(|i| Ok(Bytes::from(vec![i; 3 + i as usize])))
            .collect();
        let want: Vec<u8> = (0..10u8).flat_map(|i| vec![i; 3 + i as usize]).collect();
        let out: Vec<Bytes> = rebuffer(Box::pin(futures_util::stream::iter(parts)), 16)
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert!(out[..out.len() - 1].iter().all(|b| b.len() >= 16));
        assert_eq!(out.concat(), want);
    }
}
