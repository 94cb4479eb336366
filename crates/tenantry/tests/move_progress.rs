//! A move's progress through the API while a mailbox migrates: a real source Dovecot behind a
//! proxy that slows every chunk (so the step runs for seconds on any machine), a real target,
//! and `tenantry serve` running the steps. While the mailbox step runs, its progress shows
//! messages and bytes done of the totals; at the end the step's counts are its totals.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::mail::{dovecot, PASSWORD};
use support::*;
use tenantry_testkit::dovecot as mail;
use tenantry_testkit::faults::{Proxy, ProxyConfig};

/// About 12.5 MB: more than three of the mail engine's 4 MiB batches, and a mailbox's progress
/// moves batch by batch (a message counts once the target stored it).
const MESSAGES: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_mailbox_step_shows_messages_and_bytes_of_the_totals() {
    let source_mail = dovecot(
        &["adele"],
        "fabrikam.com",
        ("srcadmin", "srcadminpw"),
        false,
    );
    let target_mail = dovecot(&["adele"], "contoso.com", ("admin", "adminpw"), true);
    // Through chunks of at most 16 KiB delayed 12 ms each, a batch takes at least 3 s to read:
    // several progress writes (one a second) between two batches, whatever the machine's load.
    let mut bytes = 0u64;
    {
        let mut s = source_mail.session("adele@fabrikam.com", PASSWORD).await;
        for n in 0..MESSAGES {
            let body = mail::message(&format!("adele message {n}"), "", 50_000, true);
            bytes += body.len() as u64;
            mail::append(&mut s, "INBOX", "", "05-Mar-2021 10:00:00 +0100", &body).await;
        }
    }
    let slow = Proxy::start(
        source_mail.port,
        ProxyConfig {
            delay: Duration::from_millis(12),
            ..ProxyConfig::default()
        },
    );

    let s = Server::start();
    let (source, target) = s.move_tenants(&["adele"], 2, 1).await;
    s.profiles(&MAIL_PROFILES).await;
    let id = s
        .create_move(json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "sourceMail": {"url": format!("imap://127.0.0.1:{}", slow.port()), "profile": "src-imap"},
            "targetMail": {"url": target_mail.host_url(), "profile": "dst-imap"},
        }))
        .await;
    s.run_move(&id).await;

    // Watch the move until it ends: every progress a running mailbox step shows is within its
    // totals, and at least one shows messages and bytes on their way.
    let key = "mailbox:adele@fabrikam.com";
    let mut under_way: Option<Value> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        let (_, m) = s.get(&format!("/v1/moves/{id}"), OPERATOR).await;
        assert_ne!(m["state"], "Failed", "{m}");
        if m["state"] == "Completed" {
            break m;
        }
        for step in m["progress"]["running"].as_array().unwrap() {
            if step["key"] != key || step["progress"].is_null() {
                continue;
            }
            let p = &step["progress"];
            let (items, bytes_done) = (
                p["itemsDone"].as_u64().unwrap(),
                p["bytesDone"].as_u64().unwrap(),
            );
            if let Some(total) = p["itemsTotal"].as_u64() {
                assert!(items <= total && total <= MESSAGES as u64, "{p}");
            }
            if let Some(total) = p["bytesTotal"].as_u64() {
                assert!(bytes_done <= total && total <= bytes, "{p}");
            }
            if items > 0 && items < MESSAGES as u64 && bytes_done > 0 {
                under_way.get_or_insert_with(|| p.clone());
            }
        }
        assert!(Instant::now() < deadline, "the move did not complete: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seen = under_way.expect("the API showed the mailbox step under way");
    assert_eq!(seen["itemsTotal"], MESSAGES as u64, "{seen}");
    assert_eq!(seen["bytesTotal"], bytes, "{seen}");

    // The finished step keeps its final counts: everything listed was copied.
    let measured = finished["progress"]["byStep"].as_array().unwrap();
    let step = measured
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no progress for {key}: {finished}"));
    let p = &step["progress"];
    assert_eq!(step["state"], "Done", "{step}");
    assert_eq!(
        (p["itemsDone"].as_u64(), p["itemsTotal"].as_u64()),
        (Some(MESSAGES as u64), Some(MESSAGES as u64)),
        "{p}"
    );
    assert_eq!(
        (p["bytesDone"].as_u64(), p["bytesTotal"].as_u64()),
        (Some(bytes), Some(bytes)),
        "{p}"
    );
    assert!(
        p["ratePerSecond"].is_null() && p["estimatedEnd"].is_null(),
        "only while running: {p}"
    );
}
