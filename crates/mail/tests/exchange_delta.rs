//! Exchange → Exchange incremental runs through the import/export API's folder and item delta
//! (the test kit's fake serves them as Microsoft documents: pages linked by nextLink, a
//! deltaLink, `@removed`, 410 `syncStateNotFound` for a token it no longer knows), and the CLI's
//! `--dry-run`, `--batch` and refused IMAP options on exchange:// paths.

mod support;

use std::path::Path;

use support::*;
use tenantry_mail::exchange::mailbox_copy::{migrate_mailbox_with, CopyMode, ExportMailbox};
use tenantry_mail::report::{MailboxReport, Progress};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

const OLD: &str = "anna@fabrikam.com";
const NEW: &str = "anna@contoso.com";

/// A client of `fake`, configured here (not through the process-wide TENANTRY_GRAPH_URL, which
/// the CLI test of this file sets for its own fake).
fn client(fake: &FakeGraph) -> tenantry_graph::GraphClient {
    let mut cfg = tenantry_graph::GraphConfig::from_env(
        TENANT,
        CLIENT_ID,
        tenantry_graph::ClientSecret::new(CLIENT_SECRET),
    );
    cfg.graph_url = fake.url().to_string();
    cfg.authority = fake.url().to_string();
    tenantry_graph::GraphClient::new(cfg, reqwest::Client::new())
}

async fn copy(fake: &FakeGraph, state: &Path, dry_run: bool) -> MailboxReport {
    let src = ExportMailbox::open(client(fake), OLD).await.unwrap();
    let dst = ExportMailbox::open(client(fake), NEW).await.unwrap();
    let mode = CopyMode {
        restored: false,
        dry_run,
    };
    let rep = migrate_mailbox_with(&src, &dst, state, &Progress::default(), mode).await;
    assert!(rep.ok(), "{:?} {:?}", rep.error, rep.problems());
    rep
}

fn sum(rep: &MailboxReport, f: impl Fn(&tenantry_mail::report::FolderReport) -> u64) -> u64 {
    rep.folders.iter().map(f).sum()
}

/// A fake holding the old mailbox (German folder names when `german`) and an empty new one, and
/// a state file in a folder of its own (removed with the returned guard).
fn two_mailboxes(
    opts: FakeGraphOptions,
    german: bool,
) -> (FakeGraph, tempfile::TempDir, std::path::PathBuf) {
    let fake = FakeGraph::start(opts);
    fake.add_export_mailbox(OLD, german);
    fake.add_export_mailbox(NEW, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    (fake, dir, state)
}

/// Target items' data, in creation order.
fn target_data(fake: &FakeGraph) -> Vec<Vec<u8>> {
    fake.export_items(NEW)
        .into_iter()
        .map(|(_, i)| i.data)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_reads_and_moves_only_what_changed() {
    // Pages of 10: the inbox's 25 items take three pages linked by nextLink.
    let (fake, _dir, state) = two_mailboxes(
        FakeGraphOptions {
            page_size: 10,
            ..Default::default()
        },
        true,
    );
    let mut inbox = Vec::new();
    for i in 0..25 {
        inbox.push(fake.add_export_item(OLD, "inbox", "IPM.Note", format!("mail {i}").as_bytes()));
    }
    let projekte = fake.add_export_folder(OLD, "inbox", "Projekte", "IPF.Note");
    fake.add_export_item(OLD, &projekte, "IPM.Note", b"project mail");
    let appointment = fake.add_export_item(OLD, "calendar", "IPM.Appointment", b"meeting");
    fake.add_export_item(OLD, "contacts", "IPM.Contact", b"contact");
    fake.add_export_item(OLD, "tasks", "IPM.Task", b"task");

    let first = copy(&fake, &state, false).await;
    assert_eq!(first.copied(), 29);
    assert_eq!(fake.stats().items_imported, 29);
    assert_eq!(fake.export_items(NEW).len(), 29);

    // Nothing changed: no folder or item is listed in full on either side, nothing imported;
    // one delta call for the folders and one per folder.
    let before = fake.stats();
    let again = copy(&fake, &state, false).await;
    let after = fake.stats();
    assert_eq!(again.copied(), 0);
    assert_eq!(
        after.items_imported, before.items_imported,
        "nothing imported"
    );
    assert_eq!(
        after.mailbox_listings, before.mailbox_listings,
        "a re-run without changes lists nothing in full"
    );
    let folders = again.folders.len() as u64;
    assert_eq!(
        after.mailbox_delta_requests - before.mailbox_delta_requests,
        1 + folders,
        "one folder delta, one item delta per folder ({folders} folders)"
    );

    // One item edited, one added: exactly those two move, the edited one onto its copy.
    let ids_before: Vec<String> = fake
        .export_items(NEW)
        .into_iter()
        .map(|(_, i)| i.id)
        .collect();
    fake.change_export_item(OLD, &appointment, b"meeting, moved to 10:00");
    fake.add_export_item(OLD, "inbox", "IPM.Note", b"late mail");
    let before = fake.stats();
    let third = copy(&fake, &state, false).await;
    let after = fake.stats();
    assert_eq!(third.copied(), 2);
    assert_eq!(after.items_imported - before.items_imported, 2);
    assert_eq!(after.mailbox_listings, before.mailbox_listings);
    let items = fake.export_items(NEW);
    assert_eq!(items.len(), 30, "the edit updated its copy, no new item");
    assert_eq!(
        items[..29]
            .iter()
            .map(|(_, i)| i.id.clone())
            .collect::<Vec<_>>(),
        ids_before
    );
    assert!(items
        .iter()
        .any(|(p, i)| p == "Calendar" && i.data == b"meeting, moved to 10:00"));
    assert!(items
        .iter()
        .any(|(p, i)| p == "Inbox" && i.data == b"late mail"));

    // Deleted on the source: reported for its folder, its copy kept, nothing imported.
    fake.delete_export_item(OLD, &inbox[3]);
    let before = fake.stats();
    let fourth = copy(&fake, &state, false).await;
    assert_eq!(fake.stats().items_imported, before.items_imported);
    let inbox_rep = fourth.folders.iter().find(|f| f.target == "inbox").unwrap();
    assert_eq!(inbox_rep.deleted_on_source, 1);
    assert_eq!(sum(&fourth, |f| f.deleted_on_source), 1);
    assert!(
        target_data(&fake).contains(&b"mail 3".to_vec()),
        "copy kept"
    );
    let text = tenantry_mail::report::RunReport {
        mailboxes: vec![fourth],
        dry_run: false,
    }
    .text();
    assert!(
        text.contains(
            "1 item(s) deleted on the source since the last run; their copies stay in the target"
        ),
        "{text}"
    );

    // A new source folder: the folders are mapped again and it is created, with its item.
    let archiv = fake.add_export_folder(OLD, "inbox", "Archiv", "IPF.Note");
    fake.add_export_item(OLD, &archiv, "IPM.Note", b"archived");
    let fifth = copy(&fake, &state, false).await;
    assert_eq!(fifth.copied(), 1);
    assert!(fake
        .export_items(NEW)
        .iter()
        .any(|(p, i)| p == "Inbox/Archiv" && i.data == b"archived"));
    // And deleted again: reported, its copy kept.
    fake.delete_export_folder(OLD, &archiv);
    let sixth = copy(&fake, &state, false).await;
    assert!(
        sixth.folders.iter().any(|f| f
            .note
            .as_deref()
            .is_some_and(|n| n.contains("Archiv was deleted on the source"))),
        "{:?}",
        sixth.folders
    );
    assert!(target_data(&fake).contains(&b"archived".to_vec()));

    // The service forgot the tokens (410 syncStateNotFound): the copy lists each folder again
    // through a fresh delta round; the id map keeps it from importing anything twice.
    fake.expire_delta_tokens(OLD);
    fake.add_export_item(OLD, "tasks", "IPM.Task", b"new task");
    let before = fake.stats();
    let seventh = copy(&fake, &state, false).await;
    assert_eq!(fake.stats().items_imported - before.items_imported, 1);
    assert_eq!(seventh.copied(), 1);
    assert!(seventh.folders.iter().any(|f| f
        .note
        .as_deref()
        .is_some_and(|n| n.contains("change token had expired"))));
    let data = target_data(&fake);
    assert_eq!(data.len(), 32);
    let mut unique = data.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), data.len(), "nothing imported twice");
    // And the run after that is incremental again.
    let before = fake.stats();
    assert_eq!(copy(&fake, &state, false).await.copied(), 0);
    assert_eq!(fake.stats().mailbox_listings, before.mailbox_listings);

    // A dry run counts an update and a creation, writes nothing, keeps no delta link.
    fake.change_export_item(OLD, &inbox[0], b"mail 0, edited");
    fake.add_export_item(OLD, "contacts", "IPM.Contact", b"new contact");
    let neu = fake.add_export_folder(OLD, "calendar", "Urlaub", "IPF.Appointment");
    fake.add_export_item(OLD, &neu, "IPM.Appointment", b"holiday");
    let before = fake.stats();
    let folders_before = fake.export_folders(NEW);
    let dry = copy(&fake, &state, true).await;
    assert_eq!(fake.stats().items_imported, before.items_imported);
    assert_eq!(
        fake.export_folders(NEW),
        folders_before,
        "no folder created"
    );
    assert_eq!(sum(&dry, |f| f.would_update), 1);
    assert_eq!(sum(&dry, |f| f.would_copy), 2);
    assert!(dry.folders.iter().any(|f| f.source == "Urlaub"
        && f.would_copy == 1
        && f.note.as_deref() == Some("folder Urlaub would be created")));
    // The real run after it still finds all three.
    let real = copy(&fake, &state, false).await;
    assert_eq!(real.copied(), 3);
    assert!(fake
        .export_items(NEW)
        .iter()
        .any(|(p, i)| p == "Calendar/Urlaub" && i.data == b"holiday"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dry_run_batch_and_refused_imap_options() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    std::env::set_var("TENANTRY_GRAPH_URL", fake.url());
    std::env::set_var("TENANTRY_AUTHORITY", fake.url());
    let pairs = [
        ("ben@fabrikam.com", "ben@contoso.com"),
        ("cleo@fabrikam.com", "cleo@contoso.com"),
    ];
    for (s, t) in pairs {
        fake.add_export_mailbox(s, false);
        fake.add_export_mailbox(t, false);
        fake.add_export_item(s, "inbox", "IPM.Note", format!("hello {s}").as_bytes());
        fake.add_export_item(s, "calendar", "IPM.Appointment", b"meeting");
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "secret", CLIENT_SECRET);
    let state = dir.path().join("state");
    let run = |extra: Vec<String>| {
        let mut a: Vec<String> = [
            "migrate",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(secret.display().to_string());
        a.extend([
            "--state-dir".into(),
            state.display().to_string(),
            "--quiet".into(),
        ]);
        a.extend(extra);
        async move { cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let one = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "--source".into(),
            format!("exchange://{}", pairs[0].0),
            "--target".into(),
            format!("exchange://{}", pairs[0].1),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // A dry run: nothing imported, no state written.
    assert_eq!(run(one(&["--dry-run"])).await, 0);
    assert_eq!(fake.stats().items_imported, 0);
    assert!(
        !state.exists() || std::fs::read_dir(&state).unwrap().next().is_none(),
        "a dry run writes no state"
    );

    // IMAP-only options are refused, not ignored (exit 2: nothing run).
    for extra in [
        &["--exclude", "Calendar"][..],
        &["--folder-map", "A=B"],
        &["--connections", "8"],
        &["--max-message-size", "1000"],
    ] {
        assert_eq!(run(one(extra)).await, 2, "{extra:?} refused");
    }
    assert_eq!(fake.stats().items_imported, 0);

    // A batch of two pairs; a line with a password is refused before anything runs.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "ben@fabrikam.com,ben@contoso.com,secret,\n").unwrap();
    let batch_args = |file: &Path| -> Vec<String> {
        vec![
            "--source".into(),
            "exchange://".into(),
            "--target".into(),
            "exchange://".into(),
            "--batch".into(),
            file.display().to_string(),
        ]
    };
    assert_eq!(run(batch_args(&bad)).await, 2);
    // The same mailbox on two lines (whatever the case) would be copied twice at once: refused.
    let twice = dir.path().join("twice.csv");
    std::fs::write(
        &twice,
        format!(
            "{},{}\n{},{}\n",
            pairs[0].0,
            pairs[0].1,
            pairs[0].0.to_uppercase(),
            pairs[1].1
        ),
    )
    .unwrap();
    assert_eq!(run(batch_args(&twice)).await, 2);
    assert_eq!(fake.stats().items_imported, 0);
    let csv = dir.path().join("pairs.csv");
    std::fs::write(
        &csv,
        format!(
            "source_user,target_user\n{},{}\n{},{}\n",
            pairs[0].0, pairs[0].1, pairs[1].0, pairs[1].1
        ),
    )
    .unwrap();
    assert_eq!(run(batch_args(&csv)).await, 0);
    assert_eq!(fake.stats().items_imported, 4);
    for (s, t) in pairs {
        let got: Vec<Vec<u8>> = fake
            .export_items(t)
            .into_iter()
            .map(|(_, i)| i.data)
            .collect();
        assert!(
            got.contains(&format!("hello {s}").into_bytes()),
            "{t}: {got:?}"
        );
        assert_eq!(got.len(), 2);
    }
    // Re-run of the batch: nothing more.
    assert_eq!(run(batch_args(&csv)).await, 0);
    assert_eq!(fake.stats().items_imported, 4);
}

/// Microsoft's page of the mailbox folder delta does not say that nested folders are part of
/// it: the fake can return the top of the tree only. Folders below it are then found through
/// `childFolderCount` and `childFolders`, copied with their items, and kept in the state: the
/// next run lists nothing in full and still copies what is new in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_folders_are_copied_when_the_folder_delta_returns_the_top_only() {
    let (fake, _dir, state) = two_mailboxes(
        FakeGraphOptions {
            folder_delta_top_level: true,
            ..Default::default()
        },
        true,
    );
    let projekte = fake.add_export_folder(OLD, "inbox", "Projekte", "IPF.Note");
    let jahr = fake.add_export_folder(OLD, &projekte, "2026", "IPF.Note");
    let urlaub = fake.add_export_folder(OLD, "calendar", "Urlaub", "IPF.Appointment");
    fake.add_export_item(OLD, "inbox", "IPM.Note", b"inbox mail");
    fake.add_export_item(OLD, &projekte, "IPM.Note", b"project mail");
    fake.add_export_item(OLD, &jahr, "IPM.Note", b"mail of 2026");
    fake.add_export_item(OLD, &urlaub, "IPM.Appointment", b"holiday");

    let first = copy(&fake, &state, false).await;
    assert_eq!(first.copied(), 4);
    let at = |path: &str, data: &[u8]| {
        fake.export_items(NEW)
            .iter()
            .any(|(p, i)| p == path && i.data == data)
    };
    assert!(at("Inbox/Projekte", b"project mail"));
    assert!(at("Inbox/Projekte/2026", b"mail of 2026"));
    assert!(at("Calendar/Urlaub", b"holiday"));

    // The nested folders are in the state: nothing listed in full, a new item in one copied.
    fake.add_export_item(OLD, &jahr, "IPM.Note", b"later mail of 2026");
    let before = fake.stats();
    let again = copy(&fake, &state, false).await;
    assert_eq!(again.copied(), 1);
    assert_eq!(fake.stats().mailbox_listings, before.mailbox_listings);
    assert!(at("Inbox/Projekte/2026", b"later mail of 2026"));
    assert_eq!(fake.export_items(NEW).len(), 5, "nothing copied twice");
}

/// A folder changed since the last round may come back from the delta with only the
/// properties that changed (Microsoft's delta overview: "at least the properties that have
/// been updated"): a renamed folder keeps its parent and class, and its items are still copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_update_with_only_its_changed_properties_keeps_the_others() {
    let (fake, _dir, state) = two_mailboxes(
        FakeGraphOptions {
            sparse_folder_updates: true,
            ..Default::default()
        },
        true,
    );
    let projekte = fake.add_export_folder(OLD, "inbox", "Projekte", "IPF.Note");
    fake.add_export_item(OLD, &projekte, "IPM.Note", b"project mail");
    assert_eq!(copy(&fake, &state, false).await.copied(), 1);

    fake.rename_export_folder(OLD, &projekte, "Projekte 2026");
    fake.add_export_item(OLD, &projekte, "IPM.Note", b"after the rename");
    let rep = copy(&fake, &state, false).await;
    assert_eq!(rep.copied(), 1, "{:?}", rep.folders);
    assert!(
        fake.export_items(NEW)
            .iter()
            .any(|(p, i)| p == "Inbox/Projekte 2026" && i.data == b"after the rename"),
        "{:?}",
        fake.export_items(NEW)
    );
}

/// A dry run on an existing state reads it and writes nothing to it: not even the tables this
/// version adds to a file an older version wrote (here: one without the folder pairs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_leaves_an_existing_state_file_as_it_was() {
    let (fake, _dir, state) = two_mailboxes(FakeGraphOptions::default(), false);
    fake.add_export_item(OLD, "inbox", "IPM.Note", b"first");
    assert_eq!(copy(&fake, &state, false).await.copied(), 1);
    {
        let db = rusqlite::Connection::open(&state).unwrap();
        db.execute_batch("DROP TABLE exchange_folder_pairs")
            .unwrap();
    }
    let bytes = std::fs::read(&state).unwrap();
    let modified = std::fs::metadata(&state).unwrap().modified().unwrap();
    // Far enough for a coarse file clock to tell a write.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    fake.add_export_item(OLD, "inbox", "IPM.Note", b"second");
    let dry = copy(&fake, &state, true).await;
    assert_eq!(sum(&dry, |f| f.would_copy), 1, "read from the saved state");
    assert_eq!(std::fs::read(&state).unwrap(), bytes, "the state's bytes");
    assert_eq!(
        std::fs::metadata(&state).unwrap().modified().unwrap(),
        modified,
        "the state's modification time"
    );
    // The real run after it upgrades the file and copies only the new item.
    assert_eq!(copy(&fake, &state, false).await.copied(), 1);
    assert_eq!(fake.export_items(NEW).len(), 2);
}

/// With a folder delta that leaves nested folders out, a nested folder deleted on the source is
/// never reported removed: its item delta answers 404, the source confirms the folder is gone,
/// and it leaves the state with what was below it — reported as deleted on the source, its copy
/// kept — instead of failing the mailbox on every later run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_folder_deleted_on_the_source_leaves_the_state_when_the_delta_returns_the_top_only(
) {
    let (fake, _dir, state) = two_mailboxes(
        FakeGraphOptions {
            folder_delta_top_level: true,
            ..Default::default()
        },
        true,
    );
    let projekte = fake.add_export_folder(OLD, "inbox", "Projekte", "IPF.Note");
    let alt = fake.add_export_folder(OLD, &projekte, "2025", "IPF.Note");
    let tief = fake.add_export_folder(OLD, &alt, "Q4", "IPF.Note");
    fake.add_export_item(OLD, &alt, "IPM.Note", b"mail of 2025");
    fake.add_export_item(OLD, &tief, "IPM.Note", b"mail of Q4");
    fake.add_export_item(OLD, &projekte, "IPM.Note", b"project mail");
    assert_eq!(copy(&fake, &state, false).await.copied(), 3);

    fake.delete_export_folder(OLD, &tief);
    fake.delete_export_folder(OLD, &alt);
    fake.add_export_item(OLD, &projekte, "IPM.Note", b"later project mail");
    let again = copy(&fake, &state, false).await;
    assert_eq!(again.copied(), 1);
    let notes: Vec<_> = again
        .folders
        .iter()
        .filter_map(|f| f.note.clone())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("2025") && n.contains("deleted on the source")),
        "{notes:?}"
    );
    // Gone from the state: the next run does not ask for them and is clean.
    let third = copy(&fake, &state, false).await;
    assert_eq!(third.copied(), 0);
    assert!(third
        .folders
        .iter()
        .all(|f| f.source != "2025" && f.source != "Q4"));
    assert_eq!(
        fake.export_items(NEW).len(),
        4,
        "nothing copied twice, copies kept"
    );
}
