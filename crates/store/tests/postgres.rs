//! What only the PostgreSQL backend has to show: migrations under an advisory lock, the audit
//! log refusing changes in the database itself, and units of work run again after a
//! serialization failure. Runs on a throwaway server (`tenantry_testkit::postgres`) when
//! PostgreSQL is installed, else says it skipped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::{SkuId, TenantId, Timestamp};
use tenantry_store::{transaction, PgStore};
use tenantry_testkit::postgres::{postgres_database, TestDatabase};

fn database() -> Option<TestDatabase> {
    let db = postgres_database();
    if db.is_none() {
        eprintln!("skipped: PostgreSQL is not installed (Debian package postgresql)");
    }
    db
}

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_a_new_database_at_once_migrate_it_once() {
    let Some(db) = database() else { return };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::open(&url).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await
            .unwrap()
            .expect("every process opens the database");
    }
    let client = raw(&db.url).await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM tenantry_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5, 6, 7, 8],
        "each migration is recorded once"
    );
    // Migrations go by number, not position: one the database lacks is applied even when a
    // higher one is there (work from two branches landing in either order).
    client
        .batch_execute(
            "DROP TABLE app_tokens; DROP TABLE applications; \
             DELETE FROM tenantry_schema WHERE version = 2",
        )
        .await
        .unwrap();
    PgStore::open(&db.url)
        .await
        .expect("the missing migration applied");
    let versions: Vec<i32> = client
        .query("SELECT version FROM tenantry_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8]);
    let count: i64 = client
        .query_one("SELECT COUNT(*) FROM applications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "migration 2's tables are back");
    // A database from a newer tenantry is refused, with a reason.
    client
        .execute("INSERT INTO tenantry_schema (version) VALUES (999)", &[])
        .await
        .unwrap();
    let refused = PgStore::open(&db.url).await.err().expect("refused");
    assert!(
        refused.to_string().contains("upgrade tenantry"),
        "{refused}"
    );
}

/// Version 6 on a database written before it (the references put back, the version
/// forgotten): the move and its steps stay, `move_steps` still references `moves`, and a move
/// whose tenant is not kept here can be stored afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_6_keeps_moves_and_lifts_their_tenant_references() {
    let Some(db) = database() else { return };
    drop(PgStore::open(&db.url).await.unwrap());
    let client = raw(&db.url).await;
    client
        .batch_execute(
            "DELETE FROM tenantry_schema WHERE version = 6;
             ALTER TABLE moves ADD CONSTRAINT moves_source_tenant_id_fkey
                 FOREIGN KEY (source_tenant_id) REFERENCES tenants(id);
             ALTER TABLE moves ADD CONSTRAINT moves_target_tenant_id_fkey
                 FOREIGN KEY (target_tenant_id) REFERENCES tenants(id);
             INSERT INTO tenants (id, display_name, default_domain, created_at)
                 VALUES ('src', 'Contoso', 'contoso.onmicrosoft.com', 1),
                        ('tgt', 'Fabrikam', 'fabrikam.onmicrosoft.com', 1);
             INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec, state, created_at, updated_at)
                 VALUES ('m1', 'src', 'tgt', '{}', 'Running', 10, 20);
             INSERT INTO move_steps (move_id, seq, key, step, state, attempts, updated_at)
                 VALUES ('m1', 0, 'seats', '{}', 'Done', 1, 20), ('m1', 1, 'users', '{}', 'Pending', 0, 20);",
        )
        .await
        .unwrap();
    let elsewhere = "INSERT INTO moves (id, source_tenant_id, target_tenant_id, spec, state, created_at, updated_at)
                     VALUES ('m2', 'graph-src', 'tgt', '{}', 'Draft', 30, 30)";
    assert!(client.execute(elsewhere, &[]).await.is_err(), "before 6");

    drop(PgStore::open(&db.url).await.unwrap());

    client
        .execute(elsewhere, &[])
        .await
        .expect("after 6: a move's tenant may live elsewhere");
    let steps: Vec<(String, String)> = client
        .query(
            "SELECT s.key, m.state FROM move_steps s JOIN moves m ON m.id = s.move_id ORDER BY s.seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        steps,
        [
            ("seats".to_string(), "Running".to_string()),
            ("users".to_string(), "Running".to_string())
        ]
    );
    let orphan = client
        .execute(
            "INSERT INTO move_steps (move_id, seq, key, step, state, updated_at)
             VALUES ('no-such-move', 0, 'k', '{}', 'Pending', 1)",
            &[],
        )
        .await;
    assert!(orphan.is_err(), "move_steps still references moves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_refuses_update_and_delete_in_the_database() {
    let Some(db) = database() else { return };
    let store = PgStore::open(&db.url).await.unwrap();
    transaction(&store, |tx| {
        tx.insert_audit(
            AuditEntry {
                tenant_id: None,
                actor: "op".into(),
                action: "test.done",
                target_type: "test",
                target_id: "1".into(),
                before: None,
                after: None,
            },
            Timestamp(1),
        )
    })
    .await
    .unwrap();
    let client = raw(&db.url).await;
    for sql in [
        "UPDATE audit_log SET actor = 'forged'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = client.execute(sql, &[]).await.unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }
    let rows: i64 = client
        .query_one("SELECT COUNT(*) FROM audit_log WHERE actor = 'op'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

/// Write skew: each unit reads one pool and takes a seat in the other. Serializable execution
/// must abort one of them; the backend runs it again, and both end up applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_of_work_aborted_by_a_serialization_failure_is_run_again() {
    let Some(db) = database() else { return };
    let store = Arc::new(PgStore::open(&db.url).await.unwrap());
    let (a, b, sku) = (
        TenantId::new_random(),
        TenantId::new_random(),
        SkuId::new_random(),
    );
    raw(&db.url)
        .await
        .execute(
            "INSERT INTO seat_pools (tenant_id, sku_id, capacity, consumed) VALUES ($1, $3, 5, 0), ($2, $3, 5, 0)",
            &[&a.to_string(), &b.to_string(), &sku.to_string()],
        )
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let both_read = Arc::new(Barrier::new(2));
    let unit = |read: TenantId, take: TenantId| {
        let (store, runs, both_read) = (store.clone(), runs.clone(), both_read.clone());
        tokio::spawn(async move {
            transaction(&*store, move |tx| {
                let first = runs.fetch_add(1, Ordering::SeqCst) < 2;
                let seen = tx.seat_pool(read, sku)?;
                if first {
                    // Both have read before either writes: a cycle SERIALIZABLE must break.
                    both_read.wait();
                }
                Ok((seen, tx.take_seat(take, sku)?))
            })
            .await
        })
    };
    let (one, two) = (unit(a, b), unit(b, a));
    let (one, two) = (one.await.unwrap(), two.await.unwrap());
    assert!(one.unwrap().1 && two.unwrap().1, "both units end applied");
    assert!(
        runs.load(Ordering::SeqCst) >= 3,
        "one unit was aborted and run again ({} runs)",
        runs.load(Ordering::SeqCst)
    );
    let consumed: i64 = raw(&db.url)
        .await
        .query_one(
            "SELECT SUM(consumed)::bigint FROM seat_pools WHERE sku_id = $1",
            &[&sku.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        consumed, 2,
        "each seat taken once, the aborted run left nothing"
    );
}
