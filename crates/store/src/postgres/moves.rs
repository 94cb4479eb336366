//! [`MoveStore`] and [`MoveTx`] on PostgreSQL. The step claim takes the row with
//! `FOR UPDATE SKIP LOCKED`: workers on many machines claim at once without waiting on each
//! other, and never both take one step.

use super::conn::{parse, PgConn};
use super::reads::{
    ensure_tenant, page_of, tenant_subscriptions, user_assignments, user_from_row, USER_COLUMNS,
};
use super::tx::PgTx;
use super::PgStore;
use crate::moves::{
    EngineState, MoveRecord, MoveState, MoveStore, MoveTx, ProfileKind, ProfileRecord,
    StepProgress, StepRecord, StepState,
};
use crate::{Page, PageRequest, Result, StoreError};
use async_trait::async_trait;
use tenantry_ledger::{LedgerError, TenantId, Timestamp};
use tenantry_moves::plan::{TenantSnapshot, UserLicences};
use tokio_postgres::Row;
use uuid::Uuid;

const PROGRESS_COLUMNS: &str = "key, items_done, items_total, bytes_done, bytes_total, \
     started_at, updated_at, window_at, window_items, window_bytes";

/// A count as a BIGINT column holds it (a count past `i64::MAX` is saturated).
fn column(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

const MOVE_COLUMNS: &str = "id, spec, state, plan, fingerprint, created_at, updated_at";

fn to_move(r: &Row) -> Result<MoveRecord> {
    let state: &str = r.get(2);
    Ok(MoveRecord {
        id: parse(r.get(0))?,
        spec: serde_json::from_str(r.get(1))?,
        state: MoveState::parse(state)
            .ok_or_else(|| StoreError::Internal(format!("unknown move state {state}")))?,
        plan: r
            .get::<_, Option<&str>>(3)
            .map(serde_json::from_str)
            .transpose()?,
        fingerprint: r.get(4),
        created_at: Timestamp(r.get(5)),
        updated_at: Timestamp(r.get(6)),
    })
}

fn find_move(conn: &mut PgConn, id: Uuid) -> Result<Option<MoveRecord>> {
    conn.query_opt(
        &format!("SELECT {MOVE_COLUMNS} FROM moves WHERE id = $1"),
        &[&id.to_string()],
    )?
    .map(|r| to_move(&r))
    .transpose()
}

const STEP_COLUMNS: &str =
    "move_id, seq, key, step, state, attempts, result, error, updated_at, lease_owner, lease_until,
     depends_on, servers, claimed_by, claimed_at";

fn json_text(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

fn to_step(r: &Row) -> Result<StepRecord> {
    let state: &str = r.get(4);
    Ok(StepRecord {
        move_id: parse(r.get(0))?,
        seq: r.get(1),
        key: r.get(2),
        step: serde_json::from_str(r.get(3))?,
        state: StepState::parse(state)
            .ok_or_else(|| StoreError::Internal(format!("unknown step state {state}")))?,
        attempts: r.get::<_, i32>(5) as u32,
        result: r
            .get::<_, Option<&str>>(6)
            .map(serde_json::from_str)
            .transpose()?,
        error: r.get(7),
        updated_at: Timestamp(r.get(8)),
        lease_owner: r.get(9),
        lease_until: r.get::<_, Option<i64>>(10).map(Timestamp),
        depends_on: r
            .get::<_, Option<&str>>(11)
            .map(serde_json::from_str)
            .transpose()?,
        servers: serde_json::from_str(r.get(12))?,
        claimed_by: r.get(13),
        claimed_at: r.get::<_, Option<i64>>(14).map(Timestamp),
    })
}

fn steps_of(conn: &mut PgConn, move_id: Uuid) -> Result<Vec<StepRecord>> {
    conn.query(
        &format!("SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = $1 ORDER BY seq"),
        &[&move_id.to_string()],
    )?
    .iter()
    .map(to_step)
    .collect()
}

/// The steps [`MoveTx::claim_next_step`] may take (see its contract): free or expired lease,
/// every dependency done (without stored dependencies: every step before it), no server of it
/// at `$2` live leases. `$1` is now.
const CLAIMABLE: &str = "FROM move_steps s JOIN moves m ON m.id = s.move_id
     WHERE m.state = 'Running' AND s.state IN ('Pending', 'Running')
       AND (s.lease_until IS NULL OR s.lease_until < $1)
       AND CASE WHEN s.depends_on IS NULL
           THEN NOT EXISTS (SELECT 1 FROM move_steps x
                WHERE x.move_id = s.move_id AND x.seq < s.seq AND x.state <> 'Done')
           ELSE NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.depends_on::jsonb) AS d(key)
                JOIN move_steps x ON x.move_id = s.move_id AND x.key = d.key
                WHERE x.state <> 'Done') END
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.servers::jsonb) AS r(server)
           WHERE (SELECT COUNT(*) FROM move_steps o, jsonb_array_elements_text(o.servers::jsonb) AS q(server)
                  WHERE o.state = 'Running' AND o.lease_until >= $1 AND q.server = r.server) >= $2)";

fn profile_from_row(r: &Row) -> Result<ProfileRecord> {
    let kind: &str = r.get(2);
    Ok(ProfileRecord {
        id: parse(r.get(0))?,
        name: r.get(1),
        kind: ProfileKind::parse(kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown profile kind {kind}")))?,
        username: r.get(3),
        secret: r.get(4),
        created_at: Timestamp(r.get(5)),
    })
}

#[async_trait]
impl MoveStore for PgStore {
    async fn get_move(&self, id: Uuid) -> Result<MoveRecord> {
        self.read(move |conn| {
            find_move(conn, id)?.ok_or_else(|| LedgerError::not_found("move").into())
        })
        .await
    }

    async fn list_moves(&self, page: PageRequest) -> Result<Page<MoveRecord>> {
        self.read(move |conn| {
            let rows = conn.query(
                &format!(
                    "SELECT {MOVE_COLUMNS}, seq FROM moves WHERE seq > $1 ORDER BY seq LIMIT $2"
                ),
                &[&page.after.unwrap_or(0), &(page.top as i64 + 1)],
            )?;
            let items = rows
                .iter()
                .map(|r| Ok((r.get(7), to_move(r)?)))
                .collect::<Result<_>>()?;
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
        self.write(move |conn| {
            conn.execute(
                "UPDATE moves SET plan = $2, fingerprint = $3, updated_at = $4 WHERE id = $1",
                &[&id.to_string(), &plan.to_string(), &fingerprint, &now.0],
            )?;
            find_move(conn, id)?.ok_or_else(|| LedgerError::not_found("move").into())
        })
        .await
    }

    async fn claimable_step_exists(&self, now: Timestamp, per_server: u32) -> Result<bool> {
        self.read(move |conn| {
            Ok(conn
                .query_opt(
                    &format!("SELECT 1 {CLAIMABLE} LIMIT 1"),
                    &[&now.0, &i64::from(per_server)],
                )?
                .is_some())
        })
        .await
    }

    async fn steps(&self, move_id: Uuid) -> Result<Vec<StepRecord>> {
        self.read(move |conn| steps_of(conn, move_id)).await
    }

    async fn step_progress(&self, move_id: Uuid) -> Result<Vec<StepProgress>> {
        self.read(move |conn| {
            let rows = conn.query(
                &format!(
                    "SELECT {PROGRESS_COLUMNS} FROM step_progress WHERE move_id = $1 ORDER BY key"
                ),
                &[&move_id.to_string()],
            )?;
            Ok(rows
                .iter()
                .map(|r| StepProgress {
                    move_id,
                    key: r.get(0),
                    items_done: count(r.get(1)),
                    items_total: r.get::<_, Option<i64>>(2).map(count),
                    bytes_done: count(r.get(3)),
                    bytes_total: r.get::<_, Option<i64>>(4).map(count),
                    started_at: Timestamp(r.get(5)),
                    updated_at: Timestamp(r.get(6)),
                    window_at: Timestamp(r.get(7)),
                    window_items: count(r.get(8)),
                    window_bytes: count(r.get(9)),
                })
                .collect())
        })
        .await
    }

    async fn engine_state(&self, move_id: Uuid, key: String) -> Result<Option<EngineState>> {
        self.read(move |conn| {
            Ok(conn
                .query_opt(
                    "SELECT version, state FROM engine_state WHERE move_id = $1 AND state_key = $2",
                    &[&move_id.to_string(), &key],
                )?
                .map(|r| EngineState {
                    version: r.get(0),
                    state: r.get(1),
                }))
        })
        .await
    }

    async fn tenant_snapshot(&self, tenant: TenantId) -> Result<TenantSnapshot> {
        // One snapshot (REPEATABLE READ): subscriptions and users are seen at the same instant.
        self.read(move |conn| {
            ensure_tenant(conn, tenant)?;
            let subscriptions = tenant_subscriptions(conn, tenant)?;
            let rows = conn.query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY seq"),
                &[&tenant.to_string()],
            )?;
            let mut users = Vec::new();
            for r in rows {
                let user = user_from_row(&r)?;
                let licences = user_assignments(conn, user.id)?;
                users.push(UserLicences { user, licences });
            }
            Ok(TenantSnapshot {
                tenant_id: tenant,
                subscriptions,
                users,
            })
        })
        .await
    }

    async fn users_created_by_move(&self, move_id: Uuid) -> Result<Vec<String>> {
        self.read(move |conn| {
            Ok(conn
                .query(
                    "SELECT lower(u.upn) FROM move_effects e JOIN users u ON u.id = e.value
                     WHERE e.move_id = $1 AND e.key LIKE 'create-user:%' ORDER BY 1",
                    &[&move_id.to_string()],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
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
        let id = Uuid::new_v4();
        self.write(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO connection_profiles (id, name, kind, username, secret, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &id.to_string(),
                    &name,
                    &kind.as_str(),
                    &username,
                    &secret,
                    &now.0,
                ],
            )?;
            if inserted == 0 {
                return Err(LedgerError::conflict(
                    "DuplicateProfile",
                    format!("a connection profile named {name} exists"),
                )
                .into());
            }
            Ok(ProfileRecord {
                id,
                name: name.clone(),
                kind,
                username: username.clone(),
                secret: secret.clone(),
                created_at: now,
            })
        })
        .await
    }

    async fn get_profile(&self, name: String) -> Result<ProfileRecord> {
        self.read(move |conn| {
            conn.query_opt(
                "SELECT id, name, kind, username, secret, created_at FROM connection_profiles WHERE name = $1",
                &[&name],
            )?
            .map(|r| profile_from_row(&r))
            .transpose()?
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
        self.write(move |conn| {
            conn.query_opt(
                "UPDATE connection_profiles SET username = $2, secret = $3 WHERE name = $1
                 RETURNING id, name, kind, username, secret, created_at",
                &[&name, &username, &secret],
            )?
            .map(|r| profile_from_row(&r))
            .transpose()?
            .ok_or_else(|| LedgerError::not_found("connection profile").into())
        })
        .await
    }

    async fn list_profiles(&self) -> Result<Vec<ProfileRecord>> {
        self.read(|conn| {
            conn.query(
                "SELECT id, name, kind, username, secret, created_at FROM connection_profiles ORDER BY seq",
                &[],
            )?
            .iter()
            .map(profile_from_row)
            .collect()
        })
        .await
    }
}

impl MoveTx for PgTx<'_, '_> {
    fn load_move(&mut self, id: Uuid) -> Result<Option<MoveRecord>> {
        find_move(self.conn, id)
    }

    fn insert_move(&mut self, m: &MoveRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec, state, plan, fingerprint, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &m.id.to_string(),
                &m.spec.source_tenant_id.to_string(),
                &m.spec.target_tenant_id.to_string(),
                &serde_json::to_string(&m.spec)?,
                &m.state.as_str(),
                &m.plan.as_ref().map(|p| p.to_string()),
                &m.fingerprint,
                &m.created_at.0,
                &m.updated_at.0,
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
        Ok(self.conn.execute(
            "UPDATE moves SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2",
            &[&id.to_string(), &expected.as_str(), &to.as_str(), &now.0],
        )? == 1)
    }

    fn move_steps(&mut self, move_id: Uuid) -> Result<Vec<StepRecord>> {
        steps_of(self.conn, move_id)
    }

    fn load_step(&mut self, move_id: Uuid, key: &str) -> Result<Option<StepRecord>> {
        self.conn
            .query_opt(
                &format!("SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = $1 AND key = $2"),
                &[&move_id.to_string(), &key],
            )?
            .map(|r| to_step(&r))
            .transpose()
    }

    fn insert_step(&mut self, s: &StepRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO move_steps (move_id, seq, key, step, state, attempts, lease_owner, lease_until, result, error, updated_at,
                 depends_on, servers, claimed_by, claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            &[
                &s.move_id.to_string(),
                &s.seq,
                &s.key,
                &s.step.to_string(),
                &s.state.as_str(),
                &(s.attempts as i32),
                &s.lease_owner,
                &s.lease_until.map(|t| t.0),
                &s.result.as_ref().map(|r| r.to_string()),
                &s.error,
                &s.updated_at.0,
                &s.depends_on.as_ref().map(|d| json_text(d)),
                &json_text(&s.servers),
                &s.claimed_by,
                &s.claimed_at.map(|t| t.0),
            ],
        )?;
        Ok(())
    }

    fn update_step(
        &mut self,
        s: &StepRecord,
        expected: StepState,
        expected_owner: Option<&str>,
    ) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE move_steps SET seq = $3, step = $4, state = $5, attempts = $6, lease_owner = $7, lease_until = $8,
                 result = $9, error = $10, updated_at = $11, depends_on = $14, servers = $15,
                 claimed_by = $16, claimed_at = $17
             WHERE move_id = $1 AND key = $2 AND state = $12 AND lease_owner IS NOT DISTINCT FROM $13",
            &[
                &s.move_id.to_string(),
                &s.key,
                &s.seq,
                &s.step.to_string(),
                &s.state.as_str(),
                &(s.attempts as i32),
                &s.lease_owner,
                &s.lease_until.map(|t| t.0),
                &s.result.as_ref().map(|r| r.to_string()),
                &s.error,
                &s.updated_at.0,
                &expected.as_str(),
                &expected_owner,
                &s.depends_on.as_ref().map(|d| json_text(d)),
                &json_text(&s.servers),
                &s.claimed_by,
                &s.claimed_at.map(|t| t.0),
            ],
        )? == 1)
    }

    fn delete_step(&mut self, move_id: Uuid, key: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM move_steps WHERE move_id = $1 AND key = $2",
            &[&move_id.to_string(), &key],
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
        // Rows another claimer holds are skipped, not waited for; the oldest move goes first,
        // then plan order. Two claims counting the same server's leases at once conflict
        // under SERIALIZABLE, and one runs again: the per-server count is never exceeded.
        self.conn
            .query_opt(
                &format!(
                    "UPDATE move_steps SET state = 'Running', lease_owner = $3, lease_until = $4,
                         attempts = attempts + 1, updated_at = $1, claimed_by = $3, claimed_at = $1
                     WHERE (move_id, key) = (
                         SELECT s.move_id, s.key {CLAIMABLE}
                         ORDER BY m.seq, s.seq LIMIT 1 FOR UPDATE OF s SKIP LOCKED)
                     RETURNING {STEP_COLUMNS}"
                ),
                &[&now.0, &i64::from(per_server), &worker, &lease_until.0],
            )?
            .map(|r| to_step(&r))
            .transpose()
    }

    fn release_all_leases(&mut self) -> Result<u64> {
        self.conn.execute(
            "UPDATE move_steps SET state = 'Pending', lease_owner = NULL, lease_until = NULL WHERE state = 'Running'",
            &[],
        )
    }

    fn put_engine_state(
        &mut self,
        move_id: Uuid,
        key: &str,
        state: &[u8],
        now: Timestamp,
    ) -> Result<i64> {
        let row = self.conn.query(
            "INSERT INTO engine_state (move_id, state_key, version, state, updated_at)
             VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (move_id, state_key) DO UPDATE
               SET version = engine_state.version + 1, state = excluded.state, updated_at = excluded.updated_at
             RETURNING version",
            &[&move_id.to_string(), &key, &state, &now.0],
        )?;
        row.first()
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Internal("engine state not stored".into()))
    }

    fn put_step_progress(&mut self, p: &StepProgress) -> Result<()> {
        self.conn.execute(
            &format!(
                "INSERT INTO step_progress (move_id, {PROGRESS_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (move_id, key) DO UPDATE SET
                   items_done = excluded.items_done, items_total = excluded.items_total,
                   bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total,
                   started_at = excluded.started_at, updated_at = excluded.updated_at,
                   window_at = excluded.window_at, window_items = excluded.window_items,
                   window_bytes = excluded.window_bytes"
            ),
            &[
                &p.move_id.to_string(),
                &p.key,
                &column(p.items_done),
                &p.items_total.map(column),
                &column(p.bytes_done),
                &p.bytes_total.map(column),
                &p.started_at.0,
                &p.updated_at.0,
                &p.window_at.0,
                &column(p.window_items),
                &column(p.window_bytes),
            ],
        )?;
        Ok(())
    }
}
