//! `tenantry worker`: a process that only runs move steps (no HTTP), on a PostgreSQL database
//! shared with `serve` and other workers. SIGTERM or Ctrl-C: it claims nothing more, lets its
//! steps finish within `--grace-secs` (as `serve` does when it stops), hands back the leases of
//! those still running (another worker takes them at once), and exits 0.

use crate::node::{self, LocalPaths};
use crate::serve::WorkerLimits;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tenantry_mover::runner::Runner;
use tenantry_store::is_postgres;

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Database URL: postgres://USER@HOST:PORT/DB, shared with `serve` (no TLS yet: a trusted
    /// network or a local tunnel).
    #[arg(long, env = "TENANTRY_DATABASE")]
    pub database: String,
    /// Key file for connection-profile secrets: the same key as every other process on the
    /// database (or `TENANTRY_SECRET_KEY`, 64 hex characters).
    #[arg(long)]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// Where the mail and files engines keep their resumable state.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub limits: WorkerLimits,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    node::init_tracing();
    anyhow::ensure!(
        is_postgres(&args.database),
        "tenantry worker needs a PostgreSQL database (--database postgres://…): a SQLite database \
         belongs to the one `tenantry serve` that opened it, and that server runs the move steps itself"
    );
    let local = LocalPaths::resolve(
        &args.database,
        args.data_dir.as_deref(),
        args.secret_key_file.as_deref(),
    )?;
    let env_key = node::take_secret_key(&local)?;
    let store = tenantry_store::open(&args.database)
        .await
        .context("cannot open the database")?;
    let mover = node::mover(store, env_key.as_deref(), &local)?;
    let clock = tenantry_api::clock::Clock::system();
    let runner = Arc::new(Runner {
        mover,
        worker: node::worker_name("worker"),
        clock: Arc::new(move || clock.now()),
        limits: args.limits.limits(),
    });
    println!(
        "tenantry worker {} running up to {} steps at once ({} per server)",
        runner.worker, runner.limits.concurrency, runner.limits.per_server
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        node::shutdown_signal().await;
        tracing::info!("stopping: no new steps; running ones get the grace period");
        let _ = stop.send(true);
    });
    runner
        .run(stopping, Duration::from_secs(args.limits.grace_secs))
        .await;
    Ok(())
}
