//! Audit records as people read them: who (a user, an application or tenantry itself, by name),
//! the target by display name, and each changed property with its old and new value
//! ("Licences 3 → 5", "ENTERPRISEPACK assigned, TEAMS1 off"). The records keep the raw objects;
//! this is computed when they are read, so the API's `directoryAudit` and the admin center's
//! audit page say the same thing.

use crate::Ledger;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use tenantry_ledger::audit::AuditRecord;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::{SkuId, TenantId, UserId};
use tenantry_store::directory::ApplicationRecord;
use tenantry_store::StoreError;
use uuid::Uuid;

/// One property a record changed; `None` where the property did not exist before (or after).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyChange {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// An audit record with its readable description.
#[derive(Debug, Clone)]
pub struct DescribedRecord {
    pub record: AuditRecord,
    /// Who acted, by name: "operator", "application 'Move script' (GlobalAdmin)", "token
    /// 1a2b3c4d (LicenseAdmin)" (an API token), or tenantry itself ("tenantry: mover (move …)").
    pub actor: String,
    /// The application's client id when an application acted.
    pub actor_app_id: Option<Uuid>,
    pub target_name: Option<String>,
    /// The user's principal name when the target is a user.
    pub target_upn: Option<String>,
    pub changes: Vec<PropertyChange>,
    /// The changes in one short line.
    pub summary: String,
}

/// What a description needs to name things: the catalog, the tenant's applications and the
/// users whose licences changed.
#[derive(Default)]
pub struct Names {
    pub skus: HashMap<SkuId, Sku>,
    pub applications: HashMap<Uuid, ApplicationRecord>,
    /// user id → (display name, principal name)
    pub users: HashMap<String, (String, String)>,
}

impl Ledger {
    /// Describes a page of records of `tenant` (reads the catalog, the tenant's applications and
    /// the users the records name; a user deleted since is left unnamed).
    pub async fn describe_audit(
        &self,
        tenant: TenantId,
        records: Vec<AuditRecord>,
    ) -> Result<Vec<DescribedRecord>, StoreError> {
        let mut names = Names {
            skus: self
                .store
                .list_skus()
                .await?
                .into_iter()
                .map(|s| (s.sku_id, s))
                .collect(),
            applications: self
                .store
                .list_applications(tenant)
                .await?
                .into_iter()
                .map(|a| (a.client_id, a))
                .collect(),
            users: HashMap::new(),
        };
        let wanted: BTreeSet<&str> = records
            .iter()
            .filter(|r| r.action == "user.licensesChanged")
            .map(|r| r.target_id.as_str())
            .collect();
        for id in wanted {
            let Ok(user_id) = id.parse::<UserId>() else {
                continue;
            };
            match self.store.get_user(tenant, user_id).await {
                Ok(u) => {
                    names
                        .users
                        .insert(id.to_string(), (u.display_name, u.user_principal_name));
                }
                Err(StoreError::Ledger(_)) => {} // deleted since: unnamed
                Err(e) => return Err(e),
            }
        }
        Ok(records.into_iter().map(|r| describe(r, &names)).collect())
    }
}

/// The readable form of one record (pure).
pub fn describe(record: AuditRecord, names: &Names) -> DescribedRecord {
    let (actor, actor_app_id) = actor_name(&record.actor, names);
    let before = record.before.as_ref();
    let after = record.after.as_ref();
    let (target_name, target_upn, changes) = match record.target_type.as_str() {
        "subscription" => subscription(before, after, names),
        "user" if record.action == "user.licensesChanged" => {
            let (name, upn) = names
                .users
                .get(&record.target_id)
                .cloned()
                .map_or((None, None), |(n, u)| (Some(n), Some(u)));
            (name, upn, licences(before, after, names))
        }
        "user" => user(before, after),
        "sku" => {
            let sku = after.unwrap_or(&Value::Null);
            (
                text(sku.get("sku_part_number")),
                None,
                properties(
                    None,
                    after,
                    &[("display_name", "Name"), ("sku_part_number", "Part number")],
                ),
            )
        }
        "tenant" => (
            text(after.and_then(|a| a.get("display_name"))),
            None,
            properties(
                before,
                after,
                &[("display_name", "Name"), ("default_domain", "Domain")],
            ),
        ),
        "application" => (
            text(after.or(before).and_then(|a| a.get("displayName"))),
            None,
            properties(before, after, &[("displayName", "Name"), ("role", "Role")]),
        ),
        "token" => (None, None, properties(before, after, &[("role", "Role")])),
        "move" => (
            None,
            None,
            properties(before, after, &[("state", "State"), ("side", "Side")]),
        ),
        _ => (None, None, generic(before, after)),
    };
    let summary = summarise(&record.action, &target_name, &changes);
    DescribedRecord {
        actor,
        actor_app_id,
        target_name,
        target_upn,
        changes,
        summary,
        record,
    }
}

fn actor_name(actor: &str, names: &Names) -> (String, Option<Uuid>) {
    if let Some(rest) = actor.strip_prefix("token:") {
        let (id, role) = rest.split_once(' ').unwrap_or((rest, ""));
        let role = role.trim_matches(|c| c == '(' || c == ')');
        if let Ok(id) = id.parse::<Uuid>() {
            if let Some(app) = names.applications.get(&id) {
                return (
                    format!("application '{}' ({role})", app.display_name),
                    Some(id),
                );
            }
            // An API token, or an application deleted since: tenantry keeps neither's name.
            let short: String = id.to_string().chars().take(8).collect();
            return (format!("token {short} ({role})"), None);
        }
    }
    if let Some(rest) = actor.strip_prefix("system:") {
        return (format!("tenantry: {rest}"), None);
    }
    (actor.to_string(), None)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("yes".into()),
        Value::Bool(false) => Some("no".into()),
        other => Some(other.to_string()),
    })
}

/// The listed fields that differ between `before` and `after`, named for people.
fn properties(
    before: Option<&Value>,
    after: Option<&Value>,
    fields: &[(&str, &str)],
) -> Vec<PropertyChange> {
    fields
        .iter()
        .filter_map(|(key, name)| {
            let old = text(before.and_then(|b| b.get(*key)));
            let new = text(after.and_then(|a| a.get(*key)));
            (old != new).then(|| PropertyChange {
                name: name.to_string(),
                old,
                new,
            })
        })
        .collect()
}

/// Any other record: its top-level fields that changed, as they are.
fn generic(before: Option<&Value>, after: Option<&Value>) -> Vec<PropertyChange> {
    let empty = Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| PropertyChange {
            name: k.clone(),
            old: text(b.get(k)),
            new: text(a.get(k)),
        })
        .collect()
}

fn sku_name(id: Option<&Value>, names: &Names) -> String {
    let id = id.and_then(Value::as_str).unwrap_or_default();
    id.parse::<SkuId>()
        .ok()
        .and_then(|id| names.skus.get(&id))
        .map_or_else(|| id.to_string(), |s| s.sku_part_number.clone())
}

fn date(v: Option<&Value>) -> Option<String> {
    let secs = v?.as_i64()?;
    let at = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    at.format(time::macros::format_description!("[year]-[month]-[day]"))
        .ok()
}

/// The object under `key` when a record wraps it (`{"subscription": …, "money": …}`), else the
/// value itself.
fn unwrap<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    v.map(|v| v.get(key).unwrap_or(v))
}

type Described = (Option<String>, Option<String>, Vec<PropertyChange>);

fn subscription(before: Option<&Value>, after: Option<&Value>, names: &Names) -> Described {
    // Writes keep the subscription itself, or `{"subscription": …, "outcome"|"money": …}`.
    let (b, a) = (
        unwrap(before, "subscription"),
        unwrap(after, "subscription"),
    );
    let sku = sku_name(a.or(b).and_then(|s| s.get("sku_id")), names);
    let mut changes = properties(
        b,
        a,
        &[
            ("quantity", "Licences"),
            ("scheduled_quantity", "Licences at renewal"),
            ("status", "Status"),
            ("auto_renew", "Renews"),
            ("cancelled", "Cancelled"),
            ("is_trial", "Trial"),
            ("trial_extended", "Trial extended"),
        ],
    );
    let (old_end, new_end) = (
        date(b.and_then(|s| s.get("term_end"))),
        date(a.and_then(|s| s.get("term_end"))),
    );
    if b.is_some() && old_end != new_end {
        changes.push(PropertyChange {
            name: "Term ends".into(),
            old: old_end,
            new: new_end,
        });
    }
    (Some(format!("{sku} subscription")), None, changes)
}

fn user(before: Option<&Value>, after: Option<&Value>) -> Described {
    // A deletion keeps `{"user": …, "licenses": …}`.
    let (b, a) = (unwrap(before, "user"), unwrap(after, "user"));
    let current = a.or(b);
    let changes = properties(
        b,
        a,
        &[
            ("display_name", "Display name"),
            ("user_principal_name", "User principal name"),
            ("usage_location", "Usage location"),
            ("account_enabled", "Account enabled"),
        ],
    );
    (
        text(current.and_then(|u| u.get("display_name"))),
        text(current.and_then(|u| u.get("user_principal_name"))),
        changes,
    )
}

/// A user's licences before and after: per product, assigned / removed / which plans were
/// turned off or on.
fn licences(before: Option<&Value>, after: Option<&Value>, names: &Names) -> Vec<PropertyChange> {
    let held = |v: Option<&Value>| -> Vec<(String, BTreeSet<String>)> {
        v.and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|a| {
                        let sku_id = a.get("skuId");
                        let plans = a
                            .get("disabledPlans")
                            .and_then(Value::as_array)
                            .map(|p| {
                                p.iter()
                                    .map(|plan| plan_name(sku_id, plan, names))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (sku_name(sku_id, names), plans)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (held(before), held(after));
    let list = |l: &[(String, BTreeSet<String>)]| {
        let names: Vec<&str> = l.iter().map(|(n, _)| n.as_str()).collect();
        (!names.is_empty()).then(|| names.join(", "))
    };
    let mut changes = Vec::new();
    if list(&old) != list(&new) {
        changes.push(PropertyChange {
            name: "Licences".into(),
            old: list(&old),
            new: list(&new),
        });
    }
    for (sku, plans) in &new {
        let before_plans = old.iter().find(|(s, _)| s == sku).map(|(_, p)| p);
        if before_plans.map_or(!plans.is_empty(), |b| b != plans) {
            let join = |p: &BTreeSet<String>| {
                (!p.is_empty()).then(|| p.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            changes.push(PropertyChange {
                name: format!("{sku} plans off"),
                old: before_plans.and_then(join),
                new: join(plans),
            });
        }
    }
    changes
}

fn plan_name(sku_id: Option<&Value>, plan: &Value, names: &Names) -> String {
    let id = plan.as_str().unwrap_or_default();
    let sku = sku_id
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<SkuId>().ok())
        .and_then(|s| names.skus.get(&s));
    id.parse::<Uuid>()
        .ok()
        .and_then(|p| sku.and_then(|s| s.plan(p)))
        .map_or_else(|| id.to_string(), |p| p.service_plan_name.clone())
}

/// One line: "Licences 3 → 5", "ENTERPRISEPACK assigned, TEAMS1 off", "Created Ada Lovelace".
fn summarise(action: &str, target: &Option<String>, changes: &[PropertyChange]) -> String {
    let name = target.as_deref().unwrap_or("");
    let verb = action.rsplit('.').next().unwrap_or(action);
    if action == "subscription.created" {
        if let Some(seats) = changes
            .iter()
            .find(|c| c.name == "Licences")
            .and_then(|c| c.new.as_deref())
        {
            let sku = name.trim_end_matches(" subscription");
            return format!("Bought {seats} × {sku}");
        }
    }
    if action == "application.secretRotated" {
        return format!("Client secret of {name} replaced; its access tokens revoked");
    }
    if verb == "created" || verb == "added" {
        return format!("Created {name}").trim_end().to_string();
    }
    if verb == "deleted" || verb == "revoked" {
        return format!("{} {name}", capitalised(verb))
            .trim_end()
            .to_string();
    }
    if action == "user.licensesChanged" {
        return licence_summary(changes);
    }
    let parts: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} {} → {}",
                c.name,
                c.old.as_deref().unwrap_or("–"),
                c.new.as_deref().unwrap_or("–")
            )
        })
        .collect();
    if parts.is_empty() {
        action.to_string()
    } else {
        parts.join("; ")
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn licence_summary(changes: &[PropertyChange]) -> String {
    let split = |v: &Option<String>| -> BTreeSet<String> {
        v.as_deref()
            .map(|s| s.split(", ").map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut parts = Vec::new();
    if let Some(c) = changes.iter().find(|c| c.name == "Licences") {
        let (old, new) = (split(&c.old), split(&c.new));
        parts.extend(new.difference(&old).map(|s| format!("{s} assigned")));
        parts.extend(old.difference(&new).map(|s| format!("{s} removed")));
    }
    for c in changes.iter().filter(|c| c.name.ends_with(" plans off")) {
        let (old, new) = (split(&c.old), split(&c.new));
        parts.extend(new.difference(&old).map(|p| format!("{p} off")));
        parts.extend(old.difference(&new).map(|p| format!("{p} on")));
    }
    if parts.is_empty() {
        "Licences unchanged".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tenantry_ledger::catalog::seed_catalog;
    use tenantry_ledger::role::Role;
    use tenantry_ledger::Timestamp;

    const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";

    fn names() -> Names {
        let mut names = Names {
            skus: seed_catalog().into_iter().map(|s| (s.sku_id, s)).collect(),
            ..Names::default()
        };
        let app = Uuid::from_u128(7);
        names.applications.insert(
            app,
            ApplicationRecord {
                client_id: app,
                tenant_id: TenantId(Uuid::from_u128(1)),
                display_name: "Move script".into(),
                role: Role::LicenseAdmin,
                created_at: Timestamp(0),
            },
        );
        names.users.insert(
            "u1".into(),
            ("Ada Lovelace".into(), "ada@contoso.example".into()),
        );
        names
    }

    fn record(
        actor: &str,
        action: &str,
        target_type: &str,
        before: Value,
        after: Value,
    ) -> AuditRecord {
        AuditRecord {
            seq: 1,
            tenant_id: None,
            actor: actor.into(),
            action: action.into(),
            target_type: target_type.into(),
            target_id: "u1".into(),
            at: Timestamp(0),
            before: (!before.is_null()).then_some(before),
            after: (!after.is_null()).then_some(after),
        }
    }

    #[test]
    fn a_seat_change_reads_as_licences_old_to_new() {
        let sub = |q: u32| json!({"sku_id": E3, "quantity": q, "status": "Active", "auto_renew": true, "term_end": 1_800_000_000});
        let d = describe(
            record(
                &format!("token:{} (LicenseAdmin)", Uuid::from_u128(7)),
                "subscription.quantityChanged",
                "subscription",
                sub(3),
                json!({"subscription": sub(5), "outcome": {}}),
            ),
            &names(),
        );
        assert_eq!(d.summary, "Licences 3 → 5");
        assert_eq!(
            d.target_name.as_deref(),
            Some("ENTERPRISEPACK subscription")
        );
        assert_eq!(d.actor, "application 'Move script' (LicenseAdmin)");
        assert_eq!(d.actor_app_id, Some(Uuid::from_u128(7)));
        assert_eq!(
            d.changes,
            vec![PropertyChange {
                name: "Licences".into(),
                old: Some("3".into()),
                new: Some("5".into())
            }]
        );
    }

    #[test]
    fn licences_read_as_products_assigned_and_plans_off() {
        let e3 = names().skus[&E3.parse::<SkuId>().unwrap()].clone();
        let teams = e3
            .service_plans
            .iter()
            .find(|p| p.service_plan_name.starts_with("TEAMS"))
            .unwrap()
            .clone();
        let d = describe(
            record(
                "token:0a1b2c3d-0000-0000-0000-000000000000 (UserAdmin)",
                "user.licensesChanged",
                "user",
                json!([]),
                json!([{"skuId": E3, "disabledPlans": [teams.service_plan_id]}]),
            ),
            &names(),
        );
        assert_eq!(
            d.summary,
            format!("ENTERPRISEPACK assigned, {} off", teams.service_plan_name)
        );
        assert_eq!(d.target_name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(d.target_upn.as_deref(), Some("ada@contoso.example"));
        assert_eq!(d.actor, "token 0a1b2c3d (UserAdmin)");

        let removed = describe(
            record(
                "operator",
                "user.licensesChanged",
                "user",
                json!([{"skuId": E3, "disabledPlans": [teams.service_plan_id]}]),
                json!([{"skuId": E3, "disabledPlans": []}]),
            ),
            &names(),
        );
        assert_eq!(removed.summary, format!("{} on", teams.service_plan_name));
        assert_eq!(removed.actor, "operator");
    }

    #[test]
    fn users_created_renamed_and_deleted() {
        let ada = json!({"display_name": "Ada", "user_principal_name": "ada@x.example", "usage_location": null, "account_enabled": true});
        let created = describe(
            record(
                "system:mover (move 1)",
                "user.created",
                "user",
                Value::Null,
                ada.clone(),
            ),
            &names(),
        );
        assert_eq!(created.summary, "Created Ada");
        assert_eq!(created.actor, "tenantry: mover (move 1)");
        let mut renamed = ada.clone();
        renamed["display_name"] = json!("Ada Lovelace");
        renamed["usage_location"] = json!("GB");
        let updated = describe(
            record("operator", "user.updated", "user", ada.clone(), renamed),
            &names(),
        );
        assert_eq!(
            updated.summary,
            "Display name Ada → Ada Lovelace; Usage location – → GB"
        );
        let deleted = describe(
            record(
                "operator",
                "user.deleted",
                "user",
                json!({"user": ada, "licenses": []}),
                Value::Null,
            ),
            &names(),
        );
        assert_eq!(deleted.summary, "Deleted Ada");
        assert_eq!(deleted.target_upn.as_deref(), Some("ada@x.example"));
    }
}
