//! [`LedgerTx`] on PostgreSQL: the primitives a unit of work runs over, inside the SERIALIZABLE
//! transaction [`super::PgStore::write`] opened. Unique names are checked by the database
//! (`ON CONFLICT DO NOTHING`, or a savepoint where an UPDATE may collide), never by a read first.

use super::conn::{is_unique_violation, PgConn};
use super::load_catalog;
use super::reads::{
    audit, find_subscription, find_user, refresh_capacity, subscriptions_of, tenant_exists,
    user_assignments, USER_COLUMNS,
};
use crate::tx::{LedgerTx, SeatPool, TxWork, UserWrite};
use crate::{AppTokenRecord, ApplicationRecord, Result, TokenRecord};
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

pub(super) struct PgTx<'c, 'a> {
    pub(super) conn: &'c mut PgConn<'a>,
    /// Read on first use in this transaction: other processes may add SKUs.
    catalog: Option<HashMap<SkuId, Sku>>,
}

/// Runs one unit of work in the open transaction.
pub(super) fn run(conn: &mut PgConn, work: &TxWork) -> Result<Box<dyn Any + Send>> {
    let mut tx = PgTx {
        conn,
        catalog: None,
    };
    work(&mut tx)
}

fn to_i64(n: u32) -> i64 {
    n as i64
}

impl LedgerTx for PgTx<'_, '_> {
    fn catalog(&mut self) -> Result<&HashMap<SkuId, Sku>> {
        if self.catalog.is_none() {
            self.catalog = Some(load_catalog(self.conn)?);
        }
        Ok(self.catalog.get_or_insert_with(HashMap::new))
    }

    fn insert_sku(&mut self, sku: &Sku) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO skus (sku_id, sku_part_number, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&sku.sku_id.to_string(), &sku.sku_part_number, &serde_json::to_string(sku)?],
        )?;
        if n == 1 {
            if let Some(catalog) = &mut self.catalog {
                catalog.insert(sku.sku_id, sku.clone());
            }
        }
        Ok(n == 1)
    }

    fn tenant_exists(&mut self, tenant: TenantId) -> Result<bool> {
        tenant_exists(self.conn, tenant)
    }

    fn insert_tenant(&mut self, t: &Tenant) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT INTO tenants (id, display_name, default_domain, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&t.id.to_string(), &t.display_name, &t.default_domain, &t.created_at.0],
        )? == 1)
    }

    fn insert_token(
        &mut self,
        record: &TokenRecord,
        token_hash: &str,
        created_by: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO tokens (id, tenant_id, role, token_hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &record.id.to_string(),
                &record.tenant_id.to_string(),
                &record.role.as_str(),
                &token_hash,
                &record.created_at.0,
                &created_by,
            ],
        )?;
        Ok(())
    }

    fn delete_token(&mut self, tenant: TenantId, id: TokenId) -> Result<Option<Role>> {
        let row = self.conn.query_opt(
            "DELETE FROM tokens WHERE id = $1 AND tenant_id = $2 RETURNING role",
            &[&id.to_string(), &tenant.to_string()],
        )?;
        if row.is_some() {
            // Admin-center sessions signed in with the token end with it.
            self.conn.execute(
                "DELETE FROM web_sessions WHERE token_id = $1",
                &[&id.to_string()],
            )?;
        }
        Ok(row.and_then(|r| Role::parse(r.get::<_, &str>(0))))
    }

    fn load_subscription(
        &mut self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>> {
        find_subscription(self.conn, tenant, id)
    }

    fn subscriptions_due(&mut self, now: Timestamp) -> Result<Vec<Subscription>> {
        let rows = self.conn.query(
            "SELECT body FROM subscriptions WHERE next_lifecycle_at <= $1 ORDER BY seq",
            &[&now.0],
        )?;
        subscriptions_of(rows, 0)
    }

    fn insert_subscription(&mut self, sub: &Subscription) -> Result<()> {
        self.conn.execute(
            "INSERT INTO subscriptions (id, tenant_id, sku_id, status, assignable_seats, next_lifecycle_at, version, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &sub.id.to_string(),
                &sub.tenant_id.to_string(),
                &sub.sku_id.to_string(),
                &sub.status.as_str(),
                &to_i64(sub.assignable_seats()),
                &sub.next_lifecycle_at().map(|t| t.0),
                &(sub.version as i64),
                &serde_json::to_string(sub)?,
            ],
        )?;
        refresh_capacity(self.conn, sub.tenant_id, sub.sku_id)
    }

    fn update_subscription(&mut self, sub: &Subscription, expected: u64) -> Result<bool> {
        let written = self.conn.execute(
            "UPDATE subscriptions SET status = $3, assignable_seats = $4, next_lifecycle_at = $5, version = $6, body = $7
             WHERE id = $1 AND tenant_id = $2 AND version = $8",
            &[
                &sub.id.to_string(),
                &sub.tenant_id.to_string(),
                &sub.status.as_str(),
                &to_i64(sub.assignable_seats()),
                &sub.next_lifecycle_at().map(|t| t.0),
                &(sub.version as i64),
                &serde_json::to_string(sub)?,
                &(expected as i64),
            ],
        )?;
        if written == 1 {
            refresh_capacity(self.conn, sub.tenant_id, sub.sku_id)?;
        }
        Ok(written == 1)
    }

    fn seat_pool(&mut self, tenant: TenantId, sku: SkuId) -> Result<SeatPool> {
        let row = self.conn.query_opt(
            "SELECT capacity, consumed FROM seat_pools WHERE tenant_id = $1 AND sku_id = $2",
            &[&tenant.to_string(), &sku.to_string()],
        )?;
        Ok(row
            .map(|r| SeatPool {
                capacity: r.get::<_, i64>(0) as u32,
                consumed: r.get::<_, i64>(1) as u32,
            })
            .unwrap_or_default())
    }

    fn take_seat(&mut self, tenant: TenantId, sku: SkuId) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE seat_pools SET consumed = consumed + 1
             WHERE tenant_id = $1 AND sku_id = $2 AND consumed < capacity",
            &[&tenant.to_string(), &sku.to_string()],
        )? == 1)
    }

    fn release_seat(&mut self, tenant: TenantId, sku: SkuId) -> Result<()> {
        self.conn.execute(
            "UPDATE seat_pools SET consumed = consumed - 1 WHERE tenant_id = $1 AND sku_id = $2 AND consumed > 0",
            &[&tenant.to_string(), &sku.to_string()],
        )?;
        Ok(())
    }

    fn load_user(&mut self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        find_user(self.conn, tenant, id)
    }

    fn insert_user(&mut self, user: &User) -> Result<bool> {
        Ok(self.conn.execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
            ),
            &[
                &user.id.to_string(),
                &user.tenant_id.to_string(),
                &user.user_principal_name,
                &user.display_name,
                &user.usage_location,
                &user.account_enabled,
                &user.created_at.0,
                &(user.version as i64),
            ],
        )? == 1)
    }

    fn update_user(&mut self, user: &User, expected: u64) -> Result<UserWrite> {
        // A taken UPN aborts the statement: the savepoint keeps the transaction usable.
        self.conn.batch("SAVEPOINT user_update")?;
        let written = self.conn.try_query(
            "UPDATE users SET upn = $3, display_name = $4, usage_location = $5, account_enabled = $6, version = $7
             WHERE id = $1 AND tenant_id = $2 AND version = $8 RETURNING 1",
            &[
                &user.id.to_string(),
                &user.tenant_id.to_string(),
                &user.user_principal_name,
                &user.display_name,
                &user.usage_location,
                &user.account_enabled,
                &(user.version as i64),
                &(expected as i64),
            ],
        );
        match written {
            Ok(rows) => {
                self.conn.batch("RELEASE SAVEPOINT user_update")?;
                Ok(if rows.len() == 1 {
                    UserWrite::Written
                } else {
                    UserWrite::Stale
                })
            }
            Err(e) if is_unique_violation(&e) => {
                self.conn.batch("ROLLBACK TO SAVEPOINT user_update")?;
                Ok(UserWrite::UpnTaken)
            }
            Err(e) => Err(super::conn::internal(e)),
        }
    }

    fn delete_user(&mut self, tenant: TenantId, id: UserId) -> Result<()> {
        let (id, tenant) = (id.to_string(), tenant.to_string());
        self.conn.execute(
            "DELETE FROM assignments WHERE user_id = $1 AND tenant_id = $2",
            &[&id, &tenant],
        )?;
        self.conn.execute(
            "DELETE FROM users WHERE id = $1 AND tenant_id = $2",
            &[&id, &tenant],
        )?;
        Ok(())
    }

    fn user_assignments(&mut self, user: UserId) -> Result<Vec<Assignment>> {
        user_assignments(self.conn, user)
    }

    fn insert_assignment(&mut self, tenant: TenantId, a: &Assignment) -> Result<()> {
        self.conn.execute(
            "INSERT INTO assignments (user_id, tenant_id, sku_id, disabled_plans, assigned_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &a.user_id.to_string(),
                &tenant.to_string(),
                &a.sku_id.to_string(),
                &serde_json::to_string(&a.disabled_plans)?,
                &a.assigned_at.0,
            ],
        )?;
        Ok(())
    }

    fn update_assignment(&mut self, a: &Assignment) -> Result<()> {
        self.conn.execute(
            "UPDATE assignments SET disabled_plans = $3 WHERE user_id = $1 AND sku_id = $2",
            &[
                &a.user_id.to_string(),
                &a.sku_id.to_string(),
                &serde_json::to_string(&a.disabled_plans)?,
            ],
        )?;
        Ok(())
    }

    fn delete_assignment(&mut self, user: UserId, sku: SkuId) -> Result<()> {
        self.conn.execute(
            "DELETE FROM assignments WHERE user_id = $1 AND sku_id = $2",
            &[&user.to_string(), &sku.to_string()],
        )?;
        Ok(())
    }

    fn insert_audit(&mut self, entry: AuditEntry, at: Timestamp) -> Result<()> {
        audit(self.conn, entry, at)
    }

    fn find_effect(&mut self, move_id: Uuid, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_opt(
                "SELECT value FROM move_effects WHERE move_id = $1 AND key = $2",
                &[&move_id.to_string(), &key],
            )?
            .map(|r| r.get(0)))
    }

    fn record_effect(&mut self, move_id: Uuid, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO move_effects (move_id, key, value) VALUES ($1, $2, $3)",
            &[&move_id.to_string(), &key, &value],
        )?;
        Ok(())
    }

    fn insert_application(
        &mut self,
        app: &ApplicationRecord,
        secret_hash: &str,
        created_by: &str,
    ) -> Result<()> {
        super::directory::insert_application(self.conn, app, secret_hash, created_by)
    }

    fn load_application(&mut self, client_id: Uuid) -> Result<Option<(ApplicationRecord, String)>> {
        super::directory::load_application(self.conn, client_id)
    }

    fn insert_app_token(&mut self, token: &AppTokenRecord) -> Result<()> {
        super::directory::insert_app_token(self.conn, token)
    }

    fn delete_expired_app_tokens(&mut self, now: Timestamp) -> Result<usize> {
        super::directory::delete_expired_app_tokens(self.conn, now)
    }
    fn set_application_secret(&mut self, client_id: Uuid, secret_hash: &str) -> Result<bool> {
        super::directory::set_application_secret(self.conn, client_id, secret_hash)
    }

    fn delete_app_tokens_of(&mut self, client_id: Uuid) -> Result<usize> {
        super::directory::delete_app_tokens_of(self.conn, client_id)
    }

    fn delete_application(&mut self, client_id: Uuid) -> Result<bool> {
        super::directory::delete_app_tokens_of(self.conn, client_id)?;
        super::directory::delete_application(self.conn, client_id)
    }
}
