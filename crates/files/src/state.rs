//! The state store: what was copied, so a re-run copies only what changed (SQLite, one file per
//! source/target pair).
//!
//! Invariant: a record is written only after its file is complete at its final target path.
//! Records are committed in batches by one writer thread; a killed process loses at most the
//! last batch, and power loss the batches since SQLite's last checkpoint (WAL,
//! `synchronous=NORMAL`): those files are simply copied again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use crate::preflight::Rename;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub source_path: String,
    pub target_path: String,
    pub size: u64,
    pub source_mtime_ns: Option<i64>,
    /// The source's ETag when it has one (WebDAV): catches edits within the same second.
    pub source_etag: Option<String>,
    /// Hash of the content as it was streamed (`blake3:<hex>`, see `hash`).
    pub content_hash: String,
    pub target_etag: Option<String>,
    pub mtime_kept: bool,
}

enum Msg {
    Put(Record),
    Remove(String),
    Renames(Vec<Rename>),
}

pub struct StateStore {
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files(
  source_path TEXT PRIMARY KEY,
  target_path TEXT NOT NULL,
  size INTEGER NOT NULL,
  source_mtime_ns INTEGER,
  source_etag TEXT,
  content_hash TEXT NOT NULL,
  target_etag TEXT,
  mtime_kept INTEGER NOT NULL,
  copied_at INTEGER NOT NULL
);
-- Every rename pre-flight made, so it can be reversed.
CREATE TABLE IF NOT EXISTS renames(
  source_path TEXT PRIMARY KEY,
  target_path TEXT NOT NULL,
  recorded_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// The state file for a pair, under `dir`: named by a hash of both locations so that different
/// pairs never share records.
pub fn state_file(dir: &Path, source: &str, target: &str) -> PathBuf {
    let h = Sha256::digest(format!("{source}\n{target}").as_bytes());
    dir.join(format!("files-{}.sqlite", &hex::encode(h)[..16]))
}

/// How long a write waits for another connection's (the Graph endpoint's tables share the file).
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl StateStore {
    pub fn open(path: &Path, source: &str, target: &str) -> anyhow::Result<Self> {
        // Owner-only: the state lists every document of a library.
        let c = tenantry_private_fs::open_state_db(path, WRITE_WAIT)?;
        c.execute_batch(SCHEMA)?;
        let has_column = |name: &str| -> rusqlite::Result<bool> {
            c.prepare("SELECT 1 FROM pragma_table_info('files') WHERE name = ?1")?
                .exists([name])
        };
        // Stores made before the column existed.
        if !has_column("source_etag")? {
            c.execute_batch("ALTER TABLE files ADD COLUMN source_etag TEXT")?;
        }
        // Stores made when hashes were bare SHA-256 hex: keep them, labelled.
        if has_column("sha256")? {
            c.execute_batch(
                "BEGIN;
                 ALTER TABLE files RENAME COLUMN sha256 TO content_hash;
                 UPDATE files SET content_hash = 'sha256:' || content_hash;
                 COMMIT;",
            )?;
        }
        c.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('source', ?1), ('target', ?2)",
            params![source, target],
        )?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn load(&self) -> anyhow::Result<HashMap<String, Record>> {
        let c = Connection::open(&self.path)?;
        let mut st = c.prepare(
            "SELECT source_path, target_path, size, source_mtime_ns, content_hash, target_etag, mtime_kept, source_etag FROM files",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Record {
                source_path: r.get(0)?,
                target_path: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                source_mtime_ns: r.get(3)?,
                content_hash: r.get(4)?,
                target_etag: r.get(5)?,
                mtime_kept: r.get::<_, i64>(6)? != 0,
                source_etag: r.get(7)?,
            })
        })?;
        let mut m = HashMap::new();
        for r in rows {
            let r = r?;
            m.insert(r.source_path.clone(), r);
        }
        Ok(m)
    }

    pub fn renames(&self) -> anyhow::Result<Vec<Rename>> {
        let c = Connection::open(&self.path)?;
        let mut st =
            c.prepare("SELECT source_path, target_path FROM renames ORDER BY source_path")?;
        let v = st
            .query_map([], |r| {
                Ok(Rename {
                    source: r.get(0)?,
                    target: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    /// Starts the writer thread.
    pub fn writer(&self) -> anyhow::Result<StateWriter> {
        // Its own connection, opened as every other (`synchronous` is per connection: at
        // SQLite's default the writer made one fsync per commit).
        let c = tenantry_private_fs::open_state_db(&self.path, WRITE_WAIT)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let handle = std::thread::spawn(move || write_loop(c, rx));
        Ok(StateWriter {
            tx: Some(tx),
            handle: Some(handle),
        })
    }
}

fn write_loop(mut c: Connection, rx: mpsc::Receiver<Msg>) -> anyhow::Result<()> {
    while let Ok(first) = rx.recv() {
        let tx = c.transaction()?;
        let mut next = Some(first);
        let mut n = 0;
        while let Some(m) = next {
            match m {
                Msg::Put(r) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO files(source_path, target_path, size, source_mtime_ns, content_hash, target_etag, mtime_kept, copied_at, source_etag) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                        params![r.source_path, r.target_path, r.size as i64, r.source_mtime_ns, r.content_hash, r.target_etag, r.mtime_kept as i64, now(), r.source_etag],
                    )?;
                }
                Msg::Remove(p) => {
                    tx.execute("DELETE FROM files WHERE source_path = ?1", params![p])?;
                }
                Msg::Renames(v) => {
                    for r in v {
                        tx.execute(
                            "INSERT OR REPLACE INTO renames(source_path, target_path, recorded_at) VALUES (?1,?2,?3)",
                            params![r.source, r.target, now()],
                        )?;
                    }
                }
            }
            n += 1;
            // Batch what is already queued, up to a bound, into one commit.
            next = if n < 500 { rx.try_recv().ok() } else { None };
        }
        tx.commit()?;
    }
    Ok(())
}

pub struct StateWriter {
    tx: Option<mpsc::Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl StateWriter {
    fn send(&self, m: Msg) {
        if let Some(tx) = &self.tx {
            // A dead writer surfaces its error in `finish`.
            let _ = tx.send(m);
        }
    }
    pub fn put(&self, r: Record) {
        self.send(Msg::Put(r));
    }
    pub fn remove(&self, source_path: String) {
        self.send(Msg::Remove(source_path));
    }
    pub fn renames(&self, v: Vec<Rename>) {
        self.send(Msg::Renames(v));
    }
    /// Flushes everything and stops the writer.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.tx.take();
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("state writer thread panicked"),
            None => Ok(()),
        }
    }
}

impl Clone for StateWriter {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            handle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_files_differ_per_pair() {
        let dir = tempfile::tempdir().unwrap();
        let p = state_file(dir.path(), "/a", "webdav://h/x");
        assert_ne!(p, state_file(dir.path(), "/a", "webdav://h/y"));
        let s = StateStore::open(&p, "/a", "webdav://h/x").unwrap();
        let w = s.writer().unwrap();
        let r = Record {
            source_path: "d/é.txt".into(),
            target_path: "d/é.txt".into(),
            size: 3,
            source_mtime_ns: Some(-5),
            source_etag: Some("\"s\"".into()),
            content_hash: "blake3:ab".into(),
            target_etag: Some("\"e\"".into()),
            mtime_kept: true,
        };
        w.put(r.clone());
        w.put(Record {
            source_path: "gone".into(),
            ..r.clone()
        });
        w.remove("gone".into());
        w.renames(vec![Rename {
            source: "a:b".into(),
            target: "a：b".into(),
        }]);
        w.finish().unwrap();
        let m = s.load().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["d/é.txt"], r);
        assert_eq!(s.renames().unwrap().len(), 1);
    }

    #[test]
    fn stores_with_bare_sha256_hashes_are_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.sqlite");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "CREATE TABLE files(source_path TEXT PRIMARY KEY, target_path TEXT NOT NULL,
               size INTEGER NOT NULL, source_mtime_ns INTEGER, sha256 TEXT NOT NULL,
               target_etag TEXT, mtime_kept INTEGER NOT NULL, copied_at INTEGER NOT NULL);
             INSERT INTO files VALUES ('a.txt', 'a.txt', 1, 7, 'ca978112', NULL, 0, 0);",
        )
        .unwrap();
        drop(c);
        let s = StateStore::open(&p, "/a", "/b").unwrap();
        let m = s.load().unwrap();
        assert_eq!(m["a.txt"].content_hash, "sha256:ca978112");
        assert_eq!(m["a.txt"].source_mtime_ns, Some(7));
        // Opening again changes nothing.
        let m2 = StateStore::open(&p, "/a", "/b").unwrap().load().unwrap();
        assert_eq!(m, m2);
    }
}
