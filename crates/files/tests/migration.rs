//! End-to-end migrations against real servers (Apache mod_dav, wsgidav) and local folders,
//! through the `tenantry-files` binary.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tenantry_testkit::faults::{kind, record};

fn copied(v: &serde_json::Value) -> u64 {
    v["copied_files"].as_u64().unwrap()
}

#[test]
fn local_to_local_keeps_content_structure_and_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst, st) = (
        t.path().join("src"),
        t.path().join("dst"),
        t.path().join("state"),
    );
    sample_tree(&src);
    let (code, v) = migrate(src.to_str().unwrap(), dst.to_str().unwrap(), &st, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(copied(&v), 6);
    assert_eq!(v["mtime"], "kept");
    assert_same_tree(&src, &dst, true);
    // Folder times are kept too (set after their content was written).
    let same_folder_times = || {
        let (fs, fd) = (fingerprint(&src), fingerprint(&dst));
        for (k, n) in fs.iter().filter(|(_, n)| n.is_dir) {
            assert_eq!(n.mtime, fd[k].mtime, "folder time of {k}");
        }
    };
    same_folder_times();
    // A re-run that rewrites a file deep down restamps the folders it touched.
    write_file(&src, "a/b/c/d/deep file+plus.txt", b"DEEP", 1_500_000_001);
    let (code, v) = migrate(src.to_str().unwrap(), dst.to_str().unwrap(), &st, &[]);
    assert_eq!((code, copied(&v)), (0, 1), "{v}");
    same_folder_times();
    let (code, rep) = verify(src.to_str().unwrap(), dst.to_str().unwrap());
    assert_eq!(code, 0, "{rep}");
    assert_eq!(rep["files_identical"], 6);
    assert_eq!(rep["mtime_matched"], 6);
}

#[test]
fn local_to_apache_to_apache_then_verify() {
    let (a, b) = (Apache::start(), Apache::start());
    let t = tempfile::tempdir().unwrap();
    let (src, st) = (t.path().join("src"), t.path().join("state"));
    sample_tree(&src);
    let (code, v) = migrate(src.to_str().unwrap(), &a.url(), &st, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(copied(&v), 6);
    assert_eq!(
        v["mtime"], "not_supported",
        "plain mod_dav cannot set getlastmodified"
    );
    assert!(v["notes"]
        .to_string()
        .contains("does not keep modification times"));
    assert_same_tree(&src, &a.root(), false);
    // WebDAV to WebDAV, both with basic auth.
    a.fix_owner();
    let (code, v) = migrate(&a.url(), &b.url(), &st, &["--parallel", "4"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(copied(&v), 6);
    assert_same_tree(&src, &b.root(), false);
    let (code, rep) = verify(src.to_str().unwrap(), &b.url());
    assert_eq!(code, 0, "{rep}");
    assert_eq!(rep["files_identical"], 6);
    assert_eq!(rep["folders_expected"], 8);
    // A changed byte on the target is caught by verify.
    std::fs::write(b.root().join("top level.txt"), b"hello World").unwrap();
    let (code, rep) = verify(src.to_str().unwrap(), &b.url());
    assert_eq!(code, 1);
    assert_eq!(rep["content_mismatch"][0], "top level.txt");
}

#[test]
fn webdavs_with_a_private_ca() {
    let a = Apache::start_tls();
    let t = tempfile::tempdir().unwrap();
    let (src, st) = (t.path().join("src"), t.path().join("state"));
    sample_tree(&src);
    let s = src.to_str().unwrap();
    // Certificates are verified: an unknown CA is refused...
    let (code, err) = {
        let out = cli(&[
            "migrate",
            "--source",
            s,
            "--target",
            &a.url(),
            "--state-dir",
            st.to_str().unwrap(),
            "--retries",
            "1",
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1));
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    // ...and trusted when given.
    let ca = a.ca_cert();
    let (code, v) = migrate(s, &a.url(), &st, &["--ca-cert", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(copied(&v), 6);
    assert_same_tree(&src, &a.root(), false);
}

#[test]
fn wrong_password_is_reported_without_leaking() {
    let a = Apache::start();
    let t = tempfile::tempdir().unwrap();
    sample_tree(&t.path().join("src"));
    let pw = t.path().join("pw");
    std::fs::write(&pw, "not-the-password\n").unwrap();
    let out = Command::new(bin())
        .args([
            "migrate",
            "--source",
            t.path().join("src").to_str().unwrap(),
            "--target",
            &a.url(),
        ])
        .args([
            "--target-password-file",
            pw.to_str().unwrap(),
            "--state-dir",
        ])
        .arg(t.path().join("st"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"));
}

#[test]
fn incremental_runs_copy_only_changes_and_delete_only_when_asked() {
    let a = Apache::start();
    let t = tempfile::tempdir().unwrap();
    let (src, st) = (t.path().join("src"), t.path().join("state"));
    sample_tree(&src);
    let s = src.to_str().unwrap();
    assert_eq!(copied(&migrate(s, &a.url(), &st, &[]).1), 6);
    let (code, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!(
        (code, copied(&v), v["unchanged_files"].as_u64()),
        (0, 0, Some(6)),
        "no-op re-run"
    );

    // Touch (time only), same-size content change, a new file.
    set_mtime(&src.join("top level.txt"), 1_700_000_000);
    write_file(
        &src,
        "Verträge 2019/Angebot Müller & Söhne.docx",
        b"contract v2",
        1_262_304_001,
    );
    write_file(&src, "Empty Folder/new.txt", b"new", 1_000_000_000);
    let (code, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!((code, copied(&v)), (0, 3), "{v}");
    assert_same_tree(&src, &a.root(), false);

    // A file damaged on the target is repaired.
    std::fs::remove_file(a.root().join("日本語/報告書.xlsx")).unwrap();
    let (_, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!(copied(&v), 1);

    // Deletions propagate only with --delete.
    std::fs::remove_file(src.join("top level.txt")).unwrap();
    std::fs::remove_dir_all(src.join("a")).unwrap();
    let (_, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!(copied(&v), 0);
    assert!(a.root().join("top level.txt").exists());
    let (_, v) = migrate(s, &a.url(), &st, &["--delete", "--dry-run"]);
    assert_eq!(v["deleted"], serde_json::json!(["a", "top level.txt"]));
    assert!(
        a.root().join("top level.txt").exists(),
        "dry run changes nothing"
    );
    let (code, _) = migrate(s, &a.url(), &st, &["--delete"]);
    assert_eq!(code, 0);
    assert_same_tree(&src, &a.root(), false);
}

#[test]
fn checksum_mode_catches_same_size_same_time_changes() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst, st) = (
        t.path().join("src"),
        t.path().join("dst"),
        t.path().join("state"),
    );
    sample_tree(&src);
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    migrate(s, d, &st, &[]);
    // Same size, same mtime, other bytes: only --checksum can see it.
    write_file(&src, "top level.txt", b"HELLO WORLD", 1_650_000_000);
    assert_eq!(copied(&migrate(s, d, &st, &[]).1), 0);
    let (_, v) = migrate(s, d, &st, &["--checksum"]);
    assert_eq!(copied(&v), 1);
    assert_eq!(v["unchanged_files"], 5);
    assert_same_tree(&src, &dst, true);
}

#[test]
fn preflight_check_fail_skip_and_rename() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_file(&src, "ok/fine.txt", b"1", 1_000_000_000);
    write_file(&src, "ok/Q3: plan?.txt", b"2", 1_000_000_000);
    write_file(&src, "CON", b"3", 1_000_000_000);
    write_file(&src, "desktop.ini", b"4", 1_000_000_000);
    write_file(&src, "x_vti_y/inside.txt", b"5", 1_000_000_000);
    write_file(
        &src,
        &format!("{}/{}", "L".repeat(200), "n".repeat(201)),
        b"6",
        1_000_000_000,
    );
    let s = src.to_str().unwrap();

    let out = cli(&["check", s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for p in [
        "Q3: plan?.txt",
        "CON",
        "desktop.ini",
        "x_vti_y",
        "path is 402 characters",
    ] {
        assert!(text.contains(p), "{p} in {text}");
    }

    let dst = t.path().join("dst");
    let (code, v) = migrate(s, dst.to_str().unwrap(), &t.path().join("st1"), &[]);
    assert_eq!(code, 2, "{v}");
    assert!(v["refused_by_preflight"].as_bool().unwrap());
    assert!(!dst.exists(), "nothing moved");

    let (code, v) = migrate(
        s,
        dst.to_str().unwrap(),
        &t.path().join("st2"),
        &["--on-invalid", "skip"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(copied(&v), 1);
    assert!(dst.join("ok/fine.txt").exists());

    let dst2 = t.path().join("dst2");
    let (code, v) = migrate(
        s,
        dst2.to_str().unwrap(),
        &t.path().join("st3"),
        &["--on-invalid", "rename"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(copied(&v), 5, "all but the too-long path");
    assert!(dst2.join("ok/Q3： plan？.txt").exists());
    assert!(dst2.join("CON_").exists());
    assert!(dst2.join("x-vti-y/inside.txt").exists());
    let renames = v["renames"].as_array().unwrap();
    assert!(renames
        .iter()
        .any(|r| r["source"] == "x_vti_y" && r["target"] == "x-vti-y"));
    assert_eq!(renames.len(), 4);
}

#[test]
fn wsgidav_targets_keep_mtimes_by_header_or_proppatch() {
    for mode in [WsgiMtime::OcHeader, WsgiMtime::Proppatch] {
        let w = WsgiDav::start(mode);
        let t = tempfile::tempdir().unwrap();
        let (src, st) = (t.path().join("src"), t.path().join("state"));
        sample_tree(&src);
        let (code, v) = migrate(src.to_str().unwrap(), &w.url(), &st, &[]);
        assert_eq!(code, 0, "{v}");
        assert_eq!(v["mtime"], "kept");
        assert_same_tree(&src, &w.root(), true);
        // And back: WebDAV listing times feed the local target.
        let back = t.path().join("back");
        let (code, _) = migrate(&w.url(), back.to_str().unwrap(), &st, &[]);
        assert_eq!(code, 0);
        assert_same_tree(&src, &back, true);
    }
}

/// Starts a migration, SIGKILLs it once a temporary upload under `watch` holds more than 1 MiB,
/// and returns whether it was caught mid-file.
fn kill_mid_file(src: &Path, target: &str, st: &Path, watch: &Path, extra: &[&str]) -> bool {
    let mut child = Command::new(bin())
        .args([
            "migrate",
            "--source",
            src.to_str().unwrap(),
            "--target",
            target,
            "--state-dir",
        ])
        .arg(st)
        .args(extra)
        .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut caught = false;
    while Instant::now() < deadline {
        let partial = std::fs::read_dir(watch).ok().and_then(|rd| {
            rd.flatten()
                .find(|e| {
                    // Ours, or Apache mod_dav_fs's own temporary file for a PUT in progress.
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(".tenantry-part-") || n.starts_with(".davfs.tmp")
                })
                .and_then(|e| e.metadata().ok())
                .filter(|m| m.len() > 1024 * 1024)
        });
        if partial.is_some() {
            child.kill().unwrap(); // SIGKILL
            caught = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.wait();
    caught
}

#[test]
fn kill_9_mid_file_then_rerun_completes_without_partial_files() {
    let a = Apache::start();
    let t = tempfile::tempdir().unwrap();
    let (src, st) = (t.path().join("src"), t.path().join("state"));
    sample_tree(&src);
    // Big enough to be caught mid-upload.
    let big: Vec<u8> = (0..256u32 * 1024 * 1024 / 4)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761)).to_le_bytes())
        .collect();
    write_file(&src, "big/video.mp4", &big, 1_200_000_000);
    drop(big);
    let local = t.path().join("local");
    let b = Apache::start();
    // Staged uploads (temporary name + MOVE), direct uploads (Apache writes the PUT aside and
    // renames it when complete), and a local folder.
    for (target, root, extra) in [
        (a.url(), a.root(), ["--upload", "staged"]),
        (b.url(), b.root(), ["--upload", "direct"]),
        (
            local.to_str().unwrap().to_string(),
            local.clone(),
            ["--upload", "auto"],
        ),
    ] {
        assert!(
            kill_mid_file(&src, &target, &st, &root.join("big"), &extra),
            "{target}: upload finished before it could be killed"
        );
        assert!(
            !root.join("big/video.mp4").exists(),
            "no partial file at the final name"
        );
        let (code, v) = migrate(src.to_str().unwrap(), &target, &st, &extra);
        assert_eq!(code, 0, "{v}");
        // Apache removes an aborted PUT itself; a local target keeps the debris until the re-run.
        if root == local {
            assert!(v["stale_temporaries_removed"].as_u64().unwrap() >= 1, "{v}");
        }
        // Same paths on both sides: no temporary file is left anywhere.
        assert_same_tree(&src, &root, root == local);
        let (_, v) = migrate(src.to_str().unwrap(), &target, &st, &[]);
        assert_eq!(copied(&v), 0);
    }
    // A direct overwrite killed mid-file leaves the previous version whole under the name.
    // (Hashing the file alone: Apache may still be removing its aborted temporary beside it.)
    let hash = |root: &Path| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(root.join("big/video.mp4"))
            .unwrap()
            .hash(&mut h);
        h.finish()
    };
    let before = hash(&b.root());
    let changed: Vec<u8> = std::fs::read(src.join("big/video.mp4"))
        .unwrap()
        .iter()
        .map(|x| x ^ 0x5a)
        .collect();
    write_file(&src, "big/video.mp4", &changed, 1_300_000_000);
    drop(changed);
    let direct = ["--upload", "direct"];
    assert!(
        kill_mid_file(&src, &b.url(), &st, &b.root().join("big"), &direct),
        "overwrite finished before it could be killed"
    );
    assert_eq!(hash(&b.root()), before, "the previous version is intact");
    let (code, v) = migrate(src.to_str().unwrap(), &b.url(), &st, &direct);
    assert_eq!((code, copied(&v)), (0, 1), "{v}");
    assert_eq!(hash(&b.root()), hash(&src));
    record(
        kind::FAULT,
        "files: migrator killed -9 mid-file (256 MB), staged, direct, local; then an overwrite",
        "4 kills, no partial file under a final name, old version intact",
        0,
    );
}

/// A tree of `n` small files over a few folders.
fn many_files(root: &Path, n: usize) {
    for i in 0..n {
        write_file(
            root,
            &format!("Ordner {}/Datei {i:03}.txt", i % 4),
            format!("file {i}\n").as_bytes(),
            1_300_000_000 + i as u64,
        );
    }
}

#[test]
fn uploads_go_direct_only_where_the_server_hides_unfinished_puts() {
    let t = tempfile::tempdir().unwrap();
    let (src, st) = (t.path().join("src"), t.path().join("state"));
    many_files(&src, 210);
    let s = src.to_str().unwrap();
    // Apache mod_dav_fs writes a PUT to a hidden temporary file and renames it when complete:
    // the probe sees nothing under the name until then, so uploads go direct.
    let a = Apache::start();
    let (code, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["upload_mode"], "direct", "{v}");
    assert!(
        v["upload_mode_reason"]
            .as_str()
            .unwrap()
            .starts_with("probed"),
        "{v}"
    );
    assert_eq!(copied(&v), 210);
    assert_same_tree(&src, &a.root(), false);
    // wsgidav writes a PUT in place: the half-sent probe shows at once, so uploads are staged.
    let w = WsgiDav::start(WsgiMtime::OcHeader);
    let (code, v) = migrate(s, &w.url(), &st, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["upload_mode"], "staged", "{v}");
    assert!(
        v["upload_mode_reason"]
            .as_str()
            .unwrap()
            .contains("showed under its name"),
        "{v}"
    );
    assert_same_tree(&src, &w.root(), true);
    // Forced staging, and small runs that do not pay for a probe, use temporary names.
    let b = Apache::start();
    let (code, v) = migrate(s, &b.url(), &st, &["--upload", "staged"]);
    assert_eq!(
        (code, v["upload_mode"].as_str()),
        (0, Some("staged")),
        "{v}"
    );
    write_file(&src, "Ordner 0/neu.txt", b"new", 1_400_000_000);
    let (code, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!((code, copied(&v)), (0, 1), "{v}");
    assert_eq!(v["upload_mode"], "staged", "{v}");
    assert!(
        v["upload_mode_reason"]
            .as_str()
            .unwrap()
            .contains("fewer than"),
        "{v}"
    );
    // Nothing to upload: no mode to report. The probe left nothing behind on any server.
    let (code, v) = migrate(s, &a.url(), &st, &[]);
    assert_eq!((code, copied(&v)), (0, 0), "{v}");
    assert!(v["upload_mode"].is_null(), "{v}");
    // No probe debris on either probed server (the comparison includes dot-files).
    assert_same_tree(&src, &a.root(), false);
    std::fs::remove_file(src.join("Ordner 0/neu.txt")).unwrap();
    assert_same_tree(&src, &w.root(), true);
}

#[test]
fn unreachable_target_and_bad_input_fail_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = cli(&[
        "migrate",
        "--source",
        t.path().to_str().unwrap(),
        "--target",
        &format!("webdav://127.0.0.1:{port}/x"),
        "--retries",
        "2",
        "--state-dir",
        t.path().join("st").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listing the target") && err.contains("onnect"),
        "{err}"
    );
    let out = cli(&["migrate", "--source", "ftp://x", "--target", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported location"));
}

#[test]
fn webdav_source_edit_within_the_same_second_is_caught_by_etag() {
    let a = Apache::start();
    sample_tree(&a.root());
    a.fix_owner();
    let t = tempfile::tempdir().unwrap();
    let (dst, st) = (t.path().join("dst"), t.path().join("state"));
    let d = dst.to_str().unwrap();
    assert_eq!(copied(&migrate(&a.url(), d, &st, &[]).1), 6);
    // Same size, same second in getlastmodified; only the ETag (sub-second mtime) moves.
    let p = a.root().join("top level.txt");
    std::fs::write(&p, b"HELLO WORLD").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_millis(1_650_000_000_500))
        .unwrap();
    let (code, v) = migrate(&a.url(), d, &st, &[]);
    assert_eq!((code, copied(&v)), (0, 1), "{v}");
    assert_eq!(
        std::fs::read(dst.join("top level.txt")).unwrap(),
        b"HELLO WORLD"
    );
}
