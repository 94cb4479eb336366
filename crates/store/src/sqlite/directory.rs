//! [`DirectoryStore`] on SQLite, and the application primitives of [`crate::LedgerTx`].

use super::{ensure_tenant, page_of, parse, user_from_row, SqliteStore, USER_COLUMNS};
use crate::directory::{AppTokenRecord, ApplicationRecord, DirectoryStore, UserFilter};
use crate::{Page, PageRequest, Result};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::user::User;
use tenantry_ledger::{TenantId, Timestamp, TokenId};
use uuid::Uuid;

fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The WHERE clause (after `tenant_id = ?1`) and its parameters for `filter`.
fn filter_sql(tenant: TenantId, filter: &UserFilter) -> (String, Vec<Value>) {
    let mut sql = String::from("tenant_id = ?");
    let mut values = vec![Value::Text(tenant.to_string())];
    if let Some(upn) = &filter.user_principal_name {
        sql.push_str(" AND upn = ?");
        values.push(Value::Text(upn.clone()));
    }
    if let Some(enabled) = filter.account_enabled {
        sql.push_str(" AND account_enabled = ?");
        values.push(Value::Integer(enabled as i64));
    }
    if let Some(location) = &filter.usage_location {
        sql.push_str(" AND usage_location = ? COLLATE NOCASE");
        values.push(Value::Text(location.clone()));
    }
    if let Some(prefix) = &filter.display_name_prefix {
        sql.push_str(" AND display_name LIKE ? ESCAPE '\\'");
        values.push(Value::Text(format!("{}%", like_escaped(prefix))));
    }
    if let Some(word) = &filter.display_name_contains {
        sql.push_str(" AND display_name LIKE ? ESCAPE '\\'");
        values.push(Value::Text(format!("%{}%", like_escaped(word))));
    }
    if let Some(sku) = filter.assigned_sku {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM assignments a WHERE a.user_id = users.id AND a.sku_id = ?)",
        );
        values.push(Value::Text(sku.to_string()));
    }
    (sql, values)
}

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn find_user_by_upn(&self, tenant: TenantId, upn: String) -> Result<Option<User>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 AND upn = ?2"
                ))?
                .query_row([tenant.to_string(), upn], user_from_row)
                .optional()?)
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
            values.push(Value::Integer(page.after.unwrap_or(0)));
            values.push(Value::Integer(i64::from(page.top) + 1));
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, seq FROM users WHERE {clause} AND seq > ?
                 ORDER BY seq LIMIT ?"
            ))?;
            let rows = stmt.query_map(params_from_iter(values), |r| {
                Ok((r.get(8)?, user_from_row(r)?))
            })?;
            Ok(page_of(rows.collect::<rusqlite::Result<_>>()?, page.top))
        })
        .await
    }

    async fn count_users(&self, tenant: TenantId, filter: UserFilter) -> Result<u64> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let (clause, values) = filter_sql(tenant, &filter);
            let count: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE {clause}"))?
                .query_row(params_from_iter(values), |r| r.get(0))?;
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
            let row = conn
                .prepare_cached(
                    "SELECT client_id, tenant_id, role FROM app_tokens
                     WHERE token_hash = ?1 AND expires_at > ?2",
                )?
                .query_row(params![token_hash, now.0], |r| {
                    Ok((
                        parse::<Uuid>(r.get(0)?)?,
                        parse::<TenantId>(r.get(1)?)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(client_id, tenant_id, role)| {
                Role::parse(&role).map(|role| Principal::Tenant {
                    tenant_id,
                    role,
                    // An application acts under its client id.
                    token_id: TokenId(client_id),
                })
            }))
        })
        .await
    }
    async fn list_applications(&self, tenant: TenantId) -> Result<Vec<ApplicationRecord>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let mut statement = conn.prepare_cached(
                "SELECT client_id, display_name, role, created_at FROM applications
                 WHERE tenant_id = ?1 ORDER BY created_at, client_id",
            )?;
            let rows = statement.query_map([tenant.to_string()], |r| {
                Ok((
                    parse::<Uuid>(r.get(0)?)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    Timestamp(r.get(3)?),
                ))
            })?;
            let mut apps = Vec::new();
            for row in rows {
                let (client_id, display_name, role, created_at) = row?;
                if let Some(role) = Role::parse(&role) {
                    apps.push(ApplicationRecord {
                        client_id,
                        tenant_id: tenant,
                        display_name,
                        role,
                        created_at,
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
    conn: &Connection,
    app: &ApplicationRecord,
    secret_hash: &str,
    created_by: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO applications
         (client_id, tenant_id, display_name, role, secret_hash, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            app.client_id.to_string(),
            app.tenant_id.to_string(),
            app.display_name,
            app.role.as_str(),
            secret_hash,
            app.created_at.0,
            created_by
        ],
    )?;
    Ok(())
}

pub(super) fn load_application(
    conn: &Connection,
    client_id: Uuid,
) -> Result<Option<(ApplicationRecord, String)>> {
    let row = conn
        .prepare_cached(
            "SELECT tenant_id, display_name, role, secret_hash, created_at
             FROM applications WHERE client_id = ?1",
        )?
        .query_row([client_id.to_string()], |r| {
            Ok((
                parse::<TenantId>(r.get(0)?)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                Timestamp(r.get(4)?),
            ))
        })
        .optional()?;
    Ok(
        row.and_then(|(tenant_id, display_name, role, hash, created_at)| {
            Role::parse(&role).map(|role| {
                (
                    ApplicationRecord {
                        client_id,
                        tenant_id,
                        display_name,
                        role,
                        created_at,
                    },
                    hash,
                )
            })
        }),
    )
}

pub(super) fn insert_app_token(conn: &Connection, token: &AppTokenRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO app_tokens (token_hash, client_id, tenant_id, role, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            token.token_hash,
            token.client_id.to_string(),
            token.tenant_id.to_string(),
            token.role.as_str(),
            token.expires_at.0
        ],
    )?;
    Ok(())
}

pub(super) fn delete_expired_app_tokens(conn: &Connection, now: Timestamp) -> Result<usize> {
    Ok(conn.execute("DELETE FROM app_tokens WHERE expires_at <= ?1", [now.0])?)
}

pub(super) fn set_application_secret(
    conn: &Connection,
    client_id: Uuid,
    secret_hash: &str,
) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE applications SET secret_hash = ?2 WHERE client_id = ?1",
        params![client_id.to_string(), secret_hash],
    )? == 1)
}

pub(super) fn delete_app_tokens_of(conn: &Connection, client_id: Uuid) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM app_tokens WHERE client_id = ?1",
        [client_id.to_string()],
    )?)
}

pub(super) fn delete_application(conn: &Connection, client_id: Uuid) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM applications WHERE client_id = ?1",
        [client_id.to_string()],
    )? == 1)
}
