//! Buying, changing and ending subscriptions, and the lifecycle as time passes.

use crate::audit::json;
use crate::orders::Order;
use crate::{Caller, Ledger, Result};
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::role::Action;
use tenantry_ledger::subscription::{
    transfer_to_another_tenant, CancelOutcome, Channel, Money, SeatChange, Subscription,
};
use tenantry_ledger::{guidance, LedgerError, SubscriptionId, TenantId, Timestamp};
use tenantry_store::{LedgerTx, StoreError};

/// A change to an existing subscription.
#[derive(Debug, Clone, Copy)]
pub enum SubscriptionChange {
    SetQuantity(u32),
    Cancel,
    Reactivate,
    ExtendTrial,
}

#[derive(Debug, Clone)]
pub enum ChangeOutcome {
    Seats(SeatChange),
    Cancelled(CancelOutcome),
    Reactivated(Money),
    TrialExtended,
}

impl ChangeOutcome {
    /// The outcome as the API and the audit log show it.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            ChangeOutcome::Seats(c) => json(c),
            ChangeOutcome::Cancelled(c) => json(c),
            ChangeOutcome::Reactivated(m) => json(m),
            ChangeOutcome::TrialExtended => None,
        }
    }
}

/// Seats of `sub` that assignments still need, given the other subscriptions of its SKU.
fn assigned_floor(tx: &mut dyn LedgerTx, sub: &Subscription) -> Result<u32> {
    let pool = tx.seat_pool(sub.tenant_id, sub.sku_id)?;
    let others = pool.capacity.saturating_sub(sub.assignable_seats());
    Ok(pool.consumed.saturating_sub(others))
}

fn changed_meanwhile() -> StoreError {
    LedgerError::stale("the subscription changed meanwhile; read it again").into()
}

/// The purchase inside a transaction: also what a move's "buy seats" effect runs.
pub(crate) fn purchase(
    tx: &mut dyn LedgerTx,
    order: &Order,
    actor: String,
    now: Timestamp,
) -> Result<(Subscription, Money)> {
    if !tx.tenant_exists(order.tenant)? {
        return Err(LedgerError::not_found("tenant").into());
    }
    let sku = order.sku.resolve(tx.catalog()?)?.clone();
    let (sub, money) = Subscription::purchase(
        SubscriptionId::new_random(),
        &order.to_subscription_order(),
        &sku,
        now,
    )?;
    tx.insert_subscription(&sub)?;
    tx.insert_audit(
        AuditEntry {
            tenant_id: Some(sub.tenant_id),
            actor,
            action: "subscription.created",
            target_type: "subscription",
            target_id: sub.id.to_string(),
            before: None,
            after: Some(serde_json::json!({"subscription": sub, "money": money})),
        },
        now,
    )?;
    Ok((sub, money))
}

impl Ledger {
    /// Buys a new subscription. Volume-licensing subscriptions are managed in the VLSC: only the
    /// operator records them here.
    pub async fn buy(
        &self,
        caller: &Caller,
        order: Order,
        now: Timestamp,
    ) -> Result<(Subscription, Money)> {
        caller.authorize(order.tenant, Action::ManageBilling)?;
        if order.channel() == Channel::Volume && !caller.principal.is_operator() {
            return Err(LedgerError::conflict(
                "VolumeLicensingReadOnly",
                guidance::VOLUME_READ_ONLY,
            )
            .into());
        }
        let actor = caller.actor.clone();
        self.write(move |tx| purchase(tx, &order, actor.clone(), now))
            .await
    }

    /// Applies `change` if the subscription's version still equals `if_match` (when given).
    pub async fn change_subscription(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: SubscriptionId,
        if_match: Option<u64>,
        change: SubscriptionChange,
        now: Timestamp,
    ) -> Result<(Subscription, ChangeOutcome)> {
        caller.authorize(tenant, Action::ManageBilling)?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let mut sub = tx
                .load_subscription(tenant, id)?
                .ok_or_else(|| LedgerError::not_found("subscription"))?;
            if let Some(expected) = if_match {
                if expected != sub.version {
                    return Err(LedgerError::stale(format!(
                        "the subscription changed since you read it (version {} now); read it again",
                        sub.version
                    ))
                    .into());
                }
            }
            let before = sub.clone();
            // Time may have moved on since the last sweep: rules apply to the current status.
            let floor = assigned_floor(tx, &sub)?;
            sub.advance(now, floor);
            let sku = tx.catalog()?.get(&sub.sku_id).cloned().ok_or_else(|| {
                StoreError::Internal(format!("subscription {id} names unknown SKU {}", sub.sku_id))
            })?;
            let (action, outcome) = match change {
                SubscriptionChange::SetQuantity(quantity) => {
                    let floor = assigned_floor(tx, &sub)?;
                    let seats = sub.change_quantity(quantity, floor, &sku, now)?;
                    ("subscription.quantityChanged", ChangeOutcome::Seats(seats))
                }
                SubscriptionChange::Cancel => (
                    "subscription.cancelled",
                    ChangeOutcome::Cancelled(sub.cancel(&sku, now)?),
                ),
                SubscriptionChange::Reactivate => (
                    "subscription.reactivated",
                    ChangeOutcome::Reactivated(sub.reactivate(&sku, now)?),
                ),
                SubscriptionChange::ExtendTrial => {
                    sub.extend_trial(now)?;
                    ("subscription.trialExtended", ChangeOutcome::TrialExtended)
                }
            };
            if !tx.update_subscription(&sub, before.version)? {
                return Err(changed_meanwhile());
            }
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant),
                    actor: actor.clone(),
                    action,
                    target_type: "subscription",
                    target_id: id.to_string(),
                    before: json(&before),
                    after: Some(
                        serde_json::json!({"subscription": sub, "outcome": outcome.to_json()}),
                    ),
                },
                now,
            )?;
            Ok((sub, outcome))
        })
        .await
    }

    /// Licences never move between tenants: always refused, after the existence check (so that
    /// another tenant's subscription stays "not found").
    pub async fn transfer_subscription(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<std::convert::Infallible> {
        caller.authorize(tenant, tenantry_ledger::role::Action::Read)?;
        self.store.get_subscription(tenant, id).await?;
        Err(transfer_to_another_tenant().into())
    }

    /// Applies every lifecycle transition due by `now`; returns how many subscriptions changed.
    pub async fn advance_lifecycle(&self, now: Timestamp) -> Result<usize> {
        self.write(move |tx| {
            let mut changed = 0;
            for mut sub in tx.subscriptions_due(now)? {
                let before = sub.clone();
                let floor = assigned_floor(tx, &sub)?;
                if sub.advance(now, floor).is_empty() {
                    continue;
                }
                if !tx.update_subscription(&sub, before.version)? {
                    return Err(changed_meanwhile());
                }
                tx.insert_audit(
                    AuditEntry {
                        tenant_id: Some(sub.tenant_id),
                        actor: "system:lifecycle".into(),
                        action: "subscription.lifecycle",
                        target_type: "subscription",
                        target_id: sub.id.to_string(),
                        before: json(&before),
                        after: json(&sub),
                    },
                    now,
                )?;
                changed += 1;
            }
            Ok(changed)
        })
        .await
    }
}
