//! Faults from outside: connections cut in the middle of downloads and uploads, and a target
//! disk that fills up. Each run either finishes or says what is missing; a re-run completes
//! with every file whole and nothing copied twice.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;
use tenantry_testkit::faults::{kind, record, Direction, Proxy, ProxyConfig};

fn copied(v: &serde_json::Value) -> u64 {
    v["copied_files"].as_u64().unwrap()
}

/// A tree with files large enough to be cut mid-transfer, beside the usual awkward names.
fn tree_with_large_files(root: &Path) {
    sample_tree(root);
    for i in 0..4u32 {
        let body: Vec<u8> = (0..(1u32 << 20) + i * 1000)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 24) as u8 ^ i as u8)
            .collect();
        write_file(root, &format!("large/part {i}.bin"), &body, 1_400_000_000);
    }
}

/// Runs `migrate` until it exits 0 (at most `runs` times); returns the number of runs.
fn migrate_until_done(src: &str, target: &str, state: &Path, runs: usize) -> usize {
    for run in 1..=runs {
        let (code, v) = migrate(src, target, state, &[]);
        if code == 0 {
            return run;
        }
        assert!(!v["failures"].as_array().unwrap().is_empty(), "{v}");
    }
    panic!("still failing after {runs} runs");
}

/// A proxy in front of `server` cutting up to 8 connections after `after` bytes one way, and
/// the server's URL through it.
fn cutting(server: &Apache, direction: Direction, after: u64) -> (Proxy, String) {
    let url = server.url();
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    let proxy = Proxy::start(
        port.parse().unwrap(),
        ProxyConfig {
            cut_after: Some((direction, after)),
            cuts_at_most: Some(8),
            ..Default::default()
        },
    );
    let through = url.replace(&format!(":{port}/"), &format!(":{}/", proxy.port()));
    (proxy, through)
}

#[test]
fn downloads_cut_mid_file_are_completed_by_retries_and_re_runs() {
    let a = Apache::start();
    tree_with_large_files(&a.root());
    a.fix_owner();
    let (proxy, source) = cutting(&a, Direction::ToClient, 300_000);
    let t = tempfile::tempdir().unwrap();
    let (target, state) = (t.path().join("target"), t.path().join("state"));
    let runs = migrate_until_done(&source, target.to_str().unwrap(), &state, 10);
    assert!(proxy.cuts() >= 4, "only {} cuts", proxy.cuts());
    assert_same_tree(&a.root(), &target, false);
    let (code, v) = migrate(&source, target.to_str().unwrap(), &state, &[]);
    assert_eq!((code, copied(&v)), (0, 0), "a re-run copies nothing: {v}");
    record(
        kind::FAULT,
        "files: WebDAV downloads cut mid-file (Apache → local folder)",
        &format!("{} cuts, {runs} run(s)", proxy.cuts()),
        0,
    );
}

#[test]
fn uploads_cut_mid_file_leave_no_partial_file_and_complete() {
    let a = Apache::start();
    let t = tempfile::tempdir().unwrap();
    let (src, state) = (t.path().join("src"), t.path().join("state"));
    tree_with_large_files(&src);
    let (proxy, target) = cutting(&a, Direction::ToServer, 500_000);
    let runs = migrate_until_done(src.to_str().unwrap(), &target, &state, 10);
    assert!(proxy.cuts() >= 4, "only {} cuts", proxy.cuts());
    // Same paths and bytes: no partial file and no temporary name is left on the server.
    assert_same_tree(&src, &a.root(), false);
    record(
        kind::FAULT,
        "files: WebDAV uploads cut mid-file (local folder → Apache)",
        &format!("{} cuts, {runs} run(s)", proxy.cuts()),
        0,
    );
}

/// Mounts a tmpfs of `size` at `dir` (root only: CI runs as root).
fn mount_tmpfs(dir: &Path, size: &str, remount: bool) -> bool {
    let opts = if remount {
        format!("remount,size={size}")
    } else {
        format!("size={size},mode=0700")
    };
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &opts, "tenantry-test"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_target_disk_loses_nothing_and_a_re_run_completes() {
    let t = tempfile::tempdir().unwrap();
    let (src, target, state) = (
        t.path().join("src"),
        t.path().join("target"),
        t.path().join("state"),
    );
    tree_with_large_files(&src);
    std::fs::create_dir_all(&target).unwrap();
    // Room for about half of the tree.
    if !mount_tmpfs(&target, "2600k", false) {
        assert_ne!(
            effective_uid(),
            0,
            "running as root, yet a tmpfs could not be mounted"
        );
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let _unmount = Unmount(&target);
    let (s, d) = (src.to_str().unwrap(), target.to_str().unwrap());
    let (code, v) = migrate(s, d, &state, &[]);
    assert_ne!(code, 0, "a full disk is a failure: {v}");
    let failures = v["failures"].as_array().unwrap();
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|f| f["error"].as_str().unwrap().contains("out of storage")),
        "{v}"
    );
    assert!(
        v["notes"].to_string().contains("ran out of space"),
        "the report says what to do: {v}"
    );
    // Whatever was written is whole: every file on the target equals its source.
    let written = fingerprint(&target);
    let wanted = fingerprint(&src);
    for (path, node) in &written {
        assert_eq!(
            Some(node).map(|n| &n.sha256),
            wanted.get(path).map(|n| &n.sha256),
            "{path}"
        );
    }
    assert!(mount_tmpfs(&target, "64m", true), "grow the tmpfs");
    let (code, v) = migrate(s, d, &state, &[]);
    assert_eq!(code, 0, "{v}");
    assert_same_tree(&src, &target, true);
    record(
        kind::FAULT,
        "files: target disk full mid-run (local folder on a 2.6 MB tmpfs)",
        &format!(
            "{} files refused with ENOSPC, then completed",
            failures.len()
        ),
        0,
    );
}

fn effective_uid() -> u32 {
    // The effective uid, read from /proc rather than through libc.
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}
