//! The IMAP → Exchange copy's memory: one SQLite file per (source mailbox, Exchange mailbox).
//!
//! As in the IMAP engine, a message is written to `pending` (committed) before its create
//! request is sent and moves to `map` with the Exchange id in one transaction after the answer.
//! A pending row left by a crash or a lost answer is looked up on the target by the
//! SourceSha256 property before the message is created again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// The key of the folder delta's link among the delta links.
pub const FOLDERS_KEY: &str = "folders";

pub struct ExchangeState {
    db: Mutex<Connection>,
}

/// A copied message: its Exchange id and the flags last written.
#[derive(Debug, Clone)]
pub struct Copied {
    pub id: String,
    pub flags: String,
}

impl ExchangeState {
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(crate::state::open_private_db(path)?)
    }

    /// A state that lives in memory only: a dry run without a state file writes none.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    /// For a dry run: the state at `path` copied into memory through a read-only connection,
    /// or an empty one when there is no file. Opened for writing, even a file a dry run writes
    /// no row to would change: tables this version adds are created in an older one.
    pub fn for_dry_run(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Self::in_memory();
        }
        Self::init(
            crate::state::copy_into_memory(path)
                .with_context(|| format!("cannot read state {}", path.display()))?,
        )
    }

    fn init(db: Connection) -> Result<Self> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS exchange_folders(
                source TEXT PRIMARY KEY, uidvalidity INTEGER NOT NULL, target_id TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS exchange_map(
                source TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
                target_id TEXT NOT NULL, sha TEXT NOT NULL, flags TEXT NOT NULL,
                PRIMARY KEY(source, uidvalidity, uid));
             CREATE TABLE IF NOT EXISTS exchange_pending(
                source TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
                sha TEXT NOT NULL, PRIMARY KEY(source, uidvalidity, uid));
             CREATE TABLE IF NOT EXISTS exchange_items(
                source_id TEXT PRIMARY KEY, source_change_key TEXT NOT NULL,
                target_id TEXT NOT NULL, target_change_key TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS exchange_item_pending(source_id TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS exchange_delta(key TEXT PRIMARY KEY, link TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS exchange_source_folders(
                id TEXT PRIMARY KEY, folder TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS exchange_folder_pairs(
                source_id TEXT PRIMARY KEY, target_id TEXT NOT NULL);",
        )
        .context("cannot initialise state database")?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The UIDVALIDITY last seen for a folder; `None` for a new folder.
    pub fn uidvalidity(&self, source: &str) -> Result<Option<u32>> {
        Ok(self
            .db()
            .query_row(
                "SELECT uidvalidity FROM exchange_folders WHERE source=?1",
                [source],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_folder(&self, source: &str, uidvalidity: u32, target: &str) -> Result<()> {
        self.db().execute(
            "INSERT INTO exchange_folders(source, uidvalidity, target_id) VALUES(?1,?2,?3)
             ON CONFLICT(source) DO UPDATE SET uidvalidity=?2, target_id=?3",
            params![source, uidvalidity, target],
        )?;
        Ok(())
    }

    pub fn copied(&self, source: &str, uidvalidity: u32) -> Result<HashMap<u32, Copied>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT uid, target_id, flags FROM exchange_map WHERE source=?1 AND uidvalidity=?2",
        )?;
        let rows = st.query_map(params![source, uidvalidity], |r| {
            Ok((
                r.get(0)?,
                Copied {
                    id: r.get(1)?,
                    flags: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Exchange ids already taken by some source message (any UIDVALIDITY) of a folder.
    pub fn claimed(&self, source: &str) -> Result<HashSet<String>> {
        let db = self.db();
        let mut st = db.prepare("SELECT target_id FROM exchange_map WHERE source=?1")?;
        let rows = st.query_map([source], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn pending(&self, source: &str, uidvalidity: u32) -> Result<HashSet<u32>> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT uid FROM exchange_pending WHERE source=?1 AND uidvalidity=?2")?;
        let rows = st.query_map(params![source, uidvalidity], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Intent: committed before the create request leaves.
    pub fn add_pending(&self, source: &str, uidvalidity: u32, uid: u32, sha: &str) -> Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO exchange_pending VALUES(?1,?2,?3,?4)",
            params![source, uidvalidity, uid, sha],
        )?;
        Ok(())
    }

    pub fn drop_pending(&self, source: &str, uidvalidity: u32, uid: u32) -> Result<()> {
        self.db().execute(
            "DELETE FROM exchange_pending WHERE source=?1 AND uidvalidity=?2 AND uid=?3",
            params![source, uidvalidity, uid],
        )?;
        Ok(())
    }

    /// Effect recorded: pending → map in one transaction.
    pub fn map(
        &self,
        source: &str,
        uidvalidity: u32,
        uid: u32,
        id: &str,
        sha: &str,
        flags: &str,
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "DELETE FROM exchange_pending WHERE source=?1 AND uidvalidity=?2 AND uid=?3",
            params![source, uidvalidity, uid],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO exchange_map VALUES(?1,?2,?3,?4,?5,?6)",
            params![source, uidvalidity, uid, id, sha, flags],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_flags(&self, source: &str, uidvalidity: u32, uid: u32, flags: &str) -> Result<()> {
        self.db().execute(
            "UPDATE exchange_map SET flags=?4 WHERE source=?1 AND uidvalidity=?2 AND uid=?3",
            params![source, uidvalidity, uid, flags],
        )?;
        Ok(())
    }

    // Exchange → Exchange (import/export): source item id → target item id and change keys.

    /// Every mapped item: source id → (source changeKey, target id, target changeKey).
    pub fn items(&self) -> Result<HashMap<String, ItemCopy>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT source_id, source_change_key, target_id, target_change_key FROM exchange_items",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                ItemCopy {
                    source_change_key: r.get(1)?,
                    target_id: r.get(2)?,
                    target_change_key: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn items_pending(&self) -> Result<HashSet<String>> {
        let db = self.db();
        let mut st = db.prepare("SELECT source_id FROM exchange_item_pending")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Intent: committed before the import request leaves.
    pub fn add_item_pending(&self, source_id: &str) -> Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO exchange_item_pending VALUES(?1)",
            [source_id],
        )?;
        Ok(())
    }

    /// Effect recorded: pending → map in one transaction.
    pub fn map_item(&self, source_id: &str, copy: &ItemCopy) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "DELETE FROM exchange_item_pending WHERE source_id=?1",
            [source_id],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO exchange_items VALUES(?1,?2,?3,?4)",
            params![
                source_id,
                copy.source_change_key,
                copy.target_id,
                copy.target_change_key
            ],
        )?;
        tx.commit()?;
        Ok(())
    }
}

// Exchange → Exchange incremental runs: delta links, the source's folders as the folder delta
// last left them, and where each source folder went.

impl ExchangeState {
    /// The `@odata.deltaLink` a round of `key` ended with.
    pub fn delta_link(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT link FROM exchange_delta WHERE key=?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_delta_link(&self, key: &str, link: &str) -> Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO exchange_delta VALUES(?1,?2)",
            params![key, link],
        )?;
        Ok(())
    }

    /// The source's folders (Graph's JSON) as the last complete folder delta left them.
    pub fn source_folders(&self) -> Result<Vec<serde_json::Value>> {
        let db = self.db();
        let mut st = db.prepare("SELECT folder FROM exchange_source_folders ORDER BY rowid")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    /// The folder list, where each folder went and the folder delta's link, in one
    /// transaction: the link is kept only with the folders it describes.
    pub fn save_folders(
        &self,
        folders: &[serde_json::Value],
        pairs: &[(String, String)],
        link: &str,
    ) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM exchange_source_folders", [])?;
        for f in folders {
            tx.execute(
                "INSERT OR REPLACE INTO exchange_source_folders VALUES(?1,?2)",
                params![f["id"].as_str().unwrap_or_default(), f.to_string()],
            )?;
        }
        tx.execute("DELETE FROM exchange_folder_pairs", [])?;
        for (s, t) in pairs {
            tx.execute(
                "INSERT INTO exchange_folder_pairs VALUES(?1,?2)",
                params![s, t],
            )?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO exchange_delta VALUES(?1,?2)",
            params![FOLDERS_KEY, link],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Source folder id → target folder id, as the last folder mapping left them.
    pub fn folder_pairs(&self) -> Result<HashMap<String, String>> {
        let db = self.db();
        let mut st = db.prepare("SELECT source_id, target_id FROM exchange_folder_pairs")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets where the folders went, so that the next run maps them again.
    pub fn forget_folder_pairs(&self) -> Result<()> {
        self.db().execute("DELETE FROM exchange_folder_pairs", [])?;
        Ok(())
    }
}

/// Where a source item went, and the versions last copied.
#[derive(Debug, Clone)]
pub struct ItemCopy {
    pub source_change_key: String,
    pub target_id: String,
    pub target_change_key: String,
}
