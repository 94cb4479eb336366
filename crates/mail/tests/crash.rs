//! Process-level crash safety: `kill -9` the migrator at many points, re-run, and check the
//! target ends with exactly one copy of every source message.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tenantry_mail::folders;
use tenantry_mail::session::Session;
use tenantry_mail::sync::Options;
use tenantry_mail::verify::{folder_digest, MessageDigest};
use tenantry_testkit::faults::{kind, record};

async fn digest(s: &mut Session) -> Vec<(String, Vec<MessageDigest>)> {
    let mut out = Vec::new();
    for f in folders::list(s).await.unwrap() {
        if f.selectable {
            let (d, _) = folder_digest(s, &f.wire, None, true, &Options::default())
                .await
                .unwrap();
            let name = match f.path.join("/").as_str() {
                "Sent Items" => "Sent".to_string(),
                "Deleted Items" => "Trash".to_string(),
                other => other.to_string(),
            };
            out.push((name, d));
        }
    }
    out.sort();
    out
}

fn summary(d: &[(String, Vec<MessageDigest>)]) -> Vec<(String, usize)> {
    d.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

async fn seed(s: &mut Session) -> usize {
    let date = "02-Feb-2022 10:00:00 +0000";
    let mut n = 0;
    create(s, "Big", true).await;
    for i in 0..360 {
        let folder = if i % 3 == 0 { "Big" } else { "INBOX" };
        let flags = if i % 2 == 0 { "\\Seen" } else { "$Work" };
        // Every 40th message is repeated byte for byte: duplicates must stay duplicates.
        let subject = if i % 40 == 1 {
            "dup".to_string()
        } else {
            format!("m{i}")
        };
        append(
            s,
            folder,
            flags,
            date,
            &message(&subject, "", 6000 + (i % 7) * 3000, i % 5 != 0),
        )
        .await;
        n += 1;
    }
    n
}

fn migrate_cmd(src: &Dovecot, tgt: &Dovecot, dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tenantry-mail"));
    c.args([
        "migrate",
        "--source",
        &src.url("alice"),
        "--target",
        &tgt.url("alice"),
    ])
    .arg("--state-dir")
    .arg(dir.join("state"))
    .args(["--quiet", "--batch-count", "9", "--connections", "2"])
    .args(extra)
    .env("TENANTRY_SOURCE_PASSWORD", "alicepw")
    .env("TENANTRY_TARGET_PASSWORD", "alicepw2")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[tokio::test]
async fn kill_9_at_any_moment_then_resume_gives_exactly_one_copy() {
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    let n = seed(&mut s).await;
    let mut kills = 0;
    let mut delay = 60u64;
    for _ in 0..12 {
        let mut child = migrate_cmd(&src, &tgt, tmp.path(), &[]).spawn().unwrap();
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill: the remaining work was small
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        delay += 45 + (start.elapsed().as_millis() as u64 % 17);
    }
    assert!(kills >= 2, "the migration was never interrupted");
    let status = migrate_cmd(&src, &tgt, tmp.path(), &[]).status().unwrap();
    assert!(status.success());
    let mut t = tgt.session("alice", "alicepw2").await;
    let (a, b) = (digest(&mut s).await, digest(&mut t).await);
    let total: usize = b.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(
        total, n,
        "exactly one copy of each message after {kills} kills"
    );
    assert_eq!(a, b);
    record(
        kind::FAULT,
        "mail: migrator killed -9 at increasing moments, then re-run (Dovecot → Dovecot)",
        &format!("{kills} kills, {n} messages, each exactly once"),
        0,
    );
}

#[tokio::test]
async fn without_appenduid_the_content_fallback_maps_messages() {
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    let n = seed(&mut s).await;
    let ok = migrate_cmd(&src, &tgt, tmp.path(), &["--ignore-appenduid"])
        .status()
        .unwrap();
    assert!(ok.success());
    // The re-run finds every message mapped: nothing copied twice.
    let ok = migrate_cmd(&src, &tgt, tmp.path(), &["--ignore-appenduid"])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut t = tgt.session("alice", "alicepw2").await;
    let (a, b) = (digest(&mut s).await, digest(&mut t).await);
    assert_eq!(summary(&a), summary(&b));
    assert_eq!(b.iter().map(|(_, d)| d.len()).sum::<usize>(), n);
    assert!(a == b, "bodies, flags and dates equal");
}

#[tokio::test]
async fn a_50_mb_message_needs_a_small_multiple_of_its_size() {
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    let big = message("big attachment", "", 50 << 20, true);
    append(
        &mut s,
        "INBOX",
        "\\Seen",
        "01-Jan-2024 00:00:00 +0000",
        &big,
    )
    .await;
    for i in 0..20 {
        append(
            &mut s,
            "INBOX",
            "",
            "01-Jan-2024 00:00:00 +0000",
            &message(&format!("s{i}"), "", 5000, true),
        )
        .await;
    }
    drop(big);
    let (ok, peak_kb, _) = run_measured(&mut migrate_cmd(&src, &tgt, tmp.path(), &[]));
    assert!(ok);
    let peak_mb = peak_kb / 1024;
    eprintln!("peak RSS {peak_mb} MB for a 50 MB message");
    assert!(peak_mb < 2 * 50, "peak RSS {peak_mb} MB");
    let mut t = tgt.session("alice", "alicepw2").await;
    let (a, b) = (digest(&mut s).await, digest(&mut t).await);
    assert!(a == b, "bodies, flags and dates equal");
}

#[tokio::test]
async fn plain_progress_lines_and_summary_when_not_a_terminal() {
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    for i in 0..5 {
        append(
            &mut s,
            "INBOX",
            "",
            "01-Jan-2024 00:00:00 +0000",
            &message(&format!("p{i}"), "", 2000, true),
        )
        .await;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args([
            "migrate",
            "--source",
            &src.url("alice"),
            "--target",
            &tgt.url("alice"),
        ])
        .arg("--state-dir")
        .arg(tmp.path())
        .env("TENANTRY_SOURCE_PASSWORD", "alicepw")
        .env("TENANTRY_TARGET_PASSWORD", "alicepw2")
        .output()
        .unwrap();
    assert!(out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("folder INBOX -> INBOX: 5 copied"),
        "{stderr}"
    );
    assert!(stdout.contains("5 messages copied"), "{stdout}");
    for secret in ["alicepw", "alicepw2"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}
