//! Users and their licences: create, change, delete, `assignLicense`.

use crate::audit::{assignment_summary, json};
use crate::{Caller, Ledger, Result};
use tenantry_ledger::assignment::{plan_assignment, AddLicense, Assignment};
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::role::Action;
use tenantry_ledger::user::{User, UserPatch};
use tenantry_ledger::{LedgerError, SkuId, TenantId, Timestamp, UserId};
use tenantry_store::{LedgerTx, UserWrite};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewUser {
    pub user_principal_name: String,
    pub display_name: String,
    pub usage_location: Option<String>,
    pub account_enabled: bool,
}

fn upn_taken(upn: &str) -> LedgerError {
    LedgerError::conflict(
        "DuplicateUserPrincipalName",
        format!("a user named {upn} already exists in this tenant"),
    )
}

fn load_user(tx: &mut dyn LedgerTx, tenant: TenantId, id: UserId) -> Result<User> {
    tx.load_user(tenant, id)?
        .ok_or_else(|| LedgerError::not_found("user").into())
}

/// Creating a user inside a transaction: also what a move's "create user" effect runs.
pub(crate) fn insert_user(
    tx: &mut dyn LedgerTx,
    tenant: TenantId,
    new: &NewUser,
    actor: String,
    now: Timestamp,
) -> Result<User> {
    let user = User::new(
        UserId::new_random(),
        tenant,
        &new.user_principal_name,
        &new.display_name,
        new.usage_location.as_deref(),
        new.account_enabled,
        now,
    )?;
    if !tx.tenant_exists(tenant)? {
        return Err(LedgerError::not_found("tenant").into());
    }
    if !tx.insert_user(&user)? {
        return Err(upn_taken(&user.user_principal_name).into());
    }
    tx.insert_audit(
        AuditEntry {
            tenant_id: Some(tenant),
            actor,
            action: "user.created",
            target_type: "user",
            target_id: user.id.to_string(),
            before: None,
            after: json(&user),
        },
        now,
    )?;
    Ok(user)
}

impl Ledger {
    pub async fn create_user(
        &self,
        caller: &Caller,
        tenant: TenantId,
        new: NewUser,
        now: Timestamp,
    ) -> Result<User> {
        caller.authorize(tenant, Action::ManageUsers)?;
        let actor = caller.actor.clone();
        self.write(move |tx| insert_user(tx, tenant, &new, actor.clone(), now))
            .await
    }

    /// Applies `patch` if the user's version still equals `if_match` (when given).
    pub async fn update_user(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: UserId,
        if_match: Option<u64>,
        patch: UserPatch,
        now: Timestamp,
    ) -> Result<User> {
        caller.authorize(tenant, Action::ManageUsers)?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let mut user = load_user(tx, tenant, id)?;
            let stale = || LedgerError::stale("the user changed since you read it; read it again");
            if if_match.is_some_and(|expected| expected != user.version) {
                return Err(stale().into());
            }
            let before = user.clone();
            let licensed = !tx.user_assignments(id)?.is_empty();
            user.apply(&patch, licensed)?;
            match tx.update_user(&user, before.version)? {
                UserWrite::Written => {}
                UserWrite::Stale => return Err(stale().into()),
                UserWrite::UpnTaken => return Err(upn_taken(&user.user_principal_name).into()),
            }
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant),
                    actor: actor.clone(),
                    action: "user.updated",
                    target_type: "user",
                    target_id: id.to_string(),
                    before: json(&before),
                    after: json(&user),
                },
                now,
            )?;
            Ok(user)
        })
        .await
    }

    /// Deletes a user and gives their seats back; returns the user as they were.
    pub async fn delete_user(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: UserId,
        now: Timestamp,
    ) -> Result<User> {
        caller.authorize(tenant, Action::ManageUsers)?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let user = load_user(tx, tenant, id)?;
            let licences = tx.user_assignments(id)?;
            for licence in &licences {
                tx.release_seat(tenant, licence.sku_id)?;
            }
            tx.delete_user(tenant, id)?;
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant),
                    actor: actor.clone(),
                    action: "user.deleted",
                    target_type: "user",
                    target_id: id.to_string(),
                    before: Some(serde_json::json!({
                        "user": user,
                        "licenses": assignment_summary(&licences)
                    })),
                    after: None,
                },
                now,
            )?;
            Ok(user)
        })
        .await
    }

    /// Graph `assignLicense`: adds and removes licences in one step, all or nothing. Each new
    /// licence takes a seat with the conditional update; none free → `NoFreeSeat`.
    pub async fn assign_licenses(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user_id: UserId,
        add: Vec<AddLicense>,
        remove: Vec<SkuId>,
        now: Timestamp,
    ) -> Result<(User, Vec<Assignment>)> {
        caller.authorize(tenant, Action::AssignLicenses)?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let user = load_user(tx, tenant, user_id)?;
            let current = tx.user_assignments(user_id)?;
            let change = plan_assignment(&user, &current, &add, &remove, tx.catalog()?, now)?;
            for sku in &change.removed {
                tx.delete_assignment(user_id, *sku)?;
                tx.release_seat(tenant, *sku)?;
            }
            for a in &change.updated {
                tx.update_assignment(a)?;
            }
            for a in &change.added {
                if !tx.take_seat(tenant, a.sku_id)? {
                    return Err(no_free_seat(tx, tenant, a.sku_id)?.into());
                }
                tx.insert_assignment(tenant, a)?;
            }
            let mut after: Vec<Assignment> = current
                .iter()
                .filter(|a| !change.removed.contains(&a.sku_id))
                .map(|a| {
                    change
                        .updated
                        .iter()
                        .find(|u| u.sku_id == a.sku_id)
                        .unwrap_or(a)
                        .clone()
                })
                .collect();
            after.extend(change.added.iter().cloned());
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant),
                    actor: actor.clone(),
                    action: "user.licensesChanged",
                    target_type: "user",
                    target_id: user_id.to_string(),
                    before: Some(assignment_summary(&current)),
                    after: Some(assignment_summary(&after)),
                },
                now,
            )?;
            Ok((user, after))
        })
        .await
    }
}

/// The refusal when a seat could not be taken, with the figures that explain it.
fn no_free_seat(tx: &mut dyn LedgerTx, tenant: TenantId, sku: SkuId) -> Result<LedgerError> {
    let pool = tx.seat_pool(tenant, sku)?;
    let name = tx
        .catalog()?
        .get(&sku)
        .map_or_else(|| sku.to_string(), |s| s.sku_part_number.clone());
    Ok(LedgerError::conflict(
        "NoFreeSeat",
        format!(
            "no free licence of {name}: {} of {} assignable seats are in use; buy more licences or unassign some",
            pool.consumed, pool.capacity
        ),
    ))
}
