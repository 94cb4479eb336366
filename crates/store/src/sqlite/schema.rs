//! Versioned schema migrations. Each step runs once, in order, inside one transaction with the
//! bump of `user_version`; a database newer than this binary is refused.

use rusqlite::{Connection, OptionalExtension};

const MIGRATIONS: &[&str] = &[
    // 1: the ledger.
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE tenants (
        seq            INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        display_name   TEXT NOT NULL,
        default_domain TEXT NOT NULL UNIQUE,
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE skus (
        seq             INTEGER PRIMARY KEY,
        sku_id          TEXT NOT NULL UNIQUE,
        sku_part_number TEXT NOT NULL UNIQUE COLLATE NOCASE,
        body            TEXT NOT NULL
    );
    -- The subscription itself is a JSON document; the columns beside it are what queries need.
    CREATE TABLE subscriptions (
        seq               INTEGER PRIMARY KEY,
        id                TEXT NOT NULL UNIQUE,
        tenant_id         TEXT NOT NULL REFERENCES tenants(id),
        sku_id            TEXT NOT NULL,
        status            TEXT NOT NULL,
        assignable_seats  INTEGER NOT NULL,
        next_lifecycle_at INTEGER,
        body              TEXT NOT NULL
    );
    CREATE INDEX subscriptions_by_tenant ON subscriptions(tenant_id, seq);
    CREATE INDEX subscriptions_by_due ON subscriptions(next_lifecycle_at);
    -- Seats per tenant and SKU. `capacity` is the sum of assignable seats; seats are taken with
    -- a conditional update (consumed < capacity), so over-assignment cannot happen.
    CREATE TABLE seat_pools (
        tenant_id TEXT NOT NULL,
        sku_id    TEXT NOT NULL,
        capacity  INTEGER NOT NULL CHECK (capacity >= 0),
        consumed  INTEGER NOT NULL CHECK (consumed >= 0),
        PRIMARY KEY (tenant_id, sku_id)
    );
    CREATE TABLE users (
        seq             INTEGER PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        tenant_id       TEXT NOT NULL REFERENCES tenants(id),
        upn             TEXT NOT NULL COLLATE NOCASE,
        display_name    TEXT NOT NULL,
        usage_location  TEXT,
        account_enabled INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        version         INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX users_by_upn ON users(tenant_id, upn);
    CREATE INDEX users_by_tenant ON users(tenant_id, seq);
    CREATE TABLE assignments (
        user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        tenant_id      TEXT NOT NULL,
        sku_id         TEXT NOT NULL,
        disabled_plans TEXT NOT NULL,
        assigned_at    INTEGER NOT NULL,
        PRIMARY KEY (user_id, sku_id)
    );
    CREATE TABLE tokens (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        tenant_id  TEXT NOT NULL REFERENCES tenants(id),
        role       TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id   TEXT,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id   TEXT NOT NULL,
        at          INTEGER NOT NULL,
        before      TEXT,
        after       TEXT
    );
    CREATE INDEX audit_by_tenant ON audit_log(tenant_id, seq);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TABLE idempotency_keys (
        scope        TEXT NOT NULL,
        key          TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status       INTEGER,
        body         TEXT,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    );
    "#,
    // 2: tenant moves, their steps (a durable job queue with leases) and connection profiles.
    r#"
    CREATE TABLE moves (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        source_tenant_id TEXT NOT NULL REFERENCES tenants(id),
        target_tenant_id TEXT NOT NULL REFERENCES tenants(id),
        spec             TEXT NOT NULL,
        state            TEXT NOT NULL,
        plan             TEXT,
        fingerprint      TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    -- One row per step of a move's run. A worker claims the first unfinished step of a running
    -- move by taking its lease; a crashed worker's lease expires and the step is claimed again.
    CREATE TABLE move_steps (
        move_id     TEXT NOT NULL REFERENCES moves(id),
        seq         INTEGER NOT NULL,
        key         TEXT NOT NULL,
        step        TEXT NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until INTEGER,
        result      TEXT,
        error       TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (move_id, key)
    );
    CREATE INDEX move_steps_by_order ON move_steps(move_id, seq);
    -- Effects a step made in the ledger, written in the same transaction as the effect itself:
    -- a step that finds its effect here does not make it again.
    CREATE TABLE move_effects (
        move_id TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (move_id, key)
    );
    CREATE TABLE connection_profiles (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL,
        username   TEXT NOT NULL,
        secret     BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 3: licences by tenant and SKU (who holds a product).
    r#"
    CREATE INDEX assignments_by_tenant ON assignments(tenant_id, sku_id);
    "#,
    // 4: idempotency keys expire (swept by age).
    r#"
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    "#,
];

/// Migrations known by a number of their own rather than by position, so that work developed
/// side by side does not fight over the next position. Each is applied once, after the sequence
/// above, and recorded in `schema_migrations`.
const NUMBERED: &[(i64, &str)] = &[
    // 20: Graph surface — registered applications (client credentials) and the short-lived
    // access tokens issued to them (only hashes are stored).
    (
        20,
        r#"
    CREATE TABLE applications (
        seq          INTEGER PRIMARY KEY,
        client_id    TEXT NOT NULL UNIQUE,
        tenant_id    TEXT NOT NULL REFERENCES tenants(id),
        display_name TEXT NOT NULL,
        role         TEXT NOT NULL,
        secret_hash  TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        created_by   TEXT NOT NULL
    );
    CREATE TABLE app_tokens (
        token_hash TEXT PRIMARY KEY,
        client_id  TEXT NOT NULL REFERENCES applications(client_id),
        tenant_id  TEXT NOT NULL,
        role       TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX app_tokens_by_expiry ON app_tokens(expires_at);
    "#,
    ),
    // 21: steps of a move form a dependency graph (a NULL list: stored before, waits for every
    // step before it), with the servers each works on (capped per server) and who ran it.
    (
        21,
        r#"
    ALTER TABLE move_steps ADD COLUMN depends_on TEXT;
    ALTER TABLE move_steps ADD COLUMN servers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE move_steps ADD COLUMN claimed_by TEXT;
    ALTER TABLE move_steps ADD COLUMN claimed_at INTEGER;
    CREATE INDEX move_steps_by_state ON move_steps(state);
    "#,
    ),
    // 22: the data engines' resumable state, so that any worker resumes a step (PostgreSQL's
    // version 4).
    (
        22,
        r#"
    CREATE TABLE engine_state (
        move_id    TEXT NOT NULL REFERENCES moves(id) ON DELETE CASCADE,
        state_key  TEXT NOT NULL,
        version    INTEGER NOT NULL,
        state      BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (move_id, state_key)
    );
    "#,
    ),
    // 23: admin-center sessions, so that a restart signs nobody out (PostgreSQL's version 5).
    (
        23,
        r#"
    CREATE TABLE web_sessions (
        id_hash   TEXT PRIMARY KEY,
        tenant_id TEXT,
        role      TEXT,
        token_id  TEXT,
        csrf      TEXT NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE INDEX web_sessions_by_last_seen ON web_sessions(last_seen);
    "#,
    ),
    // 24: a move's tenants need not be kept here (a side reached through Microsoft Graph), so
    // `moves` loses its two references to `tenants`. SQLite cannot drop a constraint: the table
    // is rebuilt (foreign keys are off while migrating; `migrate` checks them before COMMIT),
    // and the references of `move_steps` and others to `moves` resolve by name again.
    // `SELECT *` fails loudly should `moves` ever have gained a column this copy lacks.
    // PostgreSQL's version 6.
    (
        24,
        r#"
    CREATE TABLE moves_new (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        source_tenant_id TEXT NOT NULL,
        target_tenant_id TEXT NOT NULL,
        spec             TEXT NOT NULL,
        state            TEXT NOT NULL,
        plan             TEXT,
        fingerprint      TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    INSERT INTO moves_new SELECT * FROM moves;
    DROP TABLE moves;
    ALTER TABLE moves_new RENAME TO moves;
    "#,
    ),
    // 25: named leases (the lifecycle sweeper's: one process sweeps at a time; PostgreSQL's
    // version 7).
    (
        25,
        r#"
    CREATE TABLE leases (
        name   TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until  INTEGER NOT NULL
    );
    "#,
    ),
    // 26: how far each running step is (items and bytes of its engine, and the start of the
    // window its rate is measured over; PostgreSQL's version 8). Gone with its step.
    (
        26,
        r#"
    CREATE TABLE step_progress (
        move_id      TEXT NOT NULL,
        key          TEXT NOT NULL,
        items_done   INTEGER NOT NULL,
        items_total  INTEGER,
        bytes_done   INTEGER NOT NULL,
        bytes_total  INTEGER,
        started_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        window_at    INTEGER NOT NULL,
        window_items INTEGER NOT NULL,
        window_bytes INTEGER NOT NULL,
        PRIMARY KEY (move_id, key),
        FOREIGN KEY (move_id, key) REFERENCES move_steps (move_id, key) ON DELETE CASCADE
    );
    "#,
    ),
];

/// Brings the schema up to date. Foreign keys are off meanwhile — SQLite's way of changing a
/// table: with them on, dropping a table being rebuilt deletes (and cascades to) the rows that
/// reference it, and its deferred check fails the COMMIT even once the new table stands under
/// the old name. Each migration checks every reference itself before it commits instead.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    // A no-op inside a transaction: this runs between them.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = migrate_sequence(conn).and_then(|()| migrate_numbered(conn));
    conn.pragma_update(None, "foreign_keys", enforced)?;
    migrated
}

/// Refuses to commit a migration that left a row referencing one that does not exist.
fn check_references(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    let broken: Option<(String, String)> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| {
            Ok((r.get(0)?, r.get(2)?))
        })
        .optional()?;
    match broken {
        None => Ok(()),
        Some((table, parent)) => Err(rusqlite::Error::InvalidParameterName(format!(
            "a row of {table} references a missing row of {parent}"
        ))),
    }
}

fn migrate_numbered(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY)",
    )?;
    let applied: Vec<i64> = conn
        .prepare("SELECT number FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(unknown) = applied
        .iter()
        .find(|n| !NUMBERED.iter().any(|(m, _)| m == *n))
    {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema migration {unknown}, which this tenantry does not know; upgrade tenantry"
        )));
    }
    for (number, sql) in NUMBERED.iter().filter(|(n, _)| !applied.contains(n)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        check_references(&tx)?;
        tx.execute(
            "INSERT INTO schema_migrations (number) VALUES (?1)",
            [number],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn migrate_sequence(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database schema is version {current}, newer than this tenantry (version {}); upgrade tenantry",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        check_references(&tx)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A database written by a tenantry that knew only the `user_version` sequence (no
    /// `schema_migrations` table) gains the numbered migrations and keeps its rows.
    #[test]
    fn a_sequence_only_database_upgrades_to_the_numbered_migrations() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_sequence(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO tenants (id, display_name, default_domain, created_at)
             VALUES ('t1', 'Contoso', 'contoso.onmicrosoft.com', 1)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(count(&conn, "PRAGMA user_version"), MIGRATIONS.len() as i64);
        let numbered: Vec<i64> = conn
            .prepare("SELECT number FROM schema_migrations")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            numbered,
            [20, 21, 22, 23, 24, 25, 26],
            "each numbered migration recorded once"
        );
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM pragma_table_info('move_steps') WHERE name = 'depends_on'"
            ),
            1
        );
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM applications"), 0);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM app_tokens"), 0);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM tenants"), 1);
    }

    /// Migration 24 on a database written by the tenantry before it, with foreign keys on as
    /// the store opens it: the move, its steps, its effects and a row whose reference to it
    /// cascades on delete all stay; `move_steps` still references `moves`; a move between
    /// tenants not kept here can now be stored.
    #[test]
    fn migration_24_keeps_moves_and_their_steps_and_lifts_the_tenant_references() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrate_sequence(&mut conn).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (number INTEGER PRIMARY KEY);
             CREATE TABLE engine_notes (
                 move_id TEXT NOT NULL REFERENCES moves(id) ON DELETE CASCADE,
                 note    TEXT NOT NULL
             );",
        )
        .unwrap();
        for (number, sql) in NUMBERED.iter().filter(|(n, _)| *n < 24) {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1)", [number])
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO tenants (id, display_name, default_domain, created_at)
                 VALUES ('src', 'Contoso', 'contoso.onmicrosoft.com', 1),
                        ('tgt', 'Fabrikam', 'fabrikam.onmicrosoft.com', 1);
             INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec, state, plan,
                                fingerprint, created_at, updated_at)
                 VALUES ('m1', 'src', 'tgt', '{\"spec\":1}', 'Running', '{\"plan\":1}', 'fp', 10, 20);
             INSERT INTO move_steps (move_id, seq, key, step, state, attempts, result, updated_at)
                 VALUES ('m1', 0, 'seats', '{}', 'Done', 1, '{\"bought\":2}', 20),
                        ('m1', 1, 'users', '{}', 'Pending', 0, NULL, 20);
             INSERT INTO move_effects VALUES ('m1', 'user:adele', 'u-1');
             INSERT INTO engine_notes VALUES ('m1', 'kept');",
        )
        .unwrap();
        let tenant_unknown = "INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec,
                                  state, created_at, updated_at)
                              VALUES ('m2', 'graph-src', 'tgt', '{}', 'Draft', 30, 30)";
        assert!(
            conn.execute(tenant_unknown, []).is_err(),
            "before 24: a move needs both tenants here"
        );

        migrate(&mut conn).unwrap();

        let kept: (String, String, String, String, String, String, i64, i64) = conn
            .query_row(
                "SELECT source_tenant_id, target_tenant_id, spec, state, plan, fingerprint,
                        created_at, updated_at FROM moves WHERE id = 'm1'",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            kept,
            (
                "src".into(),
                "tgt".into(),
                r#"{"spec":1}"#.into(),
                "Running".into(),
                r#"{"plan":1}"#.into(),
                "fp".into(),
                10,
                20
            )
        );
        let steps: Vec<(String, String, i64, Option<String>)> = conn
            .prepare("SELECT key, state, attempts, result FROM move_steps ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            steps,
            [
                (
                    "seats".to_string(),
                    "Done".to_string(),
                    1,
                    Some(r#"{"bought":2}"#.to_string())
                ),
                ("users".to_string(), "Pending".to_string(), 0, None)
            ]
        );
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM move_effects"), 1);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM engine_notes"),
            1,
            "a cascading reference to the rebuilt table lost nothing"
        );
        assert_eq!(count(&conn, "PRAGMA foreign_keys"), 1, "enforced again");
        conn.execute(tenant_unknown, [])
            .expect("after 24: a move's tenant may live elsewhere");
        let orphan = conn.execute(
            "INSERT INTO move_steps (move_id, seq, key, step, state, updated_at)
             VALUES ('no-such-move', 0, 'k', '{}', 'Pending', 1)",
            [],
        );
        assert!(orphan.is_err(), "move_steps still references moves");
        let seq_next: i64 = conn
            .query_row("SELECT seq FROM moves WHERE id = 'm2'", [], |r| r.get(0))
            .unwrap();
        assert!(
            seq_next > 1,
            "the row order continues after the copied rows"
        );
    }

    #[test]
    fn an_unknown_numbered_migration_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute("INSERT INTO schema_migrations (number) VALUES (99)", [])
            .unwrap();
        let refused = migrate(&mut conn).unwrap_err().to_string();
        assert!(refused.contains("upgrade tenantry"), "{refused}");
    }
}
