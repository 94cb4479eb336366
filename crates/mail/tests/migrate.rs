//! End-to-end tests against real Dovecot: source with '/' separator and RFC 6154 "Sent",
//! Exchange-like target with '.' separator, "Sent Items" and a master user.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::*;
use tenantry_mail::folders;
use tenantry_mail::protocol::command::Command as ImapCommand;
use tenantry_mail::session::Session;
use tenantry_mail::sync::Options;
use tenantry_mail::verify::{folder_digest, verify_mailbox, MessageDigest};
use tenantry_testkit::faults::{kind, record, Direction, Proxy, ProxyConfig};

struct Pair {
    src: Dovecot,
    tgt: Dovecot,
    tmp: tempfile::TempDir,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_target(Config::target())
    }
    fn with_target(t: Config) -> Pair {
        Pair::with(Config::source(), t)
    }
    fn with(s: Config, t: Config) -> Pair {
        Pair {
            src: Dovecot::start(s),
            tgt: Dovecot::start(t),
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn state(&self) -> String {
        self.tmp.path().join("state").display().to_string()
    }
    /// Common flags for alice → alice.
    fn args(&self, verb: &str) -> Vec<String> {
        let d = self.tmp.path();
        let mut a = vec![
            verb.to_string(),
            "--source".into(),
            self.src.url("alice"),
            "--target".into(),
            self.tgt.url("alice"),
            "--source-password-file".into(),
            secret_file(d, "spw", "alicepw\n").display().to_string(),
            "--target-password-file".into(),
            secret_file(d, "tpw", "alicepw2").display().to_string(),
            "--quiet".into(),
        ];
        if verb == "migrate" {
            a.push("--state-dir".into());
            a.push(self.state());
        }
        a
    }
    async fn migrate(&self, extra: &[&str]) -> u8 {
        let mut a = self.args("migrate");
        a.extend(extra.iter().map(|s| s.to_string()));
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
    async fn verify(&self) -> u8 {
        let a = self.args("verify");
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
    async fn source(&self) -> Session {
        self.src.session("alice", "alicepw").await
    }
    async fn target(&self) -> Session {
        self.tgt.session("alice", "alicepw2").await
    }
}

/// Digest (body sha, date, flags) of every folder, keyed by the decoded path joined with '/'.
async fn mailbox_digest(s: &mut Session) -> BTreeMap<String, Vec<MessageDigest>> {
    let mut out = BTreeMap::new();
    for f in folders::list(s).await.unwrap() {
        if f.selectable {
            let (d, _) = folder_digest(s, &f.wire, None, true, &Options::default())
                .await
                .unwrap();
            out.insert(f.path.join("/"), d);
        }
    }
    out
}

/// A mailbox with every fidelity case: flags, keywords, dates in several zones, nested and
/// non-ASCII folders, a message without Message-ID, exact duplicates, role folders.
async fn seed(s: &mut Session) -> usize {
    let mut n = 0;
    let date = "14-Mar-2021 08:30:00 +0200";
    for i in 0..12 {
        let flags = [
            "",
            "\\Seen",
            "\\Seen \\Flagged",
            "\\Answered $Label1",
            "\\Draft",
            "$Forwarded Junk",
        ][i % 6];
        let body = message(&format!("inbox {i}"), "", 300 + i * 500, true);
        append(
            s,
            "INBOX",
            flags,
            &format!("{:02}-Feb-2020 23:59:5{} -0700", i + 1, i % 10),
            &body,
        )
        .await;
        n += 1;
    }
    // Without Message-ID, and an exact duplicate pair (same bytes, flags and date).
    let no_id = message("no id", "", 1000, false);
    append(s, "INBOX", "\\Seen", date, &no_id).await;
    let dup = message("duplicate", "X-Dup: yes\r\n", 2000, true);
    append(s, "INBOX", "", date, &dup).await;
    append(s, "INBOX", "", date, &dup).await;
    n += 3;
    // Bare LF line endings and 8-bit bytes must survive untouched.
    append(
        s,
        "INBOX",
        "",
        date,
        b"Subject: lf only\nX-Bin: \xff\xfe\n\nbody\nwith LF\n",
    )
    .await;
    n += 1;
    for (folder, sub) in [
        ("Projects", true),
        ("Projects/2024", true),
        ("Projects/2024/Q1", false),
        ("Entwürfe", true),
        ("Entwürfe/Ünter ordner", false),
        ("日本語", true),
        ("A&B", false),
    ] {
        let wire = tenantry_mail::protocol::utf7::encode(folder);
        create(s, &wire, sub).await;
        for j in 0..3 {
            append(
                s,
                &wire,
                "\\Seen",
                date,
                &message(&format!("{folder} {j}"), "", 700, true),
            )
            .await;
            n += 1;
        }
    }
    for j in 0..4 {
        append(
            s,
            "Sent",
            "\\Seen",
            date,
            &message(&format!("sent {j}"), "", 900, true),
        )
        .await;
        n += 1;
    }
    append(
        s,
        "Trash",
        "\\Seen \\Deleted",
        date,
        &message("trashed", "", 500, true),
    )
    .await;
    n += 1;
    n
}

fn count(d: &BTreeMap<String, Vec<MessageDigest>>) -> usize {
    d.values().map(Vec::len).sum()
}

#[tokio::test]
async fn migrate_is_byte_identical_and_maps_folders() {
    let p = Pair::new();
    let mut s = p.source().await;
    let n = seed(&mut s).await;
    assert_eq!(p.migrate(&[]).await, 0);
    assert_eq!(p.verify().await, 0, "verify must find no difference");

    let src = mailbox_digest(&mut s).await;
    let mut t = p.target().await;
    let dst = mailbox_digest(&mut t).await;
    assert_eq!(count(&src), n);
    // Folder by folder, same multiset of (body sha, internaldate, flags).
    let rename = |k: &str| -> String {
        match k {
            "Sent" => "Sent Items".into(),
            "Trash" => "Deleted Items".into(),
            other => other.to_string(),
        }
    };
    for (k, v) in &src {
        assert_eq!(dst.get(&rename(k)), Some(v), "folder {k}");
    }
    assert_eq!(count(&dst), n, "no message added or lost");
    // The role folders of the target were used; none of the source names were created.
    let tf = folders::list(&mut t).await.unwrap();
    let names: Vec<String> = tf.iter().map(|f| f.wire.clone()).collect();
    assert!(!names.contains(&"Sent".to_string()), "{names:?}");
    assert!(names.contains(&"Projects.2024.Q1".to_string()), "{names:?}");
    assert!(
        names.contains(&"Entw&APw-rfe.&ANw-nter ordner".to_string()),
        "{names:?}"
    );
    // Subscriptions copied exactly where the source had them.
    let sub = |w: &str| tf.iter().find(|f| f.wire == w).map(|f| f.subscribed);
    assert_eq!(sub("Projects.2024"), Some(true));
    assert_eq!(sub("Projects.2024.Q1"), Some(false));
    assert_eq!(sub("&ZeVnLIqe-"), Some(true));
    // A second run changes nothing.
    assert_eq!(p.migrate(&[]).await, 0);
    assert_eq!(count(&mailbox_digest(&mut t).await), n);
}

#[tokio::test]
async fn rerun_copies_only_new_messages_and_syncs_flags() {
    let p = Pair::new();
    let mut s = p.source().await;
    seed(&mut s).await;
    assert_eq!(p.migrate(&[]).await, 0);
    // Change flags on the source, add messages, then re-run.
    s.select("INBOX", false).await.unwrap();
    s.run(ImapCommand::new(
        "UID STORE 1:3 +FLAGS (\\Flagged $NewKeyword)",
    ))
    .await
    .unwrap();
    s.run(ImapCommand::new(
        "UID STORE 4 -FLAGS (\\Seen \\Answered $Label1)",
    ))
    .await
    .unwrap();
    append(
        &mut s,
        "INBOX",
        "\\Seen",
        "01-Jan-2024 00:00:00 +0000",
        &message("new one", "", 4000, true),
    )
    .await;
    append(
        &mut s,
        "Projects/2024",
        "",
        "01-Jan-2024 00:00:00 +0000",
        &message("new two", "", 4000, true),
    )
    .await;
    let st = tenantry_mail::state::State::open(&find_state(Path::new(&p.state()))).unwrap();
    let before = st.maps("INBOX").unwrap().len();
    drop(st);
    let progress = std::sync::Arc::new(tenantry_mail::report::Progress::default());
    let rep = tenantry_mail::sync::migrate_mailbox(
        &with_side(p.src.endpoint("alice", "alicepw"), true),
        &with_side(p.tgt.endpoint("alice", "alicepw2"), false),
        &find_state(Path::new(&p.state())),
        &Options::default(),
        progress,
    )
    .await;
    assert!(rep.ok(), "{:?}", rep.problems());
    assert_eq!(rep.copied(), 2, "only the new messages are copied");
    let flags: u64 = rep.folders.iter().map(|f| f.flags_updated).sum();
    assert_eq!(flags, 4, "flag changes pushed");
    let st = tenantry_mail::state::State::open(&find_state(Path::new(&p.state()))).unwrap();
    assert_eq!(st.maps("INBOX").unwrap().len(), before + 1);
    assert_eq!(p.verify().await, 0);
    // A no-op run: every folder is skipped on the CONDSTORE fast path.
    let rep = tenantry_mail::sync::migrate_mailbox(
        &with_side(p.src.endpoint("alice", "alicepw"), true),
        &with_side(p.tgt.endpoint("alice", "alicepw2"), false),
        &find_state(Path::new(&p.state())),
        &Options::default(),
        std::sync::Arc::new(Default::default()),
    )
    .await;
    assert!(rep.ok());
    assert_eq!(rep.copied(), 0);
    assert!(rep.folders.iter().all(|f| f.unchanged), "{:?}", rep.folders);
}

fn with_side(
    mut e: tenantry_mail::session::Endpoint,
    source: bool,
) -> tenantry_mail::session::Endpoint {
    e.side = if source {
        tenantry_mail::session::Side::Source
    } else {
        tenantry_mail::session::Side::Target
    };
    e
}

fn find_state(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .expect("state file")
}

#[tokio::test]
async fn uidvalidity_reset_is_remapped_by_content_without_duplicates() {
    let p = Pair::new();
    let mut s = p.source().await;
    let n = seed(&mut s).await;
    assert_eq!(p.migrate(&[]).await, 0);
    // Recreate "Projects/2024/Q1" on the source: same messages, new UIDVALIDITY, plus one more.
    let f = "Projects/2024/Q1";
    let sel = s.select(f, true).await.unwrap();
    let cap = tenantry_mail::sync::listing_cap(sel.exists);
    let metas = tenantry_mail::sync::fetch_meta(&mut s, "1:*", None, cap)
        .await
        .unwrap();
    let bodies = tenantry_mail::sync::fetch_bodies(&mut s, &metas)
        .await
        .unwrap();
    s.run(ImapCommand::new("UNSELECT")).await.unwrap();
    s.run(ImapCommand::new("DELETE ").string(f.as_bytes()))
        .await
        .unwrap();
    s.run(ImapCommand::new("CREATE ").string(f.as_bytes()))
        .await
        .unwrap();
    for m in &metas {
        let flags: Vec<&str> = m
            .flags
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "\\Recent")
            .collect();
        append(
            &mut s,
            f,
            &flags.join(" "),
            m.date.as_deref().unwrap(),
            &bodies.map[&m.uid],
        )
        .await;
    }
    let sel2 = s.select(f, true).await.unwrap();
    assert_ne!(
        sel.uidvalidity, sel2.uidvalidity,
        "UIDVALIDITY must have changed"
    );
    append(
        &mut s,
        f,
        "",
        "01-Jan-2024 00:00:00 +0000",
        &message("after reset", "", 800, true),
    )
    .await;
    assert_eq!(p.migrate(&[]).await, 0);
    assert_eq!(p.verify().await, 0);
    let mut t = p.target().await;
    let dst = mailbox_digest(&mut t).await;
    assert_eq!(
        dst["Projects/2024/Q1"].len(),
        4,
        "3 re-mapped + 1 new, no duplicates"
    );
    let src = mailbox_digest(&mut s).await;
    assert_eq!(count(&src), count(&dst));
    assert_eq!(count(&src), n + 1);
}

#[tokio::test]
async fn master_user_login_and_refused_login_names_the_side() {
    let p = Pair::new();
    let mut s = p.source().await;
    seed(&mut s).await;
    let d = p.tmp.path();
    let admin_pw = secret_file(d, "admin", "adminpw").display().to_string();
    let spw = secret_file(d, "spw", "alicepw").display().to_string();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "migrate".into(),
            "--source".into(),
            p.src.url("alice"),
            "--target".into(),
            p.tgt.url("alice"),
            "--source-password-file".into(),
            spw.clone(),
            "--state-dir".into(),
            p.state(),
            "--quiet".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = base(&[
        "--target-admin",
        "admin",
        "--target-password-file",
        &admin_pw,
    ]);
    assert_eq!(
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await,
        0
    );
    assert_eq!(p.verify().await, 0);
    // Wrong password: non-zero, and the report names the side and the server's reason.
    let bad = secret_file(d, "bad", "wrong");
    let args = base(&[
        "--target-password-file",
        &bad.display().to_string(),
        "--json",
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("target: login refused for alice"),
        "{stdout}"
    );
    assert!(stdout.contains("AUTHENTICATIONFAILED"), "{stdout}");
    assert!(!stdout.contains("wrong") && !String::from_utf8_lossy(&out.stderr).contains("wrong"));
}

#[tokio::test]
async fn refused_messages_are_reported_and_the_rest_continue() {
    let mut cfg = Config::target();
    cfg.max_mail_size = Some("50k");
    let p = Pair::with_target(cfg);
    let mut s = p.source().await;
    let date = "01-Jan-2024 00:00:00 +0000";
    for i in 0..5 {
        append(
            &mut s,
            "INBOX",
            "",
            date,
            &message(&format!("small {i}"), "", 2000, true),
        )
        .await;
    }
    let big_uid = append(
        &mut s,
        "INBOX",
        "\\Seen",
        date,
        &message("big", "", 80_000, true),
    )
    .await;
    // A path the target cannot create: its maildir++ layout puts the whole path in one
    // directory name, over the file system's 255 bytes; the source keeps one per level.
    let long = format!(
        "Deep/{}/{}/{}",
        "a".repeat(90),
        "b".repeat(90),
        "c".repeat(90)
    );
    create(&mut s, &long, false).await;
    append(&mut s, &long, "", date, &message("deep", "", 500, true)).await;
    let progress = std::sync::Arc::new(tenantry_mail::report::Progress::default());
    let state = p.tmp.path().join("s.sqlite");
    let rep = tenantry_mail::sync::migrate_mailbox(
        &with_side(p.src.endpoint("alice", "alicepw"), true),
        &with_side(p.tgt.endpoint("alice", "alicepw2"), false),
        &state,
        &Options::default(),
        progress,
    )
    .await;
    assert!(!rep.ok());
    assert_eq!(rep.copied(), 5);
    let problems = rep.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("target refused to create the folder"),
        "{problems:?}"
    );
    let problems = &problems[1..];
    assert!(
        problems[0].contains(&format!("uid {big_uid}")) && problems[0].contains("LIMIT"),
        "{problems:?}"
    );
    // Through the CLI: exit status 1, the list printed. With --max-message-size the big one
    // is not even sent (Exchange may drop the connection instead of answering NO).
    assert_eq!(p.migrate(&[]).await, 1);
    assert_eq!(p.migrate(&["--max-message-size", "60000"]).await, 1);
    assert_eq!(p.verify().await, 1);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_folder_map_overrides() {
    let p = Pair::new();
    let mut s = p.source().await;
    seed(&mut s).await;
    assert_eq!(p.migrate(&["--dry-run"]).await, 0);
    let mut t = p.target().await;
    assert_eq!(count(&mailbox_digest(&mut t).await), 0);
    assert_eq!(
        p.migrate(&[
            "--folder-map",
            "Projects/2024/Q1=Archive.Q1",
            "--exclude",
            "Entwürfe/*",
            "--exclude",
            "a&b"
        ])
        .await,
        0
    );
    let names: Vec<String> = folders::list(&mut t)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.wire)
        .collect();
    assert!(names.contains(&"Archive.Q1".to_string()), "{names:?}");
    // Excluded: "Entwürfe" and its subfolder, and "A&B" (case-insensitive).
    assert!(
        !names.iter().any(|n| n.starts_with("Entw") || n == "A&-B"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"Projects.2024.Q1".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn tls_and_starttls_with_a_private_ca() {
    let p = Pair::new();
    let mut s = p.source().await;
    append(
        &mut s,
        "INBOX",
        "\\Seen",
        "01-Jan-2024 00:00:00 +0000",
        &message("tls", "", 3000, true),
    )
    .await;
    let d = p.tmp.path();
    let ca = p.tgt.ca_file();
    let (spw, tpw) = (
        secret_file(d, "spw", "alicepw"),
        secret_file(d, "tpw", "alicepw2"),
    );
    let args = [
        "migrate".to_string(),
        "--source".into(),
        p.src.url("alice"),
        "--starttls".into(),
        "--target".into(),
        p.tgt.tls_url("alice"),
        "--ca-file".into(),
        ca.display().to_string(),
        "--source-password-file".into(),
        spw.display().to_string(),
        "--target-password-file".into(),
        tpw.display().to_string(),
        "--state-dir".into(),
        p.state(),
        "--quiet".into(),
    ];
    // STARTTLS to the source is signed by another CA: refused, naming the side.
    let code = cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 1);
    // Without --starttls the loopback source is plain; the target is imaps with our CA.
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--starttls")
        .collect();
    assert_eq!(cli(&args).await, 0);
    let mut t = p.target().await;
    assert_eq!(count(&mailbox_digest(&mut t).await), 1);
}

#[tokio::test]
async fn batch_mode_migrates_several_mailboxes_in_parallel() {
    let p = Pair::new();
    let users = [
        ("alice", "alicepw", "alicepw2"),
        ("bob", "bobpw", "bobpw2"),
        ("carol", "carolpw", "carolpw2"),
    ];
    for (i, (u, pw, _)) in users.iter().enumerate() {
        let mut s = p.src.session(u, pw).await;
        for j in 0..(3 + i) {
            append(
                &mut s,
                "INBOX",
                "\\Seen",
                "01-Jan-2024 00:00:00 +0000",
                &message(&format!("{u} {j}"), "", 1500, true),
            )
            .await;
        }
    }
    // alice logs in with her own passwords; bob and carol through both sides' admin users.
    let csv = "source_user,target_user,source_password,target_password\n\
               alice,alice,alicepw,alicepw2\n\
               # a comment line\n\
               bob,bob\n\
               carol,carol,,\n";
    let batch = secret_file(p.tmp.path(), "users.csv", csv);
    let sadmin = secret_file(p.tmp.path(), "sadmin", "srcadminpw");
    let tadmin = secret_file(p.tmp.path(), "tadmin", "adminpw");
    let common = |verb: &str| -> Vec<String> {
        let mut a = vec![
            verb.to_string(),
            "--source".into(),
            p.src.host_url(),
            "--target".into(),
            p.tgt.host_url(),
            "--batch".into(),
            batch.display().to_string(),
            "--parallel".into(),
            "2".into(),
            "--source-admin".into(),
            "srcadmin".into(),
            "--source-password-file".into(),
            sadmin.display().to_string(),
            "--target-admin".into(),
            "admin".into(),
            "--target-password-file".into(),
            tadmin.display().to_string(),
            "--quiet".into(),
        ];
        if verb == "migrate" {
            a.extend(["--state-dir".to_string(), p.state()]);
        }
        a
    };
    assert_eq!(
        cli(&common("migrate")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())
        .await,
        0
    );
    assert_eq!(
        cli(&common("verify")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())
        .await,
        0
    );
    for (i, (u, _, tpw)) in users.iter().enumerate() {
        let mut t = p.tgt.session(u, tpw).await;
        assert_eq!(count(&mailbox_digest(&mut t).await), 3 + i);
    }
    // verify reports a difference when a target lacks a message.
    let mut t = p.tgt.session("bob", "bobpw2").await;
    t.select("INBOX", false).await.unwrap();
    t.run(ImapCommand::new("UID STORE 1 +FLAGS.SILENT (\\Deleted)"))
        .await
        .unwrap();
    t.run(ImapCommand::new("EXPUNGE")).await.unwrap();
    assert_eq!(
        cli(&common("verify")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())
        .await,
        1
    );
    let _ = verify_mailbox; // used by the kill test module too
}

#[tokio::test]
async fn oauth2_tokens_xoauth2_and_oauthbearer() {
    // Dovecot checks an OAuth2 token against the passdb like a password when no oauth2 passdb
    // is configured, which is enough to exercise both SASL encodings end to end.
    let p = Pair::new();
    let mut s = p.source().await;
    append(
        &mut s,
        "INBOX",
        "\\Seen",
        "01-Jan-2024 00:00:00 +0000",
        &message("oauth", "", 1500, true),
    )
    .await;
    let d = p.tmp.path();
    let (stok, ttok) = (
        secret_file(d, "stok", "alicepw\n"),
        secret_file(d, "ttok", "alicepw2"),
    );
    let args = [
        "migrate".to_string(),
        "--source".into(),
        p.src.url("alice"),
        "--target".into(),
        p.tgt.url("alice"),
        "--source-token-file".into(),
        stok.display().to_string(),
        "--target-auth".into(),
        "oauthbearer".into(),
        "--target-token-file".into(),
        ttok.display().to_string(),
        "--state-dir".into(),
        p.state(),
        "--quiet".into(),
    ];
    assert_eq!(
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await,
        0
    );
    assert_eq!(p.verify().await, 0);
    // A bad token is refused with the side named.
    let bad = secret_file(d, "bad", "nope");
    let mut args = args.to_vec();
    args[10] = bad.display().to_string();
    assert_eq!(
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await,
        1
    );
}

#[tokio::test]
async fn dropped_connections_reconnect_and_finish_without_duplicates() {
    let p = Pair::new();
    let mut s = p.source().await;
    let n = seed(&mut s).await;
    for i in 0..40 {
        append(
            &mut s,
            "INBOX",
            "",
            "01-Jan-2024 00:00:00 +0000",
            &message(&format!("bulk {i}"), "", 20_000, true),
        )
        .await;
    }
    // The first two target connections die mid-transfer (after 60 KB from the client).
    let proxy = Proxy::start(
        p.tgt.port,
        ProxyConfig {
            cut_after: Some((Direction::ToServer, 60_000)),
            cuts_at_most: Some(2),
            ..Default::default()
        },
    );
    let port = proxy.port();
    let d = p.tmp.path();
    let args = [
        "migrate".to_string(),
        "--source".into(),
        p.src.url("alice"),
        "--target".into(),
        format!("imap://alice@127.0.0.1:{port}"),
        "--source-password-file".into(),
        secret_file(d, "spw", "alicepw").display().to_string(),
        "--target-password-file".into(),
        secret_file(d, "tpw", "alicepw2").display().to_string(),
        "--state-dir".into(),
        p.state(),
        "--connections".into(),
        "1".into(),
        "--quiet".into(),
    ];
    assert_eq!(
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await,
        0
    );
    assert_eq!(p.verify().await, 0);
    let mut t = p.target().await;
    assert_eq!(
        count(&mailbox_digest(&mut t).await),
        n + 40,
        "no duplicates after reconnects"
    );
    assert_eq!(proxy.cuts(), 2, "both connections were cut mid-transfer");
    record(
        kind::FAULT,
        "mail: target connections cut mid-APPEND (Dovecot → proxy → Dovecot)",
        &format!("{} cuts, {} messages, none twice", proxy.cuts(), n + 40),
        0,
    );
}

#[tokio::test]
async fn servers_without_extensions_use_the_fallback_paths() {
    // Source without CONDSTORE / LIST-EXTENDED / SPECIAL-USE (LIST + LSUB, full flag rescans);
    // target without LITERAL+ (synchronising literals) and LIST-EXTENDED.
    let mut sc = Config::source();
    sc.capability = Some("IMAP4rev1 LITERAL+ UIDPLUS UNSELECT");
    let mut tc = Config::target();
    tc.capability = Some("IMAP4rev1 UIDPLUS");
    let p = Pair::with(sc, tc);
    let mut s = p.source().await;
    let n = seed(&mut s).await;
    assert!(!s.has_cap("CONDSTORE"));
    assert_eq!(p.migrate(&[]).await, 0);
    assert_eq!(p.verify().await, 0);
    s.select("INBOX", false).await.unwrap();
    s.run(ImapCommand::new("UID STORE 1:2 +FLAGS (\\Answered)"))
        .await
        .unwrap();
    append(
        &mut s,
        "INBOX",
        "",
        "01-Jan-2024 00:00:00 +0000",
        &message("later", "", 3000, true),
    )
    .await;
    assert_eq!(p.migrate(&[]).await, 0);
    assert_eq!(p.verify().await, 0);
    let mut t = p.target().await;
    let dst = mailbox_digest(&mut t).await;
    assert_eq!(count(&dst), n + 1);
    // Subscriptions came through LSUB.
    let tf = folders::list(&mut t).await.unwrap();
    assert_eq!(
        tf.iter()
            .find(|f| f.wire == "Projects.2024")
            .map(|f| f.subscribed),
        Some(true)
    );
}

#[tokio::test]
async fn a_noselect_parent_stays_a_parent_on_the_target() {
    // On the source `Projekt` exists only as the \Noselect parent of `Projekt/Överföring`; it
    // must not become a selectable, empty folder on the target.
    let p = Pair::new();
    let mut s = p.source().await;
    let child = tenantry_mail::protocol::utf7::encode("Projekt/Överföring");
    create(&mut s, &child, false).await;
    append(
        &mut s,
        &child,
        "\\Seen",
        "14-Mar-2021 08:30:00 +0200",
        &message("inside", "", 600, true),
    )
    .await;
    let parent = |list: &[folders::Folder]| {
        list.iter()
            .find(|f| f.path == ["Projekt"])
            .map(|f| f.selectable)
    };
    assert_eq!(
        parent(&folders::list(&mut s).await.unwrap()),
        Some(false),
        "the source lists Projekt as \\Noselect"
    );
    assert_eq!(p.migrate(&[]).await, 0);
    let mut t = p.target().await;
    let listed = folders::list(&mut t).await.unwrap();
    // Dovecot creates the hierarchy level itself and lists it as \Noselect, like the source.
    assert_eq!(
        parent(&listed),
        Some(false),
        "Projekt must be listed, not selectable, on the target: {listed:?}"
    );
    let child = listed
        .iter()
        .find(|f| f.path == ["Projekt", "Överföring"])
        .expect("child folder on the target");
    assert_eq!(t.select(&child.wire, true).await.unwrap().exists, 1);
    assert_eq!(p.verify().await, 0);
}
