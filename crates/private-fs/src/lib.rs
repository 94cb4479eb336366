//! Owner-only files and folders: the ledger database and the engines' state stores hold
//! tenants, users, mailbox and library names, and pre-authenticated upload links, so nobody but
//! their owner may read them. SQLite gives its `-wal` and `-shm` files the mode of the database.

use std::path::Path;

/// Creates `dir` and its missing parents, owner-only (0700) where they are new.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` owner-only (0600) if it does not exist yet; an existing file is left as is.
pub fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// Opens an engine's SQLite state file, creating it (and its folder) owner-only: WAL, so
/// readers run beside the writer, and `synchronous=NORMAL`, which is set per connection —
/// SQLite's default (FULL) syncs the WAL at every commit. A commit survives a killed process;
/// power loss may take the last ones, which every engine's state tolerates (that work is done
/// again). `busy` is how long a write waits for another connection's.
#[cfg(feature = "sqlite")]
pub fn open_state_db(
    path: &Path,
    busy: std::time::Duration,
) -> anyhow::Result<rusqlite::Connection> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        create_dir(dir).with_context(|| format!("cannot create state dir {}", dir.display()))?;
    }
    create_file(path).with_context(|| format!("cannot create state {}", path.display()))?;
    let db = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open state {}", path.display()))?;
    db.busy_timeout(busy)
        .and_then(|()| db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"))
        .context("cannot initialise state database")?;
    Ok(db)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_and_folders_are_owner_only() {
        let tmp = std::env::temp_dir().join(format!("tenantry-private-fs-{}", std::process::id()));
        let dir = tmp.join("a/b");
        create_dir(&dir).unwrap();
        let file = dir.join("state.sqlite");
        create_file(&file).unwrap();
        create_file(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    /// Every connection it opens runs WAL at `synchronous=NORMAL` (1), not SQLite's FULL (2),
    /// on an owner-only file.
    #[cfg(feature = "sqlite")]
    #[test]
    fn a_state_db_is_private_wal_and_normal() {
        let tmp = std::env::temp_dir().join(format!("tenantry-state-db-{}", std::process::id()));
        let file = tmp.join("s/state.sqlite");
        for _ in 0..2 {
            let db = open_state_db(&file, std::time::Duration::from_secs(1)).unwrap();
            let mode: String = db
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            let sync: i64 = db
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", 1));
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.join("s")), 0o700);
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
