//! Exchange → Exchange through the mailbox import/export API, against the test kit's fake Graph
//! (each rule citing its Microsoft page): a German source mailbox into an English one, mail and
//! calendar folders, answers lost mid-import, an expired import session, re-runs.
//!
//! One test function: the Graph endpoints are process-wide environment variables.

mod support;

use std::collections::HashMap;

use support::exchange::fake_graph_client;
use support::*;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

const OLD: &str = "anna@fabrikam.com";
const NEW: &str = "anna@contoso.com";

fn args(verb: &str, dir: &std::path::Path) -> Vec<String> {
    let mut a: Vec<String> = [
        verb,
        "--source",
        &format!("exchange://{OLD}"),
        "--target",
        &format!("exchange://{NEW}"),
        "--tenant-id",
        TENANT,
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        &secret_file(dir, "secret", CLIENT_SECRET)
            .display()
            .to_string(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if verb == "migrate" {
        a.push("--state-dir".into());
        a.push(dir.join("state").display().to_string());
    }
    a
}

async fn run(verb: &str, dir: &std::path::Path) -> u8 {
    let a = args(verb, dir);
    cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await
}

async fn migrate(dir: &std::path::Path) -> u8 {
    run("migrate", dir).await
}

/// Target items by their data: (folder path, class) and how many times each arrived.
fn arrived(fake: &FakeGraph) -> HashMap<Vec<u8>, (String, String, usize)> {
    let mut out: HashMap<Vec<u8>, (String, String, usize)> = HashMap::new();
    for (path, item) in fake.export_items(NEW) {
        out.entry(item.data.clone())
            .or_insert((path, item.class.clone(), 0))
            .2 += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn german_mailbox_into_english_one_through_import_export() {
    // Each import/export request takes a round trip, so that overlapping requests are seen.
    let fake = FakeGraph::start(FakeGraphOptions {
        export_request_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    });
    std::env::set_var("TENANTRY_GRAPH_URL", fake.url());
    std::env::set_var("TENANTRY_AUTHORITY", fake.url());
    fake.add_export_mailbox(OLD, true);
    fake.add_export_mailbox(NEW, false);
    // (data, the folder it must reach in the English mailbox, class)
    let mut expected: Vec<(Vec<u8>, String, &str)> = Vec::new();
    for i in 0..25 {
        let d = format!("FTS mail {i}").into_bytes();
        fake.add_export_item(OLD, "inbox", "IPM.Note", &d);
        expected.push((d, "Inbox".into(), "IPF.Note"));
    }
    let d = b"FTS sent".to_vec();
    let sent = fake.add_export_item(OLD, "sentitems", "IPM.Note", &d);
    expected.push((d, "Sent Items".into(), "IPF.Note"));
    let projekte = fake.add_export_folder(OLD, "inbox", "Projekte", "IPF.Note");
    let y2024 = fake.add_export_folder(OLD, &projekte, "2024", "IPF.Note");
    let d = b"FTS project mail".to_vec();
    fake.add_export_item(OLD, &y2024, "IPM.Note", &d);
    expected.push((d, "Inbox/Projekte/2024".into(), "IPF.Note"));
    for i in 0..3 {
        let d = format!("FTS appointment {i}").into_bytes();
        fake.add_export_item(OLD, "calendar", "IPM.Appointment", &d);
        expected.push((d, "Calendar".into(), "IPF.Appointment"));
    }
    let urlaub = fake.add_export_folder(OLD, "calendar", "Urlaub", "IPF.Appointment");
    let d = b"FTS holiday".to_vec();
    fake.add_export_item(OLD, &urlaub, "IPM.Appointment", &d);
    expected.push((d, "Calendar/Urlaub".into(), "IPF.Appointment"));

    let tmp = tempfile::tempdir().unwrap();
    // Two imports are stored but their answers never arrive; the import session expires
    // after 10 imports (a new one is needed).
    fake.drop_after_import(2);
    fake.expire_import_session_after(10);
    assert_eq!(migrate(tmp.path()).await, 0);
    let got = arrived(&fake);
    for (data, folder, class) in &expected {
        let (path, item_class, n) = got
            .get(data)
            .unwrap_or_else(|| panic!("{} missing", String::from_utf8_lossy(data)));
        assert_eq!(*n, 1, "{} imported once", String::from_utf8_lossy(data));
        assert_eq!(path, folder, "by wellKnownName, not by display name");
        assert_eq!(item_class, class, "the folder kept its class");
    }
    assert_eq!(got.len(), expected.len());
    let folders = fake.export_folders(NEW);
    assert!(folders.contains(&("Calendar/Urlaub".into(), "IPF.Appointment".into(), None)));
    assert!(folders.contains(&("Inbox/Projekte/2024".into(), "IPF.Note".into(), None)));
    assert!(
        !folders.iter().any(|(p, _, _)| p.contains("Posteingang")),
        "no German folder created beside the English one: {folders:?}"
    );
    let stats = fake.stats();
    // Outlook's limit is 4 requests in flight per mailbox: the imports use them (one at a time
    // reached a fifth of what the limit allows), and never a fifth.
    let peak = stats.mailbox_peak_in_flight.get(NEW).copied().unwrap_or(0);
    assert!((2..=4).contains(&peak), "{peak} imports in flight at most");
    assert_eq!(stats.mailbox_concurrency_refusals, 0);
    assert_eq!(
        stats.authorization_on_upload_url, 0,
        "no token to the importUrl"
    );
    assert_eq!(
        stats.import_sessions_created, 2,
        "a new session after the first expired"
    );

    // A re-run imports nothing.
    let imported = fake.stats().items_imported;
    assert_eq!(migrate(tmp.path()).await, 0);
    assert_eq!(
        fake.stats().items_imported,
        imported,
        "a re-run copies nothing"
    );

    // A new item on the source: only it is imported.
    let d = b"FTS late mail".to_vec();
    fake.add_export_item(OLD, "inbox", "IPM.Note", &d);
    assert_eq!(migrate(tmp.path()).await, 0);
    let got = arrived(&fake);
    assert_eq!(got.get(&d).map(|g| g.2), Some(1));
    assert_eq!(got.len(), expected.len() + 1);
    assert_eq!(fake.stats().items_imported, imported + 1);

    // An item edited on the source: imported again in update mode, onto the same target item.
    let before: Vec<String> = fake
        .export_items(NEW)
        .iter()
        .map(|(_, i)| i.id.clone())
        .collect();
    fake.change_export_item(OLD, &sent, b"FTS sent, edited");
    assert_eq!(migrate(tmp.path()).await, 0);
    let after = fake.export_items(NEW);
    let ids: Vec<String> = after.iter().map(|(_, i)| i.id.clone()).collect();
    assert_eq!(ids, before, "no new item: the same one updated");
    assert!(after
        .iter()
        .any(|(p, i)| p == "Sent Items" && i.data == b"FTS sent, edited"));
    assert!(!after.iter().any(|(_, i)| i.data == b"FTS sent"));

    // Verify trusts no state: both sides equal → 0; an item only in the target is named → 1.
    assert_eq!(run("verify", tmp.path()).await, 0);
    fake.add_export_item(NEW, "calendar", "IPM.Appointment", b"FTS stray");
    assert_eq!(run("verify", tmp.path()).await, 1);
    let client = fake_graph_client();
    use tenantry_mail::exchange::mailbox_copy::{verify_mailbox, ExportMailbox};
    let src = ExportMailbox::open(client.clone(), OLD).await.unwrap();
    let dst = ExportMailbox::open(client, NEW).await.unwrap();
    let rep = verify_mailbox(&src, &dst).await.unwrap();
    assert_eq!(
        rep.differences,
        ["Kalender: 1 item(s) in the target not on the source"],
        "named by the source folder"
    );
}
