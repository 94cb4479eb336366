//! A running step's progress on its way from the engine to the database: the engine reports
//! counts as often as it likes ([`ProgressSink`]); a writer stores the latest at most once per
//! [`WRITE_EVERY`], and once more when the engine ends. A write that fails is logged and
//! skipped: progress is for people watching, it never fails or slows the step.

use crate::runner::Clock;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_app::progress::{advance, Counts};
use tenantry_app::Ledger;
use tenantry_store::moves::StepProgress;
use tokio::sync::Notify;
use uuid::Uuid;

/// At most one progress write per step this often.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Where an engine says how far it is: absolute counts of this attempt (a total may grow as the
/// engine lists more). Cheap: it only keeps the latest counts.
pub trait ProgressSink: Send + Sync {
    fn report(&self, counts: Counts);
}

/// Discards what it is told (engines run outside a move step, tests).
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: Counts) {}
}

/// The latest counts an engine reported, not yet stored.
#[derive(Default)]
struct Latest {
    counts: Mutex<Option<Counts>>,
}

impl ProgressSink for Latest {
    fn report(&self, counts: Counts) {
        if let Ok(mut latest) = self.counts.lock() {
            *latest = Some(counts);
        }
    }
}

/// The step whose progress is stored, and who stores it.
pub struct Target {
    pub ledger: Ledger,
    pub worker: String,
    pub clock: Clock,
    pub move_id: Uuid,
    pub key: String,
}

/// Runs `run` with a sink whose counts are stored for the step while it runs and once at its
/// end (whatever the outcome).
pub async fn reporting<F, Fut, T>(target: Target, run: F) -> T
where
    F: FnOnce(Arc<dyn ProgressSink>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let latest = Arc::new(Latest::default());
    let ended = Arc::new(Notify::new());
    // Stopped with the step if the step is aborted (its lease lost).
    let mut writer = crate::runner::AbortOnDrop(tokio::spawn(write_until_ended(
        target,
        latest.clone(),
        ended.clone(),
    )));
    let outcome = run(latest).await;
    ended.notify_one();
    if let Err(e) = (&mut writer.0).await {
        tracing::warn!(error = %e, "progress writer stopped");
    }
    outcome
}

async fn write_until_ended(target: Target, latest: Arc<Latest>, ended: Arc<Notify>) {
    let started_at = (target.clock)();
    let mut stored: Option<StepProgress> = None;
    loop {
        let last = tokio::select! {
            _ = tokio::time::sleep(WRITE_EVERY) => false,
            _ = ended.notified() => true,
        };
        let counts = *latest.counts.lock().unwrap_or_else(|e| e.into_inner());
        let changed = counts.is_some_and(|c| stored.as_ref().is_none_or(|s| counts_of(s) != c));
        if let (Some(counts), true) = (counts, changed) {
            let record = advance(
                stored.as_ref(),
                target.move_id,
                &target.key,
                started_at,
                counts,
                (target.clock)(),
            );
            match target
                .ledger
                .record_progress(target.worker.clone(), record.clone())
                .await
            {
                Ok(true) => stored = Some(record),
                // Not our step any more: the lease keeper stops it.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(step = %target.key, error = %e, "progress not stored")
                }
            }
        }
        if last {
            return;
        }
    }
}

fn counts_of(p: &StepProgress) -> Counts {
    Counts {
        items_done: p.items_done,
        items_total: p.items_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
    }
}
