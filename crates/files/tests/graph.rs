//! SharePoint and OneDrive through Microsoft Graph, against the test kit's documentation-faithful
//! fake (`tenantry_testkit::graph_fake`): Microsoft's services cannot run here. The shipped code
//! path is the real one, pointed at the fake by `TENANTRY_GRAPH_URL` and `TENANTRY_AUTHORITY`.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

const HOST: &str = "contoso.sharepoint.com";

fn command(fake: &FakeGraph, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .args(["--tenant-id", TENANT, "--client-id", CLIENT_ID])
        .env("TENANTRY_GRAPH_URL", fake.url())
        .env("TENANTRY_AUTHORITY", fake.url())
        .env("TENANTRY_CLIENT_SECRET", CLIENT_SECRET);
    c
}

fn run(fake: &FakeGraph, args: &[&str]) -> Output {
    command(fake, args).output().unwrap()
}

fn migrate_g(
    fake: &FakeGraph,
    source: &str,
    target: &str,
    state: &Path,
) -> (i32, serde_json::Value) {
    let st = state.to_str().unwrap();
    let args = [
        "migrate",
        "--source",
        source,
        "--target",
        target,
        "--state-dir",
        st,
        "--json",
    ];
    let out = run(fake, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(CLIENT_SECRET), "secret leaked: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(CLIENT_SECRET), "secret leaked: {stdout}");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stdout: {stdout} stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), v)
}

fn library(fake: &FakeGraph) -> (String, String) {
    let drive = fake.add_site(HOST, "Finance");
    (
        drive,
        format!("sharepoint://{HOST}/sites/Finance/Shared%20Documents/Migrated"),
    )
}

fn assert_ok(code: i32, rep: &serde_json::Value) {
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["failures"].as_array().unwrap().len(), 0, "{rep:#}");
}

#[test]
fn local_to_sharepoint_and_back_is_identical_with_times_and_a_rerun_copies_nothing() {
    let fake = FakeGraph::start(FakeGraphOptions {
        rewrite_office_files: false,
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    // Larger than one 5 MiB fragment and not a multiple of 320 KiB.
    let big: Vec<u8> = (0..12_000_123u32)
        .map(|i| (i % 241) as u8 ^ (i >> 13) as u8)
        .collect();
    write_file(&src, "big/archive.bin", &big, 1_234_567_890);
    let state = tmp.path().join("state");

    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 7, "{rep:#}");
    assert_eq!(rep["mtime"], "kept", "{rep:#}");
    let f = fake.file(&drive, "Migrated/big/archive.bin").unwrap();
    assert!(f.content == big, "large file stored byte for byte");
    assert_eq!(f.modified.unix_timestamp(), 1_234_567_890);
    assert_eq!(
        fake.file(&drive, "Migrated/top level.txt")
            .unwrap()
            .modified
            .unix_timestamp(),
        1_650_000_000
    );
    assert!(fake
        .paths(&drive)
        .contains(&"Migrated/Empty Folder/also empty".to_string()));
    let s = fake.stats();
    assert_eq!(s.authorization_on_upload_url, 0);
    assert_eq!(s.range_errors, 0);
    // Every file with content went through a session (times kept); the big one in 3 fragments.
    assert_eq!(s.sessions_created, 6);
    assert!(
        fake.fragments()
            .iter()
            .filter(|f| f.path == "archive.bin")
            .count()
            == 3
    );

    // A re-run uploads nothing.
    let before = fake.stats();
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 0, "{rep:#}");
    let after = fake.stats();
    assert_eq!(after.fragments_accepted, before.fragments_accepted);
    assert_eq!(after.simple_uploads, before.simple_uploads);

    // SharePoint → local: the same tree, the same bytes, the same times.
    let back = tmp.path().join("back");
    let (code, rep) = migrate_g(&fake, &lib, back.to_str().unwrap(), &state);
    assert_ok(code, &rep);
    assert_same_tree(&src, &back, true);
    let (code, rep) = migrate_g(&fake, &lib, back.to_str().unwrap(), &state);
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 0, "{rep:#}");

    // An edit on SharePoint is found by the delta query and copied alone.
    let delta_before = fake.stats().delta_requests;
    fake.put_file(
        &drive,
        "Migrated/top level.txt",
        b"edited online",
        time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    );
    let (code, rep) = migrate_g(&fake, &lib, back.to_str().unwrap(), &state);
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 1, "{rep:#}");
    assert_eq!(
        std::fs::read(back.join("top level.txt")).unwrap(),
        b"edited online"
    );
    // One page of changes: the saved delta link, not a full enumeration of the drive.
    assert_eq!(fake.stats().delta_requests - delta_before, 1);
}

#[test]
fn onedrive_target_and_files_the_service_rewrites_are_reported_once() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_user("adele@contoso.com");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let state = tmp.path().join("state");
    let target = "onedrive://adele@contoso.com/From%20the%20share";
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), target, &state);
    assert_ok(code, &rep);
    let notes = rep["notes"].to_string();
    let docx = fake
        .file(
            &drive,
            "From the share/Verträge 2019/Angebot Müller & Söhne.docx",
        )
        .unwrap();
    let sent = tenantry_graph::quickxor::quickxor_base64(b"contract v1");
    assert!(notes.contains("changed by the service"), "{notes}");
    assert!(notes.contains(&sent), "our hash is named: {notes}");
    assert!(notes.contains(&docx.quick_xor_hash), "theirs too: {notes}");
    // Not uploaded again: the rewrite is remembered.
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), target, &state);
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 0, "{rep:#}");
    assert!(!rep["notes"].to_string().contains("changed by the service"));
}

#[test]
fn a_run_killed_mid_file_resumes_at_the_next_expected_range() {
    let fake = FakeGraph::start(FakeGraphOptions {
        fragment_delay: Duration::from_millis(300),
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let big: Vec<u8> = (0..31_000_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
    write_file(&src, "video.mp4", &big, 1_111_111_111);
    let state = tmp.path().join("state");
    let st = state.to_str().unwrap();
    let args = [
        "migrate",
        "--source",
        src.to_str().unwrap(),
        "--target",
        &lib,
        "--state-dir",
        st,
        "--json",
    ];
    let mut child = command(&fake, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once the session holds two fragments (of six).
    let deadline = Instant::now() + Duration::from_secs(120);
    let received = loop {
        let r = fake
            .open_sessions()
            .into_iter()
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0);
        if r >= 2 * 5 * 1024 * 1024 {
            break r;
        }
        assert!(Instant::now() < deadline, "the upload never got going");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed process may have had one more fragment in flight.
    std::thread::sleep(Duration::from_millis(500));
    let at_kill = fake.open_sessions()[0].1;
    assert!(at_kill >= received && at_kill < big.len() as u64);
    let sessions_before = fake.stats().sessions_created;

    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    let s = fake.stats();
    assert_eq!(
        s.sessions_created, sessions_before,
        "the saved session was resumed, not replaced"
    );
    assert_eq!(s.range_errors, 0);
    let frags = fake.fragments();
    let resumed = frags.iter().find(|f| f.start >= at_kill).unwrap();
    assert_eq!(resumed.start, at_kill, "resumed at nextExpectedRanges");
    assert_eq!(
        frags.iter().filter(|f| f.start < at_kill).count() as u64,
        at_kill / (5 * 1024 * 1024),
        "no byte before the kill point was sent twice"
    );
    let f = fake.file(&drive, "Migrated/video.mp4").unwrap();
    assert!(f.content == big);
    assert_eq!(f.modified.unix_timestamp(), 1_111_111_111);
}

#[test]
fn an_expired_session_restarts_the_file_cleanly() {
    let fake = FakeGraph::start(FakeGraphOptions {
        fragment_delay: Duration::from_millis(300),
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let big: Vec<u8> = (0..16_000_000u32).map(|i| (i / 3) as u8).collect();
    write_file(&src, "x.bin", &big, 1_000_000_000);
    let state = tmp.path().join("state");
    let st = state.to_str().unwrap();
    let args = [
        "migrate",
        "--source",
        src.to_str().unwrap(),
        "--target",
        &lib,
        "--state-dir",
        st,
        "--json",
    ];
    let mut child = command(&fake, &args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while fake.open_sessions().iter().all(|(_, n)| *n == 0) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    fake.expire_sessions();
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    assert_eq!(
        fake.stats().sessions_created,
        2,
        "a new session after the expired one"
    );
    assert!(fake.file(&drive, "Migrated/x.bin").unwrap().content == big);
}

fn many_files(root: &Path, n: usize) {
    for i in 0..n {
        write_file(
            root,
            &format!("d{}/file {i}.txt", i % 5),
            format!("content of file {i}\n")
                .repeat(i % 7 + 1)
                .as_bytes(),
            1_500_000_000 + i as u64,
        );
    }
}

#[test]
fn throttling_slows_everything_down_without_a_retry_storm() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    many_files(&src, 60);
    // Baseline without throttling.
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let (_, lib) = library(&fake);
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &tmp.path().join("s1"));
    assert_ok(code, &rep);
    let baseline = fake.stats().requests;
    drop(fake);

    // One request in 20 (5%) answered 429 + Retry-After: 1.
    let fake = FakeGraph::start(FakeGraphOptions {
        throttle_every: Some(20),
        retry_after_secs: 1,
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &tmp.path().join("s2"));
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 60);
    let s = fake.stats();
    assert!(s.throttle_windows > 0);
    // Every worker waited out Retry-After: no request arrived in a throttled window except
    // those already in flight when the 429 was sent.
    assert_eq!(s.ignored_retry_after, 0, "{s:?}");
    // Each 429 costs one repeat and nothing more: requests grow like the throttled share.
    assert!(
        s.requests <= baseline + s.throttled + 2,
        "requests {} vs baseline {baseline} with {} throttled",
        s.requests,
        s.throttled
    );
    assert!(
        rep["notes"].to_string().contains("throttled this tenant"),
        "{rep:#}"
    );
    assert_eq!(
        fake.paths(&drive)
            .iter()
            .filter(|p| p.ends_with(".txt"))
            .count(),
        60
    );
}

#[test]
fn an_expired_token_is_refreshed_mid_run() {
    let fake = FakeGraph::start(FakeGraphOptions {
        // Refreshed at three quarters of its life; the run takes several lifetimes.
        token_lifetime: Duration::from_secs(1),
        fragment_delay: Duration::from_millis(400),
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    many_files(&src, 40);
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &tmp.path().join("s"));
    assert_ok(code, &rep);
    assert_eq!(rep["copied_files"], 40);
    let s = fake.stats();
    assert!(s.tokens_issued >= 2, "tokens issued: {}", s.tokens_issued);
    assert_eq!(
        fake.paths(&drive)
            .iter()
            .filter(|p| p.ends_with(".txt"))
            .count(),
        40
    );
}

#[test]
fn bad_credentials_and_locations_are_clear_errors() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let (_, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let secret_file = tmp.path().join("secret");
    std::fs::write(&secret_file, "wrong-secret-value\n").unwrap();
    let out = run(
        &fake,
        &[
            "check",
            &lib,
            "--client-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("invalid_client") && err.contains("client-request-id"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-value"), "{err}");
    let wrong_lib = format!("sharepoint://{HOST}/sites/Finance/Nope");
    let out = run(&fake, &["check", &wrong_lib]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no library named") && err.contains("Documents"),
        "{err}"
    );
    // A source folder that is not there is an error, not an empty library.
    let missing = format!("sharepoint://{HOST}/sites/Finance/Documents/Typo");
    let out = run(&fake, &["check", &missing]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("no folder \"Typo\""), "{err}");
    // The library's title works as well as its URL name.
    let by_title = format!("sharepoint://{HOST}/sites/Finance/Documents");
    let out = run(&fake, &["check", &by_title]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn webdav_to_sharepoint_is_identical_with_times() {
    let dav = Apache::start();
    sample_tree(&dav.root());
    dav.fix_owner();
    let fake = FakeGraph::start(FakeGraphOptions {
        rewrite_office_files: false,
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let st = state.to_str().unwrap();
    let url = dav.url();
    let args = [
        "migrate",
        "--source",
        &url,
        "--target",
        &lib,
        "--state-dir",
        st,
        "--json",
    ];
    let out = command(&fake, &args)
        .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_ok(out.status.code().unwrap_or(-1), &rep);
    assert_eq!(rep["copied_files"], 6, "{rep:#}");
    // Every file of the WebDAV tree is on SharePoint byte for byte, with its time (WebDAV has
    // whole seconds, as SharePoint keeps).
    for (rel, node) in fingerprint(&dav.root()) {
        if node.is_dir {
            continue;
        }
        let f = fake.file(&drive, &format!("Migrated/{rel}")).unwrap();
        assert_eq!(
            f.content,
            std::fs::read(dav.root().join(&rel)).unwrap(),
            "{rel}"
        );
        assert_eq!(f.modified.unix_timestamp() as u64, node.mtime, "{rel}");
    }
}

/// SharePoint's 400-character limit counts the site, the library and the target folder: a path
/// that fits on its own is refused below a long target folder, before anything moves.
#[test]
fn the_path_limit_counts_the_site_library_and_folder() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.add_site(HOST, "Finance");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let deep = src.join("a".repeat(200));
    std::fs::create_dir_all(&deep).unwrap();
    // 200 + 1 + 150 = 351 characters below the target folder: with `sites/Finance/Shared
    // Documents/In/` (34) in front, 385 — it fits.
    std::fs::write(deep.join("b".repeat(150)), b"fits alone").unwrap();
    let short = format!("sharepoint://{HOST}/sites/Finance/Shared%20Documents/In");
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &short, &tmp.path().join("s1"));
    assert_ok(code, &rep);
    // `sites/Finance/Shared Documents/` (31) + a 20-character folder + `/` = 52: 403.
    let long = format!(
        "sharepoint://{HOST}/sites/Finance/Shared%20Documents/{}",
        "c".repeat(20)
    );
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &long, &tmp.path().join("s2"));
    assert_ne!(code, 0, "{rep:#}");
    assert_eq!(rep["refused_by_preflight"], true, "{rep:#}");
    let finding = &rep["findings"][0];
    assert_eq!(finding["problems"][0]["kind"], "path_too_long", "{rep:#}");
    assert_eq!(finding["problems"][0]["chars"], 351 + 52, "{rep:#}");
    assert_eq!(rep["copied_files"], 0);
}

/// The app's certificate instead of a secret (`--client-certificate`: one PEM file with the
/// certificate and its key); the fake verifies the signed assertion as Entra ID does.
#[test]
fn a_certificate_instead_of_a_secret_migrates_to_sharepoint() {
    use tenantry_testkit::tls::app_certificate;
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let cert = app_certificate(tmp.path(), "app");
    let stranger = app_certificate(tmp.path(), "stranger");
    fake.register_certificate(&cert.certificate_pem);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/report.txt"), b"quarterly numbers").unwrap();
    let key_lines = |pem: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(pem)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string)
            .collect()
    };
    let with_cert = |pem_file: &Path, extra: &[&str]| {
        let mut c = command(&fake, extra);
        c.env_remove("TENANTRY_CLIENT_SECRET")
            .arg("--client-certificate")
            .arg(pem_file);
        c.output().unwrap()
    };
    let state = tmp.path().join("state");
    let args = [
        "migrate",
        "--source",
        src.to_str().unwrap(),
        "--target",
        &lib,
        "--state-dir",
        state.to_str().unwrap(),
        "--json",
    ];
    let out = with_cert(&cert.pem_file, &args);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(
        fake.file(&drive, "Migrated/sub/report.txt")
            .unwrap()
            .content,
        b"quarterly numbers"
    );
    for line in key_lines(&cert.key_pem) {
        assert!(!shown.contains(&line), "key material in the output");
    }

    // A certificate not registered on the app: refused by the token endpoint, and the error
    // says so without the key or the assertion.
    let out = with_cert(&stranger.pem_file, &["check", &lib]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("AADSTS700027") && err.contains("invalid_client"),
        "{err}"
    );
    assert!(!err.contains("eyJ"), "an assertion in the error: {err}");
    for line in key_lines(&stranger.key_pem) {
        assert!(!err.contains(&line), "key material in the error: {err}");
    }

    // A certificate and a secret for the same side: which one was meant?
    let mut c = command(&fake, &["check", &lib]);
    let out = c
        .arg("--client-certificate")
        .arg(&cert.pem_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("TENANTRY_CLIENT_SECRET") && err.contains("--client-certificate"),
        "{err}"
    );
    assert!(!err.contains(CLIENT_SECRET), "{err}");

    // Neither: the error names both ways.
    let out = command(&fake, &["check", &lib])
        .env_remove("TENANTRY_CLIENT_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("--client-secret-file") && err.contains("--client-certificate"),
        "{err}"
    );

    // Only the key of one certificate with another's certificate: named before any request.
    let mixed = tmp.path().join("mixed.pem");
    std::fs::write(
        &mixed,
        [stranger.key_pem.as_slice(), &cert.certificate_pem].concat(),
    )
    .unwrap();
    let before = fake.stats().tokens_issued;
    let out = with_cert(&mixed, &["check", &lib]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        err.matches("does not belong to the certificate").count(),
        1,
        "said once: {err}"
    );
    assert_eq!(fake.stats().tokens_issued, before);
}

/// Seconds since the epoch of a local file's birth time and modification time.
fn local_times(p: &Path) -> (i64, i64) {
    let md = std::fs::metadata(p).unwrap();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    };
    let born = md
        .created()
        .expect("this test needs a file system that records birth times (statx)");
    (secs(born), secs(md.modified().unwrap()))
}

/// Every folder and file below `root`, relative, `/`-separated.
fn local_paths(root: &Path) -> Vec<String> {
    fingerprint(root).into_keys().collect()
}

/// fileSystemInfo is what a client sets, apart from the service's own times
/// (learn.microsoft.com/graph/api/resources/filesysteminfo): files keep both times through an
/// upload session, through a small PUT followed by a PATCH, and folders get theirs after their
/// content is written (writing a child moves its folder's time). SharePoint → local brings
/// the modification times of files and folders back.
#[test]
fn creation_and_modification_times_reach_sharepoint_on_files_and_folders_and_come_back() {
    let fake = FakeGraph::start(FakeGraphOptions {
        rewrite_office_files: false,
        ..Default::default()
    });
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
    write_file(&src, "a/b/big.bin", &big, 1_234_567_890);
    // Folder times last, deepest first, as a user's tree would have them.
    let folders = [
        ("a/b/c/d", 1_100_000_000),
        ("a/b/c", 1_100_000_100),
        ("a/b", 1_100_000_200),
        ("a", 1_100_000_300),
        ("Empty Folder/also empty", 1_100_000_400),
        ("Empty Folder", 1_100_000_500),
        ("Verträge 2019", 1_100_000_600),
        ("日本語", 1_100_000_700),
    ];
    for (d, t) in folders {
        set_mtime(&src.join(d), t);
    }
    // Uploads happen seconds after the files were born, so an upload time stamped as
    // "created" cannot pass for the birth time.
    std::thread::sleep(Duration::from_millis(2100));
    let state = tmp.path().join("state");
    let paths = local_paths(&src);
    let check = |folder: &str| {
        for rel in &paths {
            let (born, modified) = local_times(&src.join(rel));
            let t = fake
                .times(&drive, &format!("{folder}/{rel}"))
                .unwrap_or_else(|| panic!("{rel} missing"));
            assert_eq!(t.modified.unix_timestamp(), modified, "modified of {rel}");
            assert_eq!(t.created.unix_timestamp(), born, "created of {rel}");
            assert!(
                t.service_created.unix_timestamp() > born,
                "the service's own createdDateTime stays the upload time ({rel})"
            );
        }
    };

    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    check("Migrated");

    // Small files in one PUT: their times follow in a PATCH of fileSystemInfo.
    let lib2 = format!("sharepoint://{HOST}/sites/Finance/Shared%20Documents/Put");
    let st = state.to_str().unwrap();
    let simple_before = fake.stats().simple_uploads;
    let out = run(
        &fake,
        &[
            "migrate",
            "--source",
            src.to_str().unwrap(),
            "--target",
            &lib2,
            "--state-dir",
            st,
            "--graph-small-files",
            "put",
            "--json",
        ],
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ok(out.status.code().unwrap(), &rep);
    assert_eq!(rep["mtime"], "kept", "{rep:#}");
    assert_eq!(
        fake.stats().simple_uploads - simple_before,
        6,
        "small files in one PUT"
    );
    check("Put");

    // SharePoint → local: files and folders keep their modification times.
    let back = tmp.path().join("back");
    let (code, rep) = migrate_g(&fake, &lib, back.to_str().unwrap(), &state);
    assert_ok(code, &rep);
    assert_same_tree(&src, &back, true);
    for rel in &paths {
        assert_eq!(
            local_times(&back.join(rel)).1,
            local_times(&src.join(rel)).1,
            "modified of {rel} after the round trip"
        );
    }
}

/// A library whose times were set by users' sync clients: SharePoint → local keeps them on
/// files and folders, and an incremental run after an online edit keeps the folder's new time.
#[test]
fn sharepoint_times_are_kept_on_local_files_and_folders() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_user("adele@contoso.com");
    let at = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).unwrap();
    fake.put_file(
        &drive,
        "Plans/2019/q1.txt",
        b"first quarter",
        at(1_550_000_000),
    );
    fake.put_file(
        &drive,
        "Plans/2019/q2.txt",
        b"second quarter",
        at(1_560_000_000),
    );
    fake.put_file(&drive, "Plans/notes.txt", b"notes", at(1_570_000_000));
    fake.set_times(&drive, "Plans/2019", at(1_500_000_000), at(1_580_000_000));
    fake.set_times(&drive, "Plans", at(1_400_000_000), at(1_590_000_000));
    let tmp = tempfile::tempdir().unwrap();
    let back = tmp.path().join("back");
    let state = tmp.path().join("state");
    let source = "onedrive://adele@contoso.com/";
    let (code, rep) = migrate_g(&fake, source, back.to_str().unwrap(), &state);
    assert_ok(code, &rep);
    for (rel, want) in [
        ("Plans", 1_590_000_000),
        ("Plans/2019", 1_580_000_000),
        ("Plans/2019/q1.txt", 1_550_000_000),
        ("Plans/2019/q2.txt", 1_560_000_000),
        ("Plans/notes.txt", 1_570_000_000),
    ] {
        assert_eq!(local_times(&back.join(rel)).1, want, "modified of {rel}");
    }
}

/// `verify` against SharePoint compares the quickXorHash the service reports with one computed
/// over the other side while reading it: nothing is downloaded from the service. A file whose
/// bytes changed in the library is named; the files SharePoint rewrote after upload (the run
/// recorded them) are reported as changed by the service, not as differences.
#[test]
fn verify_compares_the_services_hash_and_downloads_nothing() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let state = tmp.path().join("state");
    let st = state.to_str().unwrap();
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    let verify = |source: &str, target: &str| {
        let out = run(
            &fake,
            &[
                "verify",
                "--source",
                source,
                "--target",
                target,
                "--state-dir",
                st,
                "--json",
            ],
        );
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        (out.status.code().unwrap(), rep)
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };

    let downloads = fake.stats().downloads;
    let (code, rep) = verify(src.to_str().unwrap(), &lib);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["files_compared"], 6, "{rep:#}");
    assert_eq!(rep["compared_by_service_hash"], 6, "{rep:#}");
    assert_eq!(
        names(&rep["changed_by_service"]),
        [
            "Verträge 2019/Angebot Müller & Söhne.docx",
            "Verträge 2019/résumé #2 (final) 100%.pdf"
        ],
        "{rep:#}"
    );
    assert!(rep["content_mismatch"].as_array().unwrap().is_empty());

    // Bytes changed in storage, same size: only the service's hash shows it.
    fake.corrupt(&drive, "Migrated/a/b/c/d/deep file+plus.txt", b"DEEP");
    let (code, rep) = verify(src.to_str().unwrap(), &lib);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(
        names(&rep["content_mismatch"]),
        ["a/b/c/d/deep file+plus.txt"],
        "{rep:#}"
    );
    // The other direction reads the local side only, too.
    let (code, rep) = verify(&lib, src.to_str().unwrap());
    assert_eq!(code, 1, "{rep:#}");
    assert!(names(&rep["content_mismatch"]).contains(&"a/b/c/d/deep file+plus.txt".to_string()));
    assert_eq!(
        fake.stats().downloads,
        downloads,
        "verify downloaded from the service"
    );
}

/// Folder times go through JSON batching (learn.microsoft.com/graph/json-batching): 50 touched
/// folders on two levels cost one batch per 20 folders of a level (3 + 2 requests), not one PATCH
/// each, and every folder keeps its time (each level is its own batch: a parent after its
/// children, since Graph runs a batch's requests in no order).
#[test]
fn folder_times_are_set_in_batches_level_by_level() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let (drive, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut folders = Vec::new();
    for i in 0..25 {
        let top = format!("dir{i:02}");
        let sub = format!("{top}/sub");
        write_file(&src, &format!("{sub}/f.txt"), b"x", 1_500_000_000);
        folders.push((sub, 1_200_000_000 + i));
        folders.push((top, 1_300_000_000 + i));
    }
    for (d, t) in &folders {
        set_mtime(&src.join(d), *t);
    }
    let state = tmp.path().join("state");
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    for (d, t) in &folders {
        let got = fake.times(&drive, &format!("Migrated/{d}")).unwrap();
        assert_eq!(got.modified.unix_timestamp(), *t as i64, "modified of {d}");
    }
    let s = fake.stats();
    // 25 folders at depth 2 → 2 batches; 25 at depth 1 → 2 batches.
    assert_eq!(
        s.batched_requests, 50,
        "every touched folder stamped in a batch"
    );
    assert_eq!(s.batches, 4, "⌈25/20⌉ batches per level, two levels");
}

/// `verify` only reads the state store: one written before creation times were kept stays as
/// it is — not upgraded, its delta link not dropped (an upgrade would make the next migration
/// list the library in full once more) — and the files the service rewrote are still read
/// from it.
#[test]
fn verify_reads_an_old_state_store_without_upgrading_it() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let (_, lib) = library(&fake);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_tree(&src);
    let state = tmp.path().join("state");
    let (code, rep) = migrate_g(&fake, src.to_str().unwrap(), &lib, &state);
    assert_ok(code, &rep);
    let file = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .expect("a state store");
    // As a version from before creation times wrote it.
    {
        let c = rusqlite::Connection::open(&file).unwrap();
        c.execute_batch("ALTER TABLE graph_items DROP COLUMN created_ns")
            .unwrap();
        let links: i64 = c
            .query_row("SELECT count(*) FROM graph_delta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(links, 1, "the migration saved its delta link");
    }
    let bytes = std::fs::read(&file).unwrap();

    let out = run(
        &fake,
        &[
            "verify",
            "--source",
            src.to_str().unwrap(),
            "--target",
            &lib,
            "--state-dir",
            state.to_str().unwrap(),
            "--json",
        ],
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{rep:#}");
    assert_eq!(
        rep["changed_by_service"].as_array().unwrap().len(),
        2,
        "read from the old store: {rep:#}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the store was written"
    );
    let c = rusqlite::Connection::open(&file).unwrap();
    let links: i64 = c
        .query_row("SELECT count(*) FROM graph_delta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(links, 1, "the delta link is kept for the next migration");
}
