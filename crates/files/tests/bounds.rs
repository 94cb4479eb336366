//! A WebDAV server cannot make a run hold unbounded memory or last forever: listings are parsed
//! as they arrive within caps on bytes, entries and depth; a download may not exceed its listed
//! size; every request and transfer has a deadline.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tenantry_files::endpoint::Endpoint;
use tenantry_files::limits::Limits;
use tenantry_files::local::LocalEndpoint;
use tenantry_files::migrate::{migrate, MigrateOptions};
use tenantry_files::preflight::OnInvalid;
use tenantry_files::report::MigrationReport;
use tenantry_files::retry::RetryPolicy;
use tenantry_files::webdav::{http_client, WebDavEndpoint};
use tenantry_testkit::hostile::{
    multistatus, repeat_body, respond, respond_head, trickle, HttpRequest, HttpServer,
};

const MS_HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#;

/// Far beyond what any of these tests lets through: a run that waits this long is stuck.
const STUCK: Duration = Duration::from_secs(90);

fn once() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    }
}

fn options(state: &Path) -> MigrateOptions {
    MigrateOptions {
        parallel: 2,
        dry_run: false,
        delete: false,
        checksum: false,
        on_invalid: OnInvalid::Rename,
        state_path: state.join("state.sqlite"),
        retry: once(),
        progress: false,
        counters: None,
    }
}

fn dav(url: &str, limits: Limits) -> Arc<dyn Endpoint> {
    Arc::new(
        WebDavEndpoint::new(http_client(2, None).unwrap(), url, None, None, once())
            .unwrap()
            .with_limits(limits),
    )
}

/// Migrates the server's `/lib/` into a fresh local folder (within `STUCK`); returns the
/// outcome and the target folder.
async fn run(
    server: &HttpServer,
    limits: Limits,
) -> (
    anyhow::Result<MigrationReport>,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let r = tokio::time::timeout(
        STUCK,
        migrate(
            dav(&server.url("/lib/"), limits),
            Arc::new(LocalEndpoint::new(&target)),
            "src",
            "dst",
            &options(tmp.path()),
        ),
    )
    .await
    .expect("the run did not end: a server held it");
    (r, tmp, target)
}

/// A listing of `/lib/` holding one file of `size` bytes, `f.bin`.
fn one_file(
    req: &HttpRequest,
    w: &mut dyn std::io::Write,
    size: u64,
) -> std::io::Result<tenantry_testkit::hostile::Then> {
    let body = multistatus(&[("/lib/", true, 0), ("/lib/f.bin", false, size)]);
    if req.path == "/lib/" {
        respond(w, 207, &[], body.as_bytes())
    } else {
        respond(w, 404, &[], b"")
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_download_longer_than_listed_fails_and_nothing_is_written() {
    // Listed with 6 bytes, served with 64 MiB.
    let server = HttpServer::start(|req, w| match req.method.as_str() {
        "PROPFIND" => one_file(req, w, 6),
        "GET" => {
            respond_head(w, 200, &[])?;
            repeat_body(w, &[b'x'; 64 * 1024], 1024)
        }
        _ => respond(w, 405, &[], b""),
    });
    let (report, _tmp, target) = run(&server, Limits::default()).await;
    let report = report.unwrap();
    assert_eq!(report.copied_files, 0, "{report:#?}");
    let failure = &report.failures[0];
    assert_eq!(failure.path, "f.bin");
    assert!(
        failure.error.contains("more than the 6 bytes it listed"),
        "{}",
        failure.error
    );
    // Neither the final name nor a temporary is left.
    assert_eq!(names_in(&target), Vec::<String>::new());
}

#[tokio::test]
async fn a_download_shorter_than_listed_is_recorded_as_sent() {
    let server = HttpServer::start(|req, w| match req.method.as_str() {
        "PROPFIND" => one_file(req, w, 100),
        "GET" => respond(w, 200, &[], b"short"),
        _ => respond(w, 405, &[], b""),
    });
    let (report, _tmp, target) = run(&server, Limits::default()).await;
    let report = report.unwrap();
    assert_eq!(report.copied_files, 1, "{report:#?}");
    assert_eq!(report.copied_bytes, 5);
    assert_eq!(std::fs::read(target.join("f.bin")).unwrap(), b"short");
}

fn short_deadlines() -> Limits {
    Limits {
        listing_deadline: Duration::from_secs(2),
        request_deadline: Duration::from_secs(2),
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_trickling_download_fails_at_its_deadline() {
    // One byte every 200 ms of a file listed with a million: about 55 hours at that rate.
    let server = HttpServer::start(|req, w| match req.method.as_str() {
        "PROPFIND" => one_file(req, w, 1_000_000),
        "GET" => {
            respond_head(w, 200, &[("Content-Length", "1000000")])?;
            trickle(w, b"x", Duration::from_millis(200))
        }
        _ => respond(w, 405, &[], b""),
    });
    let limits = Limits {
        min_rate: 1_000_000,
        ..short_deadlines()
    };
    let started = std::time::Instant::now();
    let (report, _tmp, target) = run(&server, limits).await;
    let report = report.unwrap();
    assert_eq!(report.copied_files, 0);
    assert!(
        report.failures[0].error.contains("timed out"),
        "{report:#?}"
    );
    assert_eq!(names_in(&target), Vec::<String>::new());
    // The deadline is 3 s (2 s + 1 MB at 1 MB/s); generous for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn a_trickling_listing_fails_at_its_deadline() {
    let server = HttpServer::start(|_, w| {
        respond_head(w, 207, &[("Content-Type", "application/xml")])?;
        trickle(w, MS_HEAD.as_bytes(), Duration::from_millis(200))
    });
    let (report, _tmp, _) = run(&server, short_deadlines()).await;
    let err = report.unwrap_err().to_string();
    assert!(
        err.contains("listing the source") && err.contains("timed out"),
        "{err}"
    );
}

#[tokio::test]
async fn ever_deeper_folders_stop_at_the_depth_cap() {
    // Every folder holds one more folder.
    let server = HttpServer::start(|req, w| {
        let child = format!("{}d/", req.path);
        let body = multistatus(&[(req.path.as_str(), true, 0), (child.as_str(), true, 0)]);
        respond(w, 207, &[], body.as_bytes())
    });
    let limits = Limits {
        max_depth: 40,
        ..Limits::default()
    };
    let (report, _tmp, target) = run(&server, limits).await;
    let err = report.unwrap_err().to_string();
    assert!(
        err.contains("more than 40 levels deep (--max-depth)"),
        "{err}"
    );
    let propfinds = server.requests().len();
    assert!(propfinds <= 41, "{propfinds} folders listed");
    assert_eq!(names_in(&target), Vec::<String>::new());
}

#[tokio::test]
async fn a_listing_that_multiplies_stops_at_max_entries() {
    // Every folder holds 30 folders: 30^n entries.
    let server = HttpServer::start(|req, w| {
        let children: Vec<String> = (0..30).map(|i| format!("{}f{i}/", req.path)).collect();
        let mut entries = vec![(req.path.as_str(), true, 0)];
        entries.extend(children.iter().map(|c| (c.as_str(), true, 0)));
        respond(w, 207, &[], multistatus(&entries).as_bytes())
    });
    let limits = Limits {
        max_entries: 5_000,
        ..Limits::default()
    };
    let (report, _tmp, _) = run(&server, limits).await;
    let err = report.unwrap_err().to_string();
    assert!(
        err.contains("more than 5000 entries (--max-entries)"),
        "{err}"
    );
    // About 5000 / 30 folders listed, not 30^n.
    assert!(server.requests().len() < 400, "{}", server.requests().len());
}

/// Runs the `tenantry-files` binary and returns its exit code, stderr and peak resident memory
/// in KiB (`VmHWM`, read from /proc while it runs; the peak only grows, so the last reading is
/// the peak up to a few milliseconds before the end).
fn run_binary_measured(args: &[&str]) -> (i32, String, u64) {
    let mut child = Command::new(support::bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code().unwrap_or(-1);
        }
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr, peak)
}

/// Peak memory allowed to the binary while a server sends a 256 MiB listing: the whole run
/// takes about 15 MB; reading the body whole took over 500 MB.
const PEAK_KIB: u64 = 64 * 1024;

#[test]
fn a_huge_listing_is_refused_in_bounded_memory() {
    // Entries without end (256 MiB of them), then a single text of 256 MiB.
    let entry = multistatus(&[("/lib/some-file-with-a-longish-name.txt", false, 1)]);
    let entry = entry
        .strip_prefix(MS_HEAD)
        .and_then(|e| e.strip_suffix("</D:multistatus>"))
        .unwrap()
        .repeat(1024);
    let server = HttpServer::start(move |req, w| {
        respond_head(w, 207, &[("Content-Type", "application/xml")])?;
        w.write_all(MS_HEAD.as_bytes())?;
        if req.path == "/many/" {
            repeat_body(w, entry.as_bytes(), (256 << 20) / entry.len() as u64)
        } else {
            w.write_all(b"<D:response><D:href>/huge/")?;
            repeat_body(w, &[b'a'; 1 << 20], 256)
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t");
    let state = tmp.path().join("s");
    for (path, want) in [
        ("/many/", "more than 1000 entries (--max-entries)"),
        ("/huge/", "an XML element or text over 1048576 bytes"),
    ] {
        let source = format!("webdav://127.0.0.1:{}{path}", server.port());
        let (code, stderr, peak_kib) = run_binary_measured(&[
            "migrate",
            "--source",
            &source,
            "--target",
            target.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--retries",
            "1",
            "--max-entries",
            "1000",
        ]);
        assert!(
            peak_kib < PEAK_KIB,
            "{path}: peak resident memory {peak_kib} KiB"
        );
        assert_eq!(code, 1, "{path}: {stderr}");
        assert!(stderr.contains(want), "{path}: {stderr}");
        eprintln!("{path}: peak resident memory {peak_kib} KiB");
    }
}

/// Listings in flight share the cap: eight folders answering at once cannot each hold
/// `--max-entries`.
#[test]
fn parallel_listings_share_the_entry_cap() {
    let server = HttpServer::start(move |req, w| {
        respond_head(w, 207, &[("Content-Type", "application/xml")])?;
        if req.path == "/lib/" {
            let dirs: Vec<String> = (0..8).map(|i| format!("/lib/d{i}/")).collect();
            let mut entries = vec![("/lib/", true, 0)];
            entries.extend(dirs.iter().map(|d| (d.as_str(), true, 0)));
            w.write_all(multistatus(&entries).as_bytes())?;
            return Ok(tenantry_testkit::hostile::Then::Close);
        }
        // 250 000 files in each folder, 64 bytes of name apiece.
        let mut head = vec![(req.path.as_str(), true, 0)];
        let names: Vec<String> = (0..1000)
            .map(|i| format!("{}{i:0>60}.txt", req.path))
            .collect();
        head.extend(names.iter().map(|n| (n.as_str(), false, 1)));
        let page = multistatus(&head);
        let page = page
            .strip_prefix(MS_HEAD)
            .and_then(|e| e.strip_suffix("</D:multistatus>"))
            .unwrap();
        w.write_all(MS_HEAD.as_bytes())?;
        // The same 1000 names again and again: the duplicates are only dropped after listing.
        repeat_body(w, page.as_bytes(), 250)?;
        w.write_all(b"</D:multistatus>")?;
        Ok(tenantry_testkit::hostile::Then::Close)
    });
    let tmp = tempfile::tempdir().unwrap();
    let source = server.url("/lib/").replace("http://", "webdav://");
    let (code, stderr, peak_kib) = run_binary_measured(&[
        "migrate",
        "--source",
        &source,
        "--target",
        tmp.path().join("t").to_str().unwrap(),
        "--state-dir",
        tmp.path().join("s").to_str().unwrap(),
        "--retries",
        "1",
        "--max-entries",
        "300000",
    ]);
    // Measured: about 80 MB with the shared cap; 390 MB when each answer had its own.
    assert!(peak_kib < 200 * 1024, "peak resident memory {peak_kib} KiB");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("more than 300000 entries (--max-entries)"),
        "{stderr}"
    );
}
