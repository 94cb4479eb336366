//! IMAP → Exchange Online through Microsoft Graph: a real Dovecot as the source, the test kit's
//! documentation-faithful fake Graph as Exchange (the real service cannot run here).
//!
//! One test function: the Graph endpoints are configured through process-wide environment
//! variables (TENANTRY_GRAPH_URL, TENANTRY_AUTHORITY), so the scenarios run in sequence.

mod support;

use base64::Engine;
use support::exchange::*;
use support::*;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, PR_MESSAGE_DELIVERY_TIME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_to_exchange_as_received_mail_resumable_and_verified() {
    let fake = FakeGraph::start(FakeGraphOptions {
        mail_request_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    });
    // A German mailbox: "Gesendete Elemente", not "Sent Items" — only wellKnownName maps it.
    fake.add_mailbox(UPN, true);
    std::env::set_var("TENANTRY_GRAPH_URL", fake.url());
    std::env::set_var("TENANTRY_AUTHORITY", fake.url());
    let run = Run {
        dove: Dovecot::start(Config::source()),
        tmp: tempfile::tempdir().unwrap(),
    };
    let att = attachment_bytes(200_000);
    let big_att: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    {
        let mut s = run.dove.session("alice", "alicepw").await;
        create(&mut s, "Projects/2024", true).await;
        append(
            &mut s,
            "INBOX",
            "\\Seen \\Flagged Work",
            "01-Jan-2024 10:00:00 +0000",
            &with_attachment("att1", &att),
        )
        .await;
        // A 10 MB attachment: added through an upload session once the message exists.
        append(
            &mut s,
            "INBOX",
            "\\Seen",
            "01-Jan-2024 11:00:00 +0000",
            &with_attachment("big", &big_att),
        )
        .await;
        append(
            &mut s,
            "INBOX",
            "",
            "02-Feb-2024 11:30:00 +0000",
            &message("unread", "", 500, true),
        )
        .await;
        append(
            &mut s,
            "Sent",
            "\\Seen",
            "03-Mar-2024 12:00:00 +0000",
            &message("sent one", "", 300, true),
        )
        .await;
        append(
            &mut s,
            "Projects/2024",
            "\\Seen $Label1",
            "04-Apr-2024 08:00:00 +0000",
            &message("project", "", 800, false),
        )
        .await;
        for i in 0..12 {
            append(
                &mut s,
                "INBOX",
                "\\Seen",
                "05-May-2024 09:00:00 +0000",
                &message(&format!("bulk {i}"), "", 2000, true),
            )
            .await;
        }
        // A text over Graph's 4 MB request limit: reported, the rest goes on.
        append(
            &mut s,
            "INBOX",
            "",
            "06-Jun-2024 06:00:00 +0000",
            &message("huge", "", 4_500_000, true),
        )
        .await;
    }

    // Options that mean nothing for an exchange:// target are refused (exit 2), not ignored.
    for extra in [
        &["--connections", "8"][..],
        &["--target-kind", "imap"],
        &["--target-password-file", "/nonexistent"],
    ] {
        assert_eq!(run.run("migrate", extra).await, 2, "{extra:?} refused");
    }
    assert_eq!(fake.stats().messages_created, 0);

    // A dry run creates nothing, not even a state file.
    assert_eq!(run.run("migrate", &["--dry-run"]).await, 0);
    assert_eq!(fake.stats().messages_created, 0);
    let state = run.tmp.path().join("state");
    assert!(
        !state.exists() || std::fs::read_dir(&state).unwrap().next().is_none(),
        "a dry run writes no state"
    );

    // A first run whose first three creates are stored but answered with a dropped connection.
    fake.drop_after_create(3);
    assert_eq!(
        run.run("migrate", &[]).await,
        1,
        "the oversized message is a failure"
    );
    // Every message but the oversized one, each exactly once after the lost answers; received
    // mail, never drafts.
    assert_each_once(&fake, 17);
    let msgs = fake.mail_messages(UPN);

    let by_subject = |s: &str| {
        msgs.iter()
            .find(|m| m.json["subject"] == s)
            .unwrap()
            .clone()
    };
    let a1 = by_subject("att1");
    assert_eq!(a1.folder_well_known.as_deref(), Some("inbox"));
    assert!(a1.is_read);
    assert_eq!(a1.json["flag"]["flagStatus"], "flagged");
    assert_eq!(a1.json["categories"], serde_json::json!(["Work"]));
    assert_eq!(a1.json["receivedDateTime"], "2024-01-01T10:00:00Z");
    assert_eq!(
        a1.property(PR_MESSAGE_DELIVERY_TIME),
        Some("2024-01-01T10:00:00Z")
    );
    let headers = a1.property("String 0x007D").unwrap();
    for h in [
        "Received: from mx.example.org",
        "X-Custom: kept",
        "Message-ID: <att1@example.org>",
        "Content-Type: multipart/mixed",
    ] {
        assert!(headers.contains(h), "{h} missing from {headers}");
    }
    let got = base64::engine::general_purpose::STANDARD
        .decode(a1.json["attachments"][0]["contentBytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, att, "every attachment byte");
    let unread = by_subject("unread");
    assert!(!unread.is_read && !unread.is_draft);
    let sent = by_subject("sent one");
    assert_eq!(sent.folder_well_known.as_deref(), Some("sentitems"));
    assert_eq!(sent.folder_path, "Gesendete Elemente");
    let project = by_subject("project");
    assert_eq!(project.folder_path, "Projects/2024");
    assert_eq!(project.json["categories"], serde_json::json!(["$Label1"]));
    assert!(fake
        .mail_folders(UPN)
        .contains(&"Projects/2024".to_string()));
    let stats = fake.stats();
    assert_eq!(
        stats.mailbox_concurrency_refusals, 0,
        "never a fifth request in flight"
    );

    let big = by_subject("big");
    assert!(
        !big.is_draft && big.is_read,
        "received mail, created with its properties"
    );
    let list = big.json["attachments"].as_array().unwrap();
    assert_eq!(
        list.len(),
        1,
        "attached once: {:?}",
        list.iter().map(|a| &a["name"]).collect::<Vec<_>>()
    );
    let got = base64::engine::general_purpose::STANDARD
        .decode(list[0]["contentBytes"].as_str().unwrap())
        .unwrap();
    assert!(
        got == big_att,
        "every byte of the 10 MB attachment ({} bytes arrived)",
        got.len()
    );
    assert_eq!(list[0]["name"], "data.bin");
    let sessions = stats.attachment_sessions_created;
    assert!(sessions >= 1, "through an upload session");
    assert!(
        stats.attachment_ranges >= 4,
        "in ranges of at most 4 MB: {}",
        stats.attachment_ranges
    );
    assert_eq!(
        stats.authorization_on_upload_url, 0,
        "no token to the uploadUrl"
    );

    // A re-run copies nothing (the oversized one is reported again).
    let before = fake.stats().messages_created;
    assert_eq!(run.run("migrate", &[]).await, 1);
    assert_eq!(
        fake.stats().messages_created,
        before,
        "a re-run creates nothing"
    );
    assert_eq!(fake.mail_messages(UPN).len(), 17);
    assert_eq!(
        fake.stats().attachment_sessions_created,
        sessions,
        "nor attaches anything again"
    );

    // Verify: the oversized message is the one difference; a changed flag is named.
    let a = run.args("verify", &["--json"]);
    assert_eq!(
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await,
        1
    );
    let client = fake_graph_client();
    let mbx = tenantry_mail::exchange::mailbox::Mailbox::new(client, UPN);
    let src = run.dove.endpoint("alice", "alicepw");
    let opts = tenantry_mail::sync::Options::default();
    let rep = tenantry_mail::exchange::verify::verify_mailbox(&src, &mbx, &opts)
        .await
        .unwrap();
    assert_eq!(rep.differences.len(), 1, "{:?}", rep.differences);
    assert!(
        rep.differences[0].contains("missing in Exchange"),
        "{:?}",
        rep.differences
    );
    let unread_id = unread.id.clone();
    mbx.patch(&unread_id, &serde_json::json!({"isRead": true}))
        .await
        .unwrap();
    let rep = tenantry_mail::exchange::verify::verify_mailbox(&src, &mbx, &opts)
        .await
        .unwrap();
    assert!(
        rep.differences
            .iter()
            .any(|d| d.contains("isRead is true (expected false)")),
        "{:?}",
        rep.differences
    );
}
