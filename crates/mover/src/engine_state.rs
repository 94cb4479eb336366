//! The data engines' resumable state in the database, so that any worker on any machine can
//! resume a step. An engine keeps its state in a local SQLite file while it runs; the worker
//! saves a consistent snapshot of that file (`VACUUM INTO`, which reads one transaction's view
//! beside the engine's writes) every [`SNAPSHOT_EVERY`] and when the engine ends, and restores
//! the latest snapshot before it starts an engine with no local file or an older one.
//!
//! A local file knows which saved version it continues: `<state>.version` holds the version
//! last saved from it or restored into it. A higher version in the database means another
//! worker got further since, so the local file is replaced. A snapshot may be older than what
//! an engine already did on the target (work after the last save): the engines are told the
//! state was restored (`restored`), and each makes that safe (mail: every unmapped message is
//! looked up on the target before anything is copied; files: records mean "complete at its
//! final path" and listings are compared, so an older state is safe as is).
//!
//! The verification reads a library step's state without owning it ([`copy_of`]): a private
//! copy of the latest snapshot, so that it knows which files the service rewrote after upload
//! (SharePoint writes metadata into Office documents and PDFs) while the step's own file and
//! row stay untouched. The copy of a slot has one place, beside the slot's file: a copy a
//! crashed verification left there is replaced by the next one, never piled up.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tenantry_app::Ledger;
use tenantry_ledger::Timestamp;
use uuid::Uuid;

/// How often a running engine's state is saved to the database.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);

/// Where a local state file and its database row meet.
#[derive(Clone)]
pub struct StateSlot {
    pub move_id: Uuid,
    /// The state's name within the move (`mail/<upn>`, `files/<index>`): a mailbox's state is
    /// shared by its migration step and the final delta pass.
    pub key: String,
    pub path: PathBuf,
}

fn version_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".version");
    PathBuf::from(name)
}

fn local_version(path: &Path) -> Option<i64> {
    std::fs::read_to_string(version_file(path))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Puts the saved state in place when there is no local file or the saved one is newer;
/// `true` when it did (the engine must then treat its state as restored).
pub async fn restore(ledger: &Ledger, slot: &StateSlot) -> Result<bool, String> {
    let saved = ledger
        .store()
        .engine_state(slot.move_id, slot.key.clone())
        .await
        .map_err(|e| format!("reading the saved engine state: {e}"))?;
    let Some(saved) = saved else {
        return Ok(false);
    };
    // Once a state is saved, a local file is current only if it continues that version or a
    // later one: a file without a version (a process killed before its first snapshot) may be
    // older than what another machine saved since, and trusting it would copy again what that
    // machine copied.
    let local_is_current =
        slot.path.exists() && local_version(&slot.path).is_some_and(|local| local >= saved.version);
    if local_is_current {
        return Ok(false);
    }
    let path = slot.path.clone();
    tokio::task::spawn_blocking(move || write_restored(&path, &saved.state, saved.version))
        .await
        .map_err(|e| format!("restoring the engine state: {e}"))??;
    Ok(true)
}

fn write_restored(path: &Path, bytes: &[u8], version: i64) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tenantry_private_fs::create_dir(dir).map_err(|e| io("creating", dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    tenantry_private_fs::create_file(&tmp).map_err(|e| io("creating", &tmp, e))?;
    std::fs::write(&tmp, bytes).map_err(|e| io("writing", &tmp, e))?;
    // The old file's write-ahead log belongs to the old file: it must not be replayed onto
    // the restored one.
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&tmp, path).map_err(|e| io("replacing", path, e))?;
    std::fs::write(version_file(path), version.to_string())
        .map_err(|e| io("writing", &version_file(path), e))
}

/// A private copy of a saved state, removed with this value.
pub struct StateCopy {
    dir: PathBuf,
    pub path: PathBuf,
}

impl Drop for StateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The latest saved state of `slot` in a folder of its own beside the slot's file (`None` when
/// none was saved): for reading a step's state from outside the step. The folder's name is the
/// slot's (`copy-<file name>`), and whatever is in it is removed first: a copy left by a
/// crashed verification (its value never dropped) is not kept, nor taken for current.
pub async fn copy_of(ledger: &Ledger, slot: &StateSlot) -> Result<Option<StateCopy>, String> {
    let dir = copy_dir(&slot.path);
    let stale = dir.clone();
    tokio::task::spawn_blocking(move || remove_stale_copies(&stale))
        .await
        .map_err(|e| format!("removing an old copy of the engine state: {e}"))??;
    let copy = StateCopy {
        path: dir.join("state.sqlite"),
        dir,
    };
    let copy_slot = StateSlot {
        path: copy.path.clone(),
        ..slot.clone()
    };
    Ok(restore(ledger, &copy_slot).await?.then_some(copy))
}

/// Removes `dir` (an earlier copy of the same slot) and, beside it, the copies earlier versions
/// named `copy-<uuid>` (one per verification, left behind when it crashed).
fn remove_stale_copies(dir: &Path) -> Result<(), String> {
    let remove = |d: &Path| match std::fs::remove_dir_all(d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", d, e)),
        _ => Ok(()),
    };
    remove(dir)?;
    let Some(Ok(entries)) = dir.parent().map(std::fs::read_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let legacy = name
            .to_str()
            .and_then(|n| n.strip_prefix("copy-"))
            .is_some_and(|id| Uuid::parse_str(id).is_ok());
        if legacy {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// Where [`copy_of`] puts the copy of the state at `path`.
fn copy_dir(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from("copy-");
    name.push(path.file_name().unwrap_or_default());
    path.with_file_name(name)
}

/// A consistent copy of the SQLite file at `path` (`None` when there is none yet).
pub fn snapshot(path: &Path) -> Result<Option<Vec<u8>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let dir = tempfile_dir(path)?;
    let copy = dir.join("snapshot.sqlite");
    let result = (|| {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])
            .map_err(|e| format!("copying {}: {e}", path.display()))?;
        std::fs::read(&copy).map_err(|e| io("reading", &copy, e))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(Some)
}

/// A private folder beside the state for the snapshot being taken.
fn tempfile_dir(path: &Path) -> Result<PathBuf, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(format!(".snapshot-{}", Uuid::new_v4()));
    let tmp = dir.join(name);
    tenantry_private_fs::create_dir(&tmp).map_err(|e| io("creating", &tmp, e))?;
    Ok(tmp)
}

/// Saves a snapshot of the slot's file for the step `step_key` that `worker` holds. `false`
/// when the step is no longer the worker's.
pub async fn save(
    ledger: &Ledger,
    slot: &StateSlot,
    step_key: &str,
    worker: &str,
    now: Timestamp,
) -> Result<bool, String> {
    let path = slot.path.clone();
    let bytes = tokio::task::spawn_blocking(move || snapshot(&path))
        .await
        .map_err(|e| format!("snapshot stopped: {e}"))??;
    let Some(bytes) = bytes else {
        return Ok(true);
    };
    let version = ledger
        .save_engine_state(
            slot.move_id,
            step_key.to_string(),
            worker.to_string(),
            slot.key.clone(),
            bytes,
            now,
        )
        .await
        .map_err(|e| format!("saving the engine state: {e}"))?;
    let Some(version) = version else {
        return Ok(false);
    };
    std::fs::write(version_file(&slot.path), version.to_string())
        .map_err(|e| io("writing", &version_file(&slot.path), e))?;
    Ok(true)
}
