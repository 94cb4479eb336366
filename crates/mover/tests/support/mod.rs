//! What the mover's tests share: a ledger with a running move whose one step a worker holds.

use tenantry_app::{Caller, Ledger};
use tenantry_ledger::Timestamp;
use tenantry_moves::model::{MovePath, MoveSpec};
use tenantry_store::moves::NewStep;

pub const NOW: Timestamp = Timestamp(1_800_000_000);

/// A running move with one step claimed by worker "w".
pub async fn claimed_step(dir: &tempfile::TempDir) -> (Ledger, uuid::Uuid, String) {
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = Ledger::new(tenantry_store::open(&url).await.unwrap());
    let caller = Caller::system("test");
    let mut tenants = Vec::new();
    for name in ["a", "b"] {
        let domain = format!("{name}.onmicrosoft.com");
        tenants.push(
            ledger
                .create_tenant(&caller, name, &domain, NOW)
                .await
                .unwrap(),
        );
    }
    let spec = MoveSpec {
        source_tenant_id: tenants[0].id,
        target_tenant_id: tenants[1].id,
        path: MovePath::RetireSource,
        users: vec![],
        domain_rewrite: None,
        allow_purchase: true,
        source_mail: None,
        target_mail: None,
        libraries: vec![],
        source_graph: None,
        target_graph: None,
        pim: Default::default(),
    };
    let id = ledger.create_move(spec, "op".into(), NOW).await.unwrap().id;
    let step = vec![NewStep {
        key: "mailbox:a".to_string(),
        step: serde_json::json!({"kind": "report"}),
        depends_on: vec![],
        servers: vec![],
    }];
    ledger.start_run(id, step, "op".into(), NOW).await.unwrap();
    let step = ledger
        .claim_step("w".into(), NOW, 60, 4)
        .await
        .unwrap()
        .unwrap();
    (ledger, id, step.key)
}
