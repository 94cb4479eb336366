//! The move queue on a real SQLite file: re-planning removes dropped steps, and a step failing
//! after the operator stopped the move does not turn it into a restartable Failed move.

use serde_json::json;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::{TenantId, Timestamp};
use tenantry_moves::model::{MovePath, MoveSpec};
use tenantry_store::moves::{MoveState, StepState};
use tenantry_store::{transaction, LedgerStore, MoveStore, SqliteStore};

const NOW: Timestamp = Timestamp(1_800_000_000);

async fn setup() -> (tempfile::TempDir, SqliteStore, uuid::Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("q.db")).unwrap();
    let (a, b) = (
        tenant(&store, "a.example.com").await,
        tenant(&store, "b.example.com").await,
    );
    let spec = MoveSpec {
        source_tenant_id: a.id,
        target_tenant_id: b.id,
        path: MovePath::RetireSource,
        users: vec![],
        domain_rewrite: None,
        allow_purchase: true,
        source_mail: None,
        target_mail: None,
        libraries: vec![],
    };
    let m = store.create_move(spec, "op".into(), NOW).await.unwrap();
    (dir, store, m.id)
}

/// A tenant row, written through data access (the rules live in the application layer).
async fn tenant(store: &SqliteStore, domain: &str) -> Tenant {
    let t = Tenant {
        id: TenantId::new_random(),
        display_name: domain.into(),
        default_domain: domain.into(),
        created_at: NOW,
    };
    let row = t.clone();
    let inserted = transaction(store, move |tx| tx.insert_tenant(&row))
        .await
        .unwrap();
    assert!(inserted);
    t
}

fn steps(keys: &[&str]) -> Vec<(String, serde_json::Value)> {
    keys.iter()
        .map(|k| (k.to_string(), json!({"kind": "report"})))
        .collect()
}

#[tokio::test]
async fn a_new_plan_drops_unfinished_steps_it_no_longer_has() {
    let (_dir, store, id) = setup().await;
    store
        .start_run(id, steps(&["buy:x", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    store
        .set_move_state(
            id,
            &[MoveState::Running],
            MoveState::Paused,
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    // Meanwhile the seats were bought by hand: the new plan has no purchase.
    store
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap();
    let keys: Vec<String> = store
        .steps(id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["report"]);
    let claimed = store
        .claim_step("w".into(), NOW, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.key, "report");
}

#[tokio::test]
async fn a_step_a_worker_still_runs_is_left_to_it_on_resume() {
    let (_dir, store, id) = setup().await;
    store
        .start_run(id, steps(&["mailbox:a", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    let claimed = store
        .claim_step("w".into(), NOW, 60)
        .await
        .unwrap()
        .unwrap();
    store
        .set_move_state(
            id,
            &[MoveState::Running],
            MoveState::Paused,
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    store
        .start_run(id, steps(&["mailbox:a", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    let step = store
        .steps(id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == claimed.key)
        .unwrap();
    assert_eq!((step.state, step.attempts), (StepState::Running, 1));
    assert!(store
        .renew_lease(id, claimed.key.clone(), "w".into(), Timestamp(NOW.0 + 120))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_late_failure_does_not_turn_a_cancelled_move_into_a_failed_one() {
    let (_dir, store, id) = setup().await;
    store
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let step = store
        .claim_step("w".into(), NOW, 60)
        .await
        .unwrap()
        .unwrap();
    store
        .set_move_state(
            id,
            &[MoveState::Running],
            MoveState::Cancelled,
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    store
        .finish_step(id, step.key, "w".into(), Err("boom".into()), 1, NOW)
        .await
        .unwrap();
    assert_eq!(
        store.get_move(id).await.unwrap().state,
        MoveState::Cancelled
    );
    // Both tenants' audit logs know the state, not the operator's details.
    let record = store.get_move(id).await.unwrap();
    let log = store
        .audit_log(
            record.spec.source_tenant_id,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    for r in log.items.iter().filter(|r| r.target_type == "move") {
        let after = r.after.as_ref().unwrap();
        assert!(
            after.get("sourceTenantId").is_none() && after.get("error").is_none(),
            "{after}"
        );
    }
}
