//! Ledger changes a move step makes exactly once: the effect and its key are written in the same
//! transaction, so a step run again (after a crash, a lost lease) finds the key and returns the
//! first result instead of buying or creating twice.

use crate::orders::Order;
use crate::users::{insert_user, NewUser};
use crate::{Caller, Ledger, Result};
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::user::User;
use tenantry_ledger::{LedgerError, TenantId, Timestamp};
use tenantry_store::StoreError;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum MoveEffect {
    CreateSubscription(Order),
    CreateUser { tenant: TenantId, user: NewUser },
}

#[derive(Debug, Clone)]
pub enum EffectOutcome {
    Subscription(Subscription),
    User(User),
}

fn recorded_id<T: std::str::FromStr>(value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| StoreError::Internal(format!("unreadable move effect value {value}")))
}

impl Ledger {
    /// Makes `effect` unless move `move_id` already made it under `key`; either way returns it.
    pub async fn apply_effect(
        &self,
        caller: &Caller,
        move_id: Uuid,
        key: String,
        effect: MoveEffect,
        now: Timestamp,
    ) -> Result<EffectOutcome> {
        caller.require_operator()?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let done = tx.find_effect(move_id, &key)?;
            let (outcome, value) = match (done, effect.clone()) {
                (Some(value), MoveEffect::CreateSubscription(order)) => {
                    let sub = tx
                        .load_subscription(order.tenant, recorded_id(&value)?)?
                        .ok_or_else(|| LedgerError::not_found("subscription"))?;
                    return Ok(EffectOutcome::Subscription(sub));
                }
                (Some(value), MoveEffect::CreateUser { tenant, .. }) => {
                    let user = tx
                        .load_user(tenant, recorded_id(&value)?)?
                        .ok_or_else(|| LedgerError::not_found("user"))?;
                    return Ok(EffectOutcome::User(user));
                }
                (None, MoveEffect::CreateSubscription(order)) => {
                    let (sub, _) = crate::subscriptions::purchase(tx, &order, actor.clone(), now)?;
                    let id = sub.id.to_string();
                    (EffectOutcome::Subscription(sub), id)
                }
                (None, MoveEffect::CreateUser { tenant, user }) => {
                    let user = insert_user(tx, tenant, &user, actor.clone(), now)?;
                    let id = user.id.to_string();
                    (EffectOutcome::User(user), id)
                }
            };
            tx.record_effect(move_id, &key, &value)?;
            Ok(outcome)
        })
        .await
    }
}
