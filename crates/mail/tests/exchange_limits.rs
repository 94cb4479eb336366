//! IMAP → Exchange under Outlook's limits, enforced by the test kit's fake Graph scaled down:
//! injected throttling (429 + Retry-After) and the per-mailbox concurrency limit, then the
//! per-mailbox upload budget, which the copy paces itself to instead of meeting 429s.
//!
//! One test function: the Graph endpoints are process-wide environment variables.

mod support;

use std::time::{Duration, Instant};

use support::exchange::*;
use support::*;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions};

async fn source_with(run: &Run, n: usize, body_len: usize) {
    let mut s = run.dove.session("alice", "alicepw").await;
    for i in 0..n {
        append(
            &mut s,
            "INBOX",
            "\\Seen",
            "05-May-2024 09:00:00 +0000",
            &message(&format!("msg {i}"), "", body_len, true),
        )
        .await;
    }
}

fn start_fake(opts: FakeGraphOptions) -> FakeGraph {
    let fake = FakeGraph::start(opts);
    fake.add_mailbox(UPN, false);
    std::env::set_var("TENANTRY_GRAPH_URL", fake.url());
    std::env::set_var("TENANTRY_AUTHORITY", fake.url());
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_budgeted_runs_complete_with_each_message_once() {
    // 1. Throttling: every 7th request is refused with Retry-After: 1 (and the tenant for that
    //    second), and the mailbox accepts 2 concurrent requests where the client sends up to 4.
    let fake = start_fake(FakeGraphOptions {
        throttle_every: Some(7),
        retry_after_secs: 1,
        mailbox_concurrency: 2,
        mail_request_delay: Duration::from_millis(40),
        ..Default::default()
    });
    let run = Run {
        dove: Dovecot::start(Config::source()),
        tmp: tempfile::tempdir().unwrap(),
    };
    source_with(&run, 24, 1500).await;
    assert_eq!(run.run("migrate", &[]).await, 0);
    let stats = fake.stats();
    eprintln!("throttling: {stats:?}");
    assert!(stats.throttle_windows > 0, "throttling was injected");
    assert!(
        stats.mailbox_concurrency_refusals > 0,
        "the concurrency limit was met"
    );
    assert_eq!(stats.ignored_retry_after, 0, "Retry-After honoured");
    assert_each_once(&fake, 24);
    drop(fake);

    // 2. The upload budget, scaled down to 300 kB per 2 s; ~40 kB a message, 30 messages
    //    (~1.2 MB): at least three windows' worth. Paced to the same figures, the run meets no
    //    budget 429 at all.
    let (budget, window) = (300_000u64, Duration::from_secs(2));
    let fake = start_fake(FakeGraphOptions {
        mail_upload_budget: (budget, window),
        ..Default::default()
    });
    let run = Run {
        dove: Dovecot::start(Config::source()),
        tmp: tempfile::tempdir().unwrap(),
    };
    source_with(&run, 30, 40_000).await;
    let started = Instant::now();
    let code = run
        .run(
            "migrate",
            &[
                "--exchange-upload-budget",
                &budget.to_string(),
                "--exchange-upload-window",
                &window.as_secs().to_string(),
            ],
        )
        .await;
    let took = started.elapsed();
    let stats = fake.stats();
    eprintln!("upload budget: {took:?}, {stats:?}");
    assert_eq!(code, 0);
    assert_each_once(&fake, 30);
    assert_eq!(
        stats.upload_budget_refusals, 0,
        "paced below the budget: no 429 for it"
    );
    // ~1.2 MB at 300 kB per 2 s cannot take less than 3 windows: the pacing did wait.
    assert!(took >= window * 3, "{took:?}");

    drop(fake);

    // 3. A large attachment and lost answers: the create stored but unanswered (the message is
    //    found by lookup, its attachment added), then an upload that fails mid-way (reported;
    //    the next run finds the message and completes it) — one attachment in the end.
    let fake = start_fake(FakeGraphOptions::default());
    let run = Run {
        dove: Dovecot::start(Config::source()),
        tmp: tempfile::tempdir().unwrap(),
    };
    let att = attachment_bytes(5_000_000);
    let att2 = attachment_bytes(4_000_001);
    {
        let mut s = run.dove.session("alice", "alicepw").await;
        append(
            &mut s,
            "INBOX",
            "\\Seen",
            "05-May-2024 09:00:00 +0000",
            &with_attachment("lost answer", &att),
        )
        .await;
    }
    fake.drop_after_create(1);
    assert_eq!(run.run("migrate", &[]).await, 0);
    assert_each_once(&fake, 1);
    let attached = |subject: &str| {
        let m = fake
            .mail_messages(UPN)
            .into_iter()
            .find(|m| m.json["subject"] == subject)
            .unwrap();
        m.json["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(a["contentBytes"].as_str().unwrap())
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let got = attached("lost answer");
    assert!(
        got == [att.clone()],
        "found, then attached once: {} attachment(s) of {:?} bytes",
        got.len(),
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    {
        let mut s = run.dove.session("alice", "alicepw").await;
        append(
            &mut s,
            "INBOX",
            "\\Seen",
            "05-May-2024 10:00:00 +0000",
            &with_attachment("cut upload", &att2),
        )
        .await;
    }
    fake.fail_attachment_ranges(1);
    assert_eq!(
        run.run("migrate", &[]).await,
        1,
        "the cut upload is reported"
    );
    assert!(
        attached("cut upload").is_empty(),
        "a session never finished attaches nothing"
    );
    assert_eq!(run.run("migrate", &[]).await, 0);
    assert_each_once(&fake, 2);
    let got = attached("cut upload");
    assert!(
        got == [att2],
        "completed by the next run, once: {} attachment(s) of {:?} bytes",
        got.len(),
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(attached("lost answer").len(), 1);

    // Attached, but the answer lost: the next run sees it there (name and size), adds nothing.
    let att3 = attachment_bytes(3_300_000);
    {
        let mut s = run.dove.session("alice", "alicepw").await;
        append(
            &mut s,
            "INBOX",
            "\\Seen",
            "05-May-2024 11:00:00 +0000",
            &with_attachment("attached unanswered", &att3),
        )
        .await;
    }
    fake.lose_attachment_answers(1);
    assert_eq!(run.run("migrate", &[]).await, 1, "reported as failed");
    assert_eq!(run.run("migrate", &[]).await, 0);
    assert_each_once(&fake, 3);
    let got = attached("attached unanswered");
    assert!(
        got == [att3],
        "not attached twice: {} attachment(s) of {:?} bytes",
        got.len(),
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
}
