//! [`LedgerStore`] on PostgreSQL, and the row helpers the transaction primitives share.

use super::conn::{parse, PgConn};
use super::{load_catalog, PgStore};
use crate::{principal_columns, principal_of, WebSession};
use crate::{
    AuditFilter, IdempotencyBegin, LedgerStore, Page, PageRequest, Result, StoredResponse, TxWork,
};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::audit::{AuditEntry, AuditRecord};
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::counting::{subscribed_skus, SubscribedSku};
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use tenantry_ledger::{LedgerError, SkuId, SubscriptionId, TenantId, Timestamp, TokenId, UserId};
use tokio_postgres::Row;

pub(super) fn audit(conn: &mut PgConn, entry: AuditEntry, now: Timestamp) -> Result<()> {
    conn.execute(
        "INSERT INTO audit_log (tenant_id, actor, action, target_type, target_id, at, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &entry.tenant_id.map(|t| t.to_string()),
            &entry.actor,
            &entry.action,
            &entry.target_type,
            &entry.target_id,
            &now.0,
            &entry.before.map(|v| v.to_string()),
            &entry.after.map(|v| v.to_string()),
        ],
    )?;
    Ok(())
}

pub(super) fn tenant_exists(conn: &mut PgConn, tenant: TenantId) -> Result<bool> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM tenants WHERE id = $1",
            &[&tenant.to_string()],
        )?
        .is_some())
}

pub(super) fn ensure_tenant(conn: &mut PgConn, tenant: TenantId) -> Result<()> {
    if tenant_exists(conn, tenant)? {
        Ok(())
    } else {
        Err(LedgerError::not_found("tenant").into())
    }
}

fn tenant_from_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: parse(r.get(0))?,
        display_name: r.get(1),
        default_domain: r.get(2),
        created_at: Timestamp(r.get(3)),
    })
}

pub(super) const USER_COLUMNS: &str =
    "id, tenant_id, upn, display_name, usage_location, account_enabled, created_at, version";

pub(super) fn user_from_row(r: &Row) -> Result<User> {
    Ok(User {
        id: parse(r.get(0))?,
        tenant_id: parse(r.get(1))?,
        user_principal_name: r.get(2),
        display_name: r.get(3),
        usage_location: r.get(4),
        account_enabled: r.get(5),
        created_at: Timestamp(r.get(6)),
        version: r.get::<_, i64>(7) as u64,
    })
}

pub(super) fn find_user(conn: &mut PgConn, tenant: TenantId, id: UserId) -> Result<Option<User>> {
    conn.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2"),
        &[&id.to_string(), &tenant.to_string()],
    )?
    .map(|r| user_from_row(&r))
    .transpose()
}

const ASSIGNMENT_COLUMNS: &str = "user_id, sku_id, disabled_plans, assigned_at";

fn assignments_of(rows: Vec<Row>) -> Result<Vec<Assignment>> {
    rows.iter()
        .map(|r| {
            Ok(Assignment {
                user_id: parse(r.get(0))?,
                sku_id: parse(r.get(1))?,
                disabled_plans: serde_json::from_str::<BTreeSet<uuid::Uuid>>(r.get(2))?,
                assigned_at: Timestamp(r.get(3)),
            })
        })
        .collect()
}

pub(super) fn user_assignments(conn: &mut PgConn, user: UserId) -> Result<Vec<Assignment>> {
    let rows = conn.query(
        &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE user_id = $1 ORDER BY assigned_at, sku_id"),
        &[&user.to_string()],
    )?;
    assignments_of(rows)
}

pub(super) fn find_subscription(
    conn: &mut PgConn,
    tenant: TenantId,
    id: SubscriptionId,
) -> Result<Option<Subscription>> {
    conn.query_opt(
        "SELECT body FROM subscriptions WHERE id = $1 AND tenant_id = $2",
        &[&id.to_string(), &tenant.to_string()],
    )?
    .map(|r| Ok(serde_json::from_str(r.get::<_, &str>(0))?))
    .transpose()
}

pub(super) fn subscriptions_of(rows: Vec<Row>, column: usize) -> Result<Vec<Subscription>> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(r.get::<_, &str>(column))?))
        .collect()
}

pub(super) fn tenant_subscriptions(
    conn: &mut PgConn,
    tenant: TenantId,
) -> Result<Vec<Subscription>> {
    let rows = conn.query(
        "SELECT body FROM subscriptions WHERE tenant_id = $1 ORDER BY seq",
        &[&tenant.to_string()],
    )?;
    subscriptions_of(rows, 0)
}

/// Recomputes the seat pool's capacity from the subscriptions it sums.
pub(super) fn refresh_capacity(conn: &mut PgConn, tenant: TenantId, sku: SkuId) -> Result<()> {
    let (tenant, sku) = (tenant.to_string(), sku.to_string());
    conn.execute(
        "INSERT INTO seat_pools (tenant_id, sku_id, capacity, consumed) VALUES ($1, $2, 0, 0)
         ON CONFLICT (tenant_id, sku_id) DO NOTHING",
        &[&tenant, &sku],
    )?;
    conn.execute(
        "UPDATE seat_pools SET capacity = (SELECT COALESCE(SUM(assignable_seats), 0) FROM subscriptions
             WHERE tenant_id = $1 AND sku_id = $2)
         WHERE tenant_id = $1 AND sku_id = $2",
        &[&tenant, &sku],
    )?;
    Ok(())
}

pub(super) fn page_of<T>(mut items: Vec<(i64, T)>, top: u32) -> Page<T> {
    let next = if items.len() > top as usize {
        items.truncate(top as usize);
        items.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Page {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next,
    }
}

fn limit(page: &PageRequest) -> i64 {
    page.top as i64 + 1
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn write_tx(&self, work: TxWork) -> Result<Box<dyn std::any::Any + Send>> {
        self.write(move |conn| super::tx::run(conn, &work)).await
    }

    async fn setting(&self, key: &'static str) -> Result<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
                .map(|r| r.get(0)))
        })
        .await
    }

    async fn set_setting(&self, key: &'static str, value: String) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            Ok(())
        })
        .await
    }

    async fn principal_for_token(&self, token_hash: String) -> Result<Option<Principal>> {
        self.read(move |conn| {
            let Some(row) = conn.query_opt(
                "SELECT id, tenant_id, role FROM tokens WHERE token_hash = $1",
                &[&token_hash],
            )?
            else {
                return Ok(None);
            };
            let token_id: TokenId = parse(row.get(0))?;
            let tenant_id: TenantId = parse(row.get(1))?;
            Ok(Role::parse(row.get(2)).map(|role| Principal::Tenant {
                tenant_id,
                role,
                token_id,
            }))
        })
        .await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Tenant> {
        self.read(move |conn| {
            conn.query_opt(
                "SELECT id, display_name, default_domain, created_at FROM tenants WHERE id = $1",
                &[&id.to_string()],
            )?
            .map(|r| tenant_from_row(&r))
            .transpose()?
            .ok_or_else(|| LedgerError::not_found("tenant").into())
        })
        .await
    }

    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>> {
        self.read(move |conn| {
            let rows = conn.query(
                "SELECT id, display_name, default_domain, created_at, seq FROM tenants
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&page.after.unwrap_or(0), &limit(&page)],
            )?;
            let items = rows
                .iter()
                .map(|r| Ok((r.get(4), tenant_from_row(r)?)))
                .collect::<Result<_>>()?;
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn list_skus(&self) -> Result<Vec<Sku>> {
        self.read(|conn| {
            let mut skus: Vec<Sku> = load_catalog(conn)?.into_values().collect();
            skus.sort_by(|a, b| a.sku_part_number.cmp(&b.sku_part_number));
            Ok(skus)
        })
        .await
    }

    async fn get_subscription(&self, tenant: TenantId, id: SubscriptionId) -> Result<Subscription> {
        self.read(move |conn| {
            find_subscription(conn, tenant, id)?
                .ok_or_else(|| LedgerError::not_found("subscription").into())
        })
        .await
    }

    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Subscription>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let rows = conn.query(
                "SELECT seq, body FROM subscriptions WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&tenant.to_string(), &page.after.unwrap_or(0), &limit(&page)],
            )?;
            let items = rows
                .iter()
                .map(|r| Ok((r.get(0), serde_json::from_str(r.get::<_, &str>(1))?)))
                .collect::<Result<_>>()?;
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<User> {
        self.read(move |conn| {
            find_user(conn, tenant, id)?.ok_or_else(|| LedgerError::not_found("user").into())
        })
        .await
    }

    async fn list_users(
        &self,
        tenant: TenantId,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            // A search matches the start of the UPN or the display name, case-insensitively.
            let pattern = search.as_ref().map(|s| {
                let escaped = s
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("{escaped}%")
            });
            let rows = conn.query(
                &format!(
                    "SELECT {USER_COLUMNS}, seq FROM users WHERE tenant_id = $1 AND seq > $2
                     AND ($4::text IS NULL OR upn ILIKE $4 ESCAPE '\\' OR display_name ILIKE $4 ESCAPE '\\')
                     ORDER BY seq LIMIT $3"
                ),
                &[&tenant.to_string(), &page.after.unwrap_or(0), &limit(&page), &pattern],
            )?;
            let items = rows
                .iter()
                .map(|r| Ok((r.get(8), user_from_row(r)?)))
                .collect::<Result<_>>()?;
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn license_details(&self, tenant: TenantId, user: UserId) -> Result<Vec<Assignment>> {
        self.read(move |conn| {
            find_user(conn, tenant, user)?.ok_or_else(|| LedgerError::not_found("user"))?;
            user_assignments(conn, user)
        })
        .await
    }

    async fn tenant_assignments(
        &self,
        tenant: TenantId,
        sku: Option<SkuId>,
    ) -> Result<Vec<Assignment>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let rows = conn.query(
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                     WHERE tenant_id = $1 AND ($2::text IS NULL OR sku_id = $2) ORDER BY assigned_at, user_id"
                ),
                &[&tenant.to_string(), &sku.map(|s| s.to_string())],
            )?;
            assignments_of(rows)
        })
        .await
    }

    async fn subscribed_skus(&self, tenant: TenantId) -> Result<Vec<SubscribedSku>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let catalog = load_catalog(conn)?;
            let subs = tenant_subscriptions(conn, tenant)?;
            let mut consumed = HashMap::new();
            for r in conn.query(
                "SELECT sku_id, consumed FROM seat_pools WHERE tenant_id = $1",
                &[&tenant.to_string()],
            )? {
                consumed.insert(parse::<SkuId>(r.get(0))?, r.get::<_, i64>(1) as u64);
            }
            Ok(subscribed_skus(tenant, &subs, &consumed, &catalog))
        })
        .await
    }

    async fn audit_log(
        &self,
        tenant: TenantId,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditRecord>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            // Newest first: the cursor walks backwards through the sequence.
            let rows = conn.query(
                "SELECT seq, tenant_id, actor, action, target_type, target_id, at, before, after FROM audit_log
                 WHERE tenant_id = $1 AND seq < $2 AND ($4::text IS NULL OR action = $4)
                   AND ($5::text IS NULL OR target_id = $5)
                 ORDER BY seq DESC LIMIT $3",
                &[
                    &tenant.to_string(),
                    &page.after.unwrap_or(i64::MAX),
                    &limit(&page),
                    &filter.action,
                    &filter.target_id,
                ],
            )?;
            let mut items = Vec::new();
            for r in rows {
                let seq: i64 = r.get(0);
                let json = |i: usize| -> Result<Option<serde_json::Value>> {
                    Ok(r.get::<_, Option<&str>>(i).map(serde_json::from_str).transpose()?)
                };
                items.push((
                    seq,
                    AuditRecord {
                        seq,
                        tenant_id: r.get::<_, Option<&str>>(1).map(parse).transpose()?,
                        actor: r.get(2),
                        action: r.get(3),
                        target_type: r.get(4),
                        target_id: r.get(5),
                        at: Timestamp(r.get(6)),
                        before: json(7)?,
                        after: json(8)?,
                    },
                ));
            }
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn idempotency_begin(
        &self,
        scope: String,
        key: String,
        request_hash: String,
        now: Timestamp,
    ) -> Result<IdempotencyBegin> {
        /// A key whose first request never finished (crash) can be retried after this long.
        const STALE_AFTER_SECS: i64 = 600;
        self.write(move |conn| {
            let existing = conn.query_opt(
                "SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2",
                &[&scope, &key],
            )?;
            if let Some(r) = existing {
                let (hash, status, body, created): (String, Option<i32>, Option<String>, i64) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                if hash != request_hash {
                    return Ok(IdempotencyBegin::Mismatch);
                }
                if let Some(status) = status {
                    return Ok(IdempotencyBegin::Replay(StoredResponse {
                        status: status as u16,
                        body: body.unwrap_or_default(),
                    }));
                }
                if now.0 - created < STALE_AFTER_SECS {
                    return Ok(IdempotencyBegin::InProgress);
                }
            }
            conn.execute(
                "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope, key) DO UPDATE SET created_at = excluded.created_at",
                &[&scope, &key, &request_hash, &now.0],
            )?;
            Ok(IdempotencyBegin::Proceed)
        })
        .await
    }

    async fn idempotency_finish(
        &self,
        scope: String,
        key: String,
        response: Option<StoredResponse>,
    ) -> Result<()> {
        self.write(move |conn| {
            match &response {
                Some(r) => conn.execute(
                    "UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2",
                    &[&scope, &key, &(r.status as i32), &r.body],
                )?,
                None => conn.execute(
                    "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2",
                    &[&scope, &key],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn idempotency_expire(&self, before: Timestamp) -> Result<usize> {
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[&before.0],
            )? as usize)
        })
        .await
    }

    async fn create_web_session(&self, s: WebSession) -> Result<()> {
        self.write(move |conn| {
            let (tenant, role, token) = principal_columns(&s.principal);
            conn.execute(
                "INSERT INTO web_sessions (id_hash, tenant_id, role, token_id, csrf, last_seen)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&s.id_hash, &tenant, &role, &token, &s.csrf, &s.last_seen.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn web_session(&self, id_hash: String) -> Result<Option<WebSession>> {
        self.read(move |conn| {
            let row = conn.query_opt(
                "SELECT tenant_id, role, token_id, csrf, last_seen FROM web_sessions
                 WHERE id_hash = $1",
                &[&id_hash],
            )?;
            Ok(row.and_then(|r| {
                Some(WebSession {
                    principal: principal_of(r.get(0), r.get(1), r.get(2))?,
                    csrf: r.get(3),
                    last_seen: Timestamp(r.get(4)),
                    id_hash: id_hash.clone(),
                })
            }))
        })
        .await
    }

    async fn touch_web_session(&self, id_hash: String, now: Timestamp) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE web_sessions SET last_seen = $2 WHERE id_hash = $1",
                &[&id_hash, &now.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_web_session(&self, id_hash: String) -> Result<()> {
        self.write(move |conn| {
            conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", &[&id_hash])?;
            Ok(())
        })
        .await
    }

    async fn expire_web_sessions(&self, before: Timestamp) -> Result<usize> {
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM web_sessions WHERE last_seen < $1",
                &[&before.0],
            )? as usize)
        })
        .await
    }

    async fn take_lease(
        &self,
        name: &'static str,
        holder: String,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        self.write(move |conn| {
            Ok(conn
                .query_opt(
                    "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                     WHERE leases.holder = excluded.holder OR leases.until < $4
                     RETURNING holder",
                    &[&name, &holder, &until.0, &now.0],
                )?
                .is_some())
        })
        .await
    }
}
