//! IMAP → Exchange Online through Microsoft Graph: a real Dovecot as the source, the test kit's
//! documentation-faithful fake Graph as Exchange (the real service cannot run here).
//!
//! One test function: the Graph endpoints are configured through process-wide environment
//! variables (TENANTRY_GRAPH_URL, TENANTRY_AUTHORITY), so the scenarios run in sequence.

mod support;

use base64::Engine;
use support::*;
use tenantry_testkit::graph_fake::{
    FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, PR_MESSAGE_DELIVERY_TIME, TENANT,
};

const UPN: &str = "alice@contoso.com";

fn attachment_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

fn with_attachment(subject: &str, att: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(att);
    let wrapped: Vec<String> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "Received: from mx.example.org by mail.example.org; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         From: Carol <carol@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 09:59:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\
         X-Custom: kept\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n\
         --XX\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--XX--\r\n",
        wrapped.join("\r\n")
    )
    .into_bytes()
}

struct Run {
    dove: Dovecot,
    tmp: tempfile::TempDir,
}

impl Run {
    fn args(&self, verb: &str, extra: &[&str]) -> Vec<String> {
        let d = self.tmp.path();
        let mut a: Vec<String> = vec![
            verb.into(),
            "--source".into(),
            self.dove.url("alice"),
            "--target".into(),
            format!("exchange://{UPN}"),
            "--source-password-file".into(),
            secret_file(d, "spw", "alicepw\n").display().to_string(),
            "--tenant-id".into(),
            TENANT.into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret-file".into(),
            secret_file(d, "secret", CLIENT_SECRET)
                .display()
                .to_string(),
            "--quiet".into(),
        ];
        if verb == "migrate" {
            a.push("--state-dir".into());
            a.push(d.join("state").display().to_string());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }
    async fn run(&self, verb: &str, extra: &[&str]) -> u8 {
        let a = self.args(verb, extra);
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
}

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
        // Over Graph's 4 MB request limit once base64-encoded: reported, the rest goes on.
        append(
            &mut s,
            "INBOX",
            "",
            "06-Jun-2024 06:00:00 +0000",
            &with_attachment("huge", &attachment_bytes(3_500_000)),
        )
        .await;
    }

    // A first run whose first three creates are stored but answered with a dropped connection.
    fake.drop_after_create(3);
    assert_eq!(
        run.run("migrate", &[]).await,
        1,
        "the oversized message is a failure"
    );
    let msgs = fake.mail_messages(UPN);
    assert_eq!(
        msgs.len(),
        16,
        "every message but the oversized one, each exactly once"
    );
    let mut ids: Vec<String> = msgs
        .iter()
        .map(|m| {
            m.property(tenantry_mail::exchange::message::SOURCE_SHA256)
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n,
        "no message created twice after the lost answers"
    );
    assert!(
        msgs.iter().all(|m| !m.is_draft),
        "received mail, never drafts"
    );

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

    // A re-run copies nothing (the oversized one is reported again).
    let before = fake.stats().messages_created;
    assert_eq!(run.run("migrate", &[]).await, 1);
    assert_eq!(
        fake.stats().messages_created,
        before,
        "a re-run creates nothing"
    );
    assert_eq!(fake.mail_messages(UPN).len(), 16);

    // Verify: the oversized message is the one difference; a changed flag is named.
    let a = run.args("verify", &["--json"]);
    assert_eq!(
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await,
        1
    );
    let client = tenantry_graph::GraphClient::new(
        tenantry_graph::GraphConfig::from_env(
            TENANT,
            CLIENT_ID,
            tenantry_graph::ClientSecret::new(CLIENT_SECRET),
        ),
        reqwest::Client::new(),
    );
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
