//! A tenant reached through Microsoft Graph with client credentials (a Microsoft 365 tenant, or
//! another tenantry server's `/v1.0`). Shapes as learn.microsoft.com documents them:
//! `GET /subscribedSkus`, `GET /directory/subscriptions[/{id}]` (companySubscription),
//! `GET /users` with `$select` and `$top` through `@odata.nextLink`, `GET /users/{upn}`,
//! `POST /users`
//! (accountEnabled, displayName, mailNickname, userPrincipalName, passwordProfile), and
//! `POST /users/{id}/assignLicense`. Writes also wait for Microsoft's directory write limit.

use crate::tenant::{Effect, PortUser, TenantPort, TenantView};
use crate::write_limit::WriteLimit;
use async_trait::async_trait;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use tenantry_app::NewUser;
use tenantry_graph::client::{encode_path, Call};
use tenantry_graph::{GraphClient, GraphError};
use tenantry_ledger::assignment::{AddLicense, Assignment};
use tenantry_ledger::catalog::{ServicePlan, Sku};
use tenantry_ledger::subscription::{
    BillingCycle, Channel, SeatBatch, Subscription, SubscriptionStatus, Term,
};
use tenantry_ledger::user::User;
use tenantry_ledger::{SkuId, SubscriptionId, TenantId, Timestamp, UserId};
use tenantry_moves::plan::{SourceAction, TargetPurchase, TenantSnapshot, UserLicences};
use uuid::Uuid;

const USER_FIELDS: &str =
    "id,displayName,userPrincipalName,usageLocation,accountEnabled,createdDateTime,assignedLicenses";

pub struct GraphTenant {
    pub client: GraphClient,
    /// The local id the move knows this tenant by (the Entra tenant id when it is a GUID).
    pub tenant: TenantId,
    pub profile: String,
    pub writes: Arc<WriteLimit>,
}

fn graph_text(e: GraphError) -> String {
    e.to_string()
}

fn guid(v: &Value) -> Option<Uuid> {
    v.as_str().and_then(|s| Uuid::parse_str(s).ok())
}

/// RFC 3339 (`2024-05-01T10:00:00Z`, with or without fractions) to seconds.
fn timestamp(v: &Value) -> Option<Timestamp> {
    let text = v.as_str()?;
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| Timestamp(t.unix_timestamp()))
}

/// companySubscription `status` (Enabled, Warning, Suspended, Deleted, LockedOut).
fn status(v: &Value) -> SubscriptionStatus {
    match v.as_str().unwrap_or("") {
        "Enabled" => SubscriptionStatus::Active,
        "Warning" => SubscriptionStatus::Expired,
        "Deleted" => SubscriptionStatus::Deleted,
        _ => SubscriptionStatus::Disabled,
    }
}

/// A companySubscription as the planner's subscription. Graph does not say when seats were
/// added to it, so all its seats count as one batch bought when it was created (the refund
/// window then ends 7 days after `createdDateTime`).
pub fn subscription(tenant: TenantId, v: &Value, now: Timestamp) -> Option<Subscription> {
    let id = guid(&v["id"])?;
    let created = timestamp(&v["createdDateTime"]).unwrap_or(now);
    let quantity = v["totalLicenses"].as_u64().unwrap_or(0) as u32;
    let term_end = timestamp(&v["nextLifecycleDateTime"]).unwrap_or(created.plus_days(365));
    Some(Subscription {
        id: SubscriptionId(id),
        tenant_id: tenant,
        sku_id: SkuId(guid(&v["skuId"])?),
        quantity,
        term: Term::Annual,
        billing_cycle: BillingCycle::Monthly,
        channel: Channel::Direct,
        is_trial: v["isTrial"].as_bool().unwrap_or(false),
        trial_extended: false,
        status: status(&v["status"]),
        auto_renew: true,
        cancelled: false,
        created_at: created,
        term_start: created,
        term_end,
        status_since: created,
        seat_batches: vec![SeatBatch {
            seats: quantity,
            added_at: created,
        }],
        scheduled_quantity: None,
        version: 0,
    })
}

/// A subscribedSku as a catalog entry (price unknown: Microsoft's price list is not in Graph).
fn sku(v: &Value) -> Option<Sku> {
    Some(Sku {
        sku_id: SkuId(guid(&v["skuId"])?),
        sku_part_number: v["skuPartNumber"].as_str().unwrap_or("").to_string(),
        display_name: v["skuPartNumber"].as_str().unwrap_or("").to_string(),
        service_plans: v["servicePlans"]
            .as_array()
            .map(|plans| {
                plans
                    .iter()
                    .filter_map(|p| {
                        Some(ServicePlan {
                            service_plan_id: guid(&p["servicePlanId"])?,
                            service_plan_name: p["servicePlanName"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                            display_name: p["servicePlanName"].as_str().unwrap_or("").to_string(),
                            exclusive_group: None,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        monthly_price_cents: 0,
        custom: false,
    })
}

/// `assignedLicenses` of a Graph user: (skuId, disabledPlans sorted).
fn licences(v: &Value) -> Vec<(SkuId, Vec<Uuid>)> {
    v["assignedLicenses"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|a| {
                    let mut disabled: Vec<Uuid> = a["disabledPlans"]
                        .as_array()
                        .map(|d| d.iter().filter_map(guid).collect())
                        .unwrap_or_default();
                    disabled.sort();
                    Some((SkuId(guid(&a["skuId"])?), disabled))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn port_user(v: &Value) -> Option<PortUser> {
    Some(PortUser {
        id: UserId(guid(&v["id"])?),
        user_principal_name: v["userPrincipalName"].as_str()?.to_string(),
        licences: licences(v),
    })
}

/// The alias of a UPN as a mailNickname: Graph allows ASCII letters, digits and `.-_` there.
fn mail_nickname(upn: &str) -> String {
    let alias = upn.split('@').next().unwrap_or(upn);
    let nick: String = alias
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
        .take(64)
        .collect();
    if nick.is_empty() {
        "user".into()
    } else {
        nick
    }
}

/// A strong one-time password nobody keeps: the moved user signs in after an administrator
/// resets it (or through single sign-on), as after any tenant move.
fn throwaway_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    let body: String = (0..24)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    format!("{body}#9a")
}

impl GraphTenant {
    async fn write(&self, call: Call) -> Result<Value, String> {
        self.writes.acquire().await;
        self.client.json(&call).await.map_err(graph_text)
    }

    async fn user_by_upn(&self, upn: &str) -> Result<Option<PortUser>, String> {
        let path = format!("/users/{}?$select={USER_FIELDS}", encode_path(upn));
        match self.client.get_json(&path).await {
            Ok(v) => Ok(port_user(&v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(graph_text(e)),
        }
    }
}

#[async_trait]
impl TenantPort for GraphTenant {
    fn describe(&self) -> String {
        format!(
            "Microsoft Graph tenant {} (profile {})",
            self.client.config().tenant_id,
            self.profile
        )
    }

    fn sells_seats(&self) -> bool {
        false
    }

    fn remote(&self) -> bool {
        true
    }

    async fn snapshot(&self) -> Result<TenantView, String> {
        let now = Timestamp(time::OffsetDateTime::now_utc().unix_timestamp());
        let users_path = format!("/users?$select={USER_FIELDS}&$top=999");
        let (organization, skus, subscriptions, users) = tokio::try_join!(
            self.client.get_all("/organization"),
            self.client.get_all("/subscribedSkus"),
            self.client.get_all("/directory/subscriptions"),
            self.client.get_all(&users_path),
        )
        .map_err(graph_text)?;
        // The profile's credentials must reach the tenant the move names, not another one.
        let tenant_of_token = organization.first().and_then(|o| guid(&o["id"]));
        if tenant_of_token != Some(self.tenant.0) {
            return Err(format!(
                "{} answers for organization {}, not for tenant {}: check the profile's tenantId",
                self.describe(),
                tenant_of_token.map_or_else(|| "(none)".into(), |t| t.to_string()),
                self.tenant
            ));
        }
        let users = users
            .iter()
            .filter_map(|v| {
                let id = UserId(guid(&v["id"])?);
                let user = User {
                    id,
                    tenant_id: self.tenant,
                    user_principal_name: v["userPrincipalName"].as_str()?.to_string(),
                    display_name: v["displayName"].as_str().unwrap_or("").to_string(),
                    usage_location: v["usageLocation"].as_str().map(str::to_string),
                    account_enabled: v["accountEnabled"].as_bool().unwrap_or(true),
                    created_at: timestamp(&v["createdDateTime"]).unwrap_or(now),
                    version: 0,
                };
                let licences = licences(v)
                    .into_iter()
                    .map(|(sku_id, disabled)| Assignment {
                        user_id: id,
                        sku_id,
                        disabled_plans: disabled.into_iter().collect(),
                        assigned_at: user.created_at,
                    })
                    .collect();
                Some(UserLicences { user, licences })
            })
            .collect();
        Ok(TenantView {
            snapshot: TenantSnapshot {
                tenant_id: self.tenant,
                subscriptions: subscriptions
                    .iter()
                    .filter_map(|v| subscription(self.tenant, v, now))
                    .collect(),
                users,
            },
            skus: skus.iter().filter_map(sku).collect(),
        })
    }

    async fn find_user(&self, upn: &str) -> Result<Option<PortUser>, String> {
        self.user_by_upn(upn).await
    }

    async fn ensure_user(&self, _effect: &Effect<'_>, user: NewUser) -> Result<PortUser, String> {
        // Looked up first: a run that crashed after the POST, or an administrator who created
        // the user meanwhile, never gets a second user.
        if let Some(found) = self.user_by_upn(&user.user_principal_name).await? {
            return Ok(found);
        }
        let mut body = json!({
            "accountEnabled": user.account_enabled,
            "displayName": user.display_name,
            "mailNickname": mail_nickname(&user.user_principal_name),
            "userPrincipalName": user.user_principal_name,
            "passwordProfile": {
                "forceChangePasswordNextSignIn": true,
                "password": throwaway_password(),
            },
        });
        if let Some(location) = &user.usage_location {
            body["usageLocation"] = json!(location);
        }
        match self
            .write(Call::new(Method::POST, "/users").json(&body))
            .await
        {
            Ok(created) => port_user(&created)
                .ok_or_else(|| "Graph created the user but answered without its id".to_string()),
            // Created by a concurrent attempt (its answer lost): take that one.
            Err(e) => self.user_by_upn(&user.user_principal_name).await?.ok_or(e),
        }
    }

    async fn change_licences(
        &self,
        _effect: &Effect<'_>,
        user: &PortUser,
        add: Vec<AddLicense>,
        remove: Vec<SkuId>,
    ) -> Result<(), String> {
        let body = json!({
            "addLicenses": add
                .iter()
                .map(|l| json!({"skuId": l.sku_id.0, "disabledPlans": l.disabled_plans}))
                .collect::<Vec<_>>(),
            "removeLicenses": remove.iter().map(|s| s.0).collect::<Vec<_>>(),
        });
        let path = format!("/users/{}/assignLicense", user.id.0);
        self.write(Call::new(Method::POST, path).json(&body))
            .await
            .map(|_| ())
    }

    async fn enabled_seats(&self, sku: SkuId) -> Result<u32, String> {
        let skus = self
            .client
            .get_all("/subscribedSkus")
            .await
            .map_err(graph_text)?;
        Ok(skus
            .iter()
            .filter(|v| guid(&v["skuId"]) == Some(sku.0))
            .map(|v| v["prepaidUnits"]["enabled"].as_u64().unwrap_or(0) as u32)
            .sum())
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, String> {
        let now = Timestamp(time::OffsetDateTime::now_utc().unix_timestamp());
        match self
            .client
            .get_json(&format!("/directory/subscriptions/{}", id.0))
            .await
        {
            Ok(v) => Ok(subscription(self.tenant, &v, now)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(graph_text(e)),
        }
    }

    async fn buy(
        &self,
        _effect: &Effect<'_>,
        _sku: SkuId,
        _purchase: &TargetPurchase,
    ) -> Result<Value, String> {
        Err(format!(
            "seats cannot be bought through Microsoft Graph ({}): an administrator buys them",
            self.describe()
        ))
    }

    async fn change_subscription(
        &self,
        _effect: &Effect<'_>,
        _action: &SourceAction,
    ) -> Result<Value, String> {
        Err(format!(
            "subscriptions cannot be cancelled or reduced through Microsoft Graph ({}): an administrator changes them",
            self.describe()
        ))
    }
}
