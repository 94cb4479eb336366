//! SQLite implementation of [`MoveStore`].

use super::tx::SqliteTx;
use super::{
    ensure_tenant, page_of, parse, user_assignments, user_from_row, SqliteStore, USER_COLUMNS,
};
use crate::moves::{
    EngineState, MoveRecord, MoveState, MoveStore, MoveTx, ProfileKind, ProfileRecord,
    StepProgress, StepRecord, StepState,
};
use crate::{Page, PageRequest, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::{LedgerError, TenantId, Timestamp};
use tenantry_moves::plan::{TenantSnapshot, UserLicences};
use uuid::Uuid;

type MoveRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

const PROGRESS_COLUMNS: &str = "key, items_done, items_total, bytes_done, bytes_total, \
     started_at, updated_at, window_at, window_items, window_bytes";

/// A count as SQLite's signed integer column holds it (a count past `i64::MAX` is saturated).
fn column(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

const MOVE_COLUMNS: &str = "id, spec, state, plan, fingerprint, created_at, updated_at";

fn move_from_row(r: &rusqlite::Row) -> rusqlite::Result<MoveRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_record(row: MoveRow) -> Result<MoveRecord> {
    let (id, spec, state, plan, fingerprint, created, updated) = row;
    Ok(MoveRecord {
        id: parse(id)?,
        spec: serde_json::from_str(&spec)?,
        state: MoveState::parse(&state)
            .ok_or_else(|| StoreError::Internal(format!("unknown move state {state}")))?,
        plan: plan.map(|p| serde_json::from_str(&p)).transpose()?,
        fingerprint,
        created_at: Timestamp(created),
        updated_at: Timestamp(updated),
    })
}

fn load_move(conn: &Connection, id: Uuid) -> Result<MoveRecord> {
    let row = conn
        .prepare_cached(&format!("SELECT {MOVE_COLUMNS} FROM moves WHERE id = ?1"))?
        .query_row([id.to_string()], move_from_row)
        .optional()?
        .ok_or_else(|| LedgerError::not_found("move"))?;
    to_record(row)
}

fn step_from_row(r: &rusqlite::Row) -> rusqlite::Result<StepRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

type StepRow = (
    String,
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
);

fn to_step(row: StepRow) -> Result<StepRecord> {
    let (
        move_id,
        seq,
        key,
        step,
        state,
        attempts,
        result,
        error,
        updated,
        owner,
        until,
        depends_on,
        servers,
        claimed_by,
        claimed_at,
    ) = row;
    Ok(StepRecord {
        move_id: parse(move_id)?,
        seq,
        key,
        step: serde_json::from_str(&step)?,
        state: StepState::parse(&state)
            .ok_or_else(|| StoreError::Internal(format!("unknown step state {state}")))?,
        attempts: attempts as u32,
        result: result.map(|r| serde_json::from_str(&r)).transpose()?,
        error,
        lease_owner: owner,
        lease_until: until.map(Timestamp),
        updated_at: Timestamp(updated),
        depends_on: depends_on.map(|d| serde_json::from_str(&d)).transpose()?,
        servers: serde_json::from_str(&servers)?,
        claimed_by,
        claimed_at: claimed_at.map(Timestamp),
    })
}

const STEP_COLUMNS: &str =
    "move_id, seq, key, step, state, attempts, result, error, updated_at, lease_owner, lease_until,
     depends_on, servers, claimed_by, claimed_at";

fn query_steps(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StepRecord>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows: Vec<StepRow> = stmt
        .query_map(params, step_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter().map(to_step).collect()
}

fn json_text(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

fn profile_from_row(r: &rusqlite::Row) -> rusqlite::Result<ProfileRecord> {
    Ok(ProfileRecord {
        id: parse(r.get(0)?)?,
        name: r.get(1)?,
        kind: {
            let kind: String = r.get(2)?;
            ProfileKind::parse(&kind).ok_or_else(|| {
                rusqlite::Error::InvalidColumnType(
                    2,
                    format!("unknown profile kind {kind}"),
                    rusqlite::types::Type::Text,
                )
            })?
        },
        username: r.get(3)?,
        secret: r.get(4)?,
        created_at: Timestamp(r.get(5)?),
    })
}

fn steps_of(conn: &Connection, move_id: Uuid) -> Result<Vec<StepRecord>> {
    query_steps(
        conn,
        &format!("SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = ?1 ORDER BY seq"),
        [move_id.to_string()],
    )
}

/// The step [`MoveTx::claim_next_step`] takes (see its contract): free or expired lease, every
/// dependency done (without stored dependencies: every step before it), no server of it at
/// `per_server` live leases; oldest move first, then plan order.
fn next_claimable(
    conn: &Connection,
    now: Timestamp,
    per_server: u32,
) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT s.move_id, s.key FROM move_steps s JOIN moves m ON m.id = s.move_id
             WHERE m.state = 'Running' AND s.state IN ('Pending', 'Running')
               AND (s.lease_until IS NULL OR s.lease_until < ?1)
               AND CASE WHEN s.depends_on IS NULL
                   THEN NOT EXISTS (SELECT 1 FROM move_steps x
                        WHERE x.move_id = s.move_id AND x.seq < s.seq AND x.state != 'Done')
                   ELSE NOT EXISTS (SELECT 1 FROM json_each(s.depends_on) d
                        JOIN move_steps x ON x.move_id = s.move_id AND x.key = d.value
                        WHERE x.state != 'Done') END
               AND NOT EXISTS (SELECT 1 FROM json_each(s.servers) r
                   WHERE (SELECT COUNT(*) FROM move_steps o, json_each(o.servers) q
                          WHERE o.state = 'Running' AND o.lease_until >= ?1 AND q.value = r.value) >= ?2)
             ORDER BY m.seq, s.seq LIMIT 1",
        )?
        .query_row(params![now.0, per_server], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

#[async_trait]
impl MoveStore for SqliteStore {
    async fn get_move(&self, id: Uuid) -> Result<MoveRecord> {
        self.read(move |conn| load_move(conn, id)).await
    }

    async fn list_moves(&self, page: PageRequest) -> Result<Page<MoveRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {MOVE_COLUMNS}, seq FROM moves WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![page.after.unwrap_or(0), page.top + 1], |r| {
                Ok((r.get::<_, i64>(7)?, move_from_row(r)?))
            })?;
            let mut items = Vec::new();
            for row in rows {
                let (seq, row) = row?;
                items.push((seq, to_record(row)?));
            }
            Ok(page_of(items, page.top))
        })
        .await
    }

    async fn save_plan(
        &self,
        id: Uuid,
        plan: serde_json::Value,
        fingerprint: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        self.write(move |ctx| {
            ctx.conn.execute(
                "UPDATE moves SET plan = ?2, fingerprint = ?3, updated_at = ?4 WHERE id = ?1",
                params![id.to_string(), plan.to_string(), fingerprint, now.0],
            )?;
            load_move(&ctx.conn, id)
        })
        .await
    }

    async fn claimable_step_exists(&self, now: Timestamp, per_server: u32) -> Result<bool> {
        self.read(move |conn| Ok(next_claimable(conn, now, per_server)?.is_some()))
            .await
    }

    async fn steps(&self, move_id: Uuid) -> Result<Vec<StepRecord>> {
        self.read(move |conn| steps_of(conn, move_id)).await
    }

    async fn step_progress(&self, move_id: Uuid) -> Result<Vec<StepProgress>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {PROGRESS_COLUMNS} FROM step_progress WHERE move_id = ?1 ORDER BY key"
            ))?;
            let rows = stmt.query_map(params![move_id.to_string()], |r| {
                Ok(StepProgress {
                    move_id,
                    key: r.get(0)?,
                    items_done: count(r.get(1)?),
                    items_total: r.get::<_, Option<i64>>(2)?.map(count),
                    bytes_done: count(r.get(3)?),
                    bytes_total: r.get::<_, Option<i64>>(4)?.map(count),
                    started_at: Timestamp(r.get(5)?),
                    updated_at: Timestamp(r.get(6)?),
                    window_at: Timestamp(r.get(7)?),
                    window_items: count(r.get(8)?),
                    window_bytes: count(r.get(9)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn engine_state(&self, move_id: Uuid, key: String) -> Result<Option<EngineState>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT version, state FROM engine_state WHERE move_id = ?1 AND state_key = ?2",
                )?
                .query_row(params![move_id.to_string(), key], |r| {
                    Ok(EngineState {
                        version: r.get(0)?,
                        state: r.get(1)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn tenant_snapshot(&self, tenant: TenantId) -> Result<TenantSnapshot> {
        self.read(move |conn| {
            // One read transaction: subscriptions and users are seen at the same instant.
            conn.execute_batch("BEGIN")?;
            let result = (|| {
                ensure_tenant(conn, tenant)?;
                let mut subscriptions = Vec::new();
                let mut stmt = conn.prepare_cached(
                    "SELECT body FROM subscriptions WHERE tenant_id = ?1 ORDER BY seq",
                )?;
                for body in stmt.query_map([tenant.to_string()], |r| r.get::<_, String>(0))? {
                    subscriptions.push(serde_json::from_str::<Subscription>(&body?)?);
                }
                let mut users = Vec::new();
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 ORDER BY seq"
                ))?;
                let rows: Vec<_> = stmt
                    .query_map([tenant.to_string()], user_from_row)?
                    .collect::<rusqlite::Result<_>>()?;
                for user in rows {
                    let licences = user_assignments(conn, user.id)?;
                    users.push(UserLicences { user, licences });
                }
                Ok(TenantSnapshot {
                    tenant_id: tenant,
                    subscriptions,
                    users,
                })
            })();
            conn.execute_batch("COMMIT")?;
            result
        })
        .await
    }

    async fn users_created_by_move(&self, move_id: Uuid) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT lower(u.upn) FROM move_effects e JOIN users u ON u.id = e.value
                 WHERE e.move_id = ?1 AND e.key LIKE 'create-user:%' ORDER BY 1",
            )?;
            let rows = stmt.query_map([move_id.to_string()], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn create_profile(
        &self,
        name: String,
        kind: ProfileKind,
        username: String,
        secret: Vec<u8>,
        now: Timestamp,
    ) -> Result<ProfileRecord> {
        self.write(move |ctx| {
            let record = ProfileRecord { id: Uuid::new_v4(), name, kind, username, secret, created_at: now };
            ctx.conn
                .execute(
                    "INSERT INTO connection_profiles (id, name, kind, username, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![record.id.to_string(), record.name, record.kind.as_str(), record.username, record.secret, now.0],
                )
                .map_err(|e| {
                    if super::is_unique_violation(&e) {
                        StoreError::Ledger(LedgerError::conflict("DuplicateProfile", format!("a connection profile named {} exists", record.name)))
                    } else {
                        e.into()
                    }
                })?;
            Ok(record)
        })
        .await
    }

    async fn get_profile(&self, name: String) -> Result<ProfileRecord> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT id, name, kind, username, secret, created_at FROM connection_profiles WHERE name = ?1")?
                .query_row([name], profile_from_row)
                .optional()?
                .ok_or_else(|| LedgerError::not_found("connection profile").into())
        })
        .await
    }

    async fn update_profile(
        &self,
        name: String,
        username: String,
        secret: Vec<u8>,
    ) -> Result<ProfileRecord> {
        self.write(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "UPDATE connection_profiles SET username = ?2, secret = ?3 WHERE name = ?1
                     RETURNING id, name, kind, username, secret, created_at",
                )?
                .query_row(params![name, username, secret], profile_from_row)
                .optional()?
                .ok_or_else(|| LedgerError::not_found("connection profile").into())
        })
        .await
    }

    async fn list_profiles(&self) -> Result<Vec<ProfileRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT id, name, kind, username, secret, created_at FROM connection_profiles ORDER BY seq")?;
            let rows = stmt.query_map([], profile_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

impl MoveTx for SqliteTx<'_> {
    fn load_move(&mut self, id: Uuid) -> Result<Option<MoveRecord>> {
        match load_move(&self.ctx.conn, id) {
            Ok(m) => Ok(Some(m)),
            Err(StoreError::Ledger(e)) if e.kind == tenantry_ledger::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn insert_move(&mut self, record: &MoveRecord) -> Result<()> {
        self.ctx.conn.execute(
            "INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec, state, plan, fingerprint, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                record.id.to_string(),
                record.spec.source_tenant_id.to_string(),
                record.spec.target_tenant_id.to_string(),
                serde_json::to_string(&record.spec)?,
                record.state.as_str(),
                record.plan.as_ref().map(|p| p.to_string()),
                record.fingerprint,
                record.created_at.0,
                record.updated_at.0
            ],
        )?;
        Ok(())
    }

    fn update_move_state(
        &mut self,
        id: Uuid,
        expected: MoveState,
        to: MoveState,
        now: Timestamp,
    ) -> Result<bool> {
        let n = self
            .ctx
            .conn
            .prepare_cached(
                "UPDATE moves SET state = ?3, updated_at = ?4 WHERE id = ?1 AND state = ?2",
            )?
            .execute(params![
                id.to_string(),
                expected.as_str(),
                to.as_str(),
                now.0
            ])?;
        Ok(n == 1)
    }

    fn move_steps(&mut self, move_id: Uuid) -> Result<Vec<StepRecord>> {
        steps_of(&self.ctx.conn, move_id)
    }

    fn load_step(&mut self, move_id: Uuid, key: &str) -> Result<Option<StepRecord>> {
        Ok(query_steps(
            &self.ctx.conn,
            &format!("SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = ?1 AND key = ?2"),
            params![move_id.to_string(), key],
        )?
        .pop())
    }

    fn insert_step(&mut self, s: &StepRecord) -> Result<()> {
        self.ctx.conn.prepare_cached(
            "INSERT INTO move_steps (move_id, seq, key, step, state, attempts, lease_owner, lease_until, result, error, updated_at,
                 depends_on, servers, claimed_by, claimed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            s.move_id.to_string(),
            s.seq,
            s.key,
            s.step.to_string(),
            s.state.as_str(),
            s.attempts,
            s.lease_owner,
            s.lease_until.map(|t| t.0),
            s.result.as_ref().map(|r| r.to_string()),
            s.error,
            s.updated_at.0,
            s.depends_on.as_ref().map(|d| json_text(d)),
            json_text(&s.servers),
            s.claimed_by,
            s.claimed_at.map(|t| t.0)
        ])?;
        Ok(())
    }

    fn update_step(
        &mut self,
        s: &StepRecord,
        expected: StepState,
        expected_owner: Option<&str>,
    ) -> Result<bool> {
        let n = self.ctx.conn.prepare_cached(
            "UPDATE move_steps SET seq = ?3, step = ?4, state = ?5, attempts = ?6, lease_owner = ?7, lease_until = ?8,
                 result = ?9, error = ?10, updated_at = ?11, depends_on = ?14, servers = ?15,
                 claimed_by = ?16, claimed_at = ?17
             WHERE move_id = ?1 AND key = ?2 AND state = ?12 AND lease_owner IS ?13",
        )?
        .execute(params![
            s.move_id.to_string(),
            s.key,
            s.seq,
            s.step.to_string(),
            s.state.as_str(),
            s.attempts,
            s.lease_owner,
            s.lease_until.map(|t| t.0),
            s.result.as_ref().map(|r| r.to_string()),
            s.error,
            s.updated_at.0,
            expected.as_str(),
            expected_owner,
            s.depends_on.as_ref().map(|d| json_text(d)),
            json_text(&s.servers),
            s.claimed_by,
            s.claimed_at.map(|t| t.0)
        ])?;
        Ok(n == 1)
    }

    fn delete_step(&mut self, move_id: Uuid, key: &str) -> Result<()> {
        self.ctx.conn.execute(
            "DELETE FROM move_steps WHERE move_id = ?1 AND key = ?2",
            params![move_id.to_string(), key],
        )?;
        Ok(())
    }

    fn claim_next_step(
        &mut self,
        worker: &str,
        lease_until: Timestamp,
        now: Timestamp,
        per_server: u32,
    ) -> Result<Option<StepRecord>> {
        // The single writer makes the pick and the conditional update one atomic step.
        let Some((move_id, key)) = next_claimable(&self.ctx.conn, now, per_server)? else {
            return Ok(None);
        };
        self.ctx.conn.prepare_cached(
            "UPDATE move_steps SET state = 'Running', lease_owner = ?3, lease_until = ?4, attempts = attempts + 1,
                 updated_at = ?5, claimed_by = ?3, claimed_at = ?5
             WHERE move_id = ?1 AND key = ?2 AND (lease_until IS NULL OR lease_until < ?5)",
        )?
        .execute(params![move_id, key, worker, lease_until.0, now.0])?;
        Ok(query_steps(
            &self.ctx.conn,
            &format!("SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = ?1 AND key = ?2 AND lease_owner = ?3"),
            params![move_id, key, worker],
        )?
        .pop())
    }

    fn release_all_leases(&mut self) -> Result<u64> {
        let n = self.ctx.conn.execute(
            "UPDATE move_steps SET state = 'Pending', lease_owner = NULL, lease_until = NULL WHERE state = 'Running'",
            [],
        )?;
        Ok(n as u64)
    }

    fn put_engine_state(
        &mut self,
        move_id: Uuid,
        key: &str,
        state: &[u8],
        now: Timestamp,
    ) -> Result<i64> {
        Ok(self.ctx.conn.query_row(
            "INSERT INTO engine_state (move_id, state_key, version, state, updated_at)
             VALUES (?1, ?2, 1, ?3, ?4)
             ON CONFLICT (move_id, state_key) DO UPDATE
               SET version = engine_state.version + 1, state = excluded.state, updated_at = excluded.updated_at
             RETURNING version",
            params![move_id.to_string(), key, state, now.0],
            |r| r.get(0),
        )?)
    }

    fn put_step_progress(&mut self, p: &StepProgress) -> Result<()> {
        self.ctx.conn.execute(
            &format!(
                "INSERT OR REPLACE INTO step_progress (move_id, {PROGRESS_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                p.move_id.to_string(),
                p.key,
                column(p.items_done),
                p.items_total.map(column),
                column(p.bytes_done),
                p.bytes_total.map(column),
                p.started_at.0,
                p.updated_at.0,
                p.window_at.0,
                column(p.window_items),
                column(p.window_bytes),
            ],
        )?;
        Ok(())
    }
}
