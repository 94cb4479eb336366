//! The move state machine, written once: creating a move, starting (or resuming) its run,
//! pausing and cancelling it, and the step queue — claiming a step with a lease, keeping the
//! lease, finishing or failing a step with retries and back-off, completing or failing the move,
//! freeing a dead worker's leases. Each is a unit of work over the move primitives of data
//! access ([`tenantry_store::MoveTx`]); backends only store rows.

use crate::{EngineError, Ledger, Result};
use serde_json::{json, Value};
use std::collections::HashSet;
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::{LedgerError, Timestamp};
use tenantry_moves::model::MoveSpec;
use tenantry_store::moves::{MoveRecord, MoveState, NewStep, StepRecord, StepState};
use tenantry_store::{LedgerTx, StoreError};
use uuid::Uuid;

/// The actor the audit log names for transitions the queue makes by itself.
const QUEUE_ACTOR: &str = "system:mover";

/// How long a failed step waits before its next attempt: 5 s, 10 s, 20 s, … up to 320 s.
pub fn backoff_secs(attempts: u32) -> i64 {
    5 * (1 << attempts.min(6))
}

/// How long a failed step waits before its next attempt: the back-off, or the server's
/// `retry_after` when it asked for longer (rounded up to whole seconds).
pub fn retry_delay_secs(error: &EngineError, attempts: u32) -> i64 {
    let backoff = backoff_secs(attempts);
    match error {
        EngineError::Throttled { retry_after, .. } => {
            let asked = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            // A day at most: a server's bogus value must not park the step for ever.
            backoff.max(asked.min(86_400) as i64)
        }
        _ => backoff,
    }
}

/// Whether the step is held by a live lease at `now`.
fn leased(step: &StepRecord, now: Timestamp) -> bool {
    step.state == StepState::Running && step.lease_until.is_some_and(|t| t >= now)
}

pub(crate) fn load_move(tx: &mut dyn LedgerTx, id: Uuid) -> Result<MoveRecord> {
    tx.load_move(id)?
        .ok_or_else(|| LedgerError::not_found("move").into())
}

/// A write that found its row changed under it: impossible inside one serializable transaction,
/// so it is a storage fault, not a user error.
pub(crate) fn lost_race(what: &str) -> StoreError {
    StoreError::Internal(format!("{what} changed during its own transaction"))
}

/// A move concerns two tenants: the audit log of each kept here records it, with its state and
/// side only. The spec (the other tenant, servers, profile names) and step errors are the
/// operator's: they stay in the move and its steps, which only the operator reads.
pub(crate) fn audit(
    tx: &mut dyn LedgerTx,
    m: &MoveRecord,
    actor: &str,
    action: &'static str,
    after: Value,
    now: Timestamp,
) -> Result<()> {
    let mut summary = serde_json::Map::new();
    for key in ["state", "steps"] {
        if let Some(v) = after.get(key) {
            summary.insert(key.to_string(), v.clone());
        }
    }
    for (tenant, side, graph) in [
        (m.spec.source_tenant_id, "source", &m.spec.source_graph),
        (m.spec.target_tenant_id, "target", &m.spec.target_graph),
    ] {
        // A side reached through Graph is not in this ledger: its own audit log (Microsoft's,
        // or the other server's) records what the move does there.
        if graph.is_some() {
            continue;
        }
        let mut after = Value::Object(summary.clone());
        after["side"] = json!(side);
        tx.insert_audit(
            AuditEntry {
                tenant_id: Some(tenant),
                actor: actor.to_string(),
                action,
                target_type: "move",
                target_id: m.id.to_string(),
                before: Some(json!({"state": m.state.as_str()})),
                after: Some(after),
            },
            now,
        )?;
    }
    Ok(())
}

fn action_for(to: MoveState) -> &'static str {
    match to {
        MoveState::Paused => "move.paused",
        MoveState::Cancelled => "move.cancelled",
        MoveState::Completed => "move.completed",
        MoveState::Failed => "move.failed",
        MoveState::Running => "move.started",
        MoveState::Draft => "move.stateChanged",
    }
}

impl Ledger {
    /// Records a new move (Draft) between two existing tenants.
    pub async fn create_move(
        &self,
        spec: MoveSpec,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        let spec = spec.with_graph_defaults();
        spec.validate()?;
        let id = Uuid::new_v4();
        self.write(move |tx| {
            for tenant in spec.local_tenants() {
                if !tx.tenant_exists(tenant)? {
                    return Err(LedgerError::not_found("tenant").into());
                }
            }
            let record = MoveRecord {
                id,
                spec: spec.clone(),
                state: MoveState::Draft,
                plan: None,
                fingerprint: None,
                created_at: now,
                updated_at: now,
            };
            tx.insert_move(&record)?;
            audit(
                tx,
                &record,
                &actor,
                "move.created",
                json!({"state": "Draft"}),
                now,
            )?;
            Ok(record)
        })
        .await
    }

    /// Starts (or resumes) a draft, paused or failed move on `steps`, the latest plan's (with
    /// their dependencies and servers). Steps already done stay done, a step a worker still
    /// holds (live lease) is left to it, every other unfinished step takes the new content and
    /// starts its attempts afresh (an administrator's confirmation kept while the step asks for
    /// the same action), every step takes the new dependencies (a move stored before steps had
    /// them gains them here), and unfinished steps the new plan dropped (seats bought meanwhile
    /// by hand, say) are removed, so they can neither run nor block the queue.
    pub async fn start_run(
        &self,
        id: Uuid,
        steps: Vec<NewStep>,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        self.write(move |tx| {
            let record = load_move(tx, id)?;
            match record.state {
                MoveState::Draft | MoveState::Paused | MoveState::Failed => {}
                MoveState::Running => {
                    return Err(LedgerError::conflict(
                        "MoveRunning",
                        "this move is already running",
                    )
                    .into())
                }
                other => {
                    return Err(LedgerError::conflict(
                        "MoveFinished",
                        format!(
                            "this move is {}; create a new move to run again",
                            other.as_str()
                        ),
                    )
                    .into())
                }
            }
            let wanted: HashSet<&str> = steps.iter().map(|s| s.key.as_str()).collect();
            let recorded = tx.move_steps(id)?;
            for old in &recorded {
                if old.state != StepState::Done
                    && !leased(old, now)
                    && !wanted.contains(old.key.as_str())
                {
                    tx.delete_step(id, &old.key)?;
                }
            }
            for (seq, planned) in steps.iter().enumerate() {
                match recorded.iter().find(|s| s.key == planned.key) {
                    None => tx.insert_step(&StepRecord {
                        move_id: id,
                        seq: seq as i64,
                        key: planned.key.clone(),
                        step: planned.step.clone(),
                        state: StepState::Pending,
                        attempts: 0,
                        result: None,
                        error: None,
                        lease_owner: None,
                        lease_until: None,
                        updated_at: now,
                        depends_on: Some(planned.depends_on.clone()),
                        servers: planned.servers.clone(),
                        claimed_by: None,
                        claimed_at: None,
                    })?,
                    Some(old) => {
                        let mut new = old.clone();
                        new.seq = seq as i64;
                        new.depends_on = Some(planned.depends_on.clone());
                        new.servers = planned.servers.clone();
                        if old.state != StepState::Done && !leased(old, now) {
                            new.step = planned.step.clone();
                            new.state = StepState::Pending;
                            new.attempts = 0;
                            new.result = crate::waiting::carried_over(old, &planned.step);
                        }
                        if !tx.update_step(&new, old.state, old.lease_owner.as_deref())? {
                            return Err(lost_race("a step"));
                        }
                    }
                }
            }
            if !tx.update_move_state(id, record.state, MoveState::Running, now)? {
                return Err(lost_race("the move"));
            }
            audit(
                tx,
                &record,
                &actor,
                "move.started",
                json!({"state": "Running", "steps": steps.len()}),
                now,
            )?;
            load_move(tx, id)
        })
        .await
    }

    /// Moves from one of `from` to `to`; other transitions are refused with `InvalidMoveState`.
    pub async fn set_move_state(
        &self,
        id: Uuid,
        from: &'static [MoveState],
        to: MoveState,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        self.write(move |tx| {
            let record = load_move(tx, id)?;
            if !from.contains(&record.state) {
                return Err(LedgerError::conflict(
                    "InvalidMoveState",
                    format!(
                        "this move is {}; it cannot become {}",
                        record.state.as_str(),
                        to.as_str()
                    ),
                )
                .into());
            }
            if !tx.update_move_state(id, record.state, to, now)? {
                return Err(lost_race("the move"));
            }
            audit(
                tx,
                &record,
                &actor,
                action_for(to),
                json!({"state": to.as_str()}),
                now,
            )?;
            load_move(tx, id)
        })
        .await
    }

    /// Takes the lease of the next step to run for `lease_secs`, if there is one: a step whose
    /// dependencies are done, on servers that have fewer than `per_server` steps running.
    pub async fn claim_step(
        &self,
        worker: String,
        now: Timestamp,
        lease_secs: i64,
        per_server: u32,
    ) -> Result<Option<StepRecord>> {
        // Workers poll often: look with a read first, so an idle queue never takes a write.
        if !self.store().claimable_step_exists(now, per_server).await? {
            return Ok(None);
        }
        let until = Timestamp(now.0 + lease_secs);
        self.write(move |tx| tx.claim_next_step(&worker, until, now, per_server))
            .await
    }

    /// Gives back a step `worker` holds but will not finish (it is shutting down): Pending again
    /// and free at once for another worker, the attempt not counted. `false` when the step is
    /// no longer `worker`'s.
    pub async fn hand_back_step(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        now: Timestamp,
    ) -> Result<bool> {
        self.write(move |tx| {
            let Some(step) = tx.load_step(move_id, &key)? else {
                return Ok(false);
            };
            if step.state != StepState::Running || step.lease_owner.as_deref() != Some(&worker) {
                return Ok(false);
            }
            let mut free = step.clone();
            free.state = StepState::Pending;
            free.lease_owner = None;
            free.lease_until = None;
            free.attempts = step.attempts.saturating_sub(1);
            free.updated_at = now;
            tx.update_step(&free, StepState::Running, Some(&worker))
        })
        .await
    }

    /// Extends `worker`'s lease while a long step (a mailbox) runs; `false` once the step is
    /// no longer its own (taken over after the lease expired, or finished).
    pub async fn renew_lease(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        until: Timestamp,
    ) -> Result<bool> {
        self.write(move |tx| {
            let Some(step) = tx.load_step(move_id, &key)? else {
                return Ok(false);
            };
            if step.state != StepState::Running || step.lease_owner.as_deref() != Some(&worker) {
                return Ok(false);
            }
            let mut renewed = step.clone();
            renewed.lease_until = Some(until);
            tx.update_step(&renewed, StepState::Running, Some(&worker))
        })
        .await
    }

    /// Records the end of a step `worker` ran. Done: the step is done, and the last step done
    /// completes the move. Failed, by the failure's kind ([`EngineError`]): transient → the
    /// step waits [`backoff_secs`] and is tried again, up to `max_attempts` attempts; throttled
    /// → likewise, but waits at least the server's `retry_after`; authentication or permanent
    /// → no retry. A step that will not be tried again fails, and so does its move (a move the
    /// operator paused or cancelled meanwhile keeps that state). A worker whose lease was taken
    /// over reports nothing: the new owner does.
    pub async fn finish_step(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        outcome: std::result::Result<Value, EngineError>,
        max_attempts: u32,
        now: Timestamp,
    ) -> Result<()> {
        self.write(move |tx| {
            let Some(step) = tx.load_step(move_id, &key)? else {
                return Ok(());
            };
            if step.lease_owner.as_deref() != Some(&worker) {
                return Ok(());
            }
            let mut done = step.clone();
            done.lease_owner = None;
            done.updated_at = now;
            let failed_for_good = match &outcome {
                Ok(result) => {
                    done.state = StepState::Done;
                    done.result = Some(result.clone());
                    done.error = None;
                    done.lease_until = None;
                    false
                }
                Err(error) => {
                    let final_failure = !error.is_retryable() || step.attempts >= max_attempts;
                    done.state = if final_failure {
                        StepState::Failed
                    } else {
                        StepState::Pending
                    };
                    done.error = Some(error.describe());
                    done.lease_until =
                        Some(Timestamp(now.0 + retry_delay_secs(error, step.attempts)));
                    final_failure
                }
            };
            if !tx.update_step(&done, step.state, Some(&worker))? {
                return Err(lost_race("a step"));
            }
            let record = load_move(tx, move_id)?;
            if failed_for_good
                && tx.update_move_state(move_id, MoveState::Running, MoveState::Failed, now)?
            {
                audit(
                    tx,
                    &record,
                    QUEUE_ACTOR,
                    "move.failed",
                    json!({"state": "Failed"}),
                    now,
                )?;
            }
            let all_done = tx
                .move_steps(move_id)?
                .iter()
                .all(|s| s.state == StepState::Done);
            if all_done
                && tx.update_move_state(move_id, MoveState::Running, MoveState::Completed, now)?
            {
                audit(
                    tx,
                    &record,
                    QUEUE_ACTOR,
                    "move.completed",
                    json!({"state": "Completed"}),
                    now,
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Saves a data engine's resumable state for the step `step_key` that `worker` runs; `None`
    /// (nothing written) once the step is no longer its own, so a worker whose lease was taken
    /// over cannot overwrite what the new owner saves.
    pub async fn save_engine_state(
        &self,
        move_id: Uuid,
        step_key: String,
        worker: String,
        state_key: String,
        state: Vec<u8>,
        now: Timestamp,
    ) -> Result<Option<i64>> {
        self.write(move |tx| {
            let Some(step) = tx.load_step(move_id, &step_key)? else {
                return Ok(None);
            };
            if step.state != StepState::Running || step.lease_owner.as_deref() != Some(&worker) {
                return Ok(None);
            }
            Ok(Some(tx.put_engine_state(move_id, &state_key, &state, now)?))
        })
        .await
    }

    /// Frees every lease: for a server starting on a database no other worker uses (SQLite), so
    /// the steps a killed process was running resume at once instead of after their lease.
    pub async fn release_leases(&self) -> Result<u64> {
        self.write(|tx| tx.release_all_leases()).await
    }
}
