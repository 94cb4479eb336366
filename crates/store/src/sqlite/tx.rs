//! [`LedgerTx`] on SQLite: the primitives a unit of work runs over, on the writer thread, inside
//! the savepoint [`super::writer`] opened for it.

use super::writer::WriterCtx;
use super::{
    audit, find_subscription, find_user, insert_subscription, is_unique_violation, pool,
    refresh_capacity, release_seat, user_assignments, USER_COLUMNS,
};
use crate::tx::{LedgerTx, SeatPool, TxWork, UserWrite};
use crate::{AppTokenRecord, ApplicationRecord, Result, TokenRecord};
use rusqlite::{params, OptionalExtension};
use std::any::Any;
use std::collections::HashMap;
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::role::Role;
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use tenantry_ledger::{SkuId, SubscriptionId, TenantId, Timestamp, TokenId, UserId};
use uuid::Uuid;

pub(super) struct SqliteTx<'a> {
    pub(super) ctx: &'a mut WriterCtx,
    /// SKUs added by this unit: they join the cached catalog only if the unit succeeds.
    added_skus: Vec<Sku>,
}

/// Runs one unit of work on the writer thread.
pub(super) fn run(ctx: &mut WriterCtx, work: TxWork) -> Result<Box<dyn Any + Send>> {
    let mut tx = SqliteTx {
        ctx,
        added_skus: Vec::new(),
    };
    let outcome = work(&mut tx);
    if outcome.is_ok() {
        let added = std::mem::take(&mut tx.added_skus);
        tx.ctx
            .catalog
            .extend(added.into_iter().map(|s| (s.sku_id, s)));
    }
    outcome
}

/// `Ok(false)` for a unique-constraint violation, the error otherwise.
fn inserted(result: rusqlite::Result<usize>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl LedgerTx for SqliteTx<'_> {
    fn catalog(&mut self) -> Result<&HashMap<SkuId, Sku>> {
        Ok(&self.ctx.catalog)
    }

    fn insert_sku(&mut self, sku: &Sku) -> Result<bool> {
        let taken = self.ctx.catalog.values().any(|s| {
            s.sku_id == sku.sku_id || s.sku_part_number.eq_ignore_ascii_case(&sku.sku_part_number)
        });
        if taken {
            return Ok(false);
        }
        let done = inserted(self.ctx.conn.execute(
            "INSERT INTO skus (sku_id, sku_part_number, body) VALUES (?1, ?2, ?3)",
            params![
                sku.sku_id.to_string(),
                sku.sku_part_number,
                serde_json::to_string(sku)?
            ],
        ))?;
        if done {
            self.added_skus.push(sku.clone());
        }
        Ok(done)
    }

    fn tenant_exists(&mut self, tenant: TenantId) -> Result<bool> {
        Ok(self
            .ctx
            .conn
            .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
            .exists([tenant.to_string()])?)
    }

    fn insert_tenant(&mut self, t: &Tenant) -> Result<bool> {
        inserted(self.ctx.conn.execute(
            "INSERT INTO tenants (id, display_name, default_domain, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![t.id.to_string(), t.display_name, t.default_domain, t.created_at.0],
        ))
    }

    fn insert_token(
        &mut self,
        record: &TokenRecord,
        token_hash: &str,
        created_by: &str,
    ) -> Result<()> {
        self.ctx.conn.execute(
            "INSERT INTO tokens (id, tenant_id, role, token_hash, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                record.id.to_string(),
                record.tenant_id.to_string(),
                record.role.as_str(),
                token_hash,
                record.created_at.0,
                created_by
            ],
        )?;
        Ok(())
    }

    fn delete_token(&mut self, tenant: TenantId, id: TokenId) -> Result<Option<Role>> {
        let role: Option<String> = self
            .ctx
            .conn
            .prepare_cached("DELETE FROM tokens WHERE id = ?1 AND tenant_id = ?2 RETURNING role")?
            .query_row([id.to_string(), tenant.to_string()], |r| r.get(0))
            .optional()?;
        if role.is_some() {
            // Admin-center sessions signed in with the token end with it.
            self.ctx.conn.execute(
                "DELETE FROM web_sessions WHERE token_id = ?1",
                [id.to_string()],
            )?;
        }
        Ok(role.as_deref().and_then(Role::parse))
    }

    fn load_subscription(
        &mut self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>> {
        find_subscription(&self.ctx.conn, tenant, id)
    }

    fn subscriptions_due(&mut self, now: Timestamp) -> Result<Vec<Subscription>> {
        let bodies: Vec<String> = self
            .ctx
            .conn
            .prepare_cached(
                "SELECT body FROM subscriptions WHERE next_lifecycle_at <= ?1 ORDER BY seq",
            )?
            .query_map([now.0], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        bodies
            .iter()
            .map(|b| Ok(serde_json::from_str(b)?))
            .collect()
    }

    fn insert_subscription(&mut self, sub: &Subscription) -> Result<()> {
        insert_subscription(&self.ctx.conn, sub)
    }

    fn update_subscription(&mut self, sub: &Subscription, expected: u64) -> Result<bool> {
        // The version lives in the JSON document: the condition reads it in the UPDATE itself.
        let written = self
            .ctx
            .conn
            .prepare_cached(
                "UPDATE subscriptions SET status = ?3, assignable_seats = ?4, next_lifecycle_at = ?5, body = ?6
                 WHERE id = ?1 AND tenant_id = ?2 AND json_extract(body, '$.version') = ?7",
            )?
            .execute(params![
                sub.id.to_string(),
                sub.tenant_id.to_string(),
                sub.status.as_str(),
                sub.assignable_seats(),
                sub.next_lifecycle_at().map(|t| t.0),
                serde_json::to_string(sub)?,
                expected as i64,
            ])?;
        if written == 1 {
            refresh_capacity(&self.ctx.conn, sub.tenant_id, sub.sku_id)?;
        }
        Ok(written == 1)
    }

    fn seat_pool(&mut self, tenant: TenantId, sku: SkuId) -> Result<SeatPool> {
        let (capacity, consumed) = pool(&self.ctx.conn, tenant, sku)?;
        Ok(SeatPool { capacity, consumed })
    }

    fn take_seat(&mut self, tenant: TenantId, sku: SkuId) -> Result<bool> {
        let taken = self
            .ctx
            .conn
            .prepare_cached(
                "UPDATE seat_pools SET consumed = consumed + 1
                 WHERE tenant_id = ?1 AND sku_id = ?2 AND consumed < capacity",
            )?
            .execute([tenant.to_string(), sku.to_string()])?;
        Ok(taken == 1)
    }

    fn release_seat(&mut self, tenant: TenantId, sku: SkuId) -> Result<()> {
        release_seat(&self.ctx.conn, tenant, sku)
    }

    fn load_user(&mut self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        find_user(&self.ctx.conn, tenant, id)
    }

    fn insert_user(&mut self, user: &User) -> Result<bool> {
        inserted(
            self.ctx
                .conn
                .prepare_cached(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))?
                .execute(params![
                    user.id.to_string(),
                    user.tenant_id.to_string(),
                    user.user_principal_name,
                    user.display_name,
                    user.usage_location,
                    user.account_enabled,
                    user.created_at.0,
                    user.version as i64
                ]),
        )
    }

    fn update_user(&mut self, user: &User, expected: u64) -> Result<UserWrite> {
        let written = self
            .ctx
            .conn
            .prepare_cached(
                "UPDATE users SET upn = ?3, display_name = ?4, usage_location = ?5, account_enabled = ?6, version = ?7
                 WHERE id = ?1 AND tenant_id = ?2 AND version = ?8",
            )?
            .execute(params![
                user.id.to_string(),
                user.tenant_id.to_string(),
                user.user_principal_name,
                user.display_name,
                user.usage_location,
                user.account_enabled,
                user.version as i64,
                expected as i64
            ]);
        match written {
            Ok(1) => Ok(UserWrite::Written),
            Ok(_) => Ok(UserWrite::Stale),
            Err(e) if is_unique_violation(&e) => Ok(UserWrite::UpnTaken),
            Err(e) => Err(e.into()),
        }
    }

    fn delete_user(&mut self, tenant: TenantId, id: UserId) -> Result<()> {
        let (id, tenant) = (id.to_string(), tenant.to_string());
        self.ctx.conn.execute(
            "DELETE FROM assignments WHERE user_id = ?1 AND tenant_id = ?2",
            [&id, &tenant],
        )?;
        self.ctx.conn.execute(
            "DELETE FROM users WHERE id = ?1 AND tenant_id = ?2",
            [&id, &tenant],
        )?;
        Ok(())
    }

    fn user_assignments(&mut self, user: UserId) -> Result<Vec<Assignment>> {
        user_assignments(&self.ctx.conn, user)
    }

    fn insert_assignment(&mut self, tenant: TenantId, a: &Assignment) -> Result<()> {
        self.ctx
            .conn
            .prepare_cached(
                "INSERT INTO assignments (user_id, tenant_id, sku_id, disabled_plans, assigned_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                a.user_id.to_string(),
                tenant.to_string(),
                a.sku_id.to_string(),
                serde_json::to_string(&a.disabled_plans)?,
                a.assigned_at.0
            ])?;
        Ok(())
    }

    fn update_assignment(&mut self, a: &Assignment) -> Result<()> {
        self.ctx
            .conn
            .prepare_cached(
                "UPDATE assignments SET disabled_plans = ?3 WHERE user_id = ?1 AND sku_id = ?2",
            )?
            .execute(params![
                a.user_id.to_string(),
                a.sku_id.to_string(),
                serde_json::to_string(&a.disabled_plans)?
            ])?;
        Ok(())
    }

    fn delete_assignment(&mut self, user: UserId, sku: SkuId) -> Result<()> {
        self.ctx
            .conn
            .prepare_cached("DELETE FROM assignments WHERE user_id = ?1 AND sku_id = ?2")?
            .execute([user.to_string(), sku.to_string()])?;
        Ok(())
    }

    fn insert_audit(&mut self, entry: AuditEntry, at: Timestamp) -> Result<()> {
        audit(&self.ctx.conn, entry, at)
    }

    fn find_effect(&mut self, move_id: Uuid, key: &str) -> Result<Option<String>> {
        Ok(self
            .ctx
            .conn
            .prepare_cached("SELECT value FROM move_effects WHERE move_id = ?1 AND key = ?2")?
            .query_row(params![move_id.to_string(), key], |r| r.get(0))
            .optional()?)
    }

    fn record_effect(&mut self, move_id: Uuid, key: &str, value: &str) -> Result<()> {
        self.ctx.conn.execute(
            "INSERT INTO move_effects (move_id, key, value) VALUES (?1, ?2, ?3)",
            params![move_id.to_string(), key, value],
        )?;
        Ok(())
    }

    fn insert_application(
        &mut self,
        app: &ApplicationRecord,
        secret_hash: &str,
        created_by: &str,
    ) -> Result<()> {
        super::directory::insert_application(&self.ctx.conn, app, secret_hash, created_by)
    }

    fn load_application(&mut self, client_id: Uuid) -> Result<Option<(ApplicationRecord, String)>> {
        super::directory::load_application(&self.ctx.conn, client_id)
    }

    fn insert_app_token(&mut self, token: &AppTokenRecord) -> Result<()> {
        super::directory::insert_app_token(&self.ctx.conn, token)
    }

    fn delete_expired_app_tokens(&mut self, now: Timestamp) -> Result<usize> {
        super::directory::delete_expired_app_tokens(&self.ctx.conn, now)
    }
    fn set_application_secret(&mut self, client_id: Uuid, secret_hash: &str) -> Result<bool> {
        super::directory::set_application_secret(&self.ctx.conn, client_id, secret_hash)
    }

    fn delete_app_tokens_of(&mut self, client_id: Uuid) -> Result<usize> {
        super::directory::delete_app_tokens_of(&self.ctx.conn, client_id)
    }

    fn delete_application(&mut self, client_id: Uuid) -> Result<bool> {
        super::directory::delete_app_tokens_of(&self.ctx.conn, client_id)?;
        super::directory::delete_application(&self.ctx.conn, client_id)
    }
}
