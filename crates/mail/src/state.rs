//! The migration's memory: one SQLite file per (source mailbox, target mailbox) pair.
//!
//! Crash safety rests on one rule: a message is written to `pending` (committed) before its
//! APPEND is sent, and moves from `pending` to `map` in one transaction after the server
//! confirms. After a crash, every pending row is looked up on the target by content before
//! anything is copied again, so nothing is lost and nothing is duplicated.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

pub struct State {
    db: Mutex<Connection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    pub target: String,
    pub src_uidvalidity: u32,
    pub tgt_uidvalidity: u32,
    /// Source HIGHESTMODSEQ after the last complete pass (CONDSTORE), 0 when unknown.
    pub modseq: u64,
    pub uidnext: u32,
}

#[derive(Debug, Clone)]
pub struct Mapped {
    pub tgt_uid: u32,
    /// The flags last written to the target, space-separated and sorted.
    pub flags: String,
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub src_uid: u32,
    pub sha: String,
    pub size: u64,
    pub flags: String,
}

/// The mailbox's state file (it names every folder and message): owner-only, WAL,
/// `synchronous=NORMAL` as every engine's (`tenantry_private_fs::open_state_db`). A power cut
/// may take the last commits: the pending/reconcile protocol makes a lost tail harmless.
pub(crate) fn open_private_db(path: &Path) -> Result<Connection> {
    tenantry_private_fs::open_state_db(path, std::time::Duration::from_secs(5))
}

/// Every table of the SQLite file at `path` (read through a read-only connection, which writes
/// nothing to it), copied into a database in memory.
pub(crate) fn copy_into_memory(path: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let file = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    file.busy_timeout(std::time::Duration::from_secs(5))?;
    let memory = Connection::open_in_memory()?;
    // One read transaction: a run writing the file meanwhile cannot tear the copy. One write
    // transaction: a row at a time would commit each.
    let tx = file.unchecked_transaction()?;
    let copy = memory.unchecked_transaction()?;
    let tables: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql IS NOT NULL",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, sql) in tables {
        memory.execute_batch(&sql)?;
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let mut read = tx.prepare(&format!("SELECT * FROM {quoted}"))?;
        let width = read.column_count();
        let marks = vec!["?"; width].join(",");
        let mut write = memory.prepare(&format!("INSERT INTO {quoted} VALUES({marks})"))?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            write.execute(rusqlite::params_from_iter(values))?;
        }
    }
    copy.commit()?;
    Ok(memory)
}

impl State {
    pub fn open(path: &Path) -> Result<State> {
        let db = open_private_db(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS folders(
                source TEXT PRIMARY KEY, target TEXT NOT NULL,
                src_uidvalidity INTEGER NOT NULL, tgt_uidvalidity INTEGER NOT NULL,
                modseq INTEGER NOT NULL DEFAULT 0, uidnext INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS map(
                source TEXT NOT NULL, src_uid INTEGER NOT NULL, tgt_uid INTEGER NOT NULL,
                flags TEXT NOT NULL, PRIMARY KEY(source, src_uid));
             CREATE TABLE IF NOT EXISTS pending(
                source TEXT NOT NULL, src_uid INTEGER NOT NULL, sha TEXT NOT NULL,
                size INTEGER NOT NULL, flags TEXT NOT NULL, PRIMARY KEY(source, src_uid));
             CREATE TABLE IF NOT EXISTS unverified(source TEXT PRIMARY KEY);",
        )
        .context("cannot initialise state database")?;
        Ok(State { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock would poison it; the data is still consistent
        // (SQLite transactions), so keep going.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn folder(&self, source: &str) -> Result<Option<FolderState>> {
        Ok(self
            .db()
            .query_row(
                "SELECT target, src_uidvalidity, tgt_uidvalidity, modseq, uidnext FROM folders WHERE source=?1",
                [source],
                |r| {
                    Ok(FolderState {
                        target: r.get(0)?,
                        src_uidvalidity: r.get(1)?,
                        tgt_uidvalidity: r.get(2)?,
                        modseq: r.get::<_, i64>(3)? as u64,
                        uidnext: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Starts a folder afresh (first run, or a UIDVALIDITY change on either side): the old
    /// UID map means nothing any more and the folder will be matched by content.
    pub fn reset_folder(&self, source: &str, f: &FolderState) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM map WHERE source=?1", [source])?;
        tx.execute("DELETE FROM pending WHERE source=?1", [source])?;
        tx.execute("DELETE FROM unverified WHERE source=?1", [source])?;
        tx.execute(
            "INSERT OR REPLACE INTO folders VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                source,
                f.target,
                f.src_uidvalidity,
                f.tgt_uidvalidity,
                f.modseq as i64,
                f.uidnext
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// After a restore from an older snapshot: every known folder's unmapped messages must be
    /// looked up on the target before any is copied.
    pub fn mark_unverified(&self) -> Result<()> {
        self.db().execute(
            "INSERT OR IGNORE INTO unverified SELECT source FROM folders",
            [],
        )?;
        Ok(())
    }

    pub fn is_unverified(&self, source: &str) -> Result<bool> {
        Ok(self
            .db()
            .query_row("SELECT 1 FROM unverified WHERE source=?1", [source], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn clear_unverified(&self, source: &str) -> Result<()> {
        self.db()
            .execute("DELETE FROM unverified WHERE source=?1", [source])?;
        Ok(())
    }

    pub fn set_progress(&self, source: &str, modseq: u64, uidnext: u32) -> Result<()> {
        self.db().execute(
            "UPDATE folders SET modseq=?2, uidnext=?3 WHERE source=?1",
            params![source, modseq as i64, uidnext],
        )?;
        Ok(())
    }

    pub fn maps(&self, source: &str) -> Result<HashMap<u32, Mapped>> {
        let db = self.db();
        let mut st =
            db.prepare_cached("SELECT src_uid, tgt_uid, flags FROM map WHERE source=?1")?;
        let rows = st.query_map([source], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                Mapped {
                    tgt_uid: r.get(1)?,
                    flags: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Target UIDs already claimed by any source folder that maps to `target` (several source
    /// folders can merge into one target folder, e.g. with --folder-map).
    pub fn claimed(&self, target: &str) -> Result<std::collections::HashSet<u32>> {
        let db = self.db();
        let mut st = db.prepare_cached(
            "SELECT m.tgt_uid FROM map m JOIN folders f ON m.source = f.source WHERE f.target = ?1",
        )?;
        let rows = st.query_map([target], |r| r.get::<_, u32>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn pending(&self, source: &str) -> Result<Vec<Pending>> {
        let db = self.db();
        let mut st = db.prepare_cached(
            "SELECT src_uid, sha, size, flags FROM pending WHERE source=?1 ORDER BY src_uid",
        )?;
        let rows = st.query_map([source], |r| {
            Ok(Pending {
                src_uid: r.get(0)?,
                sha: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                flags: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records the intent to append these messages. Must be durable before the APPENDs go out.
    pub fn add_pending(&self, source: &str, items: &[Pending]) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT OR REPLACE INTO pending VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for p in items {
                st.execute(params![source, p.src_uid, p.sha, p.size as i64, p.flags])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Confirms appends (src_uid, tgt_uid, flags) and forgets failed ones, atomically.
    pub fn resolve(
        &self,
        source: &str,
        done: &[(u32, u32, String)],
        dropped: &[u32],
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        {
            let mut ins =
                tx.prepare_cached("INSERT OR REPLACE INTO map VALUES (?1, ?2, ?3, ?4)")?;
            let mut del =
                tx.prepare_cached("DELETE FROM pending WHERE source=?1 AND src_uid=?2")?;
            for (s, t, f) in done {
                ins.execute(params![source, s, t, f])?;
                del.execute(params![source, s])?;
            }
            for s in dropped {
                del.execute(params![source, s])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn set_flags(&self, source: &str, updates: &[(u32, String)]) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        {
            let mut st =
                tx.prepare_cached("UPDATE map SET flags=?3 WHERE source=?1 AND src_uid=?2")?;
            for (s, f) in updates {
                st.execute(params![source, s, f])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_into_memory_holds_every_table_and_row_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let db = open_private_db(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE \"odd \"\"name\"\"\"(k TEXT PRIMARY KEY, n INTEGER, b BLOB, r REAL);
                 INSERT INTO \"odd \"\"name\"\"\" VALUES ('a', 1, x'00ff', 0.5), ('b', NULL, NULL, NULL);
                 CREATE TABLE empty(x TEXT);",
            )
            .unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let memory = copy_into_memory(&path).unwrap();
        type Row = (String, Option<i64>, Option<Vec<u8>>, Option<f64>);
        let rows: Vec<Row> = memory
            .prepare("SELECT * FROM \"odd \"\"name\"\"\" ORDER BY k")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("a".into(), Some(1), Some(vec![0, 255]), Some(0.5)),
                ("b".into(), None, None, None)
            ]
        );
        let empty: i64 = memory
            .query_row("SELECT count(*) FROM empty", [], |r| r.get(0))
            .unwrap();
        assert_eq!(empty, 0);
        // The copy is writable; the file is as it was.
        memory.execute_batch("CREATE TABLE added(x TEXT)").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn pending_moves_to_map_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("s.sqlite")).unwrap();
        let f = FolderState {
            target: "T".into(),
            src_uidvalidity: 1,
            tgt_uidvalidity: 2,
            modseq: 0,
            uidnext: 0,
        };
        st.reset_folder("S", &f).unwrap();
        assert_eq!(st.folder("S").unwrap().unwrap(), f);
        st.add_pending(
            "S",
            &[Pending {
                src_uid: 5,
                sha: "ab".into(),
                size: 3,
                flags: String::new(),
            }],
        )
        .unwrap();
        assert_eq!(st.pending("S").unwrap().len(), 1);
        st.resolve("S", &[(5, 9, "\\Seen".into())], &[]).unwrap();
        assert!(st.pending("S").unwrap().is_empty());
        assert_eq!(st.maps("S").unwrap()[&5].tgt_uid, 9);
        st.reset_folder("S", &f).unwrap();
        assert!(st.maps("S").unwrap().is_empty());
    }
}
