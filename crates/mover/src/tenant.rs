//! What a move needs from a tenant, whatever keeps it: the tenant port. Two implementations:
//! the local ledger ([`LocalTenant`], the tenant lives in this server's database) and Microsoft
//! Graph ([`crate::tenant_graph::GraphTenant`], the tenant is reached with client credentials).
//!
//! Every operation is safe to run again after a crash: a user is created at most once (locally
//! the creation is recorded under the step's effect key in the same transaction; through Graph
//! the UPN is looked up first), licence changes are computed against what the user holds now.

use async_trait::async_trait;
use serde_json::{json, Value};
use tenantry_app::{
    Caller, ChangeOutcome, EffectOutcome, Ledger, MoveEffect, NewUser, Order, SkuRef,
    SubscriptionChange,
};
use tenantry_ledger::assignment::AddLicense;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::subscription::{Subscription, SubscriptionStatus};
use tenantry_ledger::{LedgerError, SkuId, SubscriptionId, TenantId, Timestamp, UserId};
use tenantry_moves::plan::{SourceAction, TargetPurchase, TenantSnapshot};
use tenantry_store::{PageRequest, Store, StoreError};
use uuid::Uuid;

/// A tenant as the planner sees it, and the SKUs it holds that the local catalog may lack
/// (a Microsoft tenant's subscribedSkus).
pub struct TenantView {
    pub snapshot: TenantSnapshot,
    pub skus: Vec<Sku>,
}

/// A user of the tenant and the licences it holds now.
#[derive(Debug, Clone)]
pub struct PortUser {
    pub id: UserId,
    pub user_principal_name: String,
    /// (SKU, disabled service plans, sorted).
    pub licences: Vec<(SkuId, Vec<Uuid>)>,
}

/// Who does what, when, and under which effect key of which move.
pub struct Effect<'a> {
    pub caller: &'a Caller,
    pub move_id: Uuid,
    pub key: &'a str,
    pub now: Timestamp,
}

#[async_trait]
pub trait TenantPort: Send + Sync {
    /// For messages and the report: which tenant, and how it is reached.
    fn describe(&self) -> String;
    /// Whether seats can be bought and reduced through this port (only a reseller's Partner
    /// Center can change a Microsoft tenant's seats, so Graph cannot).
    fn sells_seats(&self) -> bool;
    /// Whether the tenant lives on another system (Microsoft Graph): its failures are that
    /// system's answers, which the operator needs to read, not this server's internals.
    fn remote(&self) -> bool {
        false
    }
    async fn snapshot(&self) -> Result<TenantView, String>;
    async fn find_user(&self, upn: &str) -> Result<Option<PortUser>, String>;
    /// Creates the user unless this move (or, through Graph, anyone) already did; the user either way.
    async fn ensure_user(&self, effect: &Effect<'_>, user: NewUser) -> Result<PortUser, String>;
    async fn change_licences(
        &self,
        effect: &Effect<'_>,
        user: &PortUser,
        add: Vec<AddLicense>,
        remove: Vec<SkuId>,
    ) -> Result<(), String>;
    /// Seats of a SKU that can be assigned now (Graph: subscribedSkus `prepaidUnits.enabled`).
    async fn enabled_seats(&self, sku: SkuId) -> Result<u32, String>;
    /// One subscription as it is now; `None` once it is gone (Graph: `GET
    /// /directory/subscriptions/{id}`, a companySubscription).
    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, String>;
    /// Buys what the plan says; only where [`TenantPort::sells_seats`].
    async fn buy(
        &self,
        effect: &Effect<'_>,
        sku: SkuId,
        purchase: &TargetPurchase,
    ) -> Result<Value, String>;
    /// Cancels or reduces a source subscription; only where [`TenantPort::sells_seats`].
    async fn change_subscription(
        &self,
        effect: &Effect<'_>,
        action: &SourceAction,
    ) -> Result<Value, String>;
}

pub(crate) fn store_text(e: StoreError) -> String {
    match e {
        StoreError::Ledger(LedgerError { code, detail, .. }) => format!("{code}: {detail}"),
        StoreError::Internal(m) => m,
    }
}

/// A tenant kept in this server's ledger.
pub struct LocalTenant {
    pub store: std::sync::Arc<dyn Store>,
    pub tenant: TenantId,
}

impl LocalTenant {
    fn ledger(&self) -> Ledger {
        Ledger::new(self.store.clone())
    }
}

#[async_trait]
impl TenantPort for LocalTenant {
    fn describe(&self) -> String {
        format!("tenant {}", self.tenant)
    }

    fn sells_seats(&self) -> bool {
        true
    }

    async fn snapshot(&self) -> Result<TenantView, String> {
        let snapshot = self
            .store
            .tenant_snapshot(self.tenant)
            .await
            .map_err(store_text)?;
        Ok(TenantView {
            snapshot,
            skus: Vec::new(),
        })
    }

    async fn find_user(&self, upn: &str) -> Result<Option<PortUser>, String> {
        let page = self
            .store
            .list_users(
                self.tenant,
                Some(upn.to_string()),
                PageRequest {
                    top: 50,
                    after: None,
                },
            )
            .await
            .map_err(store_text)?;
        let Some(user) = page
            .items
            .into_iter()
            .find(|u| u.user_principal_name.eq_ignore_ascii_case(upn))
        else {
            return Ok(None);
        };
        let held = self
            .store
            .license_details(self.tenant, user.id)
            .await
            .map_err(store_text)?;
        Ok(Some(PortUser {
            id: user.id,
            user_principal_name: user.user_principal_name,
            licences: held
                .into_iter()
                .map(|a| (a.sku_id, a.disabled_plans.into_iter().collect()))
                .collect(),
        }))
    }

    async fn ensure_user(&self, effect: &Effect<'_>, user: NewUser) -> Result<PortUser, String> {
        let upn = user.user_principal_name.clone();
        let created = MoveEffect::CreateUser {
            tenant: self.tenant,
            user,
        };
        self.ledger()
            .apply_effect(
                effect.caller,
                effect.move_id,
                effect.key.to_string(),
                created,
                effect.now,
            )
            .await
            .map_err(store_text)?;
        self.find_user(&upn)
            .await?
            .ok_or_else(|| format!("{upn} not found after its creation"))
    }

    async fn change_licences(
        &self,
        effect: &Effect<'_>,
        user: &PortUser,
        add: Vec<AddLicense>,
        remove: Vec<SkuId>,
    ) -> Result<(), String> {
        self.ledger()
            .assign_licenses(effect.caller, self.tenant, user.id, add, remove, effect.now)
            .await
            .map(|_| ())
            .map_err(store_text)
    }

    async fn enabled_seats(&self, sku: SkuId) -> Result<u32, String> {
        let snapshot = self
            .store
            .tenant_snapshot(self.tenant)
            .await
            .map_err(store_text)?;
        Ok(snapshot
            .subscriptions
            .iter()
            .filter(|s| s.sku_id == sku && s.status == SubscriptionStatus::Active)
            .map(|s| s.quantity)
            .sum())
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, String> {
        match self.store.get_subscription(self.tenant, id).await {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::Ledger(e)) if e.kind == tenantry_ledger::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(store_text(e)),
        }
    }

    async fn buy(
        &self,
        effect: &Effect<'_>,
        sku_id: SkuId,
        purchase: &TargetPurchase,
    ) -> Result<Value, String> {
        match purchase {
            TargetPurchase::None => Ok(json!({"bought": 0})),
            TargetPurchase::AddSeats {
                subscription_id,
                to,
                ..
            } => {
                let sub = self
                    .store
                    .get_subscription(self.tenant, *subscription_id)
                    .await
                    .map_err(store_text)?;
                if sub.quantity >= *to {
                    return Ok(
                        json!({"subscriptionId": sub.id, "quantity": sub.quantity, "already": true}),
                    );
                }
                let (sub, _) = self
                    .ledger()
                    .change_subscription(
                        effect.caller,
                        self.tenant,
                        *subscription_id,
                        None,
                        SubscriptionChange::SetQuantity(*to),
                        effect.now,
                    )
                    .await
                    .map_err(store_text)?;
                Ok(json!({"subscriptionId": sub.id, "quantity": sub.quantity}))
            }
            TargetPurchase::NewSubscription { quantity } => {
                // The defaults every purchase takes: annual, monthly billing, direct, renewing.
                let order = Order::new(self.tenant, SkuRef::Id(sku_id), *quantity);
                match self
                    .ledger()
                    .apply_effect(
                        effect.caller,
                        effect.move_id,
                        effect.key.to_string(),
                        MoveEffect::CreateSubscription(order),
                        effect.now,
                    )
                    .await
                    .map_err(store_text)?
                {
                    EffectOutcome::Subscription(sub) => {
                        Ok(json!({"subscriptionId": sub.id, "quantity": sub.quantity}))
                    }
                    EffectOutcome::User(_) => Err("unexpected effect".into()),
                }
            }
        }
    }

    async fn change_subscription(
        &self,
        effect: &Effect<'_>,
        action: &SourceAction,
    ) -> Result<Value, String> {
        let tenant = self.tenant;
        match action {
            SourceAction::Cancel {
                subscription_id, ..
            } => {
                let sub = self
                    .store
                    .get_subscription(tenant, *subscription_id)
                    .await
                    .map_err(store_text)?;
                if sub.status != SubscriptionStatus::Active || !sub.auto_renew {
                    return Ok(
                        json!({"subscriptionId": sub.id, "already": true, "status": sub.status.as_str()}),
                    );
                }
                let (sub, outcome) = self
                    .ledger()
                    .change_subscription(
                        effect.caller,
                        tenant,
                        *subscription_id,
                        None,
                        SubscriptionChange::Cancel,
                        effect.now,
                    )
                    .await
                    .map_err(store_text)?;
                let outcome = match outcome {
                    ChangeOutcome::Cancelled(c) => serde_json::to_value(c).unwrap_or_default(),
                    _ => Value::Null,
                };
                Ok(
                    json!({"subscriptionId": sub.id, "status": sub.status.as_str(), "outcome": outcome}),
                )
            }
            SourceAction::Reduce {
                subscription_id,
                to,
                ..
            } => {
                let sub = self
                    .store
                    .get_subscription(tenant, *subscription_id)
                    .await
                    .map_err(store_text)?;
                if sub.quantity <= *to || sub.scheduled_quantity == Some(*to) {
                    return Ok(
                        json!({"subscriptionId": sub.id, "already": true, "quantity": sub.quantity}),
                    );
                }
                let (sub, _) = self
                    .ledger()
                    .change_subscription(
                        effect.caller,
                        tenant,
                        *subscription_id,
                        None,
                        SubscriptionChange::SetQuantity(*to),
                        effect.now,
                    )
                    .await
                    .map_err(store_text)?;
                Ok(
                    json!({"subscriptionId": sub.id, "quantity": sub.quantity, "scheduledQuantity": sub.scheduled_quantity}),
                )
            }
            SourceAction::VolumeLicensing {
                subscription_id, ..
            } => Ok(json!({
                "subscriptionId": subscription_id,
                "action": "volume licensing: change or end this agreement in the Volume Licensing Service Center"
            })),
        }
    }
}
