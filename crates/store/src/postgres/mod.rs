//! The PostgreSQL backend: many processes share one database.
//!
//! - A small pool of connections (`deadpool-postgres`, no TLS: the database is reached on a
//!   trusted network or a local socket for now).
//! - Every write — a unit of work, and the few single writes of this module — is one
//!   `SERIALIZABLE` transaction on one connection, run again from the start on a serialization
//!   failure (40001) or a deadlock (40P01), at most [`MAX_RUNS`] times. The caller hears the
//!   outcome after COMMIT, which is durable (`synchronous_commit` is the server's, on by default).
//! - Reads run in a `REPEATABLE READ READ ONLY` transaction: one consistent snapshot, no
//!   predicate locks to slow writers.
//! - Migrations: [`schema`], applied on open under an advisory lock.

mod conn;
mod directory;
mod moves;
mod reads;
mod schema;
mod tx;

use crate::{Result, StoreError};
use conn::PgConn;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use tenantry_ledger::catalog::{seed_catalog, Sku};
use tenantry_ledger::SkuId;
use tokio::runtime::Handle;
use tokio_postgres::{IsolationLevel, NoTls};

/// Runs of one unit of work before a serialization failure is given up on.
pub const MAX_RUNS: u32 = 40;
/// Connections per process.
const POOL_SIZE: usize = 16;
/// Write transactions one process runs at once. Every assignment of a SKU writes its seat pool's
/// row: contenders beyond a few only abort each other (a serializable transaction that updates
/// a row changed since its snapshot fails), so the rest queue here instead.
const CONCURRENT_WRITES: usize = 4;

pub struct PgStore {
    pool: Pool,
    writers: tokio::sync::Semaphore,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`), migrates the
    /// schema and seeds the catalog.
    pub async fn open(url: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            // The URL may hold a password: say what is wrong, not what was given.
            StoreError::Internal(format!("the PostgreSQL URL does not parse: {e}"))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot set up the connection pool: {e}")))?;
        let store = PgStore {
            pool,
            writers: tokio::sync::Semaphore::new(CONCURRENT_WRITES),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Internal(format!("cannot reach PostgreSQL: {e}")))
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        // READ COMMITTED (the default): after waiting for the lock, each statement sees what
        // another process's migration committed meanwhile.
        let tx = client.transaction().await.map_err(conn::internal)?;
        schema::migrate(&tx).await.map_err(StoreError::Internal)?;
        let seed = tx
            .prepare(
                "INSERT INTO skus (sku_id, sku_part_number, body) VALUES ($1, $2, $3)
                 ON CONFLICT (sku_id) DO UPDATE SET body = excluded.body",
            )
            .await
            .map_err(conn::internal)?;
        for sku in seed_catalog() {
            let body = serde_json::to_string(&sku)?;
            tx.execute(
                &seed,
                &[&sku.sku_id.to_string(), &sku.sku_part_number, &body],
            )
            .await
            .map_err(conn::internal)?;
        }
        tx.commit().await.map_err(conn::internal)
    }

    /// Runs `work` in one SERIALIZABLE transaction, again from the start when PostgreSQL
    /// reports a serialization failure or a deadlock.
    async fn write<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&mut PgConn) -> Result<R> + Send + 'static,
    {
        let _turn = self
            .writers
            .acquire()
            .await
            .map_err(|_| StoreError::Internal("the store is closed".into()))?;
        self.run(IsolationLevel::Serializable, false, work).await
    }

    /// Runs `work` on one consistent snapshot.
    async fn read<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&mut PgConn) -> Result<R> + Send + 'static,
    {
        self.run(IsolationLevel::RepeatableRead, true, work).await
    }

    async fn run<R, F>(&self, level: IsolationLevel, read_only: bool, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&mut PgConn) -> Result<R> + Send + 'static,
    {
        let mut client = self.client().await?;
        let rt = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut run = 1;
            loop {
                let tx = rt
                    .block_on(
                        client
                            .build_transaction()
                            .isolation_level(level)
                            .read_only(read_only)
                            .start(),
                    )
                    .map_err(conn::internal)?;
                let mut conn = PgConn {
                    tx: &tx,
                    rt: &rt,
                    must_retry: false,
                };
                let outcome = work(&mut conn);
                let must_retry = conn.must_retry;
                // Only a serialization failure or a deadlock is run again; anything else is the
                // unit's answer (a refusal rolls everything back).
                let failure = match outcome {
                    Ok(value) => match rt.block_on(tx.commit()) {
                        Ok(()) => return Ok(value),
                        Err(e) if conn::is_retryable(&e) => conn::internal(e),
                        Err(e) => return Err(conn::internal(e)),
                    },
                    Err(e) => {
                        let _ = rt.block_on(tx.rollback());
                        if !must_retry {
                            return Err(e);
                        }
                        e
                    }
                };
                if run >= MAX_RUNS {
                    return Err(StoreError::Internal(format!(
                        "gave up after {MAX_RUNS} serialization failures: {failure}"
                    )));
                }
                std::thread::sleep(backoff(run));
                run += 1;
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("database task failed: {e}")))?
    }
}

/// Exponential back-off with jitter before run `run + 1` (1 ms, 2 ms, … up to 64 ms, plus up to
/// as much again at random), so that contenders from several processes spread out.
fn backoff(run: u32) -> std::time::Duration {
    let base = 1u64 << run.min(6);
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    std::time::Duration::from_micros(base * 1000 + noise % (base * 1000))
}

/// The SKU catalog as stored.
fn load_catalog(conn: &mut PgConn) -> Result<HashMap<SkuId, Sku>> {
    let mut catalog = HashMap::new();
    for row in conn.query("SELECT body FROM skus ORDER BY seq", &[])? {
        let sku: Sku = serde_json::from_str(row.get::<_, &str>(0))?;
        catalog.insert(sku.sku_id, sku);
    }
    Ok(catalog)
}
