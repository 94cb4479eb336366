//! [`DirectoryStore`] on PostgreSQL, and the application primitives of [`crate::LedgerTx`].
//! The same contracts as `sqlite/directory.rs`: text comparisons ignore case (`lower()` where
//! SQLite's columns are `COLLATE NOCASE`, `ILIKE` where SQLite's `LIKE` folds case), users come
//! in creation order (`seq`) and a page's skiptoken is the last `seq` it returned.

use super::conn::{parse, PgConn};
use super::reads::{ensure_tenant, page_of, user_from_row, USER_COLUMNS};
use super::PgStore;
use crate::directory::{AppTokenRecord, ApplicationRecord, DirectoryStore, UserFilter};
use crate::{Page, PageRequest, Result};
use async_trait::async_trait;
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::user::User;
use tenantry_ledger::{TenantId, Timestamp, TokenId};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// One bound parameter of a filter (owned, so that the clause can be built before the query).
type Param = Box<dyn ToSql + Sync + Send>;

/// The WHERE clause for `filter` and its parameters, numbered from `$1`.
fn filter_sql(tenant: TenantId, filter: &UserFilter) -> (String, Vec<Param>) {
    let mut values: Vec<Param> = vec![Box::new(tenant.to_string())];
    let mut sql = String::from("tenant_id = $1");
    let mut push = |sql: &mut String, clause: &str, value: Param| {
        values.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(upn) = &filter.user_principal_name {
        // `lower(upn)` is what the unique index `users_by_upn` is built on.
        push(
            &mut sql,
            " AND lower(upn) = lower(?)",
            Box::new(upn.clone()),
        );
    }
    if let Some(enabled) = filter.account_enabled {
        push(&mut sql, " AND account_enabled = ?", Box::new(enabled));
    }
    if let Some(location) = &filter.usage_location {
        push(
            &mut sql,
            " AND lower(usage_location) = lower(?)",
            Box::new(location.clone()),
        );
    }
    if let Some(prefix) = &filter.display_name_prefix {
        push(
            &mut sql,
            " AND display_name ILIKE ? ESCAPE '\\'",
            Box::new(format!("{}%", like_escaped(prefix))),
        );
    }
    if let Some(word) = &filter.display_name_contains {
        push(
            &mut sql,
            " AND display_name ILIKE ? ESCAPE '\\'",
            Box::new(format!("%{}%", like_escaped(word))),
        );
    }
    if let Some(sku) = filter.assigned_sku {
        push(
            &mut sql,
            " AND EXISTS (SELECT 1 FROM assignments a WHERE a.user_id = users.id AND a.sku_id = ?)",
            Box::new(sku.to_string()),
        );
    }
    (sql, values)
}

fn refs(values: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[async_trait]
impl DirectoryStore for PgStore {
    async fn find_user_by_upn(&self, tenant: TenantId, upn: String) -> Result<Option<User>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            conn.query_opt(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND lower(upn) = lower($2)"
                ),
                &[&tenant.to_string(), &upn],
            )?
            .map(|r| user_from_row(&r))
            .transpose()
        })
        .await
    }

    async fn query_users(
        &self,
        tenant: TenantId,
        filter: UserFilter,
        page: PageRequest,
    ) -> Result<Page<User>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let (clause, mut values) = filter_sql(tenant, &filter);
            let after = values.len() + 1;
            values.push(Box::new(page.after.unwrap_or(0)));
            values.push(Box::new(i64::from(page.top) + 1));
            let rows = conn.query(
                &format!(
                    "SELECT {USER_COLUMNS}, seq FROM users WHERE {clause} AND seq > ${after}
                     ORDER BY seq LIMIT ${}",
                    after + 1
                ),
                &refs(&values),
            )?;
            let items = rows
                .iter()
                .map(|r| Ok((r.get(8), user_from_row(r)?)))
                .collect::<Result<_>>()?;
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn count_users(&self, tenant: TenantId, filter: UserFilter) -> Result<u64> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let (clause, values) = filter_sql(tenant, &filter);
            let row = conn.query(
                &format!("SELECT COUNT(*) FROM users WHERE {clause}"),
                &refs(&values),
            )?;
            let count: i64 = row.first().map(|r| r.get(0)).unwrap_or(0);
            Ok(count as u64)
        })
        .await
    }

    async fn principal_for_app_token(
        &self,
        token_hash: String,
        now: Timestamp,
    ) -> Result<Option<Principal>> {
        self.read(move |conn| {
            let Some(row) = conn.query_opt(
                "SELECT client_id, tenant_id, role FROM app_tokens
                 WHERE token_hash = $1 AND expires_at > $2",
                &[&token_hash, &now.0],
            )?
            else {
                return Ok(None);
            };
            let client_id: Uuid = parse(row.get(0))?;
            let tenant_id: TenantId = parse(row.get(1))?;
            Ok(Role::parse(row.get(2)).map(|role| Principal::Tenant {
                tenant_id,
                role,
                // An application acts under its client id.
                token_id: TokenId(client_id),
            }))
        })
        .await
    }
    async fn list_applications(&self, tenant: TenantId) -> Result<Vec<ApplicationRecord>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let rows = conn.query(
                "SELECT client_id, display_name, role, created_at FROM applications
                 WHERE tenant_id = $1 ORDER BY created_at, client_id",
                &[&tenant.to_string()],
            )?;
            let mut apps = Vec::new();
            for row in rows {
                if let Some(role) = Role::parse(row.get(2)) {
                    apps.push(ApplicationRecord {
                        client_id: parse(row.get(0))?,
                        tenant_id: tenant,
                        display_name: row.get(1),
                        role,
                        created_at: Timestamp(row.get(3)),
                    });
                }
            }
            Ok(apps)
        })
        .await
    }
}

// ---- LedgerTx primitives (called from `tx.rs`) ----

pub(super) fn insert_application(
    conn: &mut PgConn,
    app: &ApplicationRecord,
    secret_hash: &str,
    created_by: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO applications
         (client_id, tenant_id, display_name, role, secret_hash, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &app.client_id.to_string(),
            &app.tenant_id.to_string(),
            &app.display_name,
            &app.role.as_str(),
            &secret_hash,
            &app.created_at.0,
            &created_by,
        ],
    )?;
    Ok(())
}

pub(super) fn load_application(
    conn: &mut PgConn,
    client_id: Uuid,
) -> Result<Option<(ApplicationRecord, String)>> {
    let Some(row) = conn.query_opt(
        "SELECT tenant_id, display_name, role, secret_hash, created_at
         FROM applications WHERE client_id = $1",
        &[&client_id.to_string()],
    )?
    else {
        return Ok(None);
    };
    let tenant_id: TenantId = parse(row.get(0))?;
    Ok(Role::parse(row.get(2)).map(|role| {
        (
            ApplicationRecord {
                client_id,
                tenant_id,
                display_name: row.get(1),
                role,
                created_at: Timestamp(row.get(4)),
            },
            row.get(3),
        )
    }))
}

pub(super) fn insert_app_token(conn: &mut PgConn, token: &AppTokenRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO app_tokens (token_hash, client_id, tenant_id, role, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &token.token_hash,
            &token.client_id.to_string(),
            &token.tenant_id.to_string(),
            &token.role.as_str(),
            &token.expires_at.0,
        ],
    )?;
    Ok(())
}

pub(super) fn delete_expired_app_tokens(conn: &mut PgConn, now: Timestamp) -> Result<usize> {
    Ok(conn.execute("DELETE FROM app_tokens WHERE expires_at <= $1", &[&now.0])? as usize)
}

pub(super) fn set_application_secret(
    conn: &mut PgConn,
    client_id: Uuid,
    secret_hash: &str,
) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE applications SET secret_hash = $2 WHERE client_id = $1",
        &[&client_id.to_string(), &secret_hash],
    )? == 1)
}

pub(super) fn delete_app_tokens_of(conn: &mut PgConn, client_id: Uuid) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM app_tokens WHERE client_id = $1",
        &[&client_id.to_string()],
    )? as usize)
}

pub(super) fn delete_application(conn: &mut PgConn, client_id: Uuid) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM applications WHERE client_id = $1",
        &[&client_id.to_string()],
    )? == 1)
}
