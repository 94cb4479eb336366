//! Protocol behaviour against a tiny in-test HTTP server: 429/503 with Retry-After, 507
//! Insufficient Storage, and the Nextcloud/ownCloud `X-OC-MTime: accepted` answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenantry_files::endpoint::{Endpoint, UploadMode};
use tenantry_files::local::LocalEndpoint;
use tenantry_files::migrate::{migrate, MigrateOptions};
use tenantry_files::preflight::OnInvalid;
use tenantry_files::retry::RetryPolicy;
use tenantry_files::webdav::{http_client, WebDavEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Handler =
    dyn Fn(&str, &str, usize) -> (u16, Vec<(&'static str, String)>, Vec<u8>) + Send + Sync;

/// A pseudo response header that makes `serve` wait this many milliseconds before answering.
const DELAY: &str = "x-test-delay-ms";

/// Serves HTTP/1.1 with keep-alive; counts requests per "METHOD path".
async fn serve(handler: Arc<Handler>) -> (u16, Arc<Mutex<HashMap<String, usize>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let c2 = counts.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            let (h, counts) = (handler.clone(), c2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let (method, path) = (
                        first.next().unwrap_or("").to_string(),
                        first.next().unwrap_or("").to_string(),
                    );
                    let len: usize = lines
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 65536];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    let path = path.split('?').next().unwrap_or("").to_string();
                    *counts
                        .lock()
                        .unwrap()
                        .entry(format!("{method} {path}"))
                        .or_insert(0) += 1;
                    let (status, headers, body) = h(&method, &path, len);
                    let mut resp =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                    for (k, v) in headers {
                        // Test-only instruction: answer late, so requests are in flight together.
                        if k == DELAY {
                            tokio::time::sleep(Duration::from_millis(v.parse().unwrap())).await;
                            continue;
                        }
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    let mut out = resp.into_bytes();
                    out.extend_from_slice(&body);
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, counts)
}

fn opts(state: &std::path::Path) -> MigrateOptions {
    MigrateOptions {
        parallel: 4,
        dry_run: false,
        delete: false,
        checksum: false,
        on_invalid: OnInvalid::Fail,
        state_path: state.join("s.sqlite"),
        retry: dav_retry(),
        progress: false,
        counters: None,
    }
}

/// A WebDAV endpoint on the test server, with the tests' fast retry policy.
fn dav(port: u16, path: &str) -> Arc<dyn Endpoint> {
    let url = format!("http://127.0.0.1:{port}{path}");
    Arc::new(
        WebDavEndpoint::new(http_client(4, None).unwrap(), &url, None, None, dav_retry()).unwrap(),
    )
}

/// Fast retries, so tests only wait where the server says so.
fn dav_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base: Duration::from_millis(10),
        ..Default::default()
    }
}

const LISTING: &str = r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">
<D:response><D:href>/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/a.txt</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>5</D:getcontentlength><D:getlastmodified>Wed, 21 Oct 2015 07:28:00 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/b.txt</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>4</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_source_429_and_503_honour_retry_after() {
    let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let s2 = seen.clone();
    let (port, counts) = serve(Arc::new(move |m: &str, p: &str, _| {
        let n = {
            let mut s = s2.lock().unwrap();
            let e = s.entry(format!("{m} {p}")).or_insert(0);
            *e += 1;
            *e
        };
        match (m, p, n) {
            ("PROPFIND", "/", 1) => (503, vec![("Retry-After", "1".into())], vec![]),
            ("PROPFIND", "/", _) => (207, vec![], LISTING.as_bytes().to_vec()),
            ("GET", "/a.txt", 1) => (429, vec![("Retry-After", "1".into())], vec![]),
            ("GET", "/a.txt", _) => (200, vec![], b"alpha".to_vec()),
            ("GET", "/b.txt", _) => (200, vec![], b"beta".to_vec()),
            _ => (404, vec![], vec![]),
        }
    }))
    .await;
    let t = tempfile::tempdir().unwrap();
    let src: Arc<dyn Endpoint> = dav(port, "/");
    let dst: Arc<dyn Endpoint> = Arc::new(LocalEndpoint::new(t.path().join("dst")));
    let started = Instant::now();
    let rep = migrate(src, dst, "s", "t", &opts(t.path())).await.unwrap();
    let took = started.elapsed();
    assert!(rep.ok(), "{:?}", rep.failures);
    assert_eq!(rep.copied_files, 2);
    assert_eq!(std::fs::read(t.path().join("dst/a.txt")).unwrap(), b"alpha");
    // Jittered backoff is 10 ms here: only Retry-After explains two waits of a second.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let c = counts.lock().unwrap();
    assert_eq!(c["PROPFIND /"], 2);
    assert_eq!(c["GET /a.txt"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_507_fails_that_file_only_without_retrying_and_explains() {
    let (port, counts) = serve(Arc::new(|m: &str, _p: &str, len: usize| match m {
        "PROPFIND" => (404, vec![], vec![]),
        "MKCOL" => (405, vec![], vec![]),
        "PUT" if len > 1000 => (507, vec![], vec![]),
        "PUT" => (201, vec![], vec![]),
        "MOVE" => (201, vec![], vec![]),
        "DELETE" => (204, vec![], vec![]),
        _ => (400, vec![], vec![]),
    }))
    .await;
    let t = tempfile::tempdir().unwrap();
    let src_dir = t.path().join("src");
    std::fs::create_dir_all(&src_dir).unwrap();
    std::fs::write(src_dir.join("small.txt"), b"0123456789").unwrap();
    std::fs::write(src_dir.join("big.bin"), vec![7u8; 5000]).unwrap();
    let src: Arc<dyn Endpoint> = Arc::new(LocalEndpoint::new(&src_dir));
    let dst: Arc<dyn Endpoint> = dav(port, "/lib");
    let rep = migrate(src, dst, "s", "t", &opts(t.path())).await.unwrap();
    assert!(!rep.ok());
    assert_eq!(rep.copied_files, 1);
    assert_eq!(rep.failures.len(), 1);
    assert_eq!(rep.failures[0].path, "big.bin");
    assert!(
        rep.failures[0].error.contains("out of storage space"),
        "{}",
        rep.failures[0].error
    );
    assert!(rep.notes.iter().any(|n| n.contains("quota")));
    let c = counts.lock().unwrap();
    let puts: usize = c
        .iter()
        .filter(|(k, _)| k.starts_with("PUT "))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(puts, 2, "507 is not retried: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextcloud_style_mtime_acceptance_needs_no_extra_requests() {
    let (port, counts) = serve(Arc::new(|m: &str, _p: &str, _| match m {
        "PROPFIND" => (404, vec![], vec![]),
        "MKCOL" => (201, vec![], vec![]),
        "PUT" => (
            201,
            vec![
                ("X-OC-MTime", "accepted".into()),
                ("ETag", "\"abc\"".into()),
            ],
            vec![],
        ),
        "MOVE" => (201, vec![], vec![]),
        _ => (400, vec![], vec![]),
    }))
    .await;
    let t = tempfile::tempdir().unwrap();
    let src_dir = t.path().join("src");
    std::fs::create_dir_all(src_dir.join("sub")).unwrap();
    for n in ["a", "b", "sub/c"] {
        std::fs::write(src_dir.join(n), n).unwrap();
    }
    let src: Arc<dyn Endpoint> = Arc::new(LocalEndpoint::new(&src_dir));
    let dst: Arc<dyn Endpoint> = dav(port, "/remote.php/dav/files/u/");
    let rep = migrate(src, dst, "s", "t", &opts(t.path())).await.unwrap();
    assert!(rep.ok(), "{:?}", rep.failures);
    assert_eq!(rep.copied_files, 3);
    assert_eq!(rep.mtime, tenantry_files::endpoint::MtimeSupport::Kept);
    let c = counts.lock().unwrap();
    assert!(!c.keys().any(|k| k.starts_with("PROPPATCH")), "{c:?}");
    assert_eq!(
        c.get("PROPFIND /remote.php/dav/files/u/"),
        Some(&1),
        "only the listing: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_throttle_pauses_every_worker() {
    let listing: String = (0..6)
        .map(|i| format!(r#"<D:response><D:href>/f{i}</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>4</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"#))
        .collect();
    let listing = format!(r#"<D:multistatus xmlns:D="DAV:">{listing}</D:multistatus>"#);
    let start = Instant::now();
    // (path, arrival since start) of every GET; when the 429 was sent.
    let log = Arc::new(Mutex::new((
        Vec::<(String, Duration)>::new(),
        None::<Duration>,
    )));
    let l2 = log.clone();
    let (port, _) = serve(Arc::new(move |m: &str, p: &str, _| {
        if m == "PROPFIND" {
            return (207, vec![], listing.clone().into_bytes());
        }
        let mut g = l2.lock().unwrap();
        let now = start.elapsed();
        g.0.push((p.to_string(), now));
        if p == "/f0" && g.1.is_none() {
            g.1 = Some(now);
            return (429, vec![("Retry-After", "1".into())], vec![]);
        }
        (200, vec![(DELAY, "300".into())], b"data".to_vec())
    }))
    .await;
    let t = tempfile::tempdir().unwrap();
    let src: Arc<dyn Endpoint> = dav(port, "/");
    let dst: Arc<dyn Endpoint> = Arc::new(LocalEndpoint::new(t.path().join("dst")));
    let rep = migrate(src, dst, "s", "t", &opts(t.path())).await.unwrap();
    assert!(rep.ok(), "{:?}", rep.failures);
    assert_eq!(rep.copied_files, 6);
    let g = log.lock().unwrap();
    let t429 = g.1.unwrap();
    // The first four went out together; the two that started later waited for the pause.
    let late: Vec<_> =
        g.0.iter()
            .filter(|(p, _)| p == "/f4" || p == "/f5")
            .collect();
    assert_eq!(late.len(), 2, "{:?}", g.0);
    for (p, at) in late {
        assert!(
            *at >= t429 + Duration::from_millis(900),
            "{p} at {at:?}, 429 at {t429:?}"
        );
    }
}

/// A 207 answer for one file of `size` bytes.
fn one_file(href: &str, size: usize) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>{size}</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#
    )
    .into_bytes()
}

/// A server that shows an uploaded file only once its PUT is complete, listing it with
/// `listed_size` bytes.
async fn write_aside_server(listed_size: usize) -> u16 {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, _) = serve(Arc::new(move |m: &str, p: &str, _| {
        use std::sync::atomic::Ordering::SeqCst;
        match m {
            "PUT" => {
                done.store(true, SeqCst);
                (201, vec![], vec![])
            }
            "PROPFIND" if done.load(SeqCst) => (207, vec![], one_file(p, listed_size)),
            "PROPFIND" => (404, vec![], vec![]),
            "DELETE" => (204, vec![], vec![]),
            _ => (400, vec![], vec![]),
        }
    }))
    .await;
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_probe_goes_direct_only_on_a_complete_hidden_upload() {
    let dst = dav(write_aside_server(64 * 1024 + 1).await, "/lib");
    dst.prepare_uploads(1000).await;
    let c = dst.upload_choice();
    assert_eq!(c.mode, UploadMode::Direct, "{}", c.reason);
    assert!(c.reason.contains("probed"), "{}", c.reason);
    // Listed with another size once complete: something else answered; stay staged.
    let dst = dav(write_aside_server(10).await, "/lib");
    dst.prepare_uploads(1000).await;
    let c = dst.upload_choice();
    assert_eq!(c.mode, UploadMode::Staged);
    assert!(c.reason.contains("inconclusive"), "{}", c.reason);
    // Too few files to pay for a probe: staged without asking.
    let dst = dav(write_aside_server(64 * 1024 + 1).await, "/lib");
    dst.prepare_uploads(3).await;
    assert!(dst.upload_choice().reason.contains("fewer than"));
}

/// Runs the upload probe against a server that accepts PUTs and answers every PROPFIND with
/// `look`; returns the choice and how long the probe took.
async fn probe_with_looks(
    look: (u16, Vec<(&'static str, String)>),
) -> (tenantry_files::endpoint::UploadChoice, Duration) {
    let (port, _) = serve(Arc::new(move |m: &str, _p: &str, _| match m {
        "PUT" => (201, vec![], vec![]),
        "PROPFIND" => (look.0, look.1.clone(), vec![]),
        "DELETE" => (204, vec![], vec![]),
        _ => (400, vec![], vec![]),
    }))
    .await;
    let dst = dav(port, "/lib");
    let started = Instant::now();
    dst.prepare_uploads(1000).await;
    (dst.upload_choice(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_probe_gives_up_fast_on_throttling_and_within_its_limit_on_silence() {
    // A throttled look is not waited out: the probe is inconclusive at once.
    let (c, took) = probe_with_looks((429, vec![("Retry-After", "60".into())])).await;
    assert_eq!(c.mode, UploadMode::Staged);
    assert!(c.reason.contains("inconclusive"), "{}", c.reason);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A server that never answers the look while the upload is open (one request at a time):
    // the probe ends at its limit instead of waiting on itself.
    let (c, took) = probe_with_looks((404, vec![(DELAY, "60000".into())])).await;
    assert_eq!(c.mode, UploadMode::Staged);
    assert!(c.reason.contains("no answer within"), "{}", c.reason);
    assert!(took < Duration::from_secs(20), "{took:?}");
}
