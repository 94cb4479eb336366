//! The state store: what was copied, so a re-run copies only what changed (SQLite, one file per
//! kind and source/target pair; calendars and contacts may share a `--state-dir`).
//!
//! Invariant: an object's record is written only after the target acknowledged its PUT, and a
//! collection's sync token only after every change it covers was copied. A crash loses no
//! record of an object already written except the one in flight, which the next run finds on
//! the target by name and UID (see `migrate`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::kind::Kind;

/// What we know about one copied object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The resource name, the same on both sides.
    pub name: String,
    pub uid: String,
    pub source_etag: Option<String>,
    pub target_etag: Option<String>,
    /// BLAKE3 of the bytes sent (`blake3:<hex>`).
    pub hash: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS collections(
  source_url TEXT PRIMARY KEY,
  target_url TEXT NOT NULL,
  sync_token TEXT
);
CREATE TABLE IF NOT EXISTS objects(
  collection TEXT NOT NULL,
  name TEXT NOT NULL,
  uid TEXT NOT NULL,
  source_etag TEXT,
  target_etag TEXT,
  hash TEXT NOT NULL,
  copied_at INTEGER NOT NULL,
  PRIMARY KEY(collection, name)
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending(
  collection TEXT NOT NULL,
  name TEXT NOT NULL,
  content TEXT NOT NULL,
  PRIMARY KEY(collection, name, content)
);
";

/// The state file for a pair under `dir`, named by the kind and a hash of both locations.
pub fn state_file(dir: &Path, kind: Kind, source: &str, target: &str) -> PathBuf {
    let h = Sha256::digest(format!("{source}\n{target}").as_bytes());
    dir.join(format!(
        "pim-{}-{}.sqlite",
        kind.name(),
        &hex::encode(h)[..16]
    ))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One connection; each write is its own transaction, committed before the caller goes on.
pub struct StateStore {
    conn: Mutex<Connection>,
}

impl StateStore {
    pub fn open(path: &Path, source: &str, target: &str) -> anyhow::Result<Self> {
        // Owner-only, like the other engines' state: it names every calendar and contact.
        let c = tenantry_private_fs::open_state_db(path, std::time::Duration::from_secs(10))?;
        c.execute_batch(SCHEMA)?;
        c.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('source', ?1), ('target', ?2)",
            params![source, target],
        )?;
        Ok(Self {
            conn: Mutex::new(c),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("state lock")
    }

    /// The records of one source collection, by resource name.
    pub fn objects(&self, collection: &str) -> anyhow::Result<HashMap<String, ObjectRecord>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT name, uid, source_etag, target_etag, hash FROM objects WHERE collection = ?1",
        )?;
        let rows = st.query_map([collection], |r| {
            Ok(ObjectRecord {
                name: r.get(0)?,
                uid: r.get(1)?,
                source_etag: r.get(2)?,
                target_etag: r.get(3)?,
                hash: r.get(4)?,
            })
        })?;
        let mut m = HashMap::new();
        for r in rows {
            let r = r?;
            m.insert(r.name.clone(), r);
        }
        Ok(m)
    }

    /// Records an object the target acknowledged; the intents to write it are done with.
    pub fn put_object(&self, collection: &str, r: &ObjectRecord) -> anyhow::Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO objects(collection, name, uid, source_etag, target_etag, hash, copied_at) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            params![collection, r.name, r.uid, r.source_etag, r.target_etag, r.hash, now()],
        )?;
        tx.execute(
            "DELETE FROM pending WHERE collection = ?1 AND name = ?2",
            params![collection, r.name],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn remove_object(&self, collection: &str, name: &str) -> anyhow::Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for table in ["objects", "pending"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE collection = ?1 AND name = ?2"),
                params![collection, name],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Before an update is sent: the content (`object::content_hash`) about to overwrite the
    /// recorded version. Kept, beside earlier ones, until the object is recorded: a run killed
    /// after the target took the update but before `put_object` leaves the target with a
    /// version the record does not know, and the next run recognises it here as its own.
    pub fn add_pending(&self, collection: &str, name: &str, content: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO pending(collection, name, content) VALUES (?1,?2,?3)",
            params![collection, name, content],
        )?;
        Ok(())
    }

    /// Whether an unrecorded write of this content to the object was under way.
    pub fn was_pending(&self, collection: &str, name: &str, content: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM pending WHERE collection = ?1 AND name = ?2 AND content = ?3",
                params![collection, name, content],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The sync token saved for a source collection copied to `target`; a token saved for
    /// another target is not used.
    pub fn sync_token(&self, collection: &str, target: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT sync_token FROM collections WHERE source_url = ?1 AND target_url = ?2",
                params![collection, target],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    pub fn set_sync_token(
        &self,
        collection: &str,
        target: &str,
        token: Option<&str>,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO collections(source_url, target_url, sync_token) VALUES (?1,?2,?3)",
            params![collection, target, token],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_tokens_round_trip_per_kind_and_pair() {
        let dir = tempfile::tempdir().unwrap();
        let p = state_file(dir.path(), Kind::Calendars, "a", "b");
        assert_ne!(p, state_file(dir.path(), Kind::Contacts, "a", "b"));
        assert_ne!(p, state_file(dir.path(), Kind::Calendars, "a", "c"));
        let s = StateStore::open(&p, "a", "b").unwrap();
        let r = ObjectRecord {
            name: "é@x.ics".into(),
            uid: "u".into(),
            source_etag: Some("\"1\"".into()),
            target_etag: None,
            hash: "blake3:00".into(),
        };
        s.add_pending("c1", &r.name, "v2").unwrap();
        s.add_pending("c1", &r.name, "v3").unwrap();
        assert!(s.was_pending("c1", &r.name, "v2").unwrap());
        assert!(!s.was_pending("c2", &r.name, "v2").unwrap());
        s.put_object("c1", &r).unwrap();
        assert!(!s.was_pending("c1", &r.name, "v3").unwrap());
        s.put_object("c2", &r).unwrap();
        s.remove_object("c2", &r.name).unwrap();
        assert_eq!(s.objects("c1").unwrap()[&r.name], r);
        assert!(s.objects("c2").unwrap().is_empty());
        assert_eq!(s.sync_token("c1", "t").unwrap(), None);
        s.set_sync_token("c1", "t", Some("tok")).unwrap();
        drop(s);
        let s = StateStore::open(&p, "a", "b").unwrap();
        assert_eq!(s.sync_token("c1", "t").unwrap().as_deref(), Some("tok"));
        assert_eq!(s.sync_token("c1", "other").unwrap(), None);
    }
}
