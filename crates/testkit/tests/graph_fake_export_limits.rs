//! The fake Graph's Outlook per-mailbox limits on mailbox import/export requests: a fifth
//! request in flight on one mailbox is refused, imports count against the upload budget, and
//! each mailbox's requests and upload bytes are counted (what the Exchange benchmark reads).

use std::time::Duration;

use serde_json::{json, Value};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions};

const UPN: &str = "anna@contoso.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_export_requests_hold_a_mailbox_slot_and_imports_spend_the_budget() {
    let fake = FakeGraph::start(FakeGraphOptions {
        // Long enough that five requests sent together overlap even on a loaded machine.
        export_request_delay: Duration::from_secs(2),
        mail_upload_budget: (1000, Duration::from_secs(600)),
        ..Default::default()
    });
    let mailbox = fake.add_export_mailbox(UPN, false);
    let http = reqwest::Client::new();
    let bearer = fake.bearer();
    let api = format!("{}/v1.0/admin/exchange/mailboxes/{mailbox}", fake.url());

    let folders = (0..5).map(|_| {
        http.get(format!("{api}/folders"))
            .header("authorization", &bearer)
            .send()
    });
    let answers = send_together(folders.collect()).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| *s).collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(refused.len(), 1, "{statuses:?}");
    assert_eq!(answers.iter().filter(|(s, _, _)| *s == 200).count(), 4);
    assert!(refused[0].1.contains("MailboxConcurrency"), "{refused:?}");
    assert_eq!(refused[0].2.as_deref(), Some("1"));

    let session: Value = http
        .post(format!("{api}/createImportSession"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let import_url = session["importUrl"].as_str().unwrap();
    let body = json!({"FolderId": "inbox", "Mode": "create", "Data": "A".repeat(600)}).to_string();
    let first = http
        .post(import_url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = http
        .post(import_url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.text().await.unwrap().contains("MailboxUploadLimit"));
    assert_eq!(fake.export_items(UPN).len(), 1);

    let stats = fake.stats();
    // 4 listings, the session, two imports: the refused fifth listing took no slot.
    assert_eq!(stats.mailbox_requests.get(UPN), Some(&7));
    assert_eq!(
        stats.mailbox_upload_bytes.get(UPN),
        Some(&(body.len() as u64))
    );
}

/// Status, body and Retry-After of requests sent together.
async fn send_together(
    requests: Vec<
        impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
    >,
) -> Vec<(u16, String, Option<String>)> {
    let tasks: Vec<_> = requests.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        out.push((r.status().as_u16(), r.text().await.unwrap(), retry));
    }
    out
}
