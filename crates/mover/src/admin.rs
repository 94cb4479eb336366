//! Steps an administrator completes (seats bought, a source subscription cancelled or reduced
//! in a Microsoft tenant): what the run checks each time it looks (subscribedSkus for seats
//! bought, the subscription in directory/subscriptions for a change), and what it records.

use crate::tenant::TenantPort;
use serde_json::{json, Value};
use tenantry_app::waiting::{confirmation, WAITING};
use tenantry_ledger::subscription::SubscriptionStatus;
use tenantry_moves::plan::{SourceAction, Step};
use tenantry_store::moves::StepRecord;

/// How often a waiting step looks again (subscribedSkus is read once per look).
pub const POLL_SECS: i64 = 10;

/// Done when confirmed or when the change shows; otherwise what is awaited, exactly.
pub async fn check(
    step: &Step,
    record: &StepRecord,
    source: &dyn TenantPort,
    target: &dyn TenantPort,
) -> Result<Value, String> {
    let confirmed = confirmation(record.result.as_ref()).cloned();
    match step {
        Step::AwaitTargetSeats {
            tenant_id,
            sku_id,
            sku_part_number,
            seats_to_buy,
            enabled_at_least,
        } => {
            let enabled = target.enabled_seats(*sku_id).await?;
            let action = json!({
                "action": "buy",
                "tenantId": tenant_id,
                "skuId": sku_id,
                "skuPartNumber": sku_part_number,
                "seats": seats_to_buy,
                "enabledAtLeast": enabled_at_least,
                "enabledNow": enabled,
                "message": format!(
                    "buy {seats_to_buy} {sku_part_number} seat(s) (skuId {sku_id}) in tenant {tenant_id} ({}): Microsoft Graph cannot buy seats; the run goes on once {enabled_at_least} are enabled, or confirm the purchase",
                    target.describe()
                ),
            });
            if enabled >= *enabled_at_least {
                return Ok(json!({"done": action, "seenInSubscribedSkus": enabled}));
            }
            if let Some(c) = confirmed {
                return Ok(json!({"done": action, "confirmedBy": c["by"], "confirmedAt": c["at"]}));
            }
            Ok(json!({ WAITING: action }))
        }
        Step::AwaitSourceChange {
            tenant_id,
            action,
            refund_deadlines,
        } => {
            let change = match action {
                SourceAction::Cancel {
                    sku_part_number,
                    subscription_id,
                    ..
                } => format!(
                    "cancel the {sku_part_number} subscription {subscription_id} in tenant {tenant_id}"
                ),
                SourceAction::Reduce {
                    sku_part_number,
                    subscription_id,
                    from,
                    to,
                    ..
                } => format!(
                    "reduce the {sku_part_number} subscription {subscription_id} in tenant {tenant_id} from {from} to {to} seats"
                ),
                SourceAction::VolumeLicensing {
                    sku_part_number, ..
                } => format!("change the {sku_part_number} volume licensing agreement"),
            };
            let awaited = json!({
                "action": "changeSubscription",
                "tenantId": tenant_id,
                "change": action,
                "refundDeadlines": refund_deadlines.iter().map(|t| t.0).collect::<Vec<_>>(),
                "message": format!(
                    "{change}: Microsoft Graph cannot change subscriptions; {}confirm once done{}",
                    if matches!(action, SourceAction::VolumeLicensing { .. }) {
                        ""
                    } else {
                        "the run goes on once directory/subscriptions shows it, or "
                    },
                    refund_deadlines
                        .iter()
                        .min()
                        .map(|d| format!(" (refunded only if done before {})", crate::admin::date_time(d.0)))
                        .unwrap_or_default()
                ),
            });
            if let Some(seen) = source_change_seen(source, action).await? {
                return Ok(json!({"done": awaited, "seenInDirectorySubscriptions": seen}));
            }
            match confirmed {
                Some(c) => {
                    Ok(json!({"done": awaited, "confirmedBy": c["by"], "confirmedAt": c["at"]}))
                }
                None => Ok(json!({ WAITING: awaited })),
            }
        }
        _ => Err("not a step an administrator completes".into()),
    }
}

/// The subscription as the source shows it now, when that shows the change made: a cancelled
/// one no longer `Enabled` (or gone), a reduced one at `to` seats or fewer. `None` while it does
/// not (a change that takes effect at renewal shows only then: until then, a confirmation).
async fn source_change_seen(
    source: &dyn TenantPort,
    action: &SourceAction,
) -> Result<Option<Value>, String> {
    let id = match action {
        // Agreements are changed in the VLSC, which Graph does not show.
        SourceAction::VolumeLicensing { .. } => return Ok(None),
        other => other.subscription_id(),
    };
    let Some(now) = source.subscription(id).await? else {
        return Ok(Some(json!({"subscriptionId": id, "gone": true})));
    };
    let changed = now.status != SubscriptionStatus::Active
        || matches!(action, SourceAction::Reduce { to, .. } if now.quantity <= *to);
    Ok(changed.then(|| {
        json!({
            "subscriptionId": id,
            "status": now.status,
            "totalLicenses": now.quantity,
        })
    }))
}

/// RFC 3339 UTC text of seconds since the epoch.
pub fn date_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
