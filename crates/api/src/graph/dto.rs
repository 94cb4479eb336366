//! Graph's JSON shapes (microsoft.graph.user, subscribedSku, companySubscription, licenseDetails,
//! directoryAudit, organization), with `$select` applied to an object's properties.

use crate::clock::rfc3339;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tenantry_app::audit_view::DescribedRecord;
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::counting::SubscribedSku;
use tenantry_ledger::subscription::{Subscription, SubscriptionStatus};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use uuid::Uuid;

/// The user properties served (and `$select` may name).
pub const USER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "userPrincipalName",
    "accountEnabled",
    "usageLocation",
    "createdDateTime",
    "assignedLicenses",
];

/// Keeps only the `select`ed properties of `object` (all when `None`).
pub fn selected(object: Value, select: Option<&[String]>) -> Value {
    match (object, select) {
        (Value::Object(map), Some(names)) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| names.iter().any(|n| n == k) || k.starts_with("@odata."))
                .collect::<Map<_, _>>(),
        ),
        (other, _) => other,
    }
}

pub fn user(u: &User, licences: Option<&[Assignment]>) -> Value {
    let mut v = json!({
        "id": u.id.0,
        "displayName": u.display_name,
        "userPrincipalName": u.user_principal_name,
        "accountEnabled": u.account_enabled,
        "usageLocation": u.usage_location,
        "createdDateTime": rfc3339(u.created_at),
    });
    if let Some(licences) = licences {
        v["assignedLicenses"] = licences
            .iter()
            .map(|a| json!({"skuId": a.sku_id.0, "disabledPlans": a.disabled_plans}))
            .collect();
    }
    v
}

fn service_plan_info(sku: &Sku, disabled: &[Uuid]) -> Vec<Value> {
    sku.service_plans
        .iter()
        .map(|p| {
            json!({
                "servicePlanId": p.service_plan_id,
                "servicePlanName": p.service_plan_name,
                "provisioningStatus": if disabled.contains(&p.service_plan_id) { "Disabled" } else { "Success" },
                "appliesTo": "User",
            })
        })
        .collect()
}

pub fn subscribed_sku(s: &SubscribedSku, subscription_ids: Vec<Uuid>) -> Value {
    json!({
        "id": format!("{}_{}", s.tenant_id, s.sku.sku_id),
        "accountId": s.tenant_id.0,
        "appliesTo": "User",
        "capabilityStatus": s.capability_status,
        "consumedUnits": s.consumed_units,
        "prepaidUnits": {
            "enabled": s.prepaid_units.enabled,
            "suspended": s.prepaid_units.suspended,
            "warning": s.prepaid_units.warning,
            "lockedOut": s.prepaid_units.locked_out,
        },
        "servicePlans": service_plan_info(&s.sku, &[]),
        "skuId": s.sku.sku_id.0,
        "skuPartNumber": s.sku.sku_part_number,
        "subscriptionIds": subscription_ids,
    })
}

/// Graph's companySubscription `status`: Enabled, Warning, Suspended, Deleted (LockedOut is not
/// a state tenantry's lifecycle has).
fn company_status(status: SubscriptionStatus) -> &'static str {
    match status {
        SubscriptionStatus::Active => "Enabled",
        SubscriptionStatus::Expired => "Warning",
        SubscriptionStatus::Disabled => "Suspended",
        SubscriptionStatus::Deleted => "Deleted",
    }
}

pub fn company_subscription(sub: &Subscription, sku: Option<&Sku>) -> Value {
    json!({
        "id": sub.id.0,
        "commerceSubscriptionId": sub.id.0,
        "createdDateTime": rfc3339(sub.created_at),
        "isTrial": sub.is_trial,
        "nextLifecycleDateTime": sub.next_lifecycle_at().map(rfc3339),
        "ownerId": null,
        "ownerTenantId": null,
        "ownerType": null,
        "serviceStatus": sku.map(|s| service_plan_info(s, &[])).unwrap_or_default(),
        "skuId": sub.sku_id.0,
        "skuPartNumber": sku.map(|s| s.sku_part_number.clone()),
        "status": company_status(sub.status),
        "totalLicenses": sub.quantity,
    })
}

pub fn license_detail(a: &Assignment, sku: Option<&Sku>) -> Value {
    let disabled: Vec<Uuid> = a.disabled_plans.iter().copied().collect();
    json!({
        "id": format!("{}_{}", a.user_id, a.sku_id),
        "skuId": a.sku_id.0,
        "skuPartNumber": sku.map(|s| s.sku_part_number.clone()),
        "servicePlans": sku.map(|s| service_plan_info(s, &disabled)).unwrap_or_default(),
    })
}

pub fn organization(t: &Tenant) -> Value {
    json!({
        "id": t.id.0,
        "displayName": t.display_name,
        "createdDateTime": rfc3339(t.created_at),
        "tenantType": "AAD",
        "verifiedDomains": [{
            "name": t.default_domain,
            "isDefault": true,
            "isInitial": true,
            "type": "Managed",
            "capabilities": "Email, OfficeCommunicationsOnline",
        }],
    })
}

/// What Graph calls the activity, its category and operation type, for tenantry's action names.
fn activity(action: &str) -> (&'static str, &'static str, &'static str) {
    match action {
        "user.created" => ("Add user", "UserManagement", "Add"),
        "user.updated" => ("Update user", "UserManagement", "Update"),
        "user.deleted" => ("Delete user", "UserManagement", "Delete"),
        "user.licensesChanged" => ("Change user license", "UserManagement", "Assign"),
        "application.created" => ("Add application", "ApplicationManagement", "Add"),
        "application.secretRotated" => (
            "Update application – Certificates and secrets management",
            "ApplicationManagement",
            "Update",
        ),
        "application.deleted" => ("Delete application", "ApplicationManagement", "Delete"),
        "token.created" | "token.revoked" => {
            ("Manage API token", "ApplicationManagement", "Update")
        }
        a if a.starts_with("subscription.") => {
            ("Change subscription", "DirectoryManagement", "Update")
        }
        _ => ("Other", "Other", "Update"),
    }
}

/// A described audit record as Graph's `directoryAudit`: the actor and the target by name, and
/// each changed property with its old and new value as people read them.
pub fn directory_audit(d: &DescribedRecord) -> Value {
    let r = &d.record;
    let (name, category, operation) = activity(&r.action);
    // API tokens, applications, the operator and the server itself all act as apps here:
    // tenantry signs no user in.
    let app_id = d.actor_app_id.map(|id| id.to_string()).or_else(|| {
        r.actor
            .strip_prefix("token:")
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_string)
    });
    let modified: Vec<Value> = d
        .changes
        .iter()
        .map(|c| json!({"displayName": c.name, "oldValue": c.old, "newValue": c.new}))
        .collect();
    json!({
        "id": r.seq.to_string(),
        "category": category,
        "correlationId": null,
        "result": "success",
        "resultReason": "",
        "activityDisplayName": name,
        "activityDateTime": rfc3339(r.at),
        "loggedByService": "Core Directory",
        "operationType": operation,
        "initiatedBy": {
            "user": null,
            "app": {"appId": app_id, "displayName": d.actor, "servicePrincipalId": null, "servicePrincipalName": null},
        },
        "targetResources": [{
            "id": r.target_id,
            "displayName": d.target_name,
            "type": r.target_type,
            "userPrincipalName": d.target_upn,
            "modifiedProperties": modified,
        }],
        "additionalDetails": [
            {"key": "tenantryAction", "value": r.action},
            {"key": "summary", "value": d.summary},
        ],
    })
}

/// Graph's `passwordProfile`: checked, never stored (tenantry signs no user in) nor logged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordProfile {
    pub password: Option<String>,
    #[serde(default)]
    pub force_change_password_next_sign_in: Option<bool>,
    #[serde(default)]
    pub force_change_password_next_sign_in_with_mfa: Option<bool>,
}

/// `POST /v1.0/users`: Graph's required properties, and the optional ones tenantry keeps.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    pub account_enabled: bool,
    pub display_name: String,
    pub mail_nickname: String,
    pub password_profile: PasswordProfile,
    pub user_principal_name: String,
    pub usage_location: Option<String>,
}

/// `PATCH /v1.0/users/{id}`: `usageLocation: null` clears it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchUser {
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::double_option")]
    pub usage_location: Option<Option<String>>,
    pub account_enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddLicense {
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    pub sku_id: Uuid,
    #[serde(default)]
    pub disabled_plans: Vec<Uuid>,
}

/// Graph's `assignLicense` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignLicense {
    pub add_licenses: Vec<AddLicense>,
    pub remove_licenses: Vec<Uuid>,
}
