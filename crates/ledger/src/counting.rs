//! Per-SKU counting in the shape of Graph's `subscribedSkus`.

use crate::catalog::Sku;
use crate::ids::{SkuId, TenantId};
use crate::subscription::{Subscription, SubscriptionStatus};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Graph `licenseUnitsDetail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidUnits {
    /// Seats of active subscriptions.
    pub enabled: u64,
    /// Seats of expired subscriptions in their grace period.
    pub warning: u64,
    /// Seats of disabled subscriptions that ended with their term.
    pub suspended: u64,
    /// Seats of disabled subscriptions the customer cancelled.
    pub locked_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedSku {
    pub tenant_id: TenantId,
    pub sku: Sku,
    pub prepaid_units: PrepaidUnits,
    pub consumed_units: u64,
    /// `Enabled`, `Warning`, `Suspended` or `LockedOut`, from the best state any seat is in.
    pub capability_status: &'static str,
}

/// Counts seats per SKU the tenant has (or had, until deletion) a subscription for.
pub fn subscribed_skus(
    tenant_id: TenantId,
    subscriptions: &[Subscription],
    consumed: &HashMap<SkuId, u64>,
    catalog: &HashMap<SkuId, Sku>,
) -> Vec<SubscribedSku> {
    let mut units: BTreeMap<SkuId, PrepaidUnits> = BTreeMap::new();
    for sub in subscriptions {
        let entry = units.entry(sub.sku_id).or_default();
        let seats = sub.quantity as u64;
        match sub.status {
            SubscriptionStatus::Active => entry.enabled += seats,
            SubscriptionStatus::Expired => entry.warning += seats,
            SubscriptionStatus::Disabled if sub.cancelled => entry.locked_out += seats,
            SubscriptionStatus::Disabled => entry.suspended += seats,
            SubscriptionStatus::Deleted => {}
        }
    }
    units
        .into_iter()
        .filter_map(|(sku_id, prepaid)| {
            let sku = catalog.get(&sku_id)?.clone();
            let capability_status = if prepaid.enabled > 0 {
                "Enabled"
            } else if prepaid.warning > 0 {
                "Warning"
            } else if prepaid.suspended > 0 {
                "Suspended"
            } else {
                "LockedOut"
            };
            Some(SubscribedSku {
                tenant_id,
                sku,
                prepaid_units: prepaid,
                consumed_units: consumed.get(&sku_id).copied().unwrap_or(0),
                capability_status,
            })
        })
        .collect()
}
