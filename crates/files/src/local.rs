//! A local folder (or a mounted file share) as an endpoint.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::endpoint::{
    limit_to_listed, temp_path_for, ByteStream, Endpoint, EndpointError, Entry, FileTimes, Listing,
    MtimeSupport, PutOutcome,
};
use crate::relpath;

/// Read buffer per open file: large enough for few syscalls (and for most office files to be
/// one chunk, which an upload can send without copying), small enough to keep memory bounded.
const CHUNK: usize = 1024 * 1024;

/// The file's content in chunks of up to [`CHUNK`], each read on the blocking pool straight
/// into a buffer of its own (tokio's `File` reads into a buffer of its own and copies out of it:
/// a copy of every byte saved). A buffer is sized to what the listing says is left, plus one
/// byte so that a file that grew is noticed (`limit_to_listed`): a small file is one read into
/// a buffer of its size.
fn read_chunks(file: std::fs::File, listed: u64, path: &str) -> ByteStream {
    struct Reading {
        file: std::fs::File,
        left: u64,
    }
    let path = path.to_string();
    let start = Reading { file, left: listed };
    Box::pin(futures_util::stream::unfold(Some(start), move |reading| {
        let path = path.clone();
        async move {
            let mut r = reading?;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let want = r.left.saturating_add(1).min(CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                let mut n = 0;
                while n < want {
                    match r.file.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(n);
                r.left = r.left.saturating_sub(n as u64);
                // A short read is the end of the file.
                Ok((r, buf, n == want))
            })
            .await;
            match read {
                Ok(Ok((_, buf, _))) if buf.is_empty() => None,
                Ok(Ok((r, buf, more))) => Some((Ok(bytes::Bytes::from(buf)), more.then_some(r))),
                Ok(Err(e)) => Some((Err(EndpointError::io(&path, e)), None)),
                Err(e) => Some((Err(EndpointError::Transient(format!("{path}: {e}"))), None)),
            }
        }
    }))
}

pub struct LocalEndpoint {
    root: PathBuf,
}

impl LocalEndpoint {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file-system path of a relative path, refusing any that would leave the root: a
    /// `..` or empty segment, or a symbolic link on the way (a link inside the target folder
    /// may point anywhere, and writing through it would write there).
    fn abs(&self, path: &str) -> Result<PathBuf, EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        let mut abs = self.root.clone();
        let mut exists = true;
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            abs.push(segment);
            if !exists {
                continue;
            }
            match std::fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(EndpointError::Permanent(format!(
                        "{path}: {} is a symbolic link; links are not followed, so nothing \
                         is read or written outside {}",
                        abs.display(),
                        self.root.display()
                    )))
                }
                Ok(_) => {}
                // Nothing below a missing folder can be a link yet.
                Err(_) => exists = false,
            }
        }
        Ok(abs)
    }
}

pub fn system_time_to_ns(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok(),
        Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

pub fn ns_to_system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<Entry>) -> Result<(), EndpointError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let rd =
        std::fs::read_dir(&dir).map_err(|e| EndpointError::io(&dir.display().to_string(), e))?;
    for item in rd {
        let item = item.map_err(|e| EndpointError::io(&dir.display().to_string(), e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let path = crate::endpoint::join(rel, &name);
        // Symlinks are not followed: a share's links may point outside it or loop.
        let ft = item.file_type().map_err(|e| EndpointError::io(&path, e))?;
        if ft.is_symlink() {
            tracing::warn!(path, "symbolic link not migrated");
            continue;
        }
        let md = item.metadata().map_err(|e| EndpointError::io(&path, e))?;
        let mtime_ns = md.modified().ok().and_then(system_time_to_ns);
        // The birth time (statx), where the file system records it; Linux cannot set it, so a
        // local target keeps modification times only.
        let created_ns = md.created().ok().and_then(system_time_to_ns);
        if ft.is_dir() {
            out.push(Entry {
                path: path.clone(),
                is_dir: true,
                mtime_ns,
                created_ns,
                ..Entry::default()
            });
            walk(root, &path, out)?;
        } else if ft.is_file() {
            out.push(Entry {
                path,
                size: md.len(),
                mtime_ns,
                created_ns,
                ..Entry::default()
            });
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Endpoint for LocalEndpoint {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn list(&self) -> Result<Listing, EndpointError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            match std::fs::metadata(&root) {
                Ok(m) if m.is_dir() => {}
                // A missing target root is just empty: it is created by the first write.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
                Ok(_) => {
                    return Err(EndpointError::Permanent(format!(
                        "{} is not a folder",
                        root.display()
                    )))
                }
                Err(e) => return Err(EndpointError::io(&root.display().to_string(), e)),
            }
            walk(&root, "", &mut out)?;
            // Names read from a directory are single segments, never `.` or `..`.
            Ok(Listing::from(out))
        })
        .await
        .map_err(|e| EndpointError::Permanent(format!("listing task failed: {e}")))?
    }

    async fn read(&self, path: &str, size: u64) -> Result<ByteStream, EndpointError> {
        let abs = self.abs(path)?;
        let file = tokio::task::spawn_blocking(move || std::fs::File::open(abs))
            .await
            .map_err(|e| EndpointError::Transient(format!("{path}: {e}")))?
            .map_err(|e| EndpointError::io(path, e))?;
        Ok(limit_to_listed(read_chunks(file, size, path), size, path))
    }

    async fn mkdir(&self, path: &str) -> Result<(), EndpointError> {
        tokio::fs::create_dir_all(self.abs(path)?)
            .await
            .map_err(|e| EndpointError::io(path, e))
    }

    async fn put(
        &self,
        path: &str,
        _size: u64,
        times: FileTimes,
        mut body: ByteStream,
    ) -> Result<PutOutcome, EndpointError> {
        let mtime_ns = times.modified_ns;
        let dest = self.abs(path)?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| EndpointError::io(path, e))?;
        }
        let tmp = self.abs(&temp_path_for(path))?;
        let result = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| EndpointError::io(path, e))?;
            while let Some(chunk) = body.next().await {
                f.write_all(&chunk?)
                    .await
                    .map_err(|e| EndpointError::io(path, e))?;
            }
            f.flush().await.map_err(|e| EndpointError::io(path, e))?;
            let f = f.into_std().await;
            if let Some(ns) = mtime_ns {
                f.set_modified(ns_to_system_time(ns))
                    .map_err(|e| EndpointError::io(path, e))?;
            }
            drop(f);
            // rename(2) is atomic: readers see the old file or the whole new one, never a part.
            tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(|e| EndpointError::io(path, e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result?;
        Ok(PutOutcome {
            etag: None,
            mtime_kept: mtime_ns.is_some(),
        })
    }

    async fn delete(&self, path: &str) -> Result<(), EndpointError> {
        let p = self.abs(path)?;
        let r = match tokio::fs::symlink_metadata(&p).await {
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&p).await,
            Ok(_) => tokio::fs::remove_file(&p).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EndpointError::io(path, e)),
        }
    }

    async fn set_dir_times(&self, path: &str, times: FileTimes) -> Result<bool, EndpointError> {
        let Some(mtime_ns) = times.modified_ns else {
            return Ok(true);
        };
        let p = self.abs(path)?;
        let r = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&p)?.set_modified(ns_to_system_time(mtime_ns))
        })
        .await
        .map_err(|e| EndpointError::Permanent(e.to_string()))?;
        r.map_err(|e| EndpointError::io(path, e))?;
        Ok(true)
    }

    fn mtime_support(&self) -> MtimeSupport {
        MtimeSupport::Kept
    }
}
