//! The engines' resumable state through the database: a snapshot saved from one machine's state
//! file is restored on another machine when it has none or an older one, never over a current
//! one, and only the worker holding the step's lease saves.

mod support;

use std::path::Path;
use support::{claimed_step, NOW};
use tenantry_mover::engine_state::{restore, save, StateSlot};

/// An engine's state file with the rows `rows` (what an engine would have written so far).
fn write_state(path: &Path, rows: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS done(x TEXT PRIMARY KEY)",
    )
    .unwrap();
    for row in rows {
        db.execute("INSERT OR IGNORE INTO done VALUES (?1)", [row])
            .unwrap();
    }
}

fn rows(path: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut stmt = db.prepare("SELECT x FROM done ORDER BY x").unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_state_is_restored_on_another_machine_only_when_newer() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, id, step_key) = claimed_step(&dir).await;
    let slot = |machine: &str| StateSlot {
        move_id: id,
        key: "mail/a".into(),
        path: dir.path().join(machine).join("mail").join("a.sqlite"),
    };
    let (first, second) = (slot("first"), slot("second"));

    assert!(
        !restore(&ledger, &first).await.unwrap(),
        "nothing saved yet"
    );
    write_state(&first.path, &["one"]);
    assert!(save(&ledger, &first, &step_key, "w", NOW).await.unwrap());
    // The second machine has no file: the saved one is put in place.
    assert!(restore(&ledger, &second).await.unwrap());
    assert_eq!(rows(&second.path), ["one"]);
    assert!(
        !restore(&ledger, &second).await.unwrap(),
        "its file is the saved version"
    );

    // The first machine gets further and saves again: the second one's copy is older.
    write_state(&first.path, &["two"]);
    assert!(save(&ledger, &first, &step_key, "w", NOW).await.unwrap());
    assert!(restore(&ledger, &second).await.unwrap());
    assert_eq!(rows(&second.path), ["one", "two"]);
    // The first machine's own file is what was saved (or newer): kept.
    write_state(&first.path, &["three"]);
    assert!(!restore(&ledger, &first).await.unwrap());
    assert_eq!(rows(&first.path), ["one", "three", "two"]);

    // A third machine killed before its first snapshot left a file with no saved version: it
    // may be older than what was saved since, so the saved state replaces it.
    let third = slot("third");
    write_state(&third.path, &["stale"]);
    assert!(restore(&ledger, &third).await.unwrap());
    assert_eq!(rows(&third.path), ["one", "two"]);

    // A worker that does not hold the step saves nothing.
    assert!(!save(&ledger, &first, &step_key, "other", NOW)
        .await
        .unwrap());
    let stored = ledger
        .store()
        .engine_state(id, "mail/a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
}
