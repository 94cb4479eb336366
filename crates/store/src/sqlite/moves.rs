//! SQLite implementation of [`MoveStore`].

use super::{
    audit, ensure_tenant, page_of, parse, user_assignments, user_from_row, SqliteStore,
    USER_COLUMNS,
};
use crate::moves::{
    MoveRecord, MoveState, MoveStore, ProfileKind, ProfileRecord, StepRecord, StepState,
};
use crate::{Page, PageRequest, Result, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::{LedgerError, TenantId, Timestamp};
use tenantry_moves::model::MoveSpec;
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

fn move_audit(
    conn: &Connection,
    m: &MoveRecord,
    actor: String,
    action: &'static str,
    after: Option<serde_json::Value>,
    now: Timestamp,
) -> Result<()> {
    // A move concerns two tenants: both audit logs record it, with its state and side only.
    // The spec (the other tenant, servers, profile names) and step errors are the operator's:
    // they stay in the move and its steps, which only the operator reads.
    let after = after.map(|a| {
        let mut summary = serde_json::Map::new();
        for key in ["state", "steps"] {
            if let Some(v) = a.get(key) {
                summary.insert(key.to_string(), v.clone());
            }
        }
        serde_json::Value::Object(summary)
    });
    for (tenant, side) in [
        (m.spec.source_tenant_id, "source"),
        (m.spec.target_tenant_id, "target"),
    ] {
        let after = after.clone().map(|mut a| {
            a["side"] = serde_json::json!(side);
            a
        });
        audit(
            conn,
            AuditEntry {
                tenant_id: Some(tenant),
                actor: actor.clone(),
                action,
                target_type: "move",
                target_id: m.id.to_string(),
                before: Some(serde_json::json!({"state": m.state.as_str()})),
                after,
            },
            now,
        )?;
    }
    Ok(())
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
);

fn to_step(row: StepRow) -> Result<StepRecord> {
    let (move_id, seq, key, step, state, attempts, result, error, updated) = row;
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
        updated_at: Timestamp(updated),
    })
}

const STEP_COLUMNS: &str = "move_id, seq, key, step, state, attempts, result, error, updated_at";

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

/// The first unfinished step of each running move whose lease is free (steps of one move run in
/// order), oldest move first.
fn next_claimable(conn: &Connection, now: Timestamp) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT s.move_id, s.key FROM move_steps s JOIN moves m ON m.id = s.move_id
             WHERE m.state = 'Running' AND s.state IN ('Pending', 'Running')
               AND s.seq = (SELECT MIN(seq) FROM move_steps x WHERE x.move_id = s.move_id AND x.state != 'Done')
               AND (s.lease_until IS NULL OR s.lease_until < ?1)
             ORDER BY m.seq LIMIT 1",
        )?
        .query_row([now.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

#[async_trait]
impl MoveStore for SqliteStore {
    async fn create_move(
        &self,
        spec: MoveSpec,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        spec.validate()?;
        self.write(move |ctx| {
            ensure_tenant(&ctx.conn, spec.source_tenant_id)?;
            ensure_tenant(&ctx.conn, spec.target_tenant_id)?;
            let record = MoveRecord {
                id: Uuid::new_v4(),
                spec,
                state: MoveState::Draft,
                plan: None,
                fingerprint: None,
                created_at: now,
                updated_at: now,
            };
            ctx.conn.execute(
                "INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    record.id.to_string(),
                    record.spec.source_tenant_id.to_string(),
                    record.spec.target_tenant_id.to_string(),
                    serde_json::to_string(&record.spec)?,
                    record.state.as_str(),
                    now.0
                ],
            )?;
            move_audit(&ctx.conn, &record, actor, "move.created", Some(serde_json::json!({"state": "Draft"})), now)?;
            Ok(record)
        })
        .await
    }

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

    async fn start_run(
        &self,
        id: Uuid,
        steps: Vec<(String, serde_json::Value)>,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        self.write(move |ctx| {
            let record = load_move(&ctx.conn, id)?;
            match record.state {
                MoveState::Draft | MoveState::Paused | MoveState::Failed => {}
                MoveState::Running => return Err(LedgerError::conflict("MoveRunning", "this move is already running").into()),
                other => {
                    return Err(LedgerError::conflict(
                        "MoveFinished",
                        format!("this move is {}; create a new move to run again", other.as_str()),
                    )
                    .into())
                }
            }
            // The latest plan decides what is left to do: steps already done stay done, a step a
            // worker is still executing (live lease) is left to it, every other unfinished step
            // takes the new plan's content, and unfinished steps the new plan dropped (seats bought
            // meanwhile by hand, say) are removed, so they can neither run nor block the queue.
            let wanted: std::collections::HashSet<&str> = steps.iter().map(|(k, _)| k.as_str()).collect();
            let recorded: Vec<(String, String, Option<i64>)> = ctx
                .conn
                .prepare_cached("SELECT key, state, lease_until FROM move_steps WHERE move_id = ?1")?
                .query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (key, state, lease_until) in recorded {
                let busy = state == "Running" && lease_until.is_some_and(|t| t >= now.0);
                if state != "Done" && !busy && !wanted.contains(key.as_str()) {
                    ctx.conn.execute(
                        "DELETE FROM move_steps WHERE move_id = ?1 AND key = ?2",
                        params![id.to_string(), key],
                    )?;
                }
            }
            for (seq, (key, step)) in steps.iter().enumerate() {
                ctx.conn
                    .prepare_cached(
                        "INSERT INTO move_steps (move_id, seq, key, step, state, updated_at) VALUES (?1, ?2, ?3, ?4, 'Pending', ?5)
                         ON CONFLICT (move_id, key) DO UPDATE SET seq = excluded.seq,
                             step = CASE WHEN move_steps.state = 'Done'
                                 OR (move_steps.state = 'Running' AND move_steps.lease_until >= ?5)
                                 THEN move_steps.step ELSE excluded.step END,
                             state = CASE WHEN move_steps.state = 'Done' THEN 'Done'
                                 WHEN move_steps.state = 'Running' AND move_steps.lease_until >= ?5 THEN 'Running'
                                 ELSE 'Pending' END,
                             attempts = CASE WHEN move_steps.state = 'Done'
                                 OR (move_steps.state = 'Running' AND move_steps.lease_until >= ?5)
                                 THEN move_steps.attempts ELSE 0 END",
                    )?
                    .execute(params![id.to_string(), seq as i64, key, step.to_string(), now.0])?;
            }
            ctx.conn.execute(
                "UPDATE moves SET state = 'Running', updated_at = ?2 WHERE id = ?1",
                params![id.to_string(), now.0],
            )?;
            move_audit(&ctx.conn, &record, actor, "move.started", Some(serde_json::json!({"state": "Running", "steps": steps.len()})), now)?;
            load_move(&ctx.conn, id)
        })
        .await
    }

    async fn set_move_state(
        &self,
        id: Uuid,
        from: &'static [MoveState],
        to: MoveState,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord> {
        self.write(move |ctx| {
            let record = load_move(&ctx.conn, id)?;
            if !from.contains(&record.state) {
                return Err(LedgerError::conflict(
                    "InvalidMoveState",
                    format!(
                        "this move is {}; it cannot become {}",
                        record.state.as_str(),
                        to.as_str()
                    ),
                )
                .into());
            }
            ctx.conn.execute(
                "UPDATE moves SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id.to_string(), to.as_str(), now.0],
            )?;
            let action = match to {
                MoveState::Paused => "move.paused",
                MoveState::Cancelled => "move.cancelled",
                MoveState::Completed => "move.completed",
                MoveState::Failed => "move.failed",
                _ => "move.stateChanged",
            };
            move_audit(
                &ctx.conn,
                &record,
                actor,
                action,
                Some(serde_json::json!({"state": to.as_str()})),
                now,
            )?;
            load_move(&ctx.conn, id)
        })
        .await
    }

    async fn claim_step(
        &self,
        worker: String,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<StepRecord>> {
        // Workers poll often: look on a reader first, so an idle queue never takes the writer.
        if self
            .read(move |conn| next_claimable(conn, now))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        self.write(move |ctx| {
            let Some((move_id, key)) = next_claimable(&ctx.conn, now)? else { return Ok(None) };
            ctx.conn
                .prepare_cached(
                    "UPDATE move_steps SET state = 'Running', lease_owner = ?3, lease_until = ?4, attempts = attempts + 1, updated_at = ?5
                     WHERE move_id = ?1 AND key = ?2",
                )?
                .execute(params![move_id, key, worker, now.0 + lease_secs, now.0])?;
            let row = ctx
                .conn
                .prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = ?1 AND key = ?2"))?
                .query_row([&move_id, &key], step_from_row)?;
            Ok(Some(to_step(row)?))
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        self.write(|ctx| {
            let n = ctx.conn.execute(
                "UPDATE move_steps SET state = 'Pending', lease_owner = NULL, lease_until = NULL WHERE state = 'Running'",
                [],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn renew_lease(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        until: Timestamp,
    ) -> Result<bool> {
        self.write(move |ctx| {
            let n = ctx.conn.execute(
                "UPDATE move_steps SET lease_until = ?4 WHERE move_id = ?1 AND key = ?2 AND lease_owner = ?3 AND state = 'Running'",
                params![move_id.to_string(), key, worker, until.0],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn finish_step(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        outcome: std::result::Result<serde_json::Value, String>,
        max_attempts: u32,
        now: Timestamp,
    ) -> Result<()> {
        self.write(move |ctx| {
            let attempts: Option<i64> = ctx
                .conn
                .prepare_cached("SELECT attempts FROM move_steps WHERE move_id = ?1 AND key = ?2 AND lease_owner = ?3")?
                .query_row(params![move_id.to_string(), key, worker], |r| r.get(0))
                .optional()?;
            let Some(attempts) = attempts else {
                // Our lease was taken over (we were presumed dead): the new owner reports.
                return Ok(());
            };
            match outcome {
                Ok(result) => {
                    ctx.conn.execute(
                        "UPDATE move_steps SET state = 'Done', result = ?3, error = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?4
                         WHERE move_id = ?1 AND key = ?2",
                        params![move_id.to_string(), key, result.to_string(), now.0],
                    )?;
                }
                Err(error) => {
                    let final_failure = attempts as u32 >= max_attempts;
                    ctx.conn.execute(
                        "UPDATE move_steps SET state = ?3, error = ?4, lease_owner = NULL, lease_until = ?5, updated_at = ?6
                         WHERE move_id = ?1 AND key = ?2",
                        params![
                            move_id.to_string(),
                            key,
                            if final_failure { "Failed" } else { "Pending" },
                            error,
                            // Back off before the next attempt: 5 s, 10 s, 20 s...
                            now.0 + 5 * (1 << attempts.clamp(0, 6)),
                            now.0
                        ],
                    )?;
                    let record = load_move(&ctx.conn, move_id)?;
                    // A move the operator paused or cancelled meanwhile keeps that state.
                    let failed_now = final_failure
                        && ctx.conn.execute(
                            "UPDATE moves SET state = 'Failed', updated_at = ?2 WHERE id = ?1 AND state = 'Running'",
                            params![move_id.to_string(), now.0],
                        )? == 1;
                    if failed_now {
                        move_audit(
                            &ctx.conn,
                            &record,
                            "system:mover".into(),
                            "move.failed",
                            Some(serde_json::json!({"state": "Failed", "step": key, "error": error})),
                            now,
                        )?;
                    }
                }
            }
            // The last step done completes the move.
            let unfinished: i64 = ctx.conn.query_row(
                "SELECT COUNT(*) FROM move_steps WHERE move_id = ?1 AND state != 'Done'",
                [move_id.to_string()],
                |r| r.get(0),
            )?;
            if unfinished == 0 {
                let record = load_move(&ctx.conn, move_id)?;
                if record.state == MoveState::Running {
                    ctx.conn.execute(
                        "UPDATE moves SET state = 'Completed', updated_at = ?2 WHERE id = ?1",
                        params![move_id.to_string(), now.0],
                    )?;
                    move_audit(&ctx.conn, &record, "system:mover".into(), "move.completed", Some(serde_json::json!({"state": "Completed"})), now)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn steps(&self, move_id: Uuid) -> Result<Vec<StepRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {STEP_COLUMNS} FROM move_steps WHERE move_id = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([move_id.to_string()], step_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(to_step(row?)?);
            }
            Ok(out)
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

    async fn list_profiles(&self) -> Result<Vec<ProfileRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT id, name, kind, username, secret, created_at FROM connection_profiles ORDER BY seq")?;
            let rows = stmt.query_map([], profile_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}
