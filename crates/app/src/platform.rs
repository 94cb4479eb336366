//! Tenants, the SKU catalog and API tokens.

use crate::audit::json;
use crate::tokens::{hash_token, new_token};
use crate::{Caller, Ledger, Result};
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::role::{Action, Role};
use tenantry_ledger::tenant::{validate_display_name, validate_domain, Tenant};
use tenantry_ledger::{LedgerError, TenantId, Timestamp, TokenId};
use tenantry_store::TokenRecord;

/// A token just issued: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub token: String,
}

impl Ledger {
    /// Creates a tenant (operator only); its default domain must be free.
    pub async fn create_tenant(
        &self,
        caller: &Caller,
        display_name: &str,
        default_domain: &str,
        now: Timestamp,
    ) -> Result<Tenant> {
        caller.require_operator()?;
        let tenant = Tenant {
            id: TenantId::new_random(),
            display_name: validate_display_name(display_name)?,
            default_domain: validate_domain(default_domain)?,
            created_at: now,
        };
        let actor = caller.actor.clone();
        self.write(move |tx| {
            if !tx.insert_tenant(&tenant)? {
                return Err(LedgerError::conflict(
                    "DomainInUse",
                    format!(
                        "the domain {} already belongs to a tenant",
                        tenant.default_domain
                    ),
                )
                .into());
            }
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant.id),
                    actor: actor.clone(),
                    action: "tenant.created",
                    target_type: "tenant",
                    target_id: tenant.id.to_string(),
                    before: None,
                    after: json(&tenant),
                },
                now,
            )?;
            Ok(tenant.clone())
        })
        .await
    }

    /// Adds a custom SKU to the catalog (operator only).
    pub async fn add_sku(&self, caller: &Caller, mut sku: Sku, now: Timestamp) -> Result<Sku> {
        caller.require_operator()?;
        sku.custom = true;
        sku.validate()?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            if !tx.insert_sku(&sku)? {
                return Err(LedgerError::conflict(
                    "DuplicateSku",
                    format!(
                        "the catalog already has a SKU with this skuId or skuPartNumber ({})",
                        sku.sku_part_number
                    ),
                )
                .into());
            }
            tx.insert_audit(
                AuditEntry {
                    tenant_id: None,
                    actor: actor.clone(),
                    action: "sku.added",
                    target_type: "sku",
                    target_id: sku.sku_id.to_string(),
                    before: None,
                    after: json(&sku),
                },
                now,
            )?;
            Ok(sku.clone())
        })
        .await
    }

    /// Issues a tenant token with one role (`role` by its name, e.g. `LicenseAdmin`). Only the
    /// token's hash is stored; the token itself is in the answer, once.
    pub async fn issue_token(
        &self,
        caller: &Caller,
        tenant: TenantId,
        role: &str,
        now: Timestamp,
    ) -> Result<IssuedToken> {
        caller.authorize(tenant, Action::ManageTokens)?;
        let role = Role::parse(role).ok_or_else(|| {
            LedgerError::invalid(
                "InvalidRole",
                "role must be one of GlobalAdmin, BillingAdmin, LicenseAdmin, UserAdmin, GlobalReader",
            )
        })?;
        let token = new_token("tnt");
        let hash = hash_token(&token);
        let actor = caller.actor.clone();
        let record = self
            .write(move |tx| {
                if !tx.tenant_exists(tenant)? {
                    return Err(LedgerError::not_found("tenant").into());
                }
                let record = TokenRecord {
                    id: TokenId::new_random(),
                    tenant_id: tenant,
                    role,
                    created_at: now,
                };
                tx.insert_token(&record, &hash, &actor)?;
                tx.insert_audit(
                    AuditEntry {
                        tenant_id: Some(tenant),
                        actor: actor.clone(),
                        action: "token.created",
                        target_type: "token",
                        target_id: record.id.to_string(),
                        before: None,
                        after: Some(serde_json::json!({"role": role.as_str()})),
                    },
                    now,
                )?;
                Ok(record)
            })
            .await?;
        Ok(IssuedToken { record, token })
    }

    /// Revokes an API token of `tenant` (audited): it stops working at once, on every server
    /// sharing the database, since tokens are looked up on every request.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: TokenId,
        now: Timestamp,
    ) -> Result<()> {
        caller.authorize(tenant, Action::ManageTokens)?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let Some(role) = tx.delete_token(tenant, id)? else {
                return Err(LedgerError::not_found("token").into());
            };
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant),
                    actor: actor.clone(),
                    action: "token.revoked",
                    target_type: "token",
                    target_id: id.to_string(),
                    before: Some(serde_json::json!({"role": role.as_str()})),
                    after: None,
                },
                now,
            )
        })
        .await
    }
}
