//! The move worker: claims the next step of a running move (a lease in the database), executes
//! it, records the outcome. Several workers, in one process or many, can share the queue: a
//! step is leased to one worker at a time, and a dead worker's lease expires.

use crate::gather::Mover;
use crate::report;
use crate::tenant::Effect;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tenantry_app::waiting;
use tenantry_app::{Caller, Ledger, NewUser};
use tenantry_ledger::assignment::AddLicense;
use tenantry_ledger::{LedgerError, Timestamp};
use tenantry_moves::plan::{MovedUser, Plan, Step};
use tenantry_store::moves::{MoveRecord, StepRecord};
use tenantry_store::StoreError;

/// How long a claimed step is ours before another worker may take it over.
const LEASE_SECS: i64 = 120;
/// A step that fails this many times fails the move (after backing off between attempts).
pub const MAX_ATTEMPTS: u32 = 3;

pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub struct Runner {
    pub mover: Arc<Mover>,
    pub worker: String,
    pub clock: Clock,
}

fn text(e: StoreError) -> String {
    match e {
        StoreError::Ledger(LedgerError { code, detail, .. }) => format!("{code}: {detail}"),
        StoreError::Internal(m) => m,
    }
}

impl Runner {
    /// Runs steps until the process ends.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_one().await {
                    Ok(true) => {}
                    Ok(false) => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => {
                        tracing::error!(error = %e, "move worker could not reach the database");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    /// Claims and runs one step; `false` when there was nothing to do.
    pub async fn run_one(self: &Arc<Self>) -> Result<bool, StoreError> {
        let queue = Ledger::new(self.mover.store.clone());
        let Some(step) = queue
            .claim_step(self.worker.clone(), (self.clock)(), LEASE_SECS)
            .await?
        else {
            return Ok(false);
        };
        // Keep the lease while a long step (a large mailbox) runs.
        let keeper = {
            let (queue, worker, clock) = (queue.clone(), self.worker.clone(), self.clock.clone());
            let (move_id, key) = (step.move_id, step.key.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs((LEASE_SECS / 3) as u64)).await;
                    let until = Timestamp(clock().0 + LEASE_SECS);
                    if !matches!(
                        queue
                            .renew_lease(move_id, key.clone(), worker.clone(), until)
                            .await,
                        Ok(true)
                    ) {
                        break;
                    }
                }
            })
        };
        let _keeper = AbortOnDrop(keeper);
        // The step runs in its own task: a panic in an engine fails the step (and is retried
        // like any failure) instead of stopping this worker with the lease still held.
        let outcome = {
            let (runner, record) = (self.clone(), step.clone());
            match tokio::spawn(async move { runner.execute(&record).await }).await {
                Ok(outcome) => outcome,
                Err(e) => Err(format!("the step stopped unexpectedly: {e}")),
            }
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
            return Ok(true);
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
            .await?;
        Ok(true)
    }

    async fn execute(&self, record: &StepRecord) -> Result<Value, String> {
        let store = &self.mover.store;
        let moved = store.get_move(record.move_id).await.map_err(text)?;
        let plan: Plan = moved
            .plan
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or("the move has no readable plan")?;
        let step: Step = serde_json::from_value(record.step.clone())
            .map_err(|e| format!("unreadable step: {e}"))?;
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
                target.buy(&effect, *sku_id, purchase).await
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
            } => self.mailbox(&moved, source_upn, target_upn).await,
            Step::MigrateLibrary { index, .. } => self.library(&moved, *index).await,
            Step::FinalDeltaPass => {
                let mut passes = Vec::new();
                if spec.source_mail.is_some() {
                    for user in &plan.users {
                        passes.push(
                            self.mailbox(&moved, &user.source_upn, &user.target_upn)
                                .await?,
                        );
                    }
                }
                for index in 0..spec.libraries.len() {
                    passes.push(self.library(&moved, index).await?);
                }
                Ok(json!({"passes": passes}))
            }
            Step::Verify => {
                let mut checks = Vec::new();
                let mut problems = Vec::new();
                if let (Some(src), Some(dst)) = (&spec.source_mail, &spec.target_mail) {
                    let (src, dst) = (
                        self.mover.mail_access(src).await.map_err(text)?,
                        self.mover.mail_access(dst).await.map_err(text)?,
                    );
                    for user in &plan.users {
                        match self
                            .mover
                            .engines
                            .verify_mailbox(&src, &user.source_upn, &dst, &user.target_upn)
                            .await
                        {
                            Ok(v) => checks.push(json!({"mailbox": user.source_upn, "result": v})),
                            Err(e) => problems.push(format!("mailbox {}: {e}", user.source_upn)),
                        }
                    }
                }
                for mapping in &spec.libraries {
                    let (src, dst) = self.mover.libraries(mapping).await.map_err(text)?;
                    match self.mover.engines.verify_library(&src, &dst).await {
                        Ok(v) => checks.push(json!({"library": mapping.source, "result": v})),
                        Err(e) => problems.push(format!("library {}: {e}", mapping.source)),
                    }
                }
                if problems.is_empty() {
                    Ok(json!({"verified": checks}))
                } else {
                    Err(problems.join("; "))
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
                source.change_subscription(&effect, action).await
            }
            Step::AwaitTargetSeats { .. } | Step::AwaitSourceChange { .. } => {
                let (source, target) = self.mover.ports(spec).await?;
                crate::admin::check(&step, record, source.as_ref(), target.as_ref()).await
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
        source_upn: &str,
        target_upn: &str,
    ) -> Result<Value, String> {
        let spec = &moved.spec;
        let (Some(src), Some(dst)) = (&spec.source_mail, &spec.target_mail) else {
            return Err("the move has no mail servers".into());
        };
        let (src, dst) = (
            self.mover.mail_access(src).await.map_err(text)?,
            self.mover.mail_access(dst).await.map_err(text)?,
        );
        let state = self
            .mover
            .state_dir(moved.id)
            .join("mail")
            .join(format!("{}.sqlite", safe_name(source_upn)));
        let result = self
            .mover
            .engines
            .migrate_mailbox(&src, source_upn, &dst, target_upn, &state)
            .await?;
        Ok(json!({"mailbox": source_upn, "result": result}))
    }

    async fn library(&self, moved: &MoveRecord, index: usize) -> Result<Value, String> {
        let mapping = moved
            .spec
            .libraries
            .get(index)
            .ok_or("no such library in the move")?;
        let (src, dst) = self.mover.libraries(mapping).await.map_err(text)?;
        let state = self
            .mover
            .state_dir(moved.id)
            .join("files")
            .join(format!("{index}.sqlite"));
        let result = self
            .mover
            .engines
            .migrate_library(&src, &dst, &state)
            .await?;
        Ok(json!({"library": mapping.source, "result": result}))
    }
}

/// Stops the lease keeper however the step ends, unwinding included.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn planned_user<'a>(plan: &'a Plan, target_upn: &str) -> Result<&'a MovedUser, String> {
    plan.users
        .iter()
        .find(|u| u.target_upn.eq_ignore_ascii_case(target_upn))
        .ok_or_else(|| format!("{target_upn} is not in the plan"))
}

/// A file name derived from a UPN, without path separators.
fn safe_name(upn: &str) -> String {
    upn.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
