//! The engines' resumable state through the database: a snapshot saved from one machine's state
//! file is restored on another machine when it has none or an older one, never over a current
//! one, and only the worker holding the step's lease saves.

mod support;

use std::path::Path;
use support::{claimed_step, NOW};
use tenantry_mover::engine_state::{copy_of, restore, save, StateSlot};

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

/// The verification reads a library step's state through a copy of its latest snapshot. A
/// verification that crashed never removed its copy: the next one replaces it (with what is
/// saved now, not what the stale copy says), and once that copy is dropped nothing but the
/// step's own file is left — neither of the two copies, nor one an earlier version named by a
/// random id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_left_by_a_crashed_verification_is_replaced_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, id, step_key) = claimed_step(&dir).await;
    let files = dir.path().join("files");
    let slot = StateSlot {
        move_id: id,
        key: "files/0".into(),
        path: files.join("0.sqlite"),
    };
    write_state(&slot.path, &["one"]);
    assert!(save(&ledger, &slot, &step_key, "w", NOW).await.unwrap());
    let legacy = files.join(format!("copy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("state.sqlite"), b"left by a crash").unwrap();

    // A verification crashes while it holds its copy (its value is never dropped).
    let crashed = copy_of(&ledger, &slot).await.unwrap().expect("a copy");
    assert_eq!(rows(&crashed.path), ["one"]);
    let crashed_path = crashed.path.clone();
    std::mem::forget(crashed);
    // Meanwhile the stale copy's file changed, claiming a version beyond any saved one, and
    // the step saved a newer state.
    write_state(&crashed_path, &["stale"]);
    let mut version = crashed_path.clone().into_os_string();
    version.push(".version");
    std::fs::write(version, "99").unwrap();
    write_state(&slot.path, &["two"]);
    assert!(save(&ledger, &slot, &step_key, "w", NOW).await.unwrap());

    let copy = copy_of(&ledger, &slot).await.unwrap().expect("a copy");
    assert_eq!(
        rows(&copy.path),
        ["one", "two"],
        "the saved state, not the stale copy"
    );
    drop(copy);
    let mut left: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("0.sqlite"))
        .collect();
    left.sort();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(
        rows(&slot.path),
        ["one", "two"],
        "the step's own file is untouched"
    );
}
