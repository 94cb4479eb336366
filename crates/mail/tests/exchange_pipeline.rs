//! The Exchange copies keep the mailbox's request slots busy across their own boundaries,
//! seen through the most requests the test kit's fake Graph had in flight per mailbox (each
//! request takes a round trip, long enough that overlapping requests do overlap):
//!
//! - IMAP → Exchange: the creates of one FETCH batch overlap those of the next (one batch at a
//!   time never had more in flight than a batch holds);
//! - Exchange → Exchange: the next folder's item delta is read while a folder is exported and
//!   imported (read in turn, the source never had more than the two exports in flight), and
//!   the first folder's items are imported while its item delta is still paged through (read
//!   whole first, no import began before its last page).
//!
//! One test function: the Graph endpoints are process-wide environment variables.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::exchange::*;
use support::*;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

const OLD: &str = "bert@fabrikam.com";
const NEW: &str = "bert@contoso.com";

fn point_at(fake: &FakeGraph) {
    std::env::set_var("TENANTRY_GRAPH_URL", fake.url());
    std::env::set_var("TENANTRY_AUTHORITY", fake.url());
}

async fn imap_batches_overlap() {
    let fake = FakeGraph::start(FakeGraphOptions {
        mail_request_delay: Duration::from_millis(150),
        ..Default::default()
    });
    fake.add_mailbox(UPN, false);
    point_at(&fake);
    let run = Run {
        dove: Dovecot::start(Config::source()),
        tmp: tempfile::tempdir().unwrap(),
    };
    let mut s = run.dove.session("alice", "alicepw").await;
    for i in 0..12 {
        let m = message(&format!("batch msg {i}"), "", 800, true);
        append(&mut s, "INBOX", "\\Seen", "05-May-2024 09:00:00 +0000", &m).await;
    }
    // Batches of 2 messages: the 4 slots fill only when batches overlap.
    assert_eq!(run.run("migrate", &["--batch-count", "2"]).await, 0);
    assert_each_once(&fake, 12);
    let stats = fake.stats();
    assert_eq!(stats.mailbox_concurrency_refusals, 0);
    assert_eq!(
        stats.mailbox_peak_in_flight.get(UPN).copied(),
        Some(4),
        "creates of consecutive batches in flight together"
    );
    // A re-run creates nothing again.
    assert_eq!(run.run("migrate", &["--batch-count", "2"]).await, 0);
    assert_each_once(&fake, 12);
}

async fn next_folder_read_ahead() {
    let fake = FakeGraph::start(FakeGraphOptions {
        export_request_delay: Duration::from_millis(150),
        ..Default::default()
    });
    point_at(&fake);
    fake.add_export_mailbox(OLD, true);
    fake.add_export_mailbox(NEW, false);
    let later = fake.add_export_folder(OLD, "msgfolderroot", "Later", "IPF.Note");
    let mut expected = Vec::new();
    for i in 0..45 {
        for folder in ["inbox", later.as_str()] {
            let d = format!("pipeline item {folder} {i}").into_bytes();
            fake.add_export_item(OLD, folder, "IPM.Note", &d);
            expected.push(d);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(migrate_old_to_new(dir.path()).await, 0);
    let mut arrived: HashMap<Vec<u8>, usize> = HashMap::new();
    for (_, item) in fake.export_items(NEW) {
        *arrived.entry(item.data.clone()).or_default() += 1;
    }
    for d in &expected {
        assert_eq!(arrived.get(d), Some(&1), "{}", String::from_utf8_lossy(d));
    }
    assert_eq!(arrived.len(), expected.len());
    let stats = fake.stats();
    assert_eq!(stats.mailbox_concurrency_refusals, 0);
    let source_peak = stats.mailbox_peak_in_flight.get(OLD).copied().unwrap_or(0);
    assert!(
        source_peak >= 3,
        "the next folder's delta read beside the exports (peak {source_peak})"
    );
    // A re-run imports nothing again.
    assert_eq!(migrate_old_to_new(dir.path()).await, 0);
    assert_eq!(fake.export_items(NEW).len(), expected.len());
}

async fn first_folder_imported_while_listed() {
    let fake = FakeGraph::start(FakeGraphOptions {
        export_request_delay: Duration::from_millis(100),
        // 60 items: 6 pages of item delta.
        page_size: 10,
        ..Default::default()
    });
    point_at(&fake);
    fake.add_export_mailbox(OLD, true);
    fake.add_export_mailbox(NEW, false);
    let expected: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("paged item {i}").into_bytes())
        .collect();
    for d in &expected {
        fake.add_export_item(OLD, "inbox", "IPM.Note", d);
    }
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(migrate_old_to_new(dir.path()).await, 0);
    let mut arrived: Vec<Vec<u8>> = fake
        .export_items(NEW)
        .into_iter()
        .map(|i| i.1.data)
        .collect();
    arrived.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(arrived, want, "every item once");
    // The inbox is the folder whose item delta (`…/folders/{id}/items/delta`; the mailbox id's
    // escaping may differ between pages) has the most pages: every other folder is empty, one
    // page each. (Not the first delta asked for: the next folder's is read ahead, and under
    // load its one page can be recorded before the inbox's first.)
    let src = fake.in_flight(OLD).requests;
    let delta_folder = |p: &str| {
        p.strip_suffix("/items/delta")
            .and_then(|p| p.rsplit('/').next())
            .map(str::to_string)
    };
    let mut per_folder: std::collections::HashMap<String, usize> = Default::default();
    for folder in src.iter().filter_map(|(_, p)| delta_folder(p)) {
        *per_folder.entry(folder).or_default() += 1;
    }
    let inbox = per_folder
        .into_iter()
        .max_by_key(|(_, pages)| *pages)
        .map(|(folder, _)| folder)
        .expect("an item delta");
    let pages: Vec<_> = src
        .iter()
        .filter(|(_, p)| delta_folder(p).as_ref() == Some(&inbox))
        .collect();
    assert!(pages.len() >= 6, "the inbox paged: {} pages", pages.len());
    let last_page = pages.last().unwrap().0;
    let first_import = fake
        .in_flight(NEW)
        .requests
        .iter()
        .find(|(_, p)| p.starts_with("/import/"))
        .expect("an import")
        .0;
    let later = pages.iter().filter(|(t, _)| *t > first_import).count();
    assert!(
        first_import < last_page,
        "the first import began before the inbox's last delta page was asked for ({later} of {} pages after it)",
        pages.len()
    );
    assert_eq!(fake.stats().mailbox_concurrency_refusals, 0);
    // A re-run imports nothing again.
    assert_eq!(migrate_old_to_new(dir.path()).await, 0);
    assert_eq!(fake.export_items(NEW).len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_copies_keep_the_slots_busy_across_boundaries() {
    imap_batches_overlap().await;
    next_folder_read_ahead().await;
    first_folder_imported_while_listed().await;
}

/// `tenantry mail migrate` from the old mailbox to the new one, its secret and state in `dir`
/// (the same `dir` again: a re-run): its exit code.
async fn migrate_old_to_new(dir: &std::path::Path) -> u8 {
    let secret = secret_file(dir, "secret", CLIENT_SECRET);
    let state = dir.join("state");
    let (source, target) = (format!("exchange://{OLD}"), format!("exchange://{NEW}"));
    let argv = [
        "migrate",
        "--source",
        &source,
        "--target",
        &target,
        "--tenant-id",
        TENANT,
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        secret.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--quiet",
    ];
    cli(&argv).await
}
