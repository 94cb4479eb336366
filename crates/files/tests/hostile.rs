//! A hostile WebDAV source (or a booby-trapped target folder) must never make a run read or
//! write outside the target: every listed path is checked segment by segment, refused entries
//! are named in the report, and the rest is copied.

use std::path::Path;
use std::sync::Arc;

use tenantry_files::endpoint::Endpoint;
use tenantry_files::local::LocalEndpoint;
use tenantry_files::migrate::{migrate, MigrateOptions};
use tenantry_files::preflight::OnInvalid;
use tenantry_files::retry::RetryPolicy;
use tenantry_files::webdav::{http_client, WebDavEndpoint};
use tenantry_testkit::faults::{kind, record};
use tenantry_testkit::hostile::{multistatus, respond, HttpServer};

const PAYLOAD: &[u8] = b"pwned\n";

/// Every way a listing has been seen to smuggle a path out of the folder being copied.
const HOSTILE_HREFS: &[&str] = &[
    "/lib/../escape-plain.txt",
    "/lib/a/../../escape-hidden.txt",
    "/lib/%2e%2e/escape-encoded.txt",
    "/lib/%2E%2E/%2e%2e/escape-deep.txt",
    "/lib/..%2Fescape-slash.txt",
    "/lib/..%2f..%2fescape-slash2.txt",
    "/lib//escape-empty.txt",
    "/lib/nul%00.txt",
    "/escape-outside-root.txt",
    "http://evil.example/lib/escape-other-host.txt",
];

/// A source that lists one good file, one good folder with a good file, and every hostile
/// href above (in the root and in the sub-folder), and serves `PAYLOAD` for any GET.
fn hostile_source() -> HttpServer {
    HttpServer::start(|req, w| match req.method.as_str() {
        "PROPFIND" => {
            let mut entries: Vec<(&str, bool, u64)> = vec![(req.path.as_str(), true, 0)];
            if req.path == "/lib/" {
                entries.push(("/lib/ok.txt", false, PAYLOAD.len() as u64));
                entries.push(("/lib/sub/", true, 0));
                entries.extend(
                    HOSTILE_HREFS
                        .iter()
                        .map(|h| (*h, false, PAYLOAD.len() as u64)),
                );
            } else if req.path == "/lib/sub/" {
                entries.push(("/lib/sub/fine.txt", false, PAYLOAD.len() as u64));
                entries.push(("/lib/sub/../../../escape-from-sub.txt", false, 6));
                // A child of another folder: would make two folders list each other forever.
                entries.push(("/lib/", true, 0));
                // Deeper down, as from a server answering Depth 1 as infinity: left to the
                // listing of its own folder (not listed here, so not copied).
                entries.push(("/lib/sub/deeper/x.txt", false, 6));
            } else {
                return respond(w, 404, &[], b"");
            }
            respond(
                w,
                207,
                &[("Content-Type", "application/xml")],
                multistatus(&entries).as_bytes(),
            )
        }
        "GET" => respond(w, 200, &[], PAYLOAD),
        _ => respond(w, 405, &[], b""),
    })
}

fn options(state: &Path) -> MigrateOptions {
    MigrateOptions {
        parallel: 4,
        dry_run: false,
        delete: false,
        checksum: false,
        on_invalid: OnInvalid::Rename,
        state_path: state.join("state.sqlite"),
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        progress: false,
        counters: None,
    }
}

fn dav(url: &str) -> Arc<dyn Endpoint> {
    Arc::new(
        WebDavEndpoint::new(
            http_client(4, None).unwrap(),
            url,
            None,
            None,
            RetryPolicy::default(),
        )
        .unwrap(),
    )
}

/// Every file below `dir`, relative, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_hostile_listing_cannot_write_outside_the_target() {
    let server = hostile_source();
    let tmp = tempfile::tempdir().unwrap();
    // The target sits three levels deep, so `..` chains have somewhere to land if they escape.
    let target_dir = tmp.path().join("a/b/target");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::create_dir_all(&state).unwrap();

    let report = migrate(
        dav(&server.url("/lib/")),
        Arc::new(LocalEndpoint::new(&target_dir)),
        "src",
        "dst",
        &options(&state),
    )
    .await
    .unwrap();

    // Nothing anywhere in the temporary tree but the good files (and the state store).
    let everything: Vec<String> = files_below(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("state/"))
        .collect();
    assert_eq!(
        everything,
        vec!["a/b/target/ok.txt", "a/b/target/sub/fine.txt"],
        "a listed path escaped the target: {report:#?}"
    );
    assert_eq!(report.copied_files, 2);
    // Each refused entry is named, with the reason; the run is not a success.
    assert!(!report.ok());
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("{} {}", f.path, f.error))
        .collect();
    // Each named exactly as the server sent it; the loop back to the root, too.
    for href in HOSTILE_HREFS
        .iter()
        .chain(&["/lib/sub/../../../escape-from-sub.txt", "/lib/"])
    {
        assert!(
            failures
                .iter()
                .any(|f| f.starts_with(&format!("{href:?} "))),
            "{href} not reported: {failures:#?}"
        );
    }
    assert!(
        !failures.iter().any(|f| f.contains("deeper")),
        "a descendant listed too deep is left to its own folder, not refused: {failures:#?}"
    );
    assert!(failures.iter().all(|f| f.contains("source listing")));
    // The loop back to /lib/ was not followed: each folder was listed once.
    let propfinds = server
        .requests()
        .iter()
        .filter(|r| r.method == "PROPFIND")
        .count();
    assert_eq!(propfinds, 2);
    record(
        kind::BAD_INPUT,
        "files: hostile WebDAV listing (.., a/../.., %2e%2e, %2F, NUL, //, other host, outside the root, a loop)",
        &format!(
            "{} hostile hrefs refused and named, 0 files outside the target",
            HOSTILE_HREFS.len() + 2
        ),
        0,
    );
}

#[tokio::test]
async fn a_local_target_does_not_follow_symbolic_links_out_of_its_root() {
    let server = hostile_source();
    let tmp = tempfile::tempdir().unwrap();
    let target_dir = tmp.path().join("target");
    let outside = tmp.path().join("outside");
    let state = tmp.path().join("state");
    for d in [&target_dir, &outside, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Someone left a link inside the target that points elsewhere.
    std::os::unix::fs::symlink(&outside, target_dir.join("sub")).unwrap();

    let report = migrate(
        dav(&server.url("/lib/")),
        Arc::new(LocalEndpoint::new(&target_dir)),
        "src",
        "dst",
        &options(&state),
    )
    .await
    .unwrap();

    assert_eq!(files_below(&outside), Vec::<String>::new());
    let failure = report
        .failures
        .iter()
        .find(|f| f.path == "sub/fine.txt")
        .unwrap_or_else(|| panic!("sub/fine.txt not refused: {report:#?}"));
    assert!(failure.error.contains("symbolic link"), "{}", failure.error);
    assert!(target_dir.join("ok.txt").is_file());
}

#[tokio::test]
async fn endpoints_refuse_unsafe_paths_whoever_asks() {
    let tmp = tempfile::tempdir().unwrap();
    let local = LocalEndpoint::new(tmp.path().join("root"));
    let body = || -> tenantry_files::endpoint::ByteStream {
        Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
            PAYLOAD,
        ))]))
    };
    for bad in ["../x", "a/../../x", "/etc/x", "a//b", ".."] {
        assert!(
            local.put(bad, 6, Default::default(), body()).await.is_err(),
            "{bad}"
        );
        assert!(local.mkdir(bad).await.is_err(), "{bad}");
        assert!(local.delete(bad).await.is_err(), "{bad}");
        assert!(local.read(bad, 6).await.is_err(), "{bad}");
    }
    assert_eq!(files_below(tmp.path()), Vec::<String>::new());

    let server = HttpServer::start(|_, w| respond(w, 201, &[], b""));
    let remote = dav(&server.url("/lib/"));
    for bad in ["../x", "a/../../x", "/etc/x"] {
        assert!(
            remote
                .put(bad, 6, Default::default(), body())
                .await
                .is_err(),
            "{bad}"
        );
        assert!(remote.mkdir(bad).await.is_err(), "{bad}");
        assert!(remote.delete(bad).await.is_err(), "{bad}");
    }
    assert!(server.requests().is_empty(), "a request went out");
}

#[tokio::test]
async fn delete_is_not_applied_when_the_source_listing_refused_entries() {
    let server = hostile_source();
    let tmp = tempfile::tempdir().unwrap();
    let target_dir = tmp.path().join("target");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(target_dir.join("kept")).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(target_dir.join("kept/old.txt"), b"old").unwrap();
    let mut opts = options(&state);
    opts.delete = true;

    let report = migrate(
        dav(&server.url("/lib/")),
        Arc::new(LocalEndpoint::new(&target_dir)),
        "src",
        "dst",
        &opts,
    )
    .await
    .unwrap();

    // A refused folder may be exactly what the target holds: nothing is deleted on a guess.
    assert!(target_dir.join("kept/old.txt").is_file(), "{report:#?}");
    assert!(report.deleted.is_empty());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("--delete was not applied")),
        "{:?}",
        report.notes
    );
    assert!(target_dir.join("ok.txt").is_file());
}
