//! Uploads and downloads as the service wants them.
//!
//! - A small file: one `PUT …:/content` (<https://learn.microsoft.com/graph/api/driveitem-put-content>).
//! - Otherwise an upload session (<https://learn.microsoft.com/graph/api/driveitem-createuploadsession>):
//!   `item.fileSystemInfo` carries the creation and modification times (the only way to keep
//!   them without a second version) and `@microsoft.graph.conflictBehavior: replace`; fragments are a multiple
//!   of 320 KiB and under 60 MiB, sent in order with `Content-Range`, never with an
//!   Authorization header. The `uploadUrl` is saved in the state store before the first byte,
//!   so a run killed mid-file asks the session for `nextExpectedRanges` and sends only the
//!   rest. A 416 or an expired (404) session restarts the file from the beginning, cleanly.
//! - Downloads use the item's pre-authenticated `@microsoft.graph.downloadUrl`, resuming with
//!   `Range` after a broken connection.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_graph::client::Call;
use tenantry_graph::quickxor::QuickXor;
use tenantry_graph::GraphClient;

use super::listing::file_system_info;
use super::store::OpenSession;
use super::{map_err, GraphEndpoint};
use crate::endpoint::{ByteStream, EndpointError, FileTimes};

/// A finished upload: the item as the service stored it, and the quickXorHash of what was sent.
pub struct Done {
    pub item: Value,
    pub qxh: String,
}

pub async fn simple(
    client: &GraphClient,
    address: &str,
    mut body: ByteStream,
) -> Result<Done, EndpointError> {
    let mut buf = Pieces::default();
    let mut qx = QuickXor::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        qx.update(&chunk);
        buf.push(chunk);
        if buf.len() as u64 > super::SIMPLE_UPLOAD_MAX {
            return Err(EndpointError::Transient(
                "the file grew while it was read; it will be copied again".into(),
            ));
        }
    }
    let url = format!("{address}/content?@microsoft.graph.conflictBehavior=replace");
    let all = buf.len();
    let item = client
        .json(&Call::new(Method::PUT, url).bytes(buf.take(all)))
        .await
        .map_err(map_err)?;
    Ok(Done {
        item,
        qxh: qx.base64(),
    })
}

/// An upload session to send into.
struct Opened {
    url: String,
    /// The session's next expected byte (0 unless a saved session is resumed).
    resume_at: u64,
    /// The session is in the state store, to be forgotten when the file is done.
    saved: bool,
}

/// Where an upload starts: a saved session's next expected byte, or a new session at 0.
async fn open_session(
    ep: &GraphEndpoint,
    path: &str,
    address: &str,
    size: u64,
    times: FileTimes,
) -> Result<Opened, EndpointError> {
    let mtime_ns = times.modified_ns;
    if let Some(store) = &ep.store {
        if let Some(s) = store.session(path)? {
            if s.size == size && s.mtime_ns == mtime_ns {
                let status = ep
                    .client
                    .json(&Call::new(Method::GET, s.url.clone()).unauthenticated())
                    .await;
                match status.ok().and_then(|v| next_expected(&v)) {
                    Some(next) if next <= size => {
                        tracing::info!(path, next, "resuming an upload session");
                        return Ok(Opened {
                            url: s.url,
                            resume_at: next,
                            saved: true,
                        });
                    }
                    _ => store.forget_session(path)?,
                }
            } else {
                // The source changed since: cancel the old session, best effort.
                let _ = ep
                    .client
                    .send(&Call::new(Method::DELETE, s.url).unauthenticated())
                    .await;
                store.forget_session(path)?;
            }
        }
    }
    let mut item = json!({"@microsoft.graph.conflictBehavior": "replace"});
    if let Some(fsi) = file_system_info(times) {
        item["fileSystemInfo"] = fsi;
    }
    let v = ep
        .client
        .json(
            &Call::new(Method::POST, format!("{address}/createUploadSession"))
                .json(&json!({ "item": item })),
        )
        .await
        .map_err(map_err)?;
    let Some(url) = v["uploadUrl"].as_str() else {
        return Err(EndpointError::Permanent(
            "createUploadSession answered without an uploadUrl".into(),
        ));
    };
    // A file sent in one fragment has nothing to resume: killed mid-fragment, the session
    // would start again at byte 0 like a new one. Not saving it spares two writes to the
    // state store per small file.
    let saved = size > ep.fragment as u64;
    if let (Some(store), true) = (&ep.store, saved) {
        store.save_session(
            path,
            &OpenSession {
                url: url.to_string(),
                size,
                mtime_ns,
            },
        )?;
    }
    Ok(Opened {
        url: url.to_string(),
        resume_at: 0,
        saved,
    })
}

/// The start of the first of `nextExpectedRanges` (`"12345-"` or `"12345-67890"`).
fn next_expected(v: &Value) -> Option<u64> {
    v["nextExpectedRanges"][0]
        .as_str()?
        .split('-')
        .next()?
        .parse()
        .ok()
}

pub async fn session(
    ep: &GraphEndpoint,
    path: &str,
    address: &str,
    size: u64,
    times: FileTimes,
    mut body: ByteStream,
) -> Result<Done, EndpointError> {
    let Opened {
        url,
        resume_at,
        saved,
    } = open_session(ep, path, address, size, times).await?;
    let forget = || async {
        if let (Some(store), true) = (&ep.store, saved) {
            let _ = store.forget_session(path);
        }
    };
    let mut qx = QuickXor::default();
    let mut read = 0u64; // bytes taken from the source
    let mut sent = resume_at; // next byte the service expects
    let mut pending = Pieces::default();
    let mut finished: Option<Value> = None;
    loop {
        let chunk = body.next().await.transpose()?;
        let eof = chunk.is_none();
        if let Some(c) = chunk {
            qx.update(&c);
            let start = read;
            read += c.len() as u64;
            if read > size {
                forget().await;
                return Err(EndpointError::Transient(format!(
                    "{path}: the file grew while it was read; it will be copied again"
                )));
            }
            // Bytes the session already has (a resumed upload) are hashed, not sent again.
            if read > resume_at {
                let skip = resume_at.saturating_sub(start) as usize;
                pending.push(c.slice(skip..));
            }
        }
        if eof && read != size {
            forget().await;
            return Err(EndpointError::Transient(format!(
                "{path}: {read} bytes read, {size} listed: the file changed while it was read"
            )));
        }
        while pending.len() >= ep.fragment || (eof && !pending.is_empty()) {
            let n = pending.len().min(ep.fragment);
            let frag: Bytes = pending.take(n);
            let end = sent + n as u64 - 1;
            let r = ep
                .client
                .send(
                    &Call::new(Method::PUT, url.clone())
                        .unauthenticated()
                        .header("Content-Range", format!("bytes {sent}-{end}/{size}"))
                        .bytes(frag),
                )
                .await;
            let resp = match r {
                Ok(resp) => resp,
                Err(e) if matches!(e.status(), Some(404) | Some(416)) => {
                    // Expired session or a range the service did not expect: start the file
                    // again with a new session (the copy is retried from the source).
                    forget().await;
                    return Err(EndpointError::Transient(format!(
                        "{path}: upload session {} (HTTP {}); the file is sent again from the start",
                        if e.status() == Some(404) { "expired" } else { "out of step" },
                        e.status().unwrap_or(0)
                    )));
                }
                Err(e) => return Err(map_err(e)),
            };
            sent = end + 1;
            let status = resp.status().as_u16();
            let v: Value = resp
                .json()
                .await
                .map_err(|e| EndpointError::Transient(format!("upload answer: {e}")))?;
            if status == 200 || status == 201 {
                finished = Some(v);
            } else if let Some(next) = next_expected(&v) {
                if next != sent {
                    forget().await;
                    return Err(EndpointError::Transient(format!(
                        "{path}: the service expects byte {next}, {sent} was next; the file is sent again"
                    )));
                }
            }
        }
        if eof {
            break;
        }
    }
    forget().await;
    match finished {
        Some(item) => Ok(Done {
            item,
            qxh: qx.base64(),
        }),
        None => Err(EndpointError::Transient(format!(
            "{path}: the upload session did not complete"
        ))),
    }
}

/// Chunks read from the source, waiting to be sent: a fragment that lies within one chunk (a
/// small file read in one piece) is sent without copying.
#[derive(Default)]
struct Pieces {
    parts: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Pieces {
    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        if !b.is_empty() {
            self.parts.push_back(b);
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` bytes (at most `len`).
    fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len);
        self.len -= n;
        match self.parts.front_mut() {
            Some(first) if first.len() >= n => {
                let out = first.split_to(n);
                if first.is_empty() {
                    self.parts.pop_front();
                }
                out
            }
            _ => {
                let mut out = BytesMut::with_capacity(n);
                while out.len() < n {
                    let first = self.parts.front_mut().expect("len counts the parts");
                    let k = first.len().min(n - out.len());
                    out.extend_from_slice(&first.split_to(k));
                    if first.is_empty() {
                        self.parts.pop_front();
                    }
                }
                out.freeze()
            }
        }
    }
}

/// The most a download may bring for an item listed at `size` bytes: a quarter more, and at
/// least 16 MiB more.
fn download_limit(size: u64) -> u64 {
    size.saturating_add((size / 4).max(16 << 20))
}

/// Streams `url` (pre-authenticated: no Authorization header), resuming with `Range` after a
/// broken connection, at most a few times in a row.
pub fn download_stream(client: GraphClient, url: String, size: u64) -> ByteStream {
    struct St {
        client: GraphClient,
        url: String,
        size: u64,
        offset: u64,
        resp: Option<reqwest::Response>,
        failures: u32,
    }
    let st = St {
        client,
        url,
        size,
        offset: 0,
        resp: None,
        failures: 0,
    };
    Box::pin(futures_util::stream::unfold(Some(st), |st| async move {
        let mut st = st?;
        loop {
            if st.resp.is_none() {
                if st.offset >= st.size && st.size > 0 {
                    return None;
                }
                let mut call = Call::new(Method::GET, st.url.clone()).unauthenticated();
                if st.offset > 0 {
                    call = call.header("Range", format!("bytes={}-", st.offset));
                }
                match st.client.send(&call).await {
                    Ok(r) if st.offset > 0 && r.status().as_u16() != 206 => {
                        let e = EndpointError::Transient(format!(
                            "download resume at byte {} was not honoured (HTTP {})",
                            st.offset,
                            r.status()
                        ));
                        return Some((Err(e), None));
                    }
                    Ok(r) => st.resp = Some(r),
                    Err(e) => return Some((Err(map_err(e)), None)),
                }
            }
            let resp = st.resp.as_mut().expect("response");
            match resp.chunk().await {
                Ok(Some(b)) if st.offset + b.len() as u64 > download_limit(st.size) => {
                    // An endless body must not fill a disk. Graph's listed size is known to be
                    // off for some items (OneNote and Office files, pages listed at 0 bytes),
                    // so the bound leaves room and the content hash judges the copy.
                    let e = EndpointError::Transient(format!(
                        "the download runs past {} bytes, far more than the {} bytes the listing gave",
                        download_limit(st.size),
                        st.size
                    ));
                    return Some((Err(e), None));
                }
                Ok(Some(b)) => {
                    st.offset += b.len() as u64;
                    st.failures = 0;
                    return Some((Ok(b), Some(st)));
                }
                Ok(None) if st.offset >= st.size => return None,
                Ok(None) | Err(_) if st.failures < 3 => {
                    st.failures += 1;
                    st.resp = None;
                    tracing::info!(
                        offset = st.offset,
                        "download interrupted; resuming with Range"
                    );
                }
                Ok(None) => {
                    let e = EndpointError::Transient(format!(
                        "download ended at byte {} of {}",
                        st.offset, st.size
                    ));
                    return Some((Err(e), None));
                }
                Err(e) => {
                    let e = EndpointError::Transient(format!("download: {}", e.without_url()));
                    return Some((Err(e), None));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_give_back_what_was_pushed_in_fragments() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for cut in [1, 3, 10, 999, 1000] {
            let mut p = Pieces::default();
            for part in data.chunks(cut) {
                p.push(Bytes::copy_from_slice(part));
            }
            p.push(Bytes::new());
            let mut out = Vec::new();
            while !p.is_empty() {
                out.extend_from_slice(&p.take(320));
            }
            assert_eq!(out, data, "chunks of {cut}");
            assert_eq!(p.take(5), Bytes::new());
        }
        // A fragment inside one chunk is that chunk's memory, not a copy.
        let chunk = Bytes::from(data.clone());
        let mut p = Pieces::default();
        p.push(chunk.clone());
        assert_eq!(p.take(1000).as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn next_expected_ranges() {
        assert_eq!(
            next_expected(&json!({"nextExpectedRanges": ["327680-"]})),
            Some(327_680)
        );
        assert_eq!(
            next_expected(&json!({"nextExpectedRanges": ["0-99", "200-"]})),
            Some(0)
        );
        assert_eq!(next_expected(&json!({})), None);
    }

    /// An item listed at 10 bytes whose download never ends: the stream stops with an error
    /// soon past the listed size (with room for Graph's known size errors) instead of writing
    /// until the disk is full. The server sends 64 MiB.
    #[tokio::test]
    async fn a_download_longer_than_the_listed_size_is_refused() {
        use futures_util::StreamExt;
        use tenantry_testkit::hostile::{repeat_body, respond_head, HttpServer};
        let server = HttpServer::start(|_, w| {
            respond_head(w, 200, &[("Content-Type", "application/octet-stream")])?;
            repeat_body(w, &[b'x'; 4096], 16 * 1024)
        });
        let mut cfg =
            tenantry_graph::GraphConfig::from_env("t", "c", tenantry_graph::ClientSecret::new("s"));
        cfg.graph_url = server.url("");
        let client = GraphClient::new(cfg, reqwest::Client::new());
        let mut stream = download_stream(client, server.url("/download/x"), 10);
        let mut received = 0usize;
        let err = loop {
            match stream.next().await {
                Some(Ok(b)) => received += b.len(),
                Some(Err(e)) => break e,
                None => panic!("the stream ended without an error after {received} bytes"),
            }
        };
        let limit = download_limit(10);
        assert_eq!(limit, 10 + (16 << 20));
        assert!(
            err.to_string().contains("the 10 bytes the listing gave"),
            "{err}"
        );
        assert!(
            received as u64 <= limit,
            "{received} bytes passed on, past the limit"
        );
    }
}
