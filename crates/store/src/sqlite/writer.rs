//! The single writer thread: SQLite allows one writer at a time, so all mutations queue here and
//! are committed in groups. Each job runs inside its own savepoint (a refused job rolls back alone)
//! and hears its result only after the group's COMMIT is durable.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::SkuId;
use tokio::sync::oneshot;

/// Most jobs in one transaction: bounds the latency a job can add to the others.
const MAX_GROUP: usize = 512;

/// What the writer thread owns.
pub struct WriterCtx {
    pub conn: Connection,
    /// The catalog, cached: only this thread changes it.
    pub catalog: HashMap<SkuId, Sku>,
}

type Completion = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

pub trait Job: Send {
    fn run(self: Box<Self>, ctx: &mut WriterCtx) -> Completion;
    fn abort(self: Box<Self>, reason: String);
}

struct WriteJob<F, R> {
    work: F,
    reply: oneshot::Sender<Result<R>>,
}

impl<F, R> Job for WriteJob<F, R>
where
    F: FnOnce(&mut WriterCtx) -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    fn run(self: Box<Self>, ctx: &mut WriterCtx) -> Completion {
        let WriteJob { work, reply } = *self;
        let outcome = match run_statement(&ctx.conn, "SAVEPOINT job") {
            Err(e) => Err(e),
            Ok(()) => {
                let outcome = work(ctx);
                let end = if outcome.is_ok() {
                    run_statement(&ctx.conn, "RELEASE job")
                } else {
                    run_statement(&ctx.conn, "ROLLBACK TO job")
                        .and_then(|()| run_statement(&ctx.conn, "RELEASE job"))
                };
                end.and(outcome)
            }
        };
        Box::new(move |commit| {
            let result = match (commit, outcome) {
                (Err(e), Ok(_)) => Err(StoreError::Internal(format!("commit failed: {e}"))),
                (_, outcome) => outcome,
            };
            let _ = reply.send(result);
        })
    }

    fn abort(self: Box<Self>, reason: String) {
        let _ = self.reply.send(Err(StoreError::Internal(reason)));
    }
}

/// Runs one statement through the statement cache (savepoints run for every job).
fn run_statement(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Queues `work` on the writer and waits for its durable result.
pub async fn submit<F, R>(queue: &Sender<Box<dyn Job>>, work: F) -> Result<R>
where
    F: FnOnce(&mut WriterCtx) -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    queue
        .send(Box::new(WriteJob { work, reply }))
        .map_err(|_| StoreError::Internal("the writer thread has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Internal("the writer thread dropped a job".into()))?
}

pub fn run(
    mut ctx: WriterCtx,
    jobs: Receiver<Box<dyn Job>>,
    reload_catalog: fn(&Connection) -> Result<HashMap<SkuId, Sku>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = ctx.conn.execute_batch("BEGIN IMMEDIATE") {
            for job in group {
                job.abort(format!("cannot begin a transaction: {e}"));
            }
            continue;
        }
        let completions: Vec<Completion> = group.into_iter().map(|job| job.run(&mut ctx)).collect();
        let commit = ctx.conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = ctx.conn.execute_batch("ROLLBACK");
            if let Ok(catalog) = reload_catalog(&ctx.conn) {
                ctx.catalog = catalog;
            }
        }
        for done in completions {
            done(commit.clone());
        }
    }
}
