//! Exchange → Exchange from a restored state: a move's worker puts back the state it saved last,
//! which may be older than the target (items imported after the save have no row, not even a
//! pending one). Told so, the copy looks for each unmapped item in a target folder that holds
//! anything before importing it: nothing arrives twice.

mod support;

use tenantry_mail::exchange::mailbox_copy::{migrate_mailbox, ExportMailbox};
use tenantry_mail::report::Progress;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

/// A client of `fake`, configured here: both tests run at once, so not through the
/// process-wide TENANTRY_GRAPH_URL.
fn fake_graph_client(fake: &FakeGraph) -> tenantry_graph::GraphClient {
    let mut cfg = tenantry_graph::GraphConfig::from_env(
        TENANT,
        CLIENT_ID,
        tenantry_graph::ClientSecret::new(CLIENT_SECRET),
    );
    cfg.graph_url = fake.url().to_string();
    cfg.authority = fake.url().to_string();
    tenantry_graph::GraphClient::new(cfg, reqwest::Client::new())
}

const OLD: &str = "anna@fabrikam.com";
const NEW: &str = "anna@contoso.com";

async fn copy(
    fake: &FakeGraph,
    state: &std::path::Path,
    restored: bool,
) -> tenantry_mail::report::MailboxReport {
    let src = ExportMailbox::open(fake_graph_client(fake), OLD)
        .await
        .unwrap();
    let dst = ExportMailbox::open(fake_graph_client(fake), NEW)
        .await
        .unwrap();
    migrate_mailbox(&src, &dst, state, &Progress::default(), restored).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_older_state_imports_nothing_twice() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.add_export_mailbox(OLD, true);
    fake.add_export_mailbox(NEW, false);
    let projects = fake.add_export_folder(OLD, "inbox", "Projekte", "IPF.Note");
    for n in 0..12 {
        fake.add_export_item(OLD, "inbox", "IPM.Note", format!("mail {n}").as_bytes());
    }
    fake.add_export_item(OLD, &projects, "IPM.Note", b"project");
    let dir = tempfile::tempdir().unwrap();

    // The state as saved early: the folders were empty, nothing mapped yet.
    let older = dir.path().join("older.sqlite");
    let first = copy(&fake, &older, false).await;
    assert!(first.ok(), "{:?}", first.error);
    assert_eq!(fake.stats().items_imported, 13);
    // Put back the state of before the first run (here: none, as after a worker lost before
    // its first save): told it is restored, the copy finds all 13 on the target.
    let restored = copy(&fake, &dir.path().join("restored.sqlite"), true).await;
    assert!(restored.ok(), "{:?}", restored.error);
    assert_eq!(fake.stats().items_imported, 13, "an item imported twice");
    let found: u64 = restored.folders.iter().map(|f| f.matched).sum();
    assert_eq!(found, 13);
    assert_eq!(fake.export_items(NEW).len(), 13);
    // Not told: a naive re-run from the older state duplicates everything (what a restored
    // state risks).
    let naive = copy(&fake, &dir.path().join("naive.sqlite"), false).await;
    assert!(naive.ok(), "{:?}", naive.error);
    assert_eq!(fake.export_items(NEW).len(), 26);
}
