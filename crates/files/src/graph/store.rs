//! What the Graph endpoint keeps between runs, in the run's state store (its own tables, its own
//! connection): the drive's items and delta link (an incremental run reads only changes), the
//! open upload sessions (a killed run resumes mid-file), and the files the service rewrote.
//! Rows are keyed by `scope`, the location's display name, so source and target never mix.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::endpoint::EndpointError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS graph_items(
  scope TEXT NOT NULL, id TEXT NOT NULL, parent TEXT, name TEXT NOT NULL, is_dir INTEGER NOT NULL,
  size INTEGER NOT NULL, mtime_ns INTEGER, etag TEXT, qxh TEXT, created_ns INTEGER,
  PRIMARY KEY(scope, id));
CREATE TABLE IF NOT EXISTS graph_delta(scope TEXT PRIMARY KEY, root TEXT NOT NULL, link TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS graph_sessions(
  scope TEXT NOT NULL, path TEXT NOT NULL, url TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER,
  PRIMARY KEY(scope, path));
CREATE TABLE IF NOT EXISTS graph_rewrites(
  scope TEXT NOT NULL, path TEXT NOT NULL, sent_size INTEGER NOT NULL, sent_qxh TEXT NOT NULL,
  service_size INTEGER NOT NULL, service_qxh TEXT, service_etag TEXT,
  PRIMARY KEY(scope, path));
";

/// One drive item as the last delta left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub parent: Option<String>,
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub mtime_ns: Option<i64>,
    /// `fileSystemInfo.createdDateTime`.
    pub created_ns: Option<i64>,
    pub etag: Option<String>,
    pub qxh: Option<String>,
}

/// The listing of the last run: items by id, the root's id, the delta link to continue from.
pub struct SavedListing {
    pub items: HashMap<String, Node>,
    pub root: String,
    pub link: String,
}

#[derive(Clone, Debug)]
pub struct OpenSession {
    pub url: String,
    pub size: u64,
    pub mtime_ns: Option<i64>,
}

/// A file SharePoint changed after we uploaded it (metadata written into Office files / PDFs).
#[derive(Clone, Debug)]
pub struct Rewrite {
    pub sent_size: u64,
    pub sent_qxh: String,
    pub service_size: u64,
    pub service_qxh: Option<String>,
    pub service_etag: Option<String>,
}

pub struct GraphStore {
    conn: Mutex<Connection>,
    scope: String,
}

fn db(e: rusqlite::Error) -> EndpointError {
    EndpointError::Permanent(format!("state store: {e}"))
}

impl GraphStore {
    pub fn open(path: &Path, scope: &str) -> anyhow::Result<Self> {
        // Owner-only like the state store's connections (whichever opens the file first): it
        // holds upload URLs that need no login.
        let c = tenantry_private_fs::open_state_db(path, std::time::Duration::from_secs(30))?;
        c.execute_batch(SCHEMA)?;
        if c.prepare("SELECT created_ns FROM graph_items LIMIT 0")
            .is_err()
        {
            // A store from before creation times were kept: add the column and enumerate the
            // drive once more, so every saved item gets its time.
            c.execute_batch(
                "ALTER TABLE graph_items ADD COLUMN created_ns INTEGER; DELETE FROM graph_delta;",
            )?;
        }
        Ok(Self {
            conn: Mutex::new(c),
            scope: scope.to_string(),
        })
    }

    /// For reading only (`verify`): the file as it is — neither created, nor upgraded (an
    /// upgrade would drop a store's saved delta link), nor written. A store older than a
    /// table or column this version reads answers what it has: `rewrites` without its table
    /// is an error, which the endpoint takes as none.
    pub fn open_read_only(path: &Path, scope: &str) -> anyhow::Result<Self> {
        use rusqlite::OpenFlags;
        let c = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(Self {
            conn: Mutex::new(c),
            scope: scope.to_string(),
        })
    }

    /// The items, root id and delta link of the last listing, if there was one.
    pub fn load_listing(&self) -> Result<Option<SavedListing>, EndpointError> {
        let c = self.conn.lock().expect("store lock");
        let head: Option<(String, String)> = c
            .query_row(
                "SELECT root, link FROM graph_delta WHERE scope = ?1",
                [&self.scope],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((root, link)) = head else {
            return Ok(None);
        };
        let mut st = c
            .prepare("SELECT id, parent, name, is_dir, size, mtime_ns, etag, qxh, created_ns FROM graph_items WHERE scope = ?1")
            .map_err(db)?;
        let rows = st
            .query_map([&self.scope], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Node {
                        parent: r.get(1)?,
                        name: r.get(2)?,
                        is_dir: r.get::<_, i64>(3)? != 0,
                        size: r.get::<_, i64>(4)? as u64,
                        mtime_ns: r.get(5)?,
                        etag: r.get(6)?,
                        qxh: r.get(7)?,
                        created_ns: r.get(8)?,
                    },
                ))
            })
            .map_err(db)?;
        let items = rows.collect::<Result<HashMap<_, _>, _>>().map_err(db)?;
        Ok(Some(SavedListing { items, root, link }))
    }

    /// Replaces the saved listing: items and delta link in one transaction, so a crash keeps
    /// either the old pair or the new one.
    pub fn save_listing(
        &self,
        items: &HashMap<String, Node>,
        root: &str,
        link: &str,
    ) -> Result<(), EndpointError> {
        let mut c = self.conn.lock().expect("store lock");
        let tx = c.transaction().map_err(db)?;
        tx.execute("DELETE FROM graph_items WHERE scope = ?1", [&self.scope])
            .map_err(db)?;
        {
            let mut ins = tx
                .prepare("INSERT INTO graph_items(scope, id, parent, name, is_dir, size, mtime_ns, etag, qxh, created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
                .map_err(db)?;
            for (id, n) in items {
                ins.execute(params![
                    self.scope,
                    id,
                    n.parent,
                    n.name,
                    n.is_dir as i64,
                    n.size as i64,
                    n.mtime_ns,
                    n.etag,
                    n.qxh,
                    n.created_ns
                ])
                .map_err(db)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO graph_delta(scope, root, link) VALUES (?1, ?2, ?3)",
            params![self.scope, root, link],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    pub fn forget_listing(&self) -> Result<(), EndpointError> {
        let c = self.conn.lock().expect("store lock");
        c.execute("DELETE FROM graph_delta WHERE scope = ?1", [&self.scope])
            .map_err(db)?;
        Ok(())
    }

    pub fn session(&self, path: &str) -> Result<Option<OpenSession>, EndpointError> {
        let c = self.conn.lock().expect("store lock");
        c.query_row(
            "SELECT url, size, mtime_ns FROM graph_sessions WHERE scope = ?1 AND path = ?2",
            params![self.scope, path],
            |r| {
                Ok(OpenSession {
                    url: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    mtime_ns: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(db)
    }

    /// Written before the first byte is sent, so a run killed mid-file finds it.
    pub fn save_session(&self, path: &str, s: &OpenSession) -> Result<(), EndpointError> {
        let c = self.conn.lock().expect("store lock");
        c.execute(
            "INSERT OR REPLACE INTO graph_sessions(scope, path, url, size, mtime_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![self.scope, path, s.url, s.size as i64, s.mtime_ns],
        )
        .map_err(db)?;
        Ok(())
    }

    pub fn forget_session(&self, path: &str) -> Result<(), EndpointError> {
        let c = self.conn.lock().expect("store lock");
        c.execute(
            "DELETE FROM graph_sessions WHERE scope = ?1 AND path = ?2",
            params![self.scope, path],
        )
        .map_err(db)?;
        Ok(())
    }

    pub fn rewrites(&self) -> Result<HashMap<String, Rewrite>, EndpointError> {
        let c = self.conn.lock().expect("store lock");
        let mut st = c
            .prepare("SELECT path, sent_size, sent_qxh, service_size, service_qxh, service_etag FROM graph_rewrites WHERE scope = ?1")
            .map_err(db)?;
        let rows = st
            .query_map([&self.scope], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Rewrite {
                        sent_size: r.get::<_, i64>(1)? as u64,
                        sent_qxh: r.get(2)?,
                        service_size: r.get::<_, i64>(3)? as u64,
                        service_qxh: r.get(4)?,
                        service_etag: r.get(5)?,
                    },
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<HashMap<_, _>, _>>().map_err(db)
    }

    pub fn save_rewrite(&self, path: &str, r: &Rewrite) -> Result<(), EndpointError> {
        let c = self.conn.lock().expect("store lock");
        c.execute(
            "INSERT OR REPLACE INTO graph_rewrites(scope, path, sent_size, sent_qxh, service_size, service_qxh, service_etag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![self.scope, path, r.sent_size as i64, r.sent_qxh, r.service_size as i64, r.service_qxh, r.service_etag],
        )
        .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Graph store may be the first to create the state file: it holds upload URLs that
    /// need no login, so the file, its WAL and its folder are the owner's only.
    #[cfg(unix)]
    #[test]
    fn a_store_it_creates_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state");
        let path = folder.join("files.sqlite");
        let store = GraphStore::open(&path, "s").unwrap();
        store
            .save_session(
                "a.bin",
                &OpenSession {
                    url: "https://upload/x".into(),
                    size: 9,
                    mtime_ns: None,
                },
            )
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&path), 0o600);
        let wal = folder.join("files.sqlite-wal");
        assert!(wal.exists());
        assert_eq!(mode(&wal), 0o600);
    }

    /// A store written before creation times were kept: opening it adds the column and drops
    /// the delta link, so the next listing enumerates the drive again and every item gets its
    /// time (a delta run would bring only changed items).
    #[test]
    fn a_store_from_before_creation_times_is_upgraded_and_enumerated_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE graph_items(scope TEXT NOT NULL, id TEXT NOT NULL, parent TEXT,
                   name TEXT NOT NULL, is_dir INTEGER NOT NULL, size INTEGER NOT NULL,
                   mtime_ns INTEGER, etag TEXT, qxh TEXT, PRIMARY KEY(scope, id));
                 CREATE TABLE graph_delta(scope TEXT PRIMARY KEY, root TEXT NOT NULL, link TEXT NOT NULL);
                 INSERT INTO graph_items VALUES ('s', 'F', 'R', 'a.txt', 0, 5, 7, 'e', 'q');
                 INSERT INTO graph_delta VALUES ('s', 'R', 'https://graph/delta?token=1');",
            )
            .unwrap();
        }
        let store = GraphStore::open(&path, "s").unwrap();
        assert!(
            store.load_listing().unwrap().is_none(),
            "a full enumeration next"
        );
        let mut items = HashMap::new();
        let node = Node {
            parent: Some("R".into()),
            name: "a.txt".into(),
            is_dir: false,
            size: 5,
            mtime_ns: Some(7),
            created_ns: Some(3),
            etag: None,
            qxh: None,
        };
        items.insert("F".to_string(), node.clone());
        store.save_listing(&items, "R", "link").unwrap();
        let saved = GraphStore::open(&path, "s")
            .unwrap()
            .load_listing()
            .unwrap()
            .unwrap();
        assert_eq!(saved.items["F"], node, "the creation time is kept");
        assert_eq!(saved.link, "link", "an upgraded store is not emptied again");
    }
}
