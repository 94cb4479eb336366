//! The JSON shapes of the API (Graph conventions: camelCase, `value` arrays, `@odata.nextLink`),
//! kept apart from the domain types so that the wire format is a deliberate choice.

use crate::clock::rfc3339;
use serde::{Deserialize, Serialize};
use tenantry_app::audit_view::DescribedRecord;
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::catalog::{ServicePlan, Sku};
use tenantry_ledger::counting::{PrepaidUnits, SubscribedSku};
use tenantry_ledger::subscription::{BillingCycle, Channel, Subscription, Term};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use utoipa::ToSchema;
use uuid::Uuid;

/// A page of results.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub value: Vec<T>,
    /// Where the next page is, when there is one.
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantDto {
    pub id: Uuid,
    pub display_name: String,
    pub default_domain: String,
    pub created_date_time: String,
}

impl From<Tenant> for TenantDto {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.0,
            display_name: t.display_name,
            default_domain: t.default_domain,
            created_date_time: rfc3339(t.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenant {
    pub display_name: String,
    /// e.g. `contoso.onmicrosoft.com`
    pub default_domain: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlanDto {
    pub service_plan_id: Uuid,
    pub service_plan_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Plans of one group cannot both be enabled for a user (e.g. Exchange Online Plan 1 and 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_group: Option<String>,
    #[serde(default = "applies_to_user", skip_deserializing)]
    pub applies_to: String,
}

fn applies_to_user() -> String {
    "User".into()
}

impl From<&ServicePlan> for ServicePlanDto {
    fn from(p: &ServicePlan) -> Self {
        Self {
            service_plan_id: p.service_plan_id,
            service_plan_name: p.service_plan_name.clone(),
            display_name: Some(p.display_name.clone()),
            exclusive_group: p.exclusive_group.clone(),
            applies_to: applies_to_user(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkuDto {
    pub sku_id: Uuid,
    pub sku_part_number: String,
    pub display_name: String,
    pub monthly_price_cents: u64,
    pub custom: bool,
    pub service_plans: Vec<ServicePlanDto>,
}

impl From<&Sku> for SkuDto {
    fn from(s: &Sku) -> Self {
        Self {
            sku_id: s.sku_id.0,
            sku_part_number: s.sku_part_number.clone(),
            display_name: s.display_name.clone(),
            monthly_price_cents: s.monthly_price_cents,
            custom: s.custom,
            service_plans: s.service_plans.iter().map(ServicePlanDto::from).collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSku {
    /// Optional; a new GUID when absent.
    pub sku_id: Option<Uuid>,
    pub sku_part_number: String,
    pub display_name: String,
    #[serde(default)]
    pub monthly_price_cents: u64,
    #[serde(default)]
    pub service_plans: Vec<ServicePlanDto>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDto {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub sku_id: Uuid,
    pub sku_part_number: String,
    /// Seats bought.
    pub quantity: u32,
    /// `Active`, `Expired`, `Disabled` or `Deleted`.
    pub status: String,
    #[schema(value_type = String)]
    pub channel: Channel,
    #[schema(value_type = String)]
    pub term: Term,
    #[schema(value_type = String)]
    pub billing_cycle: BillingCycle,
    pub is_trial: bool,
    pub trial_extended: bool,
    /// Recurring billing: renews at `termEndDateTime` when true.
    pub auto_renew: bool,
    pub created_date_time: String,
    pub term_start_date_time: String,
    /// The renewal (or expiry) date.
    pub term_end_date_time: String,
    /// When the status moves on if nothing is done.
    pub next_lifecycle_date_time: Option<String>,
    /// A reduction scheduled for the renewal date.
    pub scheduled_quantity: Option<u32>,
    /// Seats added in the last 7 days can still be removed with a refund until these dates.
    pub refundable_seats: Vec<RefundableSeats>,
    #[serde(rename = "@odata.etag")]
    pub etag: String,
    /// What the request that returned this did (charges, refunds, scheduled changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundableSeats {
    pub seats: u32,
    pub until_date_time: String,
}

impl SubscriptionDto {
    pub fn new(
        sub: &Subscription,
        sku_part_number: String,
        now: tenantry_ledger::Timestamp,
    ) -> Self {
        use tenantry_ledger::subscription::REFUND_WINDOW_DAYS;
        Self {
            id: sub.id.0,
            tenant_id: sub.tenant_id.0,
            sku_id: sub.sku_id.0,
            sku_part_number,
            quantity: sub.quantity,
            status: sub.status.as_str().to_string(),
            channel: sub.channel,
            term: sub.term,
            billing_cycle: sub.billing_cycle,
            is_trial: sub.is_trial,
            trial_extended: sub.trial_extended,
            auto_renew: sub.auto_renew,
            created_date_time: rfc3339(sub.created_at),
            term_start_date_time: rfc3339(sub.term_start),
            term_end_date_time: rfc3339(sub.term_end),
            next_lifecycle_date_time: sub.next_lifecycle_at().map(rfc3339),
            scheduled_quantity: sub.scheduled_quantity,
            refundable_seats: sub
                .seat_batches
                .iter()
                .filter(|b| now < b.added_at.plus_days(REFUND_WINDOW_DAYS))
                .map(|b| RefundableSeats {
                    seats: b.seats,
                    until_date_time: rfc3339(b.added_at.plus_days(REFUND_WINDOW_DAYS)),
                })
                .collect(),
            etag: crate::extract::etag(sub.version),
            outcome: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSubscription {
    /// Either `skuId` or `skuPartNumber` (e.g. `ENTERPRISEPACK`).
    pub sku_id: Option<Uuid>,
    pub sku_part_number: Option<String>,
    pub quantity: u32,
    /// `direct` (default) or `partner`; `volume` records can only be imported by the operator.
    #[schema(value_type = Option<String>)]
    pub channel: Option<Channel>,
    /// `monthly` (default) or `perTerm`.
    #[schema(value_type = Option<String>)]
    pub billing_cycle: Option<BillingCycle>,
    /// `monthly`, `annual` (default) or `threeYear`.
    #[schema(value_type = Option<String>)]
    pub term: Option<Term>,
    #[serde(default)]
    pub is_trial: bool,
    /// Recurring billing; on by default.
    pub auto_renew: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSubscription {
    /// The new total number of seats.
    pub quantity: u32,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferRequest {
    #[serde(default)]
    pub target_tenant_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicenseDto {
    pub sku_id: Uuid,
    pub disabled_plans: Vec<Uuid>,
}

impl From<&Assignment> for AssignedLicenseDto {
    fn from(a: &Assignment) -> Self {
        Self {
            sku_id: a.sku_id.0,
            disabled_plans: a.disabled_plans.iter().copied().collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    pub id: Uuid,
    pub user_principal_name: String,
    pub display_name: String,
    pub usage_location: Option<String>,
    pub account_enabled: bool,
    pub created_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_licenses: Option<Vec<AssignedLicenseDto>>,
    #[serde(rename = "@odata.etag")]
    pub etag: String,
}

impl UserDto {
    pub fn new(u: User, licences: Option<&[Assignment]>) -> Self {
        Self {
            id: u.id.0,
            user_principal_name: u.user_principal_name,
            display_name: u.display_name,
            usage_location: u.usage_location,
            account_enabled: u.account_enabled,
            created_date_time: rfc3339(u.created_at),
            assigned_licenses: licences.map(|l| l.iter().map(AssignedLicenseDto::from).collect()),
            etag: crate::extract::etag(u.version),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    pub user_principal_name: String,
    pub display_name: String,
    pub usage_location: Option<String>,
    #[serde(default = "yes")]
    pub account_enabled: bool,
}

fn yes() -> bool {
    true
}

/// A partial update; `usageLocation: null` clears it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchUser {
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub usage_location: Option<Option<String>>,
    pub account_enabled: Option<bool>,
}

/// A field that may be absent (`None`: left as it is), `null` (`Some(None)`: cleared) or a
/// value; serde alone reads `null` as absent. Both surfaces' user patches use it.
pub(crate) fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddLicenseDto {
    pub sku_id: Uuid,
    #[serde(default)]
    pub disabled_plans: Vec<Uuid>,
}

/// Graph's `assignLicense` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignLicense {
    pub add_licenses: Vec<AddLicenseDto>,
    pub remove_licenses: Vec<Uuid>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseDetailDto {
    pub id: String,
    pub sku_id: Uuid,
    pub sku_part_number: String,
    pub service_plans: Vec<ServicePlanStatusDto>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlanStatusDto {
    pub service_plan_id: Uuid,
    pub service_plan_name: String,
    pub applies_to: String,
    /// `Success`, or `Disabled` for a plan in `disabledPlans`.
    pub provisioning_status: String,
}

impl LicenseDetailDto {
    pub fn new(a: &Assignment, sku: Option<&Sku>) -> Self {
        Self {
            id: format!("{}_{}", a.user_id, a.sku_id),
            sku_id: a.sku_id.0,
            sku_part_number: sku.map(|s| s.sku_part_number.clone()).unwrap_or_default(),
            service_plans: sku
                .map(|s| {
                    s.service_plans
                        .iter()
                        .map(|p| ServicePlanStatusDto {
                            service_plan_id: p.service_plan_id,
                            service_plan_name: p.service_plan_name.clone(),
                            applies_to: applies_to_user(),
                            provisioning_status: if a.disabled_plans.contains(&p.service_plan_id) {
                                "Disabled".into()
                            } else {
                                "Success".into()
                            },
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidUnitsDto {
    pub enabled: u64,
    pub warning: u64,
    pub suspended: u64,
    pub locked_out: u64,
}

impl From<PrepaidUnits> for PrepaidUnitsDto {
    fn from(p: PrepaidUnits) -> Self {
        Self {
            enabled: p.enabled,
            warning: p.warning,
            suspended: p.suspended,
            locked_out: p.locked_out,
        }
    }
}

/// Graph `subscribedSku`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSkuDto {
    pub id: String,
    pub sku_id: Uuid,
    pub sku_part_number: String,
    pub applies_to: String,
    pub capability_status: String,
    pub consumed_units: u64,
    pub prepaid_units: PrepaidUnitsDto,
    pub service_plans: Vec<ServicePlanDto>,
}

impl From<SubscribedSku> for SubscribedSkuDto {
    fn from(s: SubscribedSku) -> Self {
        Self {
            id: format!("{}_{}", s.tenant_id, s.sku.sku_id),
            sku_id: s.sku.sku_id.0,
            sku_part_number: s.sku.sku_part_number.clone(),
            applies_to: applies_to_user(),
            capability_status: s.capability_status.to_string(),
            consumed_units: s.consumed_units,
            prepaid_units: s.prepaid_units.into(),
            service_plans: s
                .sku
                .service_plans
                .iter()
                .map(ServicePlanDto::from)
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecordDto {
    pub id: i64,
    pub activity_date_time: String,
    /// Who, as recorded: `operator`, `token:<id> (<role>)` (an API token, or an application
    /// under its client id) or `system:…` (tenantry itself).
    pub actor: String,
    /// Who, by name: "application 'Move script' (LicenseAdmin)", "token 1a2b3c4d (UserAdmin)"
    /// (an API token), "operator", "tenantry: lifecycle".
    pub actor_name: String,
    /// What, e.g. `subscription.quantityChanged`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// The target's display name (a user as named now), when it has one.
    pub target_name: Option<String>,
    /// The change in one line, e.g. "Licences 3 → 5" or "ENTERPRISEPACK assigned, TEAMS1 off".
    pub summary: String,
    /// Each changed property, old and new value as people read them.
    pub modified_properties: Vec<ModifiedPropertyDto>,
    /// The changed fields before the change (any JSON value), or null.
    pub before: Option<serde_json::Value>,
    /// The changed fields after the change (any JSON value), or null.
    pub after: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModifiedPropertyDto {
    pub display_name: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

impl From<DescribedRecord> for AuditRecordDto {
    fn from(d: DescribedRecord) -> Self {
        let r = d.record;
        Self {
            id: r.seq,
            activity_date_time: rfc3339(r.at),
            actor: r.actor,
            actor_name: d.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            target_name: d.target_name,
            summary: d.summary,
            modified_properties: d
                .changes
                .into_iter()
                .map(|c| ModifiedPropertyDto {
                    display_name: c.name,
                    old_value: c.old,
                    new_value: c.new,
                })
                .collect(),
            before: r.before,
            after: r.after,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    /// `GlobalAdmin`, `BillingAdmin`, `LicenseAdmin`, `UserAdmin` or `GlobalReader`.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenDto {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub role: String,
    /// The secret, shown only in this response.
    pub token: String,
    pub created_date_time: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvanceClock {
    pub days: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApplication {
    pub display_name: String,
    /// `GlobalAdmin`, `BillingAdmin`, `LicenseAdmin`, `UserAdmin` or `GlobalReader`.
    pub role: String,
}

/// An application registered for the client-credentials grant.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDto {
    /// The application (client) id.
    pub client_id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub role: String,
    /// The secret, shown only in the answer that created or rotated it.
    pub client_secret: String,
    pub created_date_time: String,
}

/// An application as listed: never its secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSummaryDto {
    /// The application (client) id.
    pub client_id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub role: String,
    pub created_date_time: String,
}

/// How far a step is: items (messages, files) and bytes done of the totals known so far (a
/// total may grow while the engine lists), with the rate over the last half minute or so and
/// the estimated end while the step runs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepProgressDto {
    pub items_done: u64,
    pub items_total: Option<u64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// Bytes per second.
    pub rate_per_second: Option<f64>,
    /// RFC 3339.
    pub estimated_end: Option<String>,
}

impl From<tenantry_app::progress::ProgressView> for StepProgressDto {
    fn from(v: tenantry_app::progress::ProgressView) -> Self {
        Self {
            items_done: v.items_done,
            items_total: v.items_total,
            bytes_done: v.bytes_done,
            bytes_total: v.bytes_total,
            rate_per_second: v.rate_per_second,
            estimated_end: v
                .estimated_end
                .map(|t| rfc3339(tenantry_ledger::Timestamp(t))),
        }
    }
}

/// A step being worked on: who holds it, since when, and how far it is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunningStepDto {
    pub key: String,
    pub worker: Option<String>,
    pub started_date_time: Option<String>,
    pub lease_until: Option<String>,
    pub attempts: u32,
    /// None until its engine reports (steps without data never do).
    pub progress: Option<StepProgressDto>,
}

/// A step that reported progress (finished ones keep their final counts).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasuredStepDto {
    pub key: String,
    pub state: String,
    pub progress: StepProgressDto,
}

/// A move's progress: steps done of all, every running step, every step that reported counts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveProgressDto {
    pub steps: usize,
    pub done: usize,
    /// The first step not done: key, state, attempts, error.
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
    pub running: Vec<RunningStepDto>,
    pub by_step: Vec<MeasuredStepDto>,
}

/// A move (the fields below; the answer also holds its spec and dates).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveStatusDto {
    pub id: Uuid,
    /// Draft, Running, Paused, Cancelled, Failed or Completed.
    pub state: String,
    pub progress: MoveProgressDto,
}

#[cfg(test)]
mod tests {
    /// Both surfaces' user patches tell an absent `usageLocation` (left alone) from `null`
    /// (cleared) through `double_option`.
    #[test]
    fn a_null_usage_location_clears_and_an_absent_one_is_left_alone() {
        fn v1(body: &str) -> Option<Option<String>> {
            serde_json::from_str::<super::PatchUser>(body)
                .unwrap()
                .usage_location
        }
        fn graph(body: &str) -> Option<Option<String>> {
            serde_json::from_str::<crate::graph::dto::PatchUser>(body)
                .unwrap()
                .usage_location
        }
        for read in [v1, graph] {
            assert_eq!(read(r#"{"displayName": "A"}"#), None);
            assert_eq!(read(r#"{"usageLocation": null}"#), Some(None));
            assert_eq!(
                read(r#"{"usageLocation": "DE"}"#),
                Some(Some("DE".to_string()))
            );
        }
    }
}
