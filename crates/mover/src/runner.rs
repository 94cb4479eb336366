//! The move worker: claims steps of running moves (a lease in the database) whose dependencies
//! are done, runs up to `concurrency` of them at once, each with a task keeping its lease, and
//! records the outcomes. Several workers, in one process or many, share the queue: a step is
//! leased to one worker at a time, a dead worker's lease expires, and the database caps the
//! steps running on one server at once over all of them (`per_server`). Stopped, a worker
//! claims nothing more, lets its steps finish within a grace period, then hands back the
//! leases of those still running so another worker takes them at once.

use crate::engine_state::{self, StateSlot, SNAPSHOT_EVERY};
use crate::engines::{EngineError, PimKind};
use crate::gather::Mover;
use crate::progress;
use crate::report;
use crate::tenant::Effect;
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_app::waiting;
use tenantry_app::{Caller, Ledger, NewUser};
use tenantry_ledger::assignment::AddLicense;
use tenantry_ledger::{LedgerError, Timestamp};
use tenantry_moves::model::{LibraryMapping, MoveSpec};
use tenantry_moves::plan::{LibraryRun, MovedUser, Plan, Step};
use tenantry_store::moves::{MoveRecord, StepRecord, StepState};
use tenantry_store::StoreError;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use uuid::Uuid;

/// How long a claimed step is ours before another worker may take it over, by default.
pub const LEASE_SECS: i64 = 120;
/// A step that fails this many times fails the move (after backing off between attempts).
pub const MAX_ATTEMPTS: u32 = 3;

pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// How much one worker runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Steps this worker runs at once.
    pub concurrency: usize,
    /// Steps running on one server (a mail server URL, a library host) at once, counted over
    /// every worker sharing the database; each worker checks its own value when it claims, so
    /// give all workers the same.
    pub per_server: u32,
    /// How long a claimed step stays ours without renewal (renewed every third of it): how
    /// long a killed worker's steps wait before another worker takes them over.
    pub lease_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: 4,
            per_server: 4,
            lease_secs: LEASE_SECS,
        }
    }
}

pub struct Runner {
    pub mover: Arc<Mover>,
    pub worker: String,
    pub clock: Clock,
    pub limits: Limits,
}

fn text(e: StoreError) -> String {
    match e {
        StoreError::Ledger(LedgerError { code, detail, .. }) => format!("{code}: {detail}"),
        StoreError::Internal(m) => m,
    }
}

/// Resolves once `stop` says true; never if nobody can say it any more.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The steps this worker holds, to hand back those a stop interrupts.
type Held = Arc<Mutex<HashSet<(Uuid, String)>>>;

impl Runner {
    /// Runs steps until the process ends.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (_never, stop) = watch::channel(false);
        tokio::spawn(async move {
            let _keep = _never;
            self.run(stop, Duration::ZERO).await
        })
    }

    /// Runs steps until `stop` turns true; then claims nothing more, waits up to `grace` for
    /// the steps under way, and hands back the leases of those still running.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>, grace: Duration) {
        let slots = Arc::new(Semaphore::new(self.limits.concurrency.max(1)));
        let held: Held = Arc::default();
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = stopped(&mut stop) => break,
            };
            let pause = match self.claim().await {
                Ok(Some(step)) => {
                    held.lock()
                        .unwrap()
                        .insert((step.move_id, step.key.clone()));
                    running.spawn(self.clone().work(step, permit, held.clone()));
                    continue;
                }
                Ok(None) => Duration::from_millis(250),
                Err(e) => {
                    tracing::error!(error = %e, "move worker could not reach the database");
                    Duration::from_secs(1)
                }
            };
            drop(permit);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        let under_way = running.len();
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !finished {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        let queue = Ledger::new(self.mover.store.clone());
        let left: Vec<_> = held.lock().unwrap().drain().collect();
        for (move_id, key) in &left {
            if let Err(e) = queue
                .hand_back_step(*move_id, key.clone(), self.worker.clone(), (self.clock)())
                .await
            {
                tracing::warn!(step = %key, error = %e, "could not hand a step back; its lease will expire");
            }
        }
        tracing::info!(
            worker = %self.worker,
            under_way,
            handed_back = left.len(),
            "move worker stopped"
        );
    }

    async fn claim(&self) -> Result<Option<StepRecord>, StoreError> {
        Ledger::new(self.mover.store.clone())
            .claim_step(
                self.worker.clone(),
                (self.clock)(),
                self.limits.lease_secs,
                self.limits.per_server,
            )
            .await
    }

    /// Claims and runs one step; `false` when there was nothing to do.
    pub async fn run_one(self: &Arc<Self>) -> Result<bool, StoreError> {
        let Some(step) = self.claim().await? else {
            return Ok(false);
        };
        self.clone().finish(step).await?;
        Ok(true)
    }

    /// Runs a claimed step in a slot of this worker; the slot frees when it ends.
    async fn work(self: Arc<Self>, step: StepRecord, _slot: OwnedSemaphorePermit, held: Held) {
        let id = (step.move_id, step.key.clone());
        match self.clone().finish(step).await {
            Ok(()) => {}
            Err(e) => {
                // The lease expires and another worker (or this one) runs the step again.
                tracing::error!(error = %e, "move worker could not record a step's outcome");
            }
        }
        held.lock().unwrap().remove(&id);
    }

    /// Executes a claimed step while keeping its lease, and records the outcome.
    async fn finish(self: Arc<Self>, step: StepRecord) -> Result<(), StoreError> {
        let queue = Ledger::new(self.mover.store.clone());
        // The step runs in its own task: a panic in an engine fails the step (and is retried
        // like any failure) instead of stopping this worker with the lease still held. Aborting
        // this future (a stop past its grace) aborts the step too.
        let mut task = {
            let (runner, record) = (self.clone(), step.clone());
            AbortOnDrop(tokio::spawn(async move { runner.execute(&record).await }))
        };
        // Keep the lease while a long step (a large mailbox) runs. A step never runs on without
        // its lease (another worker may then run it too, on the same mailbox): a renewal the
        // database refuses (taken over), or no renewal before the lease would run out (the
        // database unreachable), stops the step.
        let keeper = {
            let (queue, worker) = (queue.clone(), self.worker.clone());
            let (move_id, key) = (step.move_id, step.key.clone());
            let renew = move |until| {
                let (queue, worker, key) = (queue.clone(), worker.clone(), key.clone());
                async move { queue.renew_lease(move_id, key, worker, until).await }
            };
            tokio::spawn(keep_lease(
                renew,
                self.clock.clone(),
                self.limits.lease_secs.max(3),
                task.0.abort_handle(),
                step.key.clone(),
            ))
        };
        let _keeper = AbortOnDrop(keeper);
        let outcome = match (&mut task.0).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_cancelled() => Err(EngineError::Transient(
                "the step was stopped: its lease was lost".into(),
            )),
            Err(e) => Err(EngineError::Transient(format!(
                "the step stopped unexpectedly: {e}"
            ))),
        };
        if let Err(e) = &outcome {
            tracing::warn!(step = %step.key, attempt = step.attempts, error = %e, "move step failed");
        }
        if let Some(waiting) = outcome.as_ref().ok().filter(|v| waiting::is_waiting(v)) {
            queue
                .park_step(
                    step.move_id,
                    step.key,
                    self.worker.clone(),
                    waiting.clone(),
                    crate::admin::POLL_SECS,
                    (self.clock)(),
                )
                .await?;
            return Ok(());
        }
        queue
            .finish_step(
                step.move_id,
                step.key,
                self.worker.clone(),
                outcome,
                MAX_ATTEMPTS,
                (self.clock)(),
            )
            .await
    }

    async fn execute(&self, record: &StepRecord) -> Result<Value, EngineError> {
        let store = &self.mover.store;
        let moved = store.get_move(record.move_id).await.map_err(text)?;
        let plan: Plan = moved
            .plan
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| EngineError::Permanent("the move has no readable plan".into()))?;
        let step: Step = serde_json::from_value(record.step.clone())
            .map_err(|e| EngineError::Permanent(format!("unreadable step: {e}")))?;
        let caller = Caller::system(format!("system:mover (move {})", moved.id));
        let now = (self.clock)();
        let spec = &moved.spec;
        let effect = Effect {
            caller: &caller,
            move_id: moved.id,
            key: &record.key,
            now,
        };
        match &step {
            Step::BuyTargetLicences {
                sku_id, purchase, ..
            } => {
                let (_, target) = self.mover.ports(spec).await?;
                target
                    .buy(&effect, *sku_id, purchase)
                    .await
                    .map_err(EngineError::from)
            }
            Step::CreateTargetUser { target_upn, .. } => {
                let user = planned_user(&plan, target_upn)?;
                let (_, target) = self.mover.ports(spec).await?;
                let new_user = NewUser {
                    user_principal_name: user.target_upn.clone(),
                    display_name: user.display_name.clone(),
                    usage_location: user.usage_location.clone(),
                    account_enabled: true,
                };
                let created = target.ensure_user(&effect, new_user).await?;
                Ok(json!({"targetUpn": target_upn, "id": created.id.0}))
            }
            Step::AssignTargetLicences { target_upn } => {
                let planned = planned_user(&plan, target_upn)?;
                let (_, target) = self.mover.ports(spec).await?;
                let user = target
                    .find_user(target_upn)
                    .await?
                    .ok_or_else(|| format!("{target_upn} not found"))?;
                let add: Vec<AddLicense> = planned
                    .licences
                    .iter()
                    .filter(|l| {
                        !user.licences.iter().any(|(sku, disabled)| {
                            *sku == l.sku_id && *disabled == l.disabled_plans
                        })
                    })
                    .map(|l| AddLicense {
                        sku_id: l.sku_id,
                        disabled_plans: l.disabled_plans.clone(),
                    })
                    .collect();
                if !add.is_empty() {
                    target.change_licences(&effect, &user, add, vec![]).await?;
                }
                Ok(json!({"targetUpn": target_upn, "licences": planned.licences.len()}))
            }
            Step::MigrateMailbox {
                source_upn,
                target_upn,
            } => {
                progress::reporting(self.progress_of(record), |sink| {
                    self.mailbox(&moved, record, source_upn, target_upn, sink)
                })
                .await
            }
            Step::MigrateLibrary {
                index,
                source,
                target,
                target_upn,
            } => {
                let run = LibraryRun {
                    index: *index,
                    source: source.clone(),
                    target: target.clone(),
                    target_upn: target_upn.clone(),
                };
                progress::reporting(self.progress_of(record), |sink| {
                    self.library(&moved, record, &run, sink)
                })
                .await
            }
            Step::MigrateCalendars {
                source_upn,
                target_upn,
            }
            | Step::MigrateContacts {
                source_upn,
                target_upn,
            } => {
                let kind = match step {
                    Step::MigrateCalendars { .. } => PimKind::Calendars,
                    _ => PimKind::Contacts,
                };
                progress::reporting(self.progress_of(record), |sink| {
                    self.home(&moved, record, kind, source_upn, target_upn, sink)
                })
                .await
            }
            // One pass over every mailbox, library and calendar or address-book home: a few at a
            // time (as many as one server takes from this worker), since this step alone stands
            // between the data and the end.
            Step::FinalDeltaPass => {
                let width = self.limits.per_server.max(1) as usize;
                let moved = &moved;
                // Owned items: a closure over borrowed ones is not general enough for a task.
                let mailboxes: Vec<(String, String)> = match spec.source_mail {
                    Some(_) => mailbox_pairs(&plan),
                    None => vec![],
                };
                let mut passes: Vec<Value> = stream::iter(mailboxes)
                    .map(|(source, target)| async move {
                        let quiet = Arc::new(progress::NoProgress);
                        self.mailbox(moved, record, &source, &target, quiet).await
                    })
                    .buffered(width)
                    .try_collect()
                    .await?;
                let libraries: Vec<Value> = stream::iter(plan.library_runs())
                    .map(|run| async move {
                        self.library(moved, record, &run, Arc::new(progress::NoProgress))
                            .await
                    })
                    .buffered(width)
                    .try_collect()
                    .await?;
                passes.extend(libraries);
                let homes: Vec<(PimKind, String, String)> = spec
                    .pim
                    .kinds()
                    .into_iter()
                    .flat_map(|kind| {
                        mailbox_pairs(&plan)
                            .into_iter()
                            .map(move |(source, target)| (kind, source, target))
                    })
                    .collect();
                let homes: Vec<Value> = stream::iter(homes)
                    .map(|(kind, source, target)| async move {
                        let quiet = Arc::new(progress::NoProgress);
                        self.home(moved, record, kind, &source, &target, quiet)
                            .await
                    })
                    .buffered(width)
                    .try_collect()
                    .await?;
                passes.extend(homes);
                Ok(json!({"passes": passes}))
            }
            Step::Verify => {
                let mut checks = Vec::new();
                let mut problems = Vec::new();
                // A failure retrying cannot fix (a refused login) decides the step's kind.
                let mut final_failure: Option<EngineError> = None;
                if let (Some(src), Some(dst)) = (&spec.source_mail, &spec.target_mail) {
                    let (src, mut dst) = (
                        self.mover.mail_access(src).await.map_err(text)?,
                        self.mover.mail_access(dst).await.map_err(text)?,
                    );
                    dst.known_mailbox = self.migrated_target_mailbox(&moved).await;
                    let (src, dst) = (&src, &dst);
                    let results: Vec<_> = stream::iter(mailbox_pairs(&plan))
                        .map(|(source, target)| async move {
                            let verified = self
                                .mover
                                .engines
                                .verify_mailbox(src, &source, dst, &target)
                                .await;
                            (source, verified)
                        })
                        .buffered(self.limits.per_server.max(1) as usize)
                        .collect()
                        .await;
                    for (source, verified) in results {
                        match verified {
                            Ok(v) => checks.push(json!({"mailbox": source, "result": v})),
                            Err(e) => {
                                problems.push(format!("mailbox {source}: {}", e.message()));
                                if !e.is_retryable() {
                                    final_failure.get_or_insert(e);
                                }
                            }
                        }
                    }
                }
                for run in plan.library_runs() {
                    let mapping = &library_mapping(spec, &run)?;
                    let (src, dst) = self.mover.libraries(mapping).await.map_err(text)?;
                    // The library step's state, copied: which files the service rewrote after
                    // upload (not differences), without touching the step's own state.
                    let slot = self.library_slot(moved.id, &run);
                    let ledger = Ledger::new(store.clone());
                    let state = engine_state::copy_of(&ledger, &slot)
                        .await
                        .map_err(EngineError::Transient)?;
                    let state = state.as_ref().map(|s| s.path.as_path());
                    match self.mover.engines.verify_library(&src, &dst, state).await {
                        Ok(v) => checks.push(json!({"library": mapping.source, "result": v})),
                        Err(e) => {
                            problems.push(format!("library {}: {}", mapping.source, e.message()));
                            if !e.is_retryable() {
                                final_failure.get_or_insert(e);
                            }
                        }
                    }
                }
                for kind in spec.pim.kinds() {
                    let Some((src, dst)) = self.mover.dav_pair(spec, kind).await.map_err(text)?
                    else {
                        continue;
                    };
                    let (src, dst) = (&src, &dst);
                    let results: Vec<_> = stream::iter(mailbox_pairs(&plan))
                        .map(|(source, target)| async move {
                            let verified = self
                                .mover
                                .engines
                                .verify_home(kind, src, &source, dst, &target)
                                .await;
                            (source, verified)
                        })
                        .buffered(self.limits.per_server.max(1) as usize)
                        .collect()
                        .await;
                    for (source, verified) in results {
                        match verified {
                            Ok(v) => checks.push(json!({kind.name(): source, "result": v})),
                            Err(e) => {
                                problems.push(format!(
                                    "{} of {source}: {}",
                                    kind.name(),
                                    e.message()
                                ));
                                if !e.is_retryable() {
                                    final_failure.get_or_insert(e);
                                }
                            }
                        }
                    }
                }
                let message = problems.join("; ");
                match final_failure {
                    _ if problems.is_empty() => Ok(json!({"verified": checks})),
                    Some(EngineError::Authentication(_)) => {
                        Err(EngineError::Authentication(message))
                    }
                    Some(_) => Err(EngineError::Permanent(message)),
                    None => Err(EngineError::Transient(message)),
                }
            }
            Step::UnassignSourceLicences { source_upn } => {
                let (source, _) = self.mover.ports(spec).await?;
                let user = source
                    .find_user(source_upn)
                    .await?
                    .ok_or_else(|| format!("{source_upn} not found"))?;
                let planned: Vec<_> = plan
                    .users
                    .iter()
                    .find(|u| u.source_upn.eq_ignore_ascii_case(source_upn))
                    .map(|u| u.licences.iter().map(|l| l.sku_id).collect())
                    .unwrap_or_default();
                let remove: Vec<_> = user
                    .licences
                    .iter()
                    .map(|(sku, _)| *sku)
                    .filter(|s| planned.contains(s))
                    .collect();
                if !remove.is_empty() {
                    source
                        .change_licences(&effect, &user, vec![], remove.clone())
                        .await?;
                }
                Ok(json!({"sourceUpn": source_upn, "removed": remove.len()}))
            }
            Step::SourceLicences { action } => {
                let (source, _) = self.mover.ports(spec).await?;
                source
                    .change_subscription(&effect, action)
                    .await
                    .map_err(EngineError::from)
            }
            Step::AwaitTargetSeats { .. } | Step::AwaitSourceChange { .. } => {
                let (source, target) = self.mover.ports(spec).await?;
                crate::admin::check(&step, record, source.as_ref(), target.as_ref())
                    .await
                    .map_err(EngineError::from)
            }
            Step::Report => {
                let report = report::build(store.as_ref(), moved.id)
                    .await
                    .map_err(text)?;
                Ok(json!({"summary": report["summary"]}))
            }
        }
    }

    async fn mailbox(
        &self,
        moved: &MoveRecord,
        record: &StepRecord,
        source_upn: &str,
        target_upn: &str,
        sink: Arc<dyn progress::ProgressSink>,
    ) -> Result<Value, EngineError> {
        let spec = &moved.spec;
        let (Some(src), Some(dst)) = (&spec.source_mail, &spec.target_mail) else {
            return Err(EngineError::Permanent(
                "the move has no mail servers".into(),
            ));
        };
        let (src, mut dst) = (
            self.mover.mail_access(src).await.map_err(text)?,
            self.mover.mail_access(dst).await.map_err(text)?,
        );
        dst.known_mailbox = self.migrated_target_mailbox(moved).await;
        let name = safe_name(source_upn);
        let slot = StateSlot {
            move_id: moved.id,
            key: format!("mail/{name}"),
            path: self
                .mover
                .state_dir(moved.id)
                .join("mail")
                .join(format!("{name}.sqlite")),
        };
        let engines = &self.mover.engines;
        let result = self
            .with_saved_state(record, &slot, |restored| {
                engines.migrate_mailbox(
                    &src, source_upn, &dst, target_upn, &slot.path, restored, sink,
                )
            })
            .await?;
        Ok(json!({"mailbox": source_upn, "result": result}))
    }

    /// A user's calendars or address books, home to home, on a state file of their own (saved
    /// in the database like a mailbox's, shared with the final delta pass).
    async fn home(
        &self,
        moved: &MoveRecord,
        record: &StepRecord,
        kind: PimKind,
        source_upn: &str,
        target_upn: &str,
        sink: Arc<dyn progress::ProgressSink>,
    ) -> Result<Value, EngineError> {
        let (src, dst) = self
            .mover
            .dav_pair(&moved.spec, kind)
            .await
            .map_err(text)?
            .ok_or_else(|| {
                EngineError::Permanent(format!("the move has no {} servers", kind.name()))
            })?;
        let name = safe_name(source_upn);
        let slot = StateSlot {
            move_id: moved.id,
            key: format!("{}/{name}", kind.name()),
            path: self
                .mover
                .state_dir(moved.id)
                .join(kind.name())
                .join(format!("{name}.sqlite")),
        };
        let engines = &self.mover.engines;
        // A restored state may be older than the target: the engine then takes an object it
        // created or updated after the snapshot (the source's bytes already there) as done.
        let result = self
            .with_saved_state(record, &slot, |restored| {
                engines.migrate_home(
                    kind, &src, source_upn, &dst, target_upn, &slot.path, restored, sink,
                )
            })
            .await?;
        Ok(json!({kind.name(): source_upn, "result": result}))
    }

    /// The target mailbox of a mailbox step this move has completed: the target's admin login
    /// worked there (for telling a refused login from a mailbox not there yet).
    async fn migrated_target_mailbox(&self, moved: &MoveRecord) -> Option<String> {
        let steps = self.mover.store.steps(moved.id).await.ok()?;
        steps
            .into_iter()
            .filter(|s| s.state == StepState::Done)
            .find_map(|s| match serde_json::from_value(s.step).ok()? {
                Step::MigrateMailbox { target_upn, .. } => Some(target_upn),
                _ => None,
            })
    }

    async fn library(
        &self,
        moved: &MoveRecord,
        record: &StepRecord,
        run: &LibraryRun,
        sink: Arc<dyn progress::ProgressSink>,
    ) -> Result<Value, EngineError> {
        let mapping = &library_mapping(&moved.spec, run)?;
        let (src, dst) = self.mover.libraries(mapping).await.map_err(text)?;
        let slot = self.library_slot(moved.id, run);
        let engines = &self.mover.engines;
        // The files engine is safe with an older state as is: a record means "complete at its
        // final path", and both listings are compared on every run.
        let result = self
            .with_saved_state(record, &slot, |_restored| {
                engines.migrate_library(&src, &dst, &slot.path, sink)
            })
            .await?;
        Ok(json!({"library": mapping.source, "result": result}))
    }

    /// Where a library step keeps its state: one per library, and per user for each user's
    /// OneDrive (shared with the final delta pass; read by the verification).
    fn library_slot(&self, move_id: Uuid, run: &LibraryRun) -> StateSlot {
        let (key, file) = match &run.target_upn {
            None => (format!("files/{}", run.index), format!("{}", run.index)),
            Some(upn) => {
                let upn = upn.to_lowercase();
                (
                    format!("files/{}/{upn}", run.index),
                    format!("{}-{}", run.index, safe_name(&upn)),
                )
            }
        };
        StateSlot {
            move_id,
            key,
            path: self
                .mover
                .state_dir(move_id)
                .join("files")
                .join(format!("{file}.sqlite")),
        }
    }

    /// Where the progress of `record`'s engine is stored.
    fn progress_of(&self, record: &StepRecord) -> progress::Target {
        progress::Target {
            ledger: Ledger::new(self.mover.store.clone()),
            worker: self.worker.clone(),
            clock: self.clock.clone(),
            move_id: record.move_id,
            key: record.key.clone(),
        }
    }

    /// Runs an engine on its state file: restored from the database first when this machine
    /// has none or an older one, saved to the database every [`SNAPSHOT_EVERY`] while the
    /// engine runs and once more when it ends (whatever the outcome: progress is progress).
    async fn with_saved_state<F, Fut>(
        &self,
        record: &StepRecord,
        slot: &StateSlot,
        run: F,
    ) -> Result<Value, EngineError>
    where
        F: FnOnce(bool) -> Fut,
        Fut: std::future::Future<Output = Result<Value, EngineError>>,
    {
        let ledger = Ledger::new(self.mover.store.clone());
        let restored = engine_state::restore(&ledger, slot)
            .await
            .map_err(EngineError::Transient)?;
        if restored {
            tracing::info!(step = %record.key, state = %slot.key, "engine state restored from the database");
        }
        let saver = {
            let (ledger, slot, clock) = (ledger.clone(), slot.clone(), self.clock.clone());
            let (step_key, worker) = (record.key.clone(), self.worker.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SNAPSHOT_EVERY).await;
                    match engine_state::save(&ledger, &slot, &step_key, &worker, clock()).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(state = %slot.key, error = %e, "engine state not saved")
                        }
                    }
                }
            })
        };
        let outcome = {
            let _saver = AbortOnDrop(saver);
            run(restored).await
        };
        let now = (self.clock)();
        if let Err(e) = engine_state::save(&ledger, slot, &record.key, &self.worker, now).await {
            tracing::warn!(state = %slot.key, error = %e, "engine state not saved");
        }
        outcome
    }
}

/// Renews a step's lease every third of it while the step runs. A step never runs on without its
/// lease (another worker may then run it too, on the same mailbox): a renewal the database
/// refuses (taken over), or no renewal before the lease would run out (the database
/// unreachable), stops the step.
async fn keep_lease<R, F>(renew: R, clock: Clock, lease: i64, step: AbortHandle, key: String)
where
    R: Fn(Timestamp) -> F,
    F: std::future::Future<Output = Result<bool, StoreError>>,
{
    let every = (lease / 3).max(1);
    let mut held_until = clock().0 + lease;
    loop {
        tokio::time::sleep(Duration::from_secs(every as u64)).await;
        let until = Timestamp(clock().0 + lease);
        match renew(until).await {
            Ok(true) => held_until = until.0,
            Ok(false) => {
                tracing::warn!(step = %key, "lease taken over: the step stops here");
                step.abort();
                return;
            }
            // The next try would come after the lease ran out: stop before it does.
            Err(e) if clock().0 + every >= held_until => {
                tracing::warn!(step = %key, error = %e, "lease not renewed in time: the step stops here");
                step.abort();
                return;
            }
            Err(e) => tracing::warn!(step = %key, error = %e, "lease not renewed; trying again"),
        }
    }
}

/// Stops a task (the lease keeper, the step itself) however its owner ends, unwinding and
/// abortion included.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The move's library `run.index` with the step's locations (a user's OneDrive for a per-user
/// mapping) and the library's connection profiles.
fn library_mapping(spec: &MoveSpec, run: &LibraryRun) -> Result<LibraryMapping, EngineError> {
    let mapping = spec
        .libraries
        .get(run.index)
        .ok_or_else(|| EngineError::Permanent("no such library in the move".into()))?;
    Ok(LibraryMapping {
        source: run.source.clone(),
        target: run.target.clone(),
        ..mapping.clone()
    })
}

/// (source UPN, target UPN) of every mailbox of the plan.
fn mailbox_pairs(plan: &Plan) -> Vec<(String, String)> {
    plan.users
        .iter()
        .map(|u| (u.source_upn.clone(), u.target_upn.clone()))
        .collect()
}

fn planned_user<'a>(plan: &'a Plan, target_upn: &str) -> Result<&'a MovedUser, String> {
    plan.users
        .iter()
        .find(|u| u.target_upn.eq_ignore_ascii_case(target_upn))
        .ok_or_else(|| format!("{target_upn} is not in the plan"))
}

/// A file name derived from a UPN, without path separators.
fn safe_name(upn: &str) -> String {
    // One-to-one, so two users never share a state file: letters, digits and `@.-` as they
    // are, anything else (`_` included) as `_` and its code in hex.
    let mut out = String::with_capacity(upn.len());
    for c in upn.chars() {
        if c.is_ascii_alphanumeric() || "@.-".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("_{:x}_", c as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_names_are_one_to_one() {
        let names: std::collections::HashSet<String> = [
            "jean.luc@x.com",
            "jean-luc@x.com",
            "jean_luc@x.com",
            "jean'luc@x.com",
            "jean_27_luc@x.com",
        ]
        .iter()
        .map(|u| safe_name(u))
        .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(safe_name("adele@contoso.com"), "adele@contoso.com");
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_".contains(c))));
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Whole seconds counted from the test's own start, so that the keeper's second-granular
    /// checks do not depend on where in a wall-clock second the test began.
    fn test_clock() -> Clock {
        let started = std::time::Instant::now();
        Arc::new(move || Timestamp(1_000 + started.elapsed().as_secs() as i64))
    }

    /// A step that would run for a minute; how long it actually ran.
    async fn run_with_keeper(answers: Vec<Result<bool, StoreError>>) -> (Duration, bool, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let started = std::time::Instant::now();
        let step = tokio::spawn(tokio::time::sleep(Duration::from_secs(60)));
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let renew = {
            let (calls, answers) = (calls.clone(), answers.clone());
            move |_until| {
                calls.fetch_add(1, Ordering::SeqCst);
                let answer = answers.lock().unwrap().next().unwrap_or(Ok(true));
                async move { answer }
            }
        };
        let keeper = tokio::spawn(keep_lease(
            renew,
            test_clock(),
            3,
            step.abort_handle(),
            "mailbox:a".into(),
        ));
        let cancelled = step.await.is_err_and(|e| e.is_cancelled());
        keeper.abort();
        (started.elapsed(), cancelled, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_lease_taken_over_stops_the_step() {
        let (took, cancelled, calls) = run_with_keeper(vec![Ok(true), Ok(false)]).await;
        assert!(cancelled, "the step was stopped");
        assert_eq!(calls, 2);
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[tokio::test]
    async fn a_lease_that_cannot_be_renewed_stops_the_step_before_it_runs_out() {
        let down = || Err(StoreError::Internal("database unreachable".into()));
        let (took, cancelled, calls) = run_with_keeper(vec![down(), down(), down()]).await;
        assert!(cancelled, "the step was stopped");
        // Lease 3 s, a try every second: the first failure leaves time for one more; the
        // second would leave none.
        assert_eq!(calls, 2);
        assert!(
            took < Duration::from_secs(3),
            "stopped before the lease ran out: {took:?}"
        );
    }
}
