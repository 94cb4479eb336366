//! Steps that wait for an administrator: an action tenantry cannot take itself (buying seats or
//! reducing a subscription of a Microsoft tenant, which only Partner Center or the admin center
//! can). Such a step is neither failed nor retried into failure: it goes back to the queue,
//! `Pending` with what it waits for as its result, and is looked at again after a pause (the
//! runner polls), until the change shows or an operator confirms it.

use crate::moves::{audit, load_move};
use crate::{Ledger, Result};
use serde_json::{json, Value};
use tenantry_ledger::{LedgerError, Timestamp};
use tenantry_store::moves::{StepRecord, StepState};
use uuid::Uuid;

/// The key of a step result that marks the step as waiting for an administrator.
pub const WAITING: &str = "waitingForAdministrator";
/// The key under which the operator's confirmation is kept in the step's result.
pub const CONFIRMATION: &str = "confirmation";

/// Whether a step's outcome says it waits for an administrator.
pub fn is_waiting(result: &Value) -> bool {
    result.get(WAITING).is_some()
}

/// The operator's confirmation recorded on a waiting step: `{"by", "at"}`.
pub fn confirmation(result: Option<&Value>) -> Option<&Value> {
    result
        .and_then(|r| r.get(CONFIRMATION))
        .filter(|c| c.is_object())
}

/// The result an unfinished step keeps when a resumed run gives it `planned` as its content:
/// all of it while the action is the same; without the confirmation once the plan asks for
/// something else (more seats, another change), which that confirmation did not answer.
pub(crate) fn carried_over(step: &StepRecord, planned: &Value) -> Option<Value> {
    let mut result = step.result.clone()?;
    if step.step != *planned {
        if let Some(fields) = result.as_object_mut() {
            fields.remove(CONFIRMATION);
        }
    }
    Some(result)
}

impl Ledger {
    /// Puts the step `worker` ran back in the queue, waiting: not before `poll_secs`, its
    /// attempt not counted (waiting is not failing), `waiting` (with [`WAITING`]) as its result.
    /// A confirmation recorded meanwhile is kept.
    pub async fn park_step(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        waiting: Value,
        poll_secs: i64,
        now: Timestamp,
    ) -> Result<()> {
        self.write(move |tx| {
            let Some(step) = tx.load_step(move_id, &key)? else {
                return Ok(());
            };
            if step.state != StepState::Running || step.lease_owner.as_deref() != Some(&worker) {
                return Ok(());
            }
            let mut parked = step.clone();
            let mut result = waiting.clone();
            // A look that saw a confirmation finishes the step; one found here came while this
            // look was under way: look again at once, not after the pause.
            let mut next_look = Timestamp(now.0 + poll_secs);
            if let Some(c) = confirmation(step.result.as_ref()) {
                result[CONFIRMATION] = c.clone();
                next_look = now;
            }
            parked.state = StepState::Pending;
            parked.lease_owner = None;
            parked.lease_until = Some(next_look);
            parked.attempts = step.attempts.saturating_sub(1);
            parked.result = Some(result);
            parked.error = None;
            parked.updated_at = now;
            tx.update_step(&parked, StepState::Running, Some(&worker))?;
            Ok(())
        })
        .await
    }

    /// An operator says the administrator's action is done: recorded on the step (who, when)
    /// and the step runs again now (or, if the run is looking at it this moment, right after),
    /// finishing with the confirmation. Only a waiting step can be confirmed (`StepNotWaiting`
    /// otherwise).
    pub async fn confirm_step(
        &self,
        move_id: Uuid,
        key: String,
        actor: String,
        now: Timestamp,
    ) -> Result<Value> {
        self.write(move |tx| {
            let record = load_move(tx, move_id)?;
            let step = tx
                .load_step(move_id, &key)?
                .ok_or_else(|| LedgerError::not_found("step"))?;
            let waiting = step.result.as_ref().is_some_and(is_waiting);
            // Running: the run is looking again right now; the confirmation is kept for it
            // (`park_step` carries it over), so the operator need not time the click.
            let unfinished = matches!(step.state, StepState::Pending | StepState::Running);
            if !unfinished || !waiting {
                return Err(LedgerError::conflict(
                    "StepNotWaiting",
                    format!(
                        "step {key} is {} and does not wait for an administrator",
                        step.state.as_str()
                    ),
                )
                .into());
            }
            let confirmed = json!({"by": actor, "at": now.0});
            let mut next = step.clone();
            let mut result = step.result.clone().unwrap_or_default();
            result[CONFIRMATION] = confirmed.clone();
            next.result = Some(result);
            if step.state == StepState::Pending {
                next.lease_until = Some(now);
            }
            next.updated_at = now;
            if !tx.update_step(&next, step.state, step.lease_owner.as_deref())? {
                return Err(crate::moves::lost_race("a step"));
            }
            audit(
                tx,
                &record,
                &actor,
                "move.stepConfirmed",
                json!({"state": record.state.as_str(), "steps": key}),
                now,
            )?;
            Ok(json!({"key": key, "confirmedBy": confirmed["by"], "confirmedAt": confirmed["at"]}))
        })
        .await
    }
}
