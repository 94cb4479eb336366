//! The SQLite backend: WAL journal, `synchronous=FULL` (a commit survives power loss), one writer
//! thread with group commit ([`writer`]) and a pool of reader connections.

mod directory;
mod moves;
mod schema;
mod tx;
mod writer;

use crate::{principal_columns, principal_of, WebSession};
use crate::{
    AuditFilter, IdempotencyBegin, LedgerStore, Page, PageRequest, Result, StoreError,
    StoredResponse, TxWork,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::audit::{AuditEntry, AuditRecord};
use tenantry_ledger::catalog::{seed_catalog, Sku};
use tenantry_ledger::counting::{subscribed_skus, SubscribedSku};
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use tenantry_ledger::{LedgerError, SkuId, SubscriptionId, TenantId, Timestamp, TokenId, UserId};
use writer::{Job, WriterCtx};

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Sender<Box<dyn Job>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn connect(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is synced at every commit, so an acknowledged change survives a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

fn load_catalog(conn: &Connection) -> Result<HashMap<SkuId, Sku>> {
    let mut stmt = conn.prepare_cached("SELECT body FROM skus ORDER BY seq")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut catalog = HashMap::new();
    for body in rows {
        let sku: Sku = serde_json::from_str(&body?)?;
        catalog.insert(sku.sku_id, sku);
    }
    Ok(catalog)
}

fn seed(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO skus (sku_id, sku_part_number, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (sku_id) DO UPDATE SET body = excluded.body",
    )?;
    for sku in seed_catalog() {
        stmt.execute(params![
            sku.sku_id.to_string(),
            sku.sku_part_number,
            serde_json::to_string(&sku)?
        ])?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema and seeds the catalog.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        tenantry_private_fs::create_file(path).map_err(|e| {
            StoreError::Internal(format!("cannot create database {}: {e}", path.display()))
        })?;
        let mut conn = connect(path, false).map_err(|e| {
            StoreError::Internal(format!("cannot open database {}: {e}", path.display()))
        })?;
        schema::migrate(&mut conn)
            .map_err(|e| StoreError::Internal(format!("schema migration failed: {e}")))?;
        seed(&conn)?;
        let catalog = load_catalog(&conn)?;
        let (queue, jobs) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer::run(WriterCtx { conn, catalog }, jobs, load_catalog))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(queue),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    async fn write<F, R>(&self, work: F) -> Result<R>
    where
        F: FnOnce(&mut WriterCtx) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let queue = self.writer.lock().expect("writer queue lock").clone();
        writer::submit(&queue, work).await
    }

    async fn read<F, R>(&self, work: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().expect("reader pool lock").pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect(&path, true)?,
            };
            let result = work(&conn);
            readers.lock().expect("reader pool lock").push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("reader task failed: {e}")))?
    }
}

// ---- row helpers -------------------------------------------------------------------------------

fn parse<T: FromStr>(text: String) -> rusqlite::Result<T> {
    text.parse().map_err(|_| {
        rusqlite::Error::InvalidColumnType(
            0,
            format!("bad identifier {text}"),
            rusqlite::types::Type::Text,
        )
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

fn audit(conn: &Connection, entry: AuditEntry, now: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log (tenant_id, actor, action, target_type, target_id, at, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        entry.tenant_id.map(|t| t.to_string()),
        entry.actor,
        entry.action,
        entry.target_type,
        entry.target_id,
        now.0,
        entry.before.map(|v| v.to_string()),
        entry.after.map(|v| v.to_string()),
    ])?;
    Ok(())
}

fn ensure_tenant(conn: &Connection, tenant: TenantId) -> Result<()> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .exists([tenant.to_string()])?;
    if exists {
        Ok(())
    } else {
        Err(LedgerError::not_found("tenant").into())
    }
}

fn tenant_from_row(r: &rusqlite::Row) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: parse(r.get(0)?)?,
        display_name: r.get(1)?,
        default_domain: r.get(2)?,
        created_at: Timestamp(r.get(3)?),
    })
}

const USER_COLUMNS: &str =
    "id, tenant_id, upn, display_name, usage_location, account_enabled, created_at, version";

fn user_from_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User {
        id: parse(r.get(0)?)?,
        tenant_id: parse(r.get(1)?)?,
        user_principal_name: r.get(2)?,
        display_name: r.get(3)?,
        usage_location: r.get(4)?,
        account_enabled: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        version: r.get::<_, i64>(7)? as u64,
    })
}

fn find_user(conn: &Connection, tenant: TenantId, id: UserId) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND tenant_id = ?2"
        ))?
        .query_row([id.to_string(), tenant.to_string()], user_from_row)
        .optional()?)
}

fn load_user(conn: &Connection, tenant: TenantId, id: UserId) -> Result<User> {
    find_user(conn, tenant, id)?.ok_or_else(|| LedgerError::not_found("user").into())
}

const ASSIGNMENT_COLUMNS: &str = "user_id, sku_id, disabled_plans, assigned_at";

/// Runs a query selecting `ASSIGNMENT_COLUMNS` and decodes its rows.
fn query_assignments(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Assignment>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (user, sku, plans, at) = row?;
        out.push(Assignment {
            user_id: parse(user)?,
            sku_id: parse(sku)?,
            disabled_plans: serde_json::from_str::<BTreeSet<uuid::Uuid>>(&plans)?,
            assigned_at: Timestamp(at),
        });
    }
    Ok(out)
}

fn user_assignments(conn: &Connection, user: UserId) -> Result<Vec<Assignment>> {
    query_assignments(
        conn,
        &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE user_id = ?1 ORDER BY assigned_at, sku_id"),
        [user.to_string()],
    )
}

fn find_subscription(
    conn: &Connection,
    tenant: TenantId,
    id: SubscriptionId,
) -> Result<Option<Subscription>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM subscriptions WHERE id = ?1 AND tenant_id = ?2")?
        .query_row([id.to_string(), tenant.to_string()], |r| r.get(0))
        .optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
}

fn load_subscription(
    conn: &Connection,
    tenant: TenantId,
    id: SubscriptionId,
) -> Result<Subscription> {
    find_subscription(conn, tenant, id)?
        .ok_or_else(|| LedgerError::not_found("subscription").into())
}

fn insert_subscription(conn: &Connection, sub: &Subscription) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO subscriptions (id, tenant_id, sku_id, status, assignable_seats, next_lifecycle_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        sub.id.to_string(),
        sub.tenant_id.to_string(),
        sub.sku_id.to_string(),
        sub.status.as_str(),
        sub.assignable_seats(),
        sub.next_lifecycle_at().map(|t| t.0),
        serde_json::to_string(sub)?,
    ])?;
    refresh_capacity(conn, sub.tenant_id, sub.sku_id)
}

/// Recomputes the seat pool's capacity from the subscriptions it sums.
fn refresh_capacity(conn: &Connection, tenant: TenantId, sku: SkuId) -> Result<()> {
    let (tenant, sku) = (tenant.to_string(), sku.to_string());
    conn.prepare_cached(
        "INSERT INTO seat_pools (tenant_id, sku_id, capacity, consumed) VALUES (?1, ?2, 0, 0)
         ON CONFLICT (tenant_id, sku_id) DO NOTHING",
    )?
    .execute([&tenant, &sku])?;
    conn.prepare_cached(
        "UPDATE seat_pools SET capacity = (SELECT COALESCE(SUM(assignable_seats), 0) FROM subscriptions
             WHERE tenant_id = ?1 AND sku_id = ?2)
         WHERE tenant_id = ?1 AND sku_id = ?2",
    )?
    .execute([&tenant, &sku])?;
    Ok(())
}

fn pool(conn: &Connection, tenant: TenantId, sku: SkuId) -> Result<(u32, u32)> {
    Ok(conn
        .prepare_cached(
            "SELECT capacity, consumed FROM seat_pools WHERE tenant_id = ?1 AND sku_id = ?2",
        )?
        .query_row([tenant.to_string(), sku.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or((0, 0)))
}

fn release_seat(conn: &Connection, tenant: TenantId, sku: SkuId) -> Result<()> {
    conn.prepare_cached(
        "UPDATE seat_pools SET consumed = consumed - 1 WHERE tenant_id = ?1 AND sku_id = ?2 AND consumed > 0",
    )?
    .execute([tenant.to_string(), sku.to_string()])?;
    Ok(())
}

fn page_of<T>(mut items: Vec<(i64, T)>, top: u32) -> Page<T> {
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

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn write_tx(&self, work: TxWork) -> Result<Box<dyn std::any::Any + Send>> {
        self.write(move |ctx| tx::run(ctx, work)).await
    }

    async fn setting(&self, key: &'static str) -> Result<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_setting(&self, key: &'static str, value: String) -> Result<()> {
        self.write(move |ctx| {
            ctx.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }

    async fn principal_for_token(&self, token_hash: String) -> Result<Option<Principal>> {
        self.read(move |conn| {
            let row = conn
                .prepare_cached("SELECT id, tenant_id, role FROM tokens WHERE token_hash = ?1")?
                .query_row([token_hash], |r| {
                    Ok((
                        parse::<TokenId>(r.get(0)?)?,
                        parse::<TenantId>(r.get(1)?)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(token_id, tenant_id, role)| {
                Role::parse(&role).map(|role| Principal::Tenant {
                    tenant_id,
                    role,
                    token_id,
                })
            }))
        })
        .await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Tenant> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, display_name, default_domain, created_at FROM tenants WHERE id = ?1",
            )?
            .query_row([id.to_string()], tenant_from_row)
            .optional()?
            .ok_or_else(|| LedgerError::not_found("tenant").into())
        })
        .await
    }

    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, display_name, default_domain, created_at, seq FROM tenants WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![page.after.unwrap_or(0), page.top + 1], |r| {
                Ok((r.get(4)?, tenant_from_row(r)?))
            })?;
            Ok(page_of(rows.collect::<rusqlite::Result<_>>()?, page.top))
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
        self.read(move |conn| load_subscription(conn, tenant, id))
            .await
    }

    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Subscription>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let mut stmt = conn.prepare_cached(
                "SELECT seq, body FROM subscriptions WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant.to_string(), page.after.unwrap_or(0), page.top + 1], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut items = Vec::new();
            for row in rows {
                let (seq, body) = row?;
                items.push((seq, serde_json::from_str(&body)?));
            }
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<User> {
        self.read(move |conn| load_user(conn, tenant, id)).await
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
            let pattern = search.map(|s| {
                let escaped = s
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("{escaped}%")
            });
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, seq FROM users WHERE tenant_id = ?1 AND seq > ?2
                 AND (?4 IS NULL OR upn LIKE ?4 ESCAPE '\\' OR display_name LIKE ?4 ESCAPE '\\')
                 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    tenant.to_string(),
                    page.after.unwrap_or(0),
                    page.top + 1,
                    pattern
                ],
                |r| Ok((r.get(8)?, user_from_row(r)?)),
            )?;
            Ok(page_of(rows.collect::<rusqlite::Result<_>>()?, page.top))
        })
        .await
    }

    async fn license_details(&self, tenant: TenantId, user: UserId) -> Result<Vec<Assignment>> {
        self.read(move |conn| {
            load_user(conn, tenant, user)?;
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
            query_assignments(
                conn,
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                     WHERE tenant_id = ?1 AND (?2 IS NULL OR sku_id = ?2) ORDER BY assigned_at, user_id"
                ),
                params![tenant.to_string(), sku.map(|s| s.to_string())],
            )
        })
        .await
    }

    async fn subscribed_skus(&self, tenant: TenantId) -> Result<Vec<SubscribedSku>> {
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let catalog = load_catalog(conn)?;
            let mut subs = Vec::new();
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM subscriptions WHERE tenant_id = ?1 ORDER BY seq",
            )?;
            for body in stmt.query_map([tenant.to_string()], |r| r.get::<_, String>(0))? {
                subs.push(serde_json::from_str::<Subscription>(&body?)?);
            }
            let mut consumed = HashMap::new();
            let mut stmt = conn
                .prepare_cached("SELECT sku_id, consumed FROM seat_pools WHERE tenant_id = ?1")?;
            for row in stmt.query_map([tenant.to_string()], |r| {
                Ok((parse::<SkuId>(r.get(0)?)?, r.get::<_, i64>(1)?))
            })? {
                let (sku, count) = row?;
                consumed.insert(sku, count as u64);
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
            let mut stmt = conn.prepare_cached(
                "SELECT seq, tenant_id, actor, action, target_type, target_id, at, before, after FROM audit_log
                 WHERE tenant_id = ?1 AND seq < ?2 AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR target_id = ?5)
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![tenant.to_string(), page.after.unwrap_or(i64::MAX), page.top + 1, filter.action, filter.target_id],
                |r| {
                    let text = |i: usize| r.get::<_, Option<String>>(i);
                    Ok((
                        r.get::<_, i64>(0)?,
                        (r.get::<_, i64>(0)?, text(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, text(7)?, text(8)?),
                    ))
                },
            )?;
            let mut items = Vec::new();
            for row in rows {
                let (seq, (seq2, tenant_id, actor, action, target_type, target_id, at, before, after)) = row?;
                items.push((
                    seq,
                    AuditRecord {
                        seq: seq2,
                        tenant_id: tenant_id.map(parse).transpose()?,
                        actor,
                        action,
                        target_type,
                        target_id,
                        at: Timestamp(at),
                        before: before.map(|b| serde_json::from_str(&b)).transpose()?,
                        after: after.map(|a| serde_json::from_str(&a)).transpose()?,
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
        self.write(move |ctx| {
            let existing = ctx
                .conn
                .prepare_cached(
                    "SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
                )?
                .query_row([&scope, &key], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<u16>>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, i64>(3)?))
                })
                .optional()?;
            match existing {
                None => {}
                Some((hash, _, _, _)) if hash != request_hash => return Ok(IdempotencyBegin::Mismatch),
                Some((_, Some(status), body, _)) => {
                    return Ok(IdempotencyBegin::Replay(StoredResponse { status, body: body.unwrap_or_default() }))
                }
                Some((_, None, _, created)) if now.0 - created < STALE_AFTER_SECS => {
                    return Ok(IdempotencyBegin::InProgress)
                }
                Some(_) => {}
            }
            ctx.conn
                .prepare_cached(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (scope, key) DO UPDATE SET created_at = excluded.created_at",
                )?
                .execute(params![scope, key, request_hash, now.0])?;
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
        self.write(move |ctx| {
            match response {
                Some(r) => ctx
                    .conn
                    .prepare_cached("UPDATE idempotency_keys SET status = ?3, body = ?4 WHERE scope = ?1 AND key = ?2")?
                    .execute(params![scope, key, r.status, r.body])?,
                None => ctx
                    .conn
                    .prepare_cached("DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2")?
                    .execute(params![scope, key])?,
            };
            Ok(())
        })
        .await
    }

    async fn idempotency_expire(&self, before: Timestamp) -> Result<usize> {
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                .execute([before.0])?)
        })
        .await
    }

    async fn create_web_session(&self, s: WebSession) -> Result<()> {
        self.write(move |ctx| {
            let (tenant, role, token) = principal_columns(&s.principal);
            ctx.conn.execute(
                "INSERT INTO web_sessions (id_hash, tenant_id, role, token_id, csrf, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.id_hash, tenant, role, token, s.csrf, s.last_seen.0],
            )?;
            Ok(())
        })
        .await
    }

    async fn web_session(&self, id_hash: String) -> Result<Option<WebSession>> {
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT tenant_id, role, token_id, csrf, last_seen FROM web_sessions
                     WHERE id_hash = ?1",
                )?
                .query_row([&id_hash], |r| {
                    Ok((
                        principal_of(r.get(0)?, r.get(1)?, r.get(2)?),
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(principal, csrf, last_seen)| {
                Some(WebSession {
                    id_hash,
                    principal: principal?,
                    csrf,
                    last_seen: Timestamp(last_seen),
                })
            }))
        })
        .await
    }

    async fn touch_web_session(&self, id_hash: String, now: Timestamp) -> Result<()> {
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached("UPDATE web_sessions SET last_seen = ?2 WHERE id_hash = ?1")?
                .execute(params![id_hash, now.0])?;
            Ok(())
        })
        .await
    }

    async fn delete_web_session(&self, id_hash: String) -> Result<()> {
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached("DELETE FROM web_sessions WHERE id_hash = ?1")?
                .execute([id_hash])?;
            Ok(())
        })
        .await
    }

    async fn expire_web_sessions(&self, before: Timestamp) -> Result<usize> {
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached("DELETE FROM web_sessions WHERE last_seen < ?1")?
                .execute([before.0])?)
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
        self.write(move |ctx| {
            Ok(ctx
                .conn
                .prepare_cached(
                    "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                     WHERE leases.holder = excluded.holder OR leases.until < ?4
                     RETURNING holder",
                )?
                .query_row(params![name, holder, until.0, now.0], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }
}
