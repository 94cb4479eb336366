//! Versioned schema migrations for PostgreSQL, numbered on their own (the SQLite ones are in
//! `sqlite/schema.rs`). On open, all of them run in ONE transaction that first takes an advisory
//! lock, so two processes starting at once do not both migrate: the second waits, then finds the
//! schema current. A database newer than this binary is refused.

/// Key of the advisory lock the migrations hold (any constant the application owns).
const MIGRATION_LOCK: i64 = 0x7465_6e61_6e74_7279; // "tenantry"

/// Each migration has a number of its own (not its position), so that work developed side by
/// side does not fight over the next position: the ones this database lacks are applied in
/// order, and one it has that this binary does not know is refused.
pub const MIGRATIONS: &[(i32, &str)] = &[
    // 1: the ledger, tenant moves, their step queue and connection profiles.
    (
        1,
        r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE tenants (
        seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        display_name   TEXT NOT NULL,
        default_domain TEXT NOT NULL UNIQUE,
        created_at     BIGINT NOT NULL
    );
    CREATE TABLE skus (
        seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sku_id          TEXT NOT NULL UNIQUE,
        sku_part_number TEXT NOT NULL,
        body            TEXT NOT NULL
    );
    CREATE UNIQUE INDEX skus_by_part_number ON skus (lower(sku_part_number));
    -- The subscription is a JSON document; the columns beside it are what queries need, its
    -- version among them so that a conditional update can check it.
    CREATE TABLE subscriptions (
        seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id                TEXT NOT NULL UNIQUE,
        tenant_id         TEXT NOT NULL REFERENCES tenants(id),
        sku_id            TEXT NOT NULL,
        status            TEXT NOT NULL,
        assignable_seats  BIGINT NOT NULL,
        next_lifecycle_at BIGINT,
        version           BIGINT NOT NULL,
        body              TEXT NOT NULL
    );
    CREATE INDEX subscriptions_by_tenant ON subscriptions (tenant_id, seq);
    CREATE INDEX subscriptions_by_due ON subscriptions (next_lifecycle_at);
    -- Seats are taken with a conditional update (consumed < capacity).
    CREATE TABLE seat_pools (
        tenant_id TEXT NOT NULL,
        sku_id    TEXT NOT NULL,
        capacity  BIGINT NOT NULL CHECK (capacity >= 0),
        consumed  BIGINT NOT NULL CHECK (consumed >= 0),
        PRIMARY KEY (tenant_id, sku_id)
    );
    CREATE TABLE users (
        seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        tenant_id       TEXT NOT NULL REFERENCES tenants(id),
        upn             TEXT NOT NULL,
        display_name    TEXT NOT NULL,
        usage_location  TEXT,
        account_enabled BOOLEAN NOT NULL,
        created_at      BIGINT NOT NULL,
        version         BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX users_by_upn ON users (tenant_id, lower(upn));
    CREATE INDEX users_by_tenant ON users (tenant_id, seq);
    CREATE TABLE assignments (
        user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        tenant_id      TEXT NOT NULL,
        sku_id         TEXT NOT NULL,
        disabled_plans TEXT NOT NULL,
        assigned_at    BIGINT NOT NULL,
        PRIMARY KEY (user_id, sku_id)
    );
    CREATE INDEX assignments_by_tenant ON assignments (tenant_id, sku_id);
    CREATE TABLE tokens (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        tenant_id  TEXT NOT NULL REFERENCES tenants(id),
        role       TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id   TEXT,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id   TEXT NOT NULL,
        at          BIGINT NOT NULL,
        before      TEXT,
        after       TEXT
    );
    CREATE INDEX audit_by_tenant ON audit_log (tenant_id, seq);
    -- Append-only: UPDATE, DELETE and TRUNCATE are refused whoever asks.
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only';
    END $$;
    CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
    CREATE TABLE idempotency_keys (
        scope        TEXT NOT NULL,
        key          TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status       INTEGER,
        body         TEXT,
        created_at   BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE moves (
        seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        source_tenant_id TEXT NOT NULL REFERENCES tenants(id),
        target_tenant_id TEXT NOT NULL REFERENCES tenants(id),
        spec             TEXT NOT NULL,
        state            TEXT NOT NULL,
        plan             TEXT,
        fingerprint      TEXT,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL
    );
    CREATE INDEX moves_by_state ON moves (state, seq);
    -- The step queue: workers claim with FOR UPDATE SKIP LOCKED and hold a lease.
    CREATE TABLE move_steps (
        move_id     TEXT NOT NULL REFERENCES moves(id),
        seq         BIGINT NOT NULL,
        key         TEXT NOT NULL,
        step        TEXT NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until BIGINT,
        result      TEXT,
        error       TEXT,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (move_id, key)
    );
    CREATE INDEX move_steps_by_order ON move_steps (move_id, seq);
    CREATE TABLE move_effects (
        move_id TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (move_id, key)
    );
    CREATE TABLE connection_profiles (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL,
        username   TEXT NOT NULL,
        secret     BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );
    "#,
    ),
    // 2: Graph surface — registered applications (client credentials) and the short-lived
    // access tokens issued to them (only hashes are stored). SQLite's numbered migration 20.
    (
        2,
        r#"
    CREATE TABLE applications (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        client_id    TEXT NOT NULL UNIQUE,
        tenant_id    TEXT NOT NULL REFERENCES tenants(id),
        display_name TEXT NOT NULL,
        role         TEXT NOT NULL,
        secret_hash  TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        created_by   TEXT NOT NULL
    );
    CREATE TABLE app_tokens (
        token_hash TEXT PRIMARY KEY,
        client_id  TEXT NOT NULL REFERENCES applications(client_id),
        tenant_id  TEXT NOT NULL,
        role       TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX app_tokens_by_expiry ON app_tokens (expires_at);
    "#,
    ),
    // 3: steps of a move form a dependency graph (a NULL list: stored before, waits for every
    // step before it), with the servers each works on (capped per server) and who ran it.
    // SQLite's numbered migration 21.
    (
        3,
        r#"
    ALTER TABLE move_steps ADD COLUMN depends_on TEXT;
    ALTER TABLE move_steps ADD COLUMN servers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE move_steps ADD COLUMN claimed_by TEXT;
    ALTER TABLE move_steps ADD COLUMN claimed_at BIGINT;
    CREATE INDEX move_steps_by_state ON move_steps (state);
    "#,
    ),
    // 4: the data engines' resumable state, so that any worker on any machine resumes a step
    // (SQLite's numbered migration 22).
    (
        4,
        r#"
    CREATE TABLE engine_state (
        move_id    TEXT NOT NULL REFERENCES moves(id) ON DELETE CASCADE,
        state_key  TEXT NOT NULL,
        version    BIGINT NOT NULL,
        state      BYTEA NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (move_id, state_key)
    );
    "#,
    ),
    // 5: admin-center sessions, so that a restart signs nobody out (SQLite's numbered 23).
    (
        5,
        r#"
    CREATE TABLE web_sessions (
        id_hash   TEXT PRIMARY KEY,
        tenant_id TEXT,
        role      TEXT,
        token_id  TEXT,
        csrf      TEXT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE INDEX web_sessions_by_last_seen ON web_sessions (last_seen);
    "#,
    ),
    // 6: a move's tenants need not be kept here (a side reached through Microsoft Graph).
    // SQLite's numbered migration 24. IF EXISTS: the names are PostgreSQL's defaults.
    (
        6,
        r#"
    ALTER TABLE moves DROP CONSTRAINT IF EXISTS moves_source_tenant_id_fkey;
    ALTER TABLE moves DROP CONSTRAINT IF EXISTS moves_target_tenant_id_fkey;
    "#,
    ),
    // 7: named leases (the lifecycle sweeper's: one process sweeps at a time; SQLite's 25).
    (
        7,
        r#"
    CREATE TABLE leases (
        name   TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until  BIGINT NOT NULL
    );
    "#,
    ),
    // 8: how far each running step is (SQLite's numbered migration 26). Gone with its step.
    (
        8,
        r#"
    CREATE TABLE step_progress (
        move_id      TEXT NOT NULL,
        key          TEXT NOT NULL,
        items_done   BIGINT NOT NULL,
        items_total  BIGINT,
        bytes_done   BIGINT NOT NULL,
        bytes_total  BIGINT,
        started_at   BIGINT NOT NULL,
        updated_at   BIGINT NOT NULL,
        window_at    BIGINT NOT NULL,
        window_items BIGINT NOT NULL,
        window_bytes BIGINT NOT NULL,
        PRIMARY KEY (move_id, key),
        FOREIGN KEY (move_id, key) REFERENCES move_steps (move_id, key) ON DELETE CASCADE
    );
    "#,
    ),
];

/// Applies the migrations this database lacks, inside `tx` (the caller commits), under the
/// advisory lock. Returns the version the schema has afterwards.
pub async fn migrate(tx: &tokio_postgres::Transaction<'_>) -> Result<usize, String> {
    let fail = |e: tokio_postgres::Error| match super::conn::internal(e) {
        crate::StoreError::Internal(m) => format!("schema migration failed: {m}"),
        other => format!("schema migration failed: {other}"),
    };
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tenantry_schema (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(fail)?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM tenantry_schema", &[])
        .await
        .map_err(fail)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(unknown) = applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|(n, _)| n == *v))
    {
        return Err(format!(
            "the database has schema version {unknown}, which this tenantry does not know; upgrade tenantry"
        ));
    }
    for (number, sql) in MIGRATIONS.iter().filter(|(n, _)| !applied.contains(n)) {
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO tenantry_schema (version) VALUES ($1)",
            &[number],
        )
        .await
        .map_err(fail)?;
    }
    Ok(MIGRATIONS.len())
}
