//! Exchange Online's own IMAP as the target, as it behaves: the test kit's `exchange_imap`
//! proxy in front of a real Dovecot takes XOAUTH2 with app-only tokens from the fake Graph's
//! token endpoint (Entra ID cannot run here), answers APPENDs "Request is throttled. Suggested
//! Backoff Time: N milliseconds" and drops connections after such answers; the engine in
//! `exchange_target` mode keeps only the flags Exchange keeps, renames the folder names it
//! refuses and quarantines messages above the append limit.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tenantry_graph::token::{AppTokens, EXCHANGE_ONLINE_SCOPE};
use tenantry_graph::{ClientSecret, GraphConfig};
use tenantry_mail::folders;
use tenantry_mail::report::Progress;
use tenantry_mail::session::{AppToken, Auth, Endpoint, Security, Selected, Session, Side};
use tenantry_mail::sync::{migrate_mailbox, Options, EXCHANGE_PERMANENT_FLAGS};
use tenantry_mail::verify::{folder_digest, verify_mailbox, MessageDigest};
use tenantry_testkit::exchange_imap::{ExchangeImapConfig, ExchangeImapProxy};
use tenantry_testkit::faults::{kind, record};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

const DATE: &str = "05-May-2024 09:00:00 +0000";

/// Exchange's PERMANENTFLAGS, to filter the source's flags to what is expected on the target.
fn exchange_accepts() -> Selected {
    Selected {
        permanent_flags: Some(
            EXCHANGE_PERMANENT_FLAGS
                .iter()
                .map(|f| f.to_string())
                .collect(),
        ),
        ..Default::default()
    }
}

/// Per folder (decoded, '/'-joined), the digests; `accept` filters flags.
async fn digest(
    s: &mut Session,
    accept: Option<&Selected>,
) -> BTreeMap<String, Vec<MessageDigest>> {
    let mut out = BTreeMap::new();
    for f in folders::list(s).await.unwrap() {
        if f.selectable {
            let (d, _) = folder_digest(s, &f.wire, accept, true, &Options::default())
                .await
                .unwrap();
            out.insert(f.path.join("/"), d);
        }
    }
    out
}

fn proxy_for(
    tgt: &Dovecot,
    fake: &FakeGraph,
    cfg: impl FnOnce(&mut ExchangeImapConfig),
) -> ExchangeImapProxy {
    let mut c = ExchangeImapConfig::new(("admin", "adminpw"), Arc::new(fake.token_check()));
    cfg(&mut c);
    ExchangeImapProxy::start(tgt.port, c)
}

fn app_endpoint(port: u16, fake: &FakeGraph) -> Endpoint {
    let mut cfg = GraphConfig::from_env(TENANT, CLIENT_ID, ClientSecret::new(CLIENT_SECRET));
    cfg.authority = fake.url().to_string();
    cfg.graph_url = fake.url().to_string();
    Endpoint {
        side: Side::Target,
        host: "127.0.0.1".into(),
        port,
        user: "alice".into(),
        security: Security::Plain,
        auth: Auth::XOAuth2App(AppToken(Arc::new(AppTokens::new(
            cfg,
            EXCHANGE_ONLINE_SCOPE,
        )))),
        ca_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_imap_throttled_tokens_renewed_flags_names_and_append_limit() {
    // Tokens live 3 s (refreshed after 2.25 s): the run below outlives the first one.
    let fake = FakeGraph::start(FakeGraphOptions {
        token_lifetime: Duration::from_secs(3),
        ..Default::default()
    });
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    create(&mut s, "Files", true).await;
    create(&mut s, "Work", true).await;
    create(&mut s, "work", true).await;
    let flags = [
        "\\Seen",
        "\\Seen $MDNSent",
        "$Label1 \\Flagged",
        "",
        "\\Answered $Forwarded",
    ];
    for i in 0..30 {
        let body = message(&format!("m{i}"), "", 4000 + i * 500, true);
        append(&mut s, "INBOX", flags[i % flags.len()], DATE, &body).await;
    }
    for (folder, n) in [("Files", 2), ("Work", 2), ("work", 1), ("Sent", 2)] {
        for i in 0..n {
            let body = message(&format!("{folder} {i}"), "", 3000, true);
            append(&mut s, folder, "\\Seen", DATE, &body).await;
        }
    }
    // Above the (lowered) append limit: quarantined, never sent.
    let big = message("too big", "", 300_000, true);
    append(&mut s, "INBOX", "\\Seen", DATE, &big).await;

    // Every 4th APPEND of the mailbox throttled with a 1.2 s backoff (3 times), and the
    // connection dropped after each one.
    let proxy = proxy_for(&tgt, &fake, |c| {
        c.throttle_every = 4;
        c.throttle_at_most = 3;
        c.backoff = Duration::from_millis(1200);
        // Half the backoff: room for a command already in flight on a loaded machine, while
        // one sent inside the backoff is still caught.
        c.grace = Duration::from_millis(600);
        c.drop_after = 1;
        // And one connection cut right after an APPEND went through (stored, unanswered).
        c.cut_after_append = Some(10);
    });
    let tgt_ep = app_endpoint(proxy.port(), &fake);
    let opts = Options {
        exchange_target: true,
        max_message_size: Some(200_000),
        connections: 2,
        batch_count: 3,
        multiappend: false,
        ..Default::default()
    };
    let state = tmp.path().join("state.sqlite");
    let src_ep = src.endpoint("alice", "alicepw");
    let started = Instant::now();
    let rep = migrate_mailbox(
        &src_ep,
        &tgt_ep,
        &state,
        &opts,
        Arc::new(Progress::default()),
    )
    .await;
    let elapsed = started.elapsed();
    let stats = proxy.stats();
    assert!(rep.error.is_none(), "{:?}", rep.error);

    // Throttled, waited out on every connection of the mailbox, reconnected.
    assert_eq!(stats.throttled, 3, "{stats:?}");
    assert_eq!(rep.throttled, 3, "the report counts the waits");
    assert_eq!(
        stats.ignored_backoff, 0,
        "a command arrived inside a suggested backoff: {stats:?}"
    );
    assert_eq!(stats.dropped, 3);
    assert_eq!(stats.cut_after_append, 1);
    // Logins after the first token's refresh time used a new one; none was refused.
    assert_eq!(stats.logins_refused, 0, "{stats:?}");
    assert!(
        elapsed > Duration::from_secs(3),
        "the run outlived the first token ({elapsed:?})"
    );
    assert!(
        stats.tokens_seen >= 2,
        "a reconnect late in the run got a fresh token: {stats:?}"
    );
    let scopes = fake.stats().token_scopes;
    assert_eq!(scopes, [EXCHANGE_ONLINE_SCOPE], "Exchange's IMAP resource");

    // The quarantined message: listed with its size and reason; the run is not OK.
    let failures: Vec<_> = rep.folders.iter().flat_map(|f| &f.failures).collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].reason.contains("quarantined"),
        "{}",
        failures[0].reason
    );
    assert!(failures[0].size > 200_000);
    assert!(!rep.ok());

    // Keywords Exchange does not keep are listed as not carried; $MDNSent is kept.
    let inbox = rep.folders.iter().find(|f| f.source == "INBOX").unwrap();
    assert_eq!(inbox.refused_flags, ["$Forwarded", "$Label1"]);

    // Renamed folders, in the report.
    let note = |src: &str| {
        rep.folders
            .iter()
            .find(|f| f.source == src)
            .and_then(|f| f.note.clone())
            .unwrap_or_default()
    };
    assert!(
        note("Files").contains("renamed for Exchange Online"),
        "{}",
        note("Files")
    );
    assert!(note("work").contains("case"), "{}", note("work"));

    // Every message exactly once, byte for byte, with the flags Exchange keeps.
    let accepts = exchange_accepts();
    let mut want = digest(&mut s, Some(&accepts)).await;
    want.get_mut("INBOX")
        .unwrap()
        .retain(|d| d.sha != tenantry_mail::sync::sha_hex(&big));
    let mut t = tgt.session("alice", "alicepw2").await;
    let got = digest(&mut t, None).await;
    let renamed = [
        ("INBOX", "INBOX"),
        ("Files", "Files (migrated)"),
        ("Work", "Work"),
        ("work", "work (2)"),
        ("Sent", "Sent Items"),
    ];
    for (from, to) in renamed {
        assert_eq!(want[from], got[to], "{from} -> {to}");
    }
    let mdn = got["INBOX"]
        .iter()
        .filter(|d| d.flags.contains("$MDNSent"))
        .count();
    assert_eq!(mdn, 6, "$MDNSent kept as a flag");
    // \Flagged (6 messages) stored after the APPEND, never set by it.
    assert_eq!(stats.appends_flagged, 0, "{stats:?}");
    assert!(stats.stores_flagged >= 6, "{stats:?}");

    // verify, with Exchange's names and flags: only the quarantined message differs.
    let v = verify_mailbox(&src_ep, &tgt_ep, &opts).await.unwrap();
    assert_eq!(v.differences.len(), 1, "{:?}", v.differences);
    assert!(v.differences[0].contains("INBOX"), "{:?}", v.differences);

    // A re-run through the proxy: nothing copied again, nothing duplicated.
    let rep2 = migrate_mailbox(
        &src_ep,
        &tgt_ep,
        &state,
        &opts,
        Arc::new(Progress::default()),
    )
    .await;
    assert_eq!(rep2.copied(), 0);
    assert_eq!(digest(&mut t, None).await, got);
    record(
        kind::FAULT,
        "mail: Exchange IMAP proxy (throttling text, drops, app tokens of 3 s) in front of Dovecot",
        &format!(
            "{} throttled answers honoured, {} drops, {} tokens in {:.1} s, each message once",
            stats.throttled,
            stats.dropped,
            stats.tokens_seen,
            elapsed.as_secs_f64()
        ),
        0,
    );
}

fn migrate_cmd(src: &Dovecot, port: u16, fake: &FakeGraph, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tenantry-mail"));
    c.args(["migrate", "--source", &src.url("alice")])
        .args(["--target", &format!("imap://alice@127.0.0.1:{port}")])
        .args([
            "--target-kind",
            "exchange-imap",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT_ID,
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args([
            "--quiet",
            "--batch-count",
            "4",
            "--connections",
            "2",
            "--no-multiappend",
        ])
        .env("TENANTRY_SOURCE_PASSWORD", "alicepw")
        .env("TENANTRY_CLIENT_SECRET", CLIENT_SECRET)
        .env("TENANTRY_AUTHORITY", fake.url())
        .env("TENANTRY_GRAPH_URL", fake.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[tokio::test]
async fn kill_9_through_the_exchange_proxy_then_rerun_gives_exactly_one_copy() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    create(&mut s, "Archive", true).await;
    for i in 0..150 {
        let folder = if i % 3 == 0 { "Archive" } else { "INBOX" };
        let body = message(&format!("k{i}"), "", 8000 + (i % 5) * 2000, true);
        append(
            &mut s,
            folder,
            if i % 2 == 0 { "\\Seen" } else { "" },
            DATE,
            &body,
        )
        .await;
    }
    // Throttling all along (the BAD form), drops after 3 throttled answers, and one connection cut right
    // after an APPEND was forwarded (stored, answer never delivered).
    let proxy = proxy_for(&tgt, &fake, |c| {
        c.throttle_every = 9;
        c.glued_bad = true; // "BADRequest is throttled. …", as Exchange has sent it
        c.backoff = Duration::from_millis(100);
        c.drop_after = 3;
        c.cut_after_append = Some(20);
    });
    let mut kills = 0;
    let mut delay = 300u64;
    for _ in 0..6 {
        let mut child = migrate_cmd(&src, proxy.port(), &fake, tmp.path())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        delay += 250;
    }
    assert!(kills >= 2, "the migration was never interrupted");
    let status = migrate_cmd(&src, proxy.port(), &fake, tmp.path())
        .status()
        .unwrap();
    assert!(status.success(), "the last run completes");
    let stats = proxy.stats();
    assert!(
        stats.throttled > 0 && stats.cut_after_append == 1,
        "{stats:?}"
    );
    let accepts = exchange_accepts();
    let want = digest(&mut s, Some(&accepts)).await;
    let mut t = tgt.session("alice", "alicepw2").await;
    let got = digest(&mut t, None).await;
    assert_eq!(want["INBOX"], got["INBOX"]);
    assert_eq!(want["Archive"], got["Archive"]);
    record(
        kind::FAULT,
        "mail: kill -9 through the Exchange IMAP proxy (throttling, drops, a cut after APPEND)",
        &format!(
            "{kills} kills, {} throttled answers, 150 messages, each exactly once",
            stats.throttled
        ),
        0,
    );
}

/// The app's certificate instead of a secret (`--client-certificate`): the token for XOAUTH2
/// comes from a signed assertion the fake token endpoint verifies.
#[tokio::test]
async fn a_certificate_instead_of_a_secret_logs_in_to_exchange_imap() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let cert = tenantry_testkit::tls::app_certificate(tmp.path(), "app");
    fake.register_certificate(&cert.certificate_pem);
    let mut s = src.session("alice", "alicepw").await;
    for i in 0..5 {
        let body = message(&format!("cert{i}"), "", 3000, true);
        append(&mut s, "INBOX", "\\Seen", DATE, &body).await;
    }
    let proxy = proxy_for(&tgt, &fake, |_| {});
    let out = migrate_cmd(&src, proxy.port(), &fake, tmp.path())
        .env_remove("TENANTRY_CLIENT_SECRET")
        .arg("--client-certificate")
        .arg(&cert.pem_file)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepts = exchange_accepts();
    let want = digest(&mut s, Some(&accepts)).await;
    let mut t = tgt.session("alice", "alicepw2").await;
    let got = digest(&mut t, None).await;
    assert_eq!(want["INBOX"].len(), 5);
    assert_eq!(want["INBOX"], got["INBOX"]);
    let stats = fake.stats();
    assert!(stats.tokens_for_assertions > 0, "{stats:?}");
    assert_eq!(stats.tokens_for_assertions, stats.tokens_issued);
}

#[tokio::test]
async fn exchange_imap_without_app_credentials_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let code = cli(&[
        "migrate",
        "--source",
        "imap://alice@127.0.0.1:1",
        "--source-password-file",
        secret_file(tmp.path(), "pw", "x").to_str().unwrap(),
        "--target",
        "imaps://alice@contoso.com@outlook.office365.com",
        "--state-dir",
        state.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        code, 2,
        "detected from the host, refused before any connection"
    );
}

#[tokio::test]
async fn exchange_imap_as_source_with_its_own_app_and_throttled_fetches() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    for i in 0..40 {
        let body = message(&format!("s{i}"), "", 5000 + i * 100, true);
        append(&mut s, "INBOX", "\\Seen", DATE, &body).await;
    }
    // Exchange as the source: every 3rd FETCH throttled, the connection dropped after it.
    let proxy = ExchangeImapProxy::start(src.port, {
        let mut c =
            ExchangeImapConfig::new(("srcadmin", "srcadminpw"), Arc::new(fake.token_check()));
        c.throttle_commands = vec!["FETCH".into()];
        c.throttle_every = 3;
        c.backoff = Duration::from_millis(150);
        c.drop_after = 1;
        c
    });
    let status = Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args([
            "migrate",
            "--source",
            &format!("imap://alice@127.0.0.1:{}", proxy.port()),
        ])
        .args([
            "--source-kind",
            "exchange-imap",
            "--source-tenant-id",
            TENANT,
        ])
        .args([
            "--source-client-id",
            CLIENT_ID,
            "--target",
            &tgt.url("alice"),
        ])
        .args(["--batch-count", "5", "--quiet"])
        .stdout(Stdio::null())
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .env("TENANTRY_SOURCE_CLIENT_SECRET", CLIENT_SECRET)
        .env("TENANTRY_TARGET_PASSWORD", "alicepw2")
        .env("TENANTRY_AUTHORITY", fake.url())
        .env("TENANTRY_GRAPH_URL", fake.url())
        .status()
        .unwrap();
    let stats = proxy.stats();
    assert!(status.success(), "{stats:?}");
    assert!(stats.throttled >= 3 && stats.dropped >= 1, "{stats:?}");
    let want = digest(&mut s, None).await;
    let mut t = tgt.session("alice", "alicepw2").await;
    assert_eq!(want["INBOX"], digest(&mut t, None).await["INBOX"]);
}

#[tokio::test]
async fn a_throttled_and_dropped_create_sets_the_mailbox_up_again() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let src = Dovecot::start(Config::source());
    let tgt = Dovecot::start(Config::target());
    let tmp = tempfile::tempdir().unwrap();
    let mut s = src.session("alice", "alicepw").await;
    for folder in ["Clients", "Clients/Acme", "Travel"] {
        create(&mut s, folder, true).await;
        for i in 0..3 {
            let body = message(&format!("{folder} {i}"), "", 2000, true);
            append(&mut s, folder, "\\Seen", DATE, &body).await;
        }
    }
    // The first two CREATEs throttled, each followed by a dropped connection.
    let proxy = proxy_for(&tgt, &fake, |c| {
        c.throttle_commands = vec!["CREATE".into()];
        c.throttle_every = 1;
        c.throttle_at_most = 2;
        c.drop_after = 1;
    });
    let tgt_ep = app_endpoint(proxy.port(), &fake);
    let opts = Options {
        exchange_target: true,
        ..Default::default()
    };
    let state = tmp.path().join("state.sqlite");
    let src_ep = src.endpoint("alice", "alicepw");
    let rep = migrate_mailbox(
        &src_ep,
        &tgt_ep,
        &state,
        &opts,
        Arc::new(Progress::default()),
    )
    .await;
    assert!(rep.ok(), "{:?}", rep.problems());
    assert_eq!(proxy.stats().throttled, 2);
    assert_eq!(rep.throttled, 2);
    let want = digest(&mut s, None).await;
    let mut t = tgt.session("alice", "alicepw2").await;
    let got = digest(&mut t, None).await;
    for (from, to) in [
        ("Clients", "Clients"),
        ("Clients/Acme", "Clients/Acme"),
        ("Travel", "Travel"),
    ] {
        assert_eq!(want[from], got[to], "{from}");
    }
}
