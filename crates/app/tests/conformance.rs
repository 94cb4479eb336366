//! The conformance suite: the data-access contract and the business operations, run against the
//! backend `TENANTRY_TEST_DATABASE` names (default: a temporary SQLite file; `postgres` or a
//! `postgres://` URL: a fresh PostgreSQL database per test). Every backend must pass all of it
//! unchanged, the move state machine and its step queue included.

use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use tenantry_app::{
    Caller, EffectOutcome, Ledger, MoveEffect, NewUser, Order, SkuRef, SubscriptionChange,
};
use tenantry_ledger::assignment::AddLicense;
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::subscription::{Channel, Subscription};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::{User, UserPatch};
use tenantry_ledger::{ErrorKind, SkuId, TenantId, Timestamp, TokenId};
use tenantry_moves::model::{MovePath, MoveSpec};
use tenantry_store::moves::{MoveState, NewStep, StepRecord, StepState};
use tenantry_store::{
    transaction, AuditFilter, PageRequest, SeatPool, Store, StoreError, UserFilter, UserWrite,
};

const NOW: Timestamp = Timestamp(1_800_000_000);
const E3: &str = "ENTERPRISEPACK";

struct Backend {
    ledger: Ledger,
    // Dropped after the store: a PostgreSQL database is dropped once its pool is gone.
    _database: Option<tenantry_testkit::postgres::TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn store(&self) -> &Arc<dyn Store> {
        self.ledger.store()
    }
}

/// The backend `TENANTRY_TEST_DATABASE` chooses (the rule: `tenantry_testkit::postgres`): a fresh
/// PostgreSQL database per test, or a temporary SQLite file per test.
async fn backend() -> Backend {
    if let Some(database) = tenantry_testkit::postgres::database_from_env() {
        let store = tenantry_store::open(&database.url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the test database: {e}"));
        return Backend {
            ledger: Ledger::new(store),
            _database: Some(database),
            _dir: None,
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    Backend {
        ledger: Ledger::new(tenantry_store::open(&url).await.unwrap()),
        _database: None,
        _dir: Some(dir),
    }
}

fn operator() -> Caller {
    Caller::system("test")
}

fn as_role(tenant: TenantId, role: Role) -> Caller {
    Caller::new(Principal::Tenant {
        tenant_id: tenant,
        role,
        token_id: TokenId::new_random(),
    })
}

fn code(e: StoreError) -> (ErrorKind, &'static str) {
    match e {
        StoreError::Ledger(e) => (e.kind, e.code),
        StoreError::Internal(m) => panic!("internal error: {m}"),
    }
}

async fn tenant(b: &Backend) -> Tenant {
    let domain = format!("t{}.onmicrosoft.com", uuid::Uuid::new_v4().simple());
    b.ledger
        .create_tenant(&operator(), "Contoso", &domain, NOW)
        .await
        .unwrap()
}

async fn buy(b: &Backend, tenant: TenantId, seats: u32) -> Subscription {
    let order = Order::new(tenant, SkuRef::PartNumber(E3.into()), seats);
    b.ledger.buy(&operator(), order, NOW).await.unwrap().0
}

async fn user(b: &Backend, tenant: TenantId, alias: &str) -> User {
    let new = NewUser {
        user_principal_name: format!("{alias}@contoso.com"),
        display_name: alias.into(),
        usage_location: Some("US".into()),
        account_enabled: true,
    };
    b.ledger
        .create_user(&operator(), tenant, new, NOW)
        .await
        .unwrap()
}

async fn e3(b: &Backend) -> SkuId {
    b.store()
        .list_skus()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.sku_part_number == E3)
        .unwrap()
        .sku_id
}

fn licence(sku: SkuId) -> Vec<AddLicense> {
    vec![AddLicense {
        sku_id: sku,
        disabled_plans: vec![],
    }]
}

async fn assigned(b: &Backend, tenant: TenantId) -> u64 {
    b.store()
        .subscribed_skus(tenant)
        .await
        .unwrap()
        .iter()
        .map(|s| s.consumed_units)
        .sum()
}

// ---- the data-access contract -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_are_taken_only_below_capacity() {
    let b = backend().await;
    let t = tenant(&b).await;
    buy(&b, t.id, 2).await;
    let sku = e3(&b).await;
    let (taken, pool) = transaction(&**b.store(), move |tx| {
        let taken: Vec<bool> = (0..3)
            .map(|_| tx.take_seat(t.id, sku))
            .collect::<Result<_, _>>()?;
        Ok((taken, tx.seat_pool(t.id, sku)?))
    })
    .await
    .unwrap();
    assert_eq!(taken, [true, true, false]);
    assert_eq!(
        pool,
        SeatPool {
            capacity: 2,
            consumed: 2
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_checked_by_the_write_itself() {
    let b = backend().await;
    let t = tenant(&b).await;
    let sub = buy(&b, t.id, 2).await;
    let u = user(&b, t.id, "adele").await;
    let (stale_sub, fresh_sub, stale_user, fresh_user) = transaction(&**b.store(), move |tx| {
        let mut sub = sub.clone();
        sub.quantity = 3;
        sub.version += 1;
        let stale_sub = tx.update_subscription(&sub, sub.version + 7)?;
        let fresh_sub = tx.update_subscription(&sub, sub.version - 1)?;
        let mut u = u.clone();
        u.display_name = "Adele V.".into();
        u.version += 1;
        let stale_user = tx.update_user(&u, u.version + 7)?;
        let fresh_user = tx.update_user(&u, u.version - 1)?;
        Ok((stale_sub, fresh_sub, stale_user, fresh_user))
    })
    .await
    .unwrap();
    assert!(
        !stale_sub,
        "a subscription write with a wrong version must not apply"
    );
    assert!(fresh_sub);
    assert_eq!(stale_user, UserWrite::Stale);
    assert_eq!(fresh_user, UserWrite::Written);
    let stored = b
        .store()
        .get_subscription(t.id, sub_id(&b, t.id).await)
        .await
        .unwrap();
    assert_eq!(stored.quantity, 3);
}

async fn sub_id(b: &Backend, tenant: TenantId) -> tenantry_ledger::SubscriptionId {
    b.store()
        .list_subscriptions(tenant, Default::default())
        .await
        .unwrap()
        .items[0]
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_unit_of_work_leaves_nothing_behind() {
    let b = backend().await;
    let t = tenant(&b).await;
    let ghost = Tenant {
        id: TenantId::new_random(),
        display_name: "Ghost".into(),
        default_domain: format!("g{}.example.com", uuid::Uuid::new_v4().simple()),
        created_at: NOW,
    };
    let row = ghost.clone();
    let result: Result<(), _> = transaction(&**b.store(), move |tx| {
        assert!(tx.insert_tenant(&row)?);
        tx.insert_audit(
            AuditEntry {
                tenant_id: Some(t.id),
                actor: "test".into(),
                action: "test.refused",
                target_type: "tenant",
                target_id: row.id.to_string(),
                before: None,
                after: None,
            },
            NOW,
        )?;
        Err(tenantry_ledger::LedgerError::conflict("Refused", "no").into())
    })
    .await;
    assert_eq!(code(result.unwrap_err()).1, "Refused");
    assert_eq!(
        code(b.store().get_tenant(ghost.id).await.unwrap_err()).0,
        ErrorKind::NotFound
    );
    let log = b
        .store()
        .audit_log(
            t.id,
            AuditFilter {
                action: Some("test.refused".into()),
                target_id: None,
            },
            Default::default(),
        )
        .await
        .unwrap();
    assert!(log.items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_names_are_reported_not_failed() {
    let b = backend().await;
    let t = tenant(&b).await;
    user(&b, t.id, "adele").await;
    let taken = b
        .ledger
        .create_user(
            &operator(),
            t.id,
            NewUser {
                user_principal_name: "ADELE@contoso.com".into(),
                display_name: "Other".into(),
                usage_location: None,
                account_enabled: true,
            },
            NOW,
        )
        .await
        .unwrap_err();
    assert_eq!(
        code(taken),
        (ErrorKind::Conflict, "DuplicateUserPrincipalName")
    );
    let again = b
        .ledger
        .create_tenant(&operator(), "Again", &t.default_domain, NOW)
        .await
        .unwrap_err();
    assert_eq!(code(again), (ErrorKind::Conflict, "DomainInUse"));
}

// ---- the business operations --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_are_bought_assigned_and_never_reduced_below_assigned() {
    let b = backend().await;
    let t = tenant(&b).await;
    let sub = buy(&b, t.id, 2).await;
    let sku = e3(&b).await;
    let admin = as_role(t.id, Role::LicenseAdmin);
    let mut users = Vec::new();
    for alias in ["adele", "bob", "cara"] {
        users.push(user(&b, t.id, alias).await);
    }
    for u in &users[..2] {
        b.ledger
            .assign_licenses(&admin, t.id, u.id, licence(sku), vec![], NOW)
            .await
            .unwrap();
    }
    let refused = b
        .ledger
        .assign_licenses(&admin, t.id, users[2].id, licence(sku), vec![], NOW)
        .await
        .unwrap_err();
    assert_eq!(code(refused), (ErrorKind::Conflict, "NoFreeSeat"));
    let billing = as_role(t.id, Role::BillingAdmin);
    let below = b
        .ledger
        .change_subscription(
            &billing,
            t.id,
            sub.id,
            None,
            SubscriptionChange::SetQuantity(1),
            NOW,
        )
        .await
        .unwrap_err();
    assert_eq!(code(below), (ErrorKind::Conflict, "BelowAssigned"));
    // Deleting a holder gives the seat back: the third user can have it.
    b.ledger
        .delete_user(&operator(), t.id, users[0].id, NOW)
        .await
        .unwrap();
    b.ledger
        .assign_licenses(&admin, t.id, users[2].id, licence(sku), vec![], NOW)
        .await
        .unwrap();
    assert_eq!(assigned(&b, t.id).await, 2);
    let audit = b
        .store()
        .audit_log(t.id, AuditFilter::default(), Default::default())
        .await
        .unwrap();
    let actions: BTreeSet<&str> = audit.items.iter().map(|r| r.action.as_str()).collect();
    for action in [
        "tenant.created",
        "subscription.created",
        "user.created",
        "user.licensesChanged",
        "user.deleted",
    ] {
        assert!(actions.contains(action), "no {action} in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_tenants_are_checked_by_every_operation() {
    let b = backend().await;
    let t = tenant(&b).await;
    let other = tenant(&b).await;
    let order = || Order::new(t.id, SkuRef::PartNumber(E3.into()), 1);
    let forbidden = b
        .ledger
        .buy(&as_role(t.id, Role::LicenseAdmin), order(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(forbidden).0, ErrorKind::Forbidden);
    let elsewhere = b
        .ledger
        .buy(&as_role(other.id, Role::GlobalAdmin), order(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(elsewhere).0, ErrorKind::NotFound);
    let volume = Order {
        channel: Some(Channel::Volume),
        ..order()
    };
    let refused = b
        .ledger
        .buy(&as_role(t.id, Role::BillingAdmin), volume.clone(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(refused).1, "VolumeLicensingReadOnly");
    let (sub, _) = b.ledger.buy(&operator(), volume, NOW).await.unwrap();
    assert_eq!(sub.channel, Channel::Volume);
    let not_operator = b
        .ledger
        .create_tenant(
            &as_role(t.id, Role::GlobalAdmin),
            "X",
            "x.onmicrosoft.com",
            NOW,
        )
        .await
        .unwrap_err();
    assert_eq!(code(not_operator).0, ErrorKind::Forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_token_names_its_tenant_and_role_and_is_stored_hashed() {
    let b = backend().await;
    let t = tenant(&b).await;
    let issued = b
        .ledger
        .issue_token(&operator(), t.id, "LicenseAdmin", NOW)
        .await
        .unwrap();
    assert!(issued.token.starts_with("tnt_"));
    let principal = b
        .store()
        .principal_for_token(tenantry_app::tokens::hash_token(&issued.token))
        .await
        .unwrap();
    assert_eq!(
        principal,
        Some(Principal::Tenant {
            tenant_id: t.id,
            role: Role::LicenseAdmin,
            token_id: issued.record.id
        })
    );
    assert_eq!(
        b.store()
            .principal_for_token(issued.token.clone())
            .await
            .unwrap(),
        None,
        "the token itself must not be what is stored"
    );
    let bad = b
        .ledger
        .issue_token(&operator(), t.id, "Owner", NOW)
        .await
        .unwrap_err();
    assert_eq!(code(bad), (ErrorKind::Invalid, "InvalidRole"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_effect_happens_once_whatever_the_retries() {
    let b = backend().await;
    let t = tenant(&b).await;
    let move_id = uuid::Uuid::new_v4();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let effect =
            MoveEffect::CreateSubscription(Order::new(t.id, SkuRef::PartNumber(E3.into()), 4));
        match b
            .ledger
            .apply_effect(&operator(), move_id, "buy:e3".into(), effect, NOW)
            .await
            .unwrap()
        {
            EffectOutcome::Subscription(s) => ids.push(s.id),
            EffectOutcome::User(_) => panic!("a user from a purchase"),
        }
    }
    assert!(ids.iter().all(|id| *id == ids[0]));
    let subs = b
        .store()
        .list_subscriptions(t.id, Default::default())
        .await
        .unwrap();
    assert_eq!(subs.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_patch_with_a_stale_version_is_refused() {
    let b = backend().await;
    let t = tenant(&b).await;
    let u = user(&b, t.id, "adele").await;
    let patch = |name: &str| UserPatch {
        display_name: Some(name.into()),
        ..Default::default()
    };
    b.ledger
        .update_user(&operator(), t.id, u.id, Some(u.version), patch("A"), NOW)
        .await
        .unwrap();
    let stale = b
        .ledger
        .update_user(&operator(), t.id, u.id, Some(u.version), patch("B"), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(stale).0, ErrorKind::PreconditionFailed);
    assert_eq!(
        b.store().get_user(t.id, u.id).await.unwrap().display_name,
        "A"
    );
}

// ---- concurrency --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_assignments_take_exactly_the_free_seats() {
    const SEATS: u32 = 10;
    const USERS: usize = 40;
    let b = Arc::new(backend().await);
    let t = tenant(&b).await;
    buy(&b, t.id, SEATS).await;
    let sku = e3(&b).await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(user(&b, t.id, &format!("u{i}")).await);
    }
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| {
            let b = b.clone();
            tokio::spawn(async move {
                b.ledger
                    .assign_licenses(&operator(), t.id, u.id, licence(sku), vec![], NOW)
                    .await
            })
        })
        .collect();
    let (mut won, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => {
                assert_eq!(code(e).1, "NoFreeSeat");
                refused += 1;
            }
        }
    }
    assert_eq!((won, refused), (SEATS as usize, USERS - SEATS as usize));
    assert_eq!(assigned(&b, t.id).await, u64::from(SEATS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_from_one_version_let_exactly_one_win() {
    const WRITERS: u32 = 8;
    let b = Arc::new(backend().await);
    let t = tenant(&b).await;
    let sub = buy(&b, t.id, 5).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let b = b.clone();
            let (id, version) = (sub.id, sub.version);
            tokio::spawn(async move {
                b.ledger
                    .change_subscription(
                        &operator(),
                        t.id,
                        id,
                        Some(version),
                        SubscriptionChange::SetQuantity(6 + i),
                        NOW,
                    )
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok((s, _)) => winners.push(s.quantity),
            Err(e) => assert_eq!(code(e).0, ErrorKind::PreconditionFailed),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let stored = b.store().get_subscription(t.id, sub.id).await.unwrap();
    assert_eq!(stored.quantity, winners[0]);
    assert_eq!(stored.version, sub.version + 1);
}

// ---- moves' data access ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_profile_keeps_its_kind_and_sealed_secret() {
    use tenantry_store::moves::ProfileKind;
    let b = backend().await;
    let name = format!("dav-{}", uuid::Uuid::new_v4().simple());
    b.store()
        .create_profile(
            name.clone(),
            ProfileKind::Webdav,
            "admin".into(),
            vec![7, 8, 9],
            NOW,
        )
        .await
        .unwrap();
    let profile = b.store().get_profile(name.clone()).await.unwrap();
    assert_eq!(profile.kind, ProfileKind::Webdav);
    assert_eq!(profile.secret, [7, 8, 9]);
    let again = b
        .store()
        .create_profile(name, ProfileKind::Imap, "other".into(), vec![1], NOW)
        .await
        .unwrap_err();
    assert_eq!(code(again), (ErrorKind::Conflict, "DuplicateProfile"));
}

// ---- the move state machine ---------------------------------------------------------------------

const RUNNING: &[MoveState] = &[MoveState::Running];

/// A move between two fresh tenants, in Draft.
async fn draft_move(b: &Backend) -> uuid::Uuid {
    let (source, target) = (tenant(b).await, tenant(b).await);
    let spec = MoveSpec {
        source_tenant_id: source.id,
        target_tenant_id: target.id,
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
    b.ledger
        .create_move(spec, "op".into(), NOW)
        .await
        .unwrap()
        .id
}

/// Steps that run one after another: each waits for the one before it.
fn steps(keys: &[&str]) -> Vec<NewStep> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| step(k, if i == 0 { &[] } else { &keys[i - 1..i] }, &[]))
        .collect()
}

fn step(key: &str, after: &[&str], servers: &[&str]) -> NewStep {
    NewStep {
        key: key.to_string(),
        step: serde_json::json!({"kind": "report"}),
        depends_on: after.iter().map(|k| k.to_string()).collect(),
        servers: servers.iter().map(|k| k.to_string()).collect(),
    }
}

async fn step_of(b: &Backend, id: uuid::Uuid, key: &str) -> StepRecord {
    b.store()
        .steps(id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == key)
        .unwrap()
}

async fn claim(b: &Backend, worker: &str, at: Timestamp) -> Option<StepRecord> {
    b.ledger.claim_step(worker.into(), at, 60, 4).await.unwrap()
}

async fn done(b: &Backend, step: StepRecord) {
    let worker = step.lease_owner.clone().unwrap();
    b.ledger
        .finish_step(step.move_id, step.key, worker, Ok(json!({})), 3, NOW)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_runs_its_steps_in_order_and_completes() {
    let b = backend().await;
    let id = draft_move(&b).await;
    assert!(claim(&b, "w", NOW).await.is_none(), "a draft has no work");
    b.ledger
        .start_run(id, steps(&["buy:x", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    let first = claim(&b, "w", NOW).await.unwrap();
    assert_eq!((first.key.as_str(), first.attempts), ("buy:x", 1));
    assert_eq!(first.lease_owner.as_deref(), Some("w"));
    // The second step waits for the first, even for another worker.
    assert!(claim(&b, "w2", NOW).await.is_none());
    b.ledger
        .finish_step(id, first.key, "w".into(), Ok(json!({"ok": 1})), 3, NOW)
        .await
        .unwrap();
    let second = claim(&b, "w2", NOW).await.unwrap();
    assert_eq!(second.key, "report");
    b.ledger
        .finish_step(id, second.key, "w2".into(), Ok(json!({})), 3, NOW)
        .await
        .unwrap();
    let m = b.store().get_move(id).await.unwrap();
    assert_eq!(m.state, MoveState::Completed);
    let done = step_of(&b, id, "buy:x").await;
    assert_eq!(
        (done.state, done.result, done.lease_owner),
        (StepState::Done, Some(json!({"ok": 1})), None)
    );
    let restart = b
        .ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(restart), (ErrorKind::Conflict, "MoveFinished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_backs_off_retries_then_fails_the_move() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let mut at = NOW;
    for attempt in 1..=2u32 {
        let step = claim(&b, "w", at).await.unwrap();
        assert_eq!(step.attempts, attempt);
        b.ledger
            .finish_step(id, step.key, "w".into(), Err("boom".into()), 2, at)
            .await
            .unwrap();
        let wait = tenantry_app::moves::backoff_secs(attempt);
        if attempt < 2 {
            let pending = step_of(&b, id, "mailbox:a").await;
            assert_eq!(pending.state, StepState::Pending);
            assert_eq!(pending.error.as_deref(), Some("boom"));
            assert!(
                claim(&b, "w", Timestamp(at.0 + wait - 1)).await.is_none(),
                "a failed step waits its back-off"
            );
            at = Timestamp(at.0 + wait + 1);
        }
    }
    assert_eq!(step_of(&b, id, "mailbox:a").await.state, StepState::Failed);
    assert_eq!(
        b.store().get_move(id).await.unwrap().state,
        MoveState::Failed
    );
    // Resuming a failed move gives its failed step fresh attempts.
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), at)
        .await
        .unwrap();
    let resumed = step_of(&b, id, "mailbox:a").await;
    assert_eq!((resumed.state, resumed.attempts), (StepState::Pending, 0));
}

/// A data engine's state is written only by the worker holding the step's lease, one version
/// up each time, and read back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_state_is_saved_only_by_the_lease_holder() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let read = || b.store().engine_state(id, "mail/a".into());
    assert!(read().await.unwrap().is_none());
    let step = claim(&b, "w", NOW).await.unwrap();
    let save = |worker: &str, bytes: Vec<u8>| {
        b.ledger.save_engine_state(
            id,
            step.key.clone(),
            worker.to_string(),
            "mail/a".into(),
            bytes,
            NOW,
        )
    };
    assert_eq!(save("w", vec![1, 2, 3]).await.unwrap(), Some(1));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(save("w", big.clone()).await.unwrap(), Some(2));
    assert_eq!(save("someone-else", vec![9]).await.unwrap(), None);
    let stored = read().await.unwrap().unwrap();
    assert_eq!((stored.version, stored.state == big), (2, true));
    b.ledger
        .finish_step(id, step.key.clone(), "w".into(), Ok(json!({})), 3, NOW)
        .await
        .unwrap();
    assert_eq!(save("w", vec![7]).await.unwrap(), None, "the step is over");
    assert_eq!(read().await.unwrap().unwrap().version, 2);
    assert!(b
        .store()
        .engine_state(id, "mail/b".into())
        .await
        .unwrap()
        .is_none());
}

/// A step's progress is written only by the worker holding its lease, replaces the one stored
/// before (every field, the unknown totals too), reads back exactly (counts beyond 32 bits),
/// stays once the step is done (its final counts), and goes with a step a new plan drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_progress_is_stored_by_the_lease_holder_and_read_back() {
    use tenantry_app::progress::{advance, Counts};
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    assert!(b.store().step_progress(id).await.unwrap().is_empty());
    let step = claim(&b, "w", NOW).await.unwrap();
    let at = |counts: Counts, now: i64, previous: Option<&_>| {
        advance(previous, id, &step.key, NOW, counts, Timestamp(NOW.0 + now))
    };
    let first = at(
        Counts {
            items_done: 3,
            items_total: None,
            bytes_done: 6_000_000_000,
            bytes_total: None,
        },
        5,
        None,
    );
    assert!(b
        .ledger
        .record_progress("w".into(), first.clone())
        .await
        .unwrap());
    assert_eq!(
        b.store().step_progress(id).await.unwrap(),
        vec![first.clone()]
    );
    let second = at(
        Counts {
            items_done: 7,
            items_total: Some(10),
            bytes_done: 7_000_000_000,
            bytes_total: Some(9_000_000_000),
        },
        90,
        Some(&first),
    );
    assert_ne!(second.window_at, first.window_at, "the window moved");
    assert!(b
        .ledger
        .record_progress("w".into(), second.clone())
        .await
        .unwrap());
    let stranger = at(Counts::default(), 91, None);
    assert!(!b
        .ledger
        .record_progress("someone-else".into(), stranger)
        .await
        .unwrap());
    assert_eq!(
        b.store().step_progress(id).await.unwrap(),
        vec![second.clone()]
    );
    b.ledger
        .finish_step(id, step.key.clone(), "w".into(), Ok(json!({})), 3, NOW)
        .await
        .unwrap();
    let late = at(Counts::default(), 92, Some(&second));
    assert!(
        !b.ledger.record_progress("w".into(), late).await.unwrap(),
        "the step is over"
    );
    assert_eq!(b.store().step_progress(id).await.unwrap(), vec![second]);

    // A new plan without the step takes its progress with it.
    let other = draft_move(&b).await;
    b.ledger
        .start_run(other, steps(&["mailbox:b", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    b.ledger
        .set_move_state(id, RUNNING, MoveState::Paused, "op".into(), NOW)
        .await
        .ok();
    let running = claim(&b, "w", NOW).await.unwrap();
    assert_eq!(running.key, "mailbox:b");
    let p = advance(None, other, "mailbox:b", NOW, Counts::default(), NOW);
    assert!(b.ledger.record_progress("w".into(), p).await.unwrap());
    b.ledger
        .hand_back_step(other, "mailbox:b".into(), "w".into(), NOW)
        .await
        .unwrap();
    b.ledger
        .set_move_state(other, RUNNING, MoveState::Paused, "op".into(), NOW)
        .await
        .unwrap();
    b.ledger
        .start_run(other, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap();
    assert!(b.store().step_progress(other).await.unwrap().is_empty());
}

/// The kind of a failure decides: authentication and permanent failures fail the step and the
/// move after one attempt (however many attempts are left); a throttled step waits at least
/// what the server asked, a transient one its back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_retried_or_not_by_its_kind() {
    use std::time::Duration;
    use tenantry_app::moves::backoff_secs;
    use tenantry_app::EngineError;
    let b = backend().await;
    for (error, fails_at_once) in [
        (EngineError::Authentication("login refused".into()), true),
        (EngineError::Permanent("no such library".into()), true),
        (EngineError::Transient("connection dropped".into()), false),
    ] {
        let id = draft_move(&b).await;
        b.ledger
            .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
            .await
            .unwrap();
        let step = claim(&b, "w", NOW).await.unwrap();
        assert_eq!(step.attempts, 1);
        b.ledger
            .finish_step(id, step.key, "w".into(), Err(error.clone()), 5, NOW)
            .await
            .unwrap();
        let after = step_of(&b, id, "mailbox:a").await;
        let record = b.store().get_move(id).await.unwrap();
        if fails_at_once {
            assert_eq!(
                (after.state, after.attempts),
                (StepState::Failed, 1),
                "{error:?}"
            );
            assert_eq!(record.state, MoveState::Failed, "{error:?}");
            assert!(claim(&b, "w", Timestamp(NOW.0 + 3600)).await.is_none());
        } else {
            assert_eq!(after.state, StepState::Pending, "{error:?}");
            assert_eq!(record.state, MoveState::Running);
            assert_eq!(after.lease_until, Some(Timestamp(NOW.0 + backoff_secs(1))));
        }
        let message = after.error.unwrap();
        assert!(message.starts_with(error.message()), "{message}");
        assert_eq!(
            message.contains("fix the connection profile"),
            matches!(error, EngineError::Authentication(_)),
            "{message}"
        );
        b.ledger
            .set_move_state(
                id,
                &[MoveState::Running, MoveState::Failed],
                MoveState::Cancelled,
                "op".into(),
                NOW,
            )
            .await
            .unwrap();
    }

    // Throttled: the server's wait when it is longer than the back-off, never less than the
    // back-off; and it is retried.
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let step = claim(&b, "w", NOW).await.unwrap();
    let throttled = EngineError::Throttled {
        retry_after: Duration::from_millis(120_500),
        message: "throttled".into(),
    };
    b.ledger
        .finish_step(id, step.key, "w".into(), Err(throttled), 5, NOW)
        .await
        .unwrap();
    let after = step_of(&b, id, "mailbox:a").await;
    assert_eq!(after.state, StepState::Pending);
    assert_eq!(after.lease_until, Some(Timestamp(NOW.0 + 121)));
    assert!(claim(&b, "w", Timestamp(NOW.0 + 120)).await.is_none());
    let again = claim(&b, "w", Timestamp(NOW.0 + 122)).await.unwrap();
    assert_eq!(again.attempts, 2);
    let short = EngineError::Throttled {
        retry_after: Duration::from_secs(1),
        message: "throttled".into(),
    };
    let at = Timestamp(NOW.0 + 122);
    b.ledger
        .finish_step(id, again.key, "w".into(), Err(short), 5, at)
        .await
        .unwrap();
    assert_eq!(
        step_of(&b, id, "mailbox:a").await.lease_until,
        Some(Timestamp(at.0 + backoff_secs(2)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_follow_the_transitions() {
    let b = backend().await;
    let id = draft_move(&b).await;
    let refused = b
        .ledger
        .set_move_state(id, RUNNING, MoveState::Paused, "op".into(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(refused), (ErrorKind::Conflict, "InvalidMoveState"));
    b.ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap();
    let running = b
        .ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(running), (ErrorKind::Conflict, "MoveRunning"));
    b.ledger
        .set_move_state(id, RUNNING, MoveState::Paused, "op".into(), NOW)
        .await
        .unwrap();
    assert!(
        claim(&b, "w", NOW).await.is_none(),
        "a paused move has no work"
    );
    b.ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap();
    assert!(claim(&b, "w", NOW).await.is_some());
    b.ledger
        .set_move_state(
            id,
            &[MoveState::Running, MoveState::Paused],
            MoveState::Cancelled,
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    let again = b
        .ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(again), (ErrorKind::Conflict, "MoveFinished"));
    let actions: Vec<String> = b
        .store()
        .audit_log(
            b.store().get_move(id).await.unwrap().spec.target_tenant_id,
            AuditFilter {
                action: None,
                target_id: Some(id.to_string()),
            },
            Default::default(),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "move.cancelled",
            "move.started",
            "move.paused",
            "move.started",
            "move.created"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plan_drops_unfinished_steps_it_no_longer_has() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["buy:x", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    b.ledger
        .set_move_state(id, RUNNING, MoveState::Paused, "op".into(), NOW)
        .await
        .unwrap();
    // Meanwhile the seats were bought by hand: the new plan has no purchase.
    b.ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap();
    let keys: Vec<String> = b
        .store()
        .steps(id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["report"]);
    assert_eq!(claim(&b, "w", NOW).await.unwrap().key, "report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_a_worker_still_runs_is_left_to_it_on_resume() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    let claimed = claim(&b, "w", NOW).await.unwrap();
    b.ledger
        .set_move_state(id, RUNNING, MoveState::Paused, "op".into(), NOW)
        .await
        .unwrap();
    b.ledger
        .start_run(id, steps(&["mailbox:a", "report"]), "op".into(), NOW)
        .await
        .unwrap();
    let step = step_of(&b, id, &claimed.key).await;
    assert_eq!((step.state, step.attempts), (StepState::Running, 1));
    assert!(b
        .ledger
        .renew_lease(id, claimed.key.clone(), "w".into(), Timestamp(NOW.0 + 120))
        .await
        .unwrap());
    assert!(!b
        .ledger
        .renew_lease(id, claimed.key, "intruder".into(), Timestamp(NOW.0 + 120))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_failure_does_not_turn_a_cancelled_move_into_a_failed_one() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let step = claim(&b, "w", NOW).await.unwrap();
    b.ledger
        .set_move_state(id, RUNNING, MoveState::Cancelled, "op".into(), NOW)
        .await
        .unwrap();
    b.ledger
        .finish_step(id, step.key, "w".into(), Err("boom".into()), 1, NOW)
        .await
        .unwrap();
    let record = b.store().get_move(id).await.unwrap();
    assert_eq!(record.state, MoveState::Cancelled);
    // Both tenants' audit logs know the state, not the operator's details.
    let log = b
        .store()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_claimed_again_and_the_old_worker_is_ignored() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let first = claim(&b, "dead", NOW).await.unwrap();
    assert!(
        claim(&b, "w2", Timestamp(NOW.0 + 59)).await.is_none(),
        "a live lease is not taken over"
    );
    let again = claim(&b, "w2", Timestamp(NOW.0 + 61)).await.unwrap();
    assert_eq!(
        (again.key.as_str(), again.attempts),
        (first.key.as_str(), 2)
    );
    assert_eq!(again.lease_owner.as_deref(), Some("w2"));
    // The presumed-dead worker comes back: its lease is gone, its report is ignored.
    assert!(!b
        .ledger
        .renew_lease(id, first.key.clone(), "dead".into(), Timestamp(NOW.0 + 200))
        .await
        .unwrap());
    b.ledger
        .finish_step(
            id,
            first.key.clone(),
            "dead".into(),
            Ok(json!({"by": "dead"})),
            3,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(step_of(&b, id, &first.key).await.state, StepState::Running);
    b.ledger
        .finish_step(
            id,
            first.key.clone(),
            "w2".into(),
            Ok(json!({"by": "w2"})),
            3,
            NOW,
        )
        .await
        .unwrap();
    let done = step_of(&b, id, &first.key).await;
    assert_eq!(
        (done.state, done.result),
        (StepState::Done, Some(json!({"by": "w2"})))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_each_step_exactly_once() {
    const MOVES: usize = 6;
    const STEPS: usize = 4;
    const CLAIMERS: usize = 8;
    let b = Arc::new(backend().await);
    let mut ids = Vec::new();
    for _ in 0..MOVES {
        let id = draft_move(&b).await;
        let keys: Vec<String> = (0..STEPS).map(|i| format!("step:{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        b.ledger
            .start_run(id, steps(&keys), "op".into(), NOW)
            .await
            .unwrap();
        ids.push(id);
    }
    let mut tasks = Vec::new();
    for n in 0..CLAIMERS {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{n}");
            let mut mine = Vec::new();
            let mut idle = 0;
            // Steps of one move run in order, so a claimer may find nothing while others hold
            // the heads of every move: it stops only after a run of empty polls.
            while idle < 50 {
                match b
                    .ledger
                    .claim_step(worker.clone(), NOW, 600, 4)
                    .await
                    .unwrap()
                {
                    Some(step) => {
                        idle = 0;
                        mine.push((step.move_id, step.key.clone()));
                        b.ledger
                            .finish_step(
                                step.move_id,
                                step.key,
                                worker.clone(),
                                Ok(json!({})),
                                3,
                                NOW,
                            )
                            .await
                            .unwrap();
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = claimed.iter().cloned().collect();
    assert_eq!(
        claimed.len(),
        MOVES * STEPS,
        "every step claimed once: {claimed:?}"
    );
    assert_eq!(distinct.len(), claimed.len(), "no step claimed twice");
    for id in ids {
        let steps = b.store().steps(id).await.unwrap();
        assert!(steps
            .iter()
            .all(|s| s.state == StepState::Done && s.attempts == 1));
        assert_eq!(
            b.store().get_move(id).await.unwrap().state,
            MoveState::Completed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_at_once_and_a_dependent_step_waits_for_all_of_them() {
    let b = backend().await;
    let id = draft_move(&b).await;
    let plan = vec![
        step("mailbox:a", &[], &[]),
        step("mailbox:b", &[], &[]),
        step("final-delta", &["mailbox:a", "mailbox:b"], &[]),
        step("report", &["final-delta"], &[]),
    ];
    b.ledger
        .start_run(id, plan, "op".into(), NOW)
        .await
        .unwrap();
    let a = claim(&b, "w1", NOW).await.unwrap();
    let other = claim(&b, "w2", NOW).await.unwrap();
    assert_eq!(
        (a.key.as_str(), other.key.as_str()),
        ("mailbox:a", "mailbox:b"),
        "plan order, both leased at once"
    );
    assert_eq!(
        (a.claimed_by.as_deref(), other.claimed_by.as_deref()),
        (Some("w1"), Some("w2"))
    );
    assert!(claim(&b, "w3", NOW).await.is_none(), "the final pass waits");
    done(&b, a).await;
    assert!(
        claim(&b, "w3", NOW).await.is_none(),
        "the final pass waits for every dependency, not the first"
    );
    done(&b, other).await;
    let last = claim(&b, "w3", NOW).await.unwrap();
    assert_eq!(last.key, "final-delta");
    assert!(claim(&b, "w1", NOW).await.is_none());
    done(&b, last).await;
    done(&b, claim(&b, "w1", NOW).await.unwrap()).await;
    assert_eq!(
        b.store().get_move(id).await.unwrap().state,
        MoveState::Completed
    );
    // Who ran a step stays on it once it is done.
    assert_eq!(
        step_of(&b, id, "mailbox:b").await.claimed_by.as_deref(),
        Some("w2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_stored_without_dependencies_still_run_one_after_another() {
    let b = backend().await;
    let id = draft_move(&b).await;
    let plan = vec![
        step("a", &[], &[]),
        step("b", &[], &[]),
        step("c", &[], &[]),
    ];
    b.ledger
        .start_run(id, plan, "op".into(), NOW)
        .await
        .unwrap();
    // As a tenantry before dependencies stored them.
    transaction(&**b.store(), move |tx| {
        for mut s in tx.move_steps(id)? {
            s.depends_on = None;
            assert!(tx.update_step(&s, StepState::Pending, None)?);
        }
        Ok(())
    })
    .await
    .unwrap();
    for key in ["a", "b", "c"] {
        let s = claim(&b, "w1", NOW).await.unwrap();
        assert_eq!(s.key, key);
        assert!(claim(&b, "w2", NOW).await.is_none(), "{key} runs alone");
        done(&b, s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_runs_at_most_its_share_of_steps_across_moves() {
    let b = backend().await;
    let (one, two) = (draft_move(&b).await, draft_move(&b).await);
    let x = "imaps://x.example:993";
    b.ledger
        .start_run(
            one,
            vec![
                step("m:1", &[], &[x]),
                step("m:2", &[], &[x, "imaps://y:993"]),
            ],
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    b.ledger
        .start_run(
            two,
            vec![step("m:3", &[], &[x]), step("lib", &[], &[])],
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    let cap = |w: &'static str| {
        let b = &b;
        async move { b.ledger.claim_step(w.into(), NOW, 60, 2).await.unwrap() }
    };
    let first = cap("w1").await.unwrap();
    let second = cap("w2").await.unwrap();
    assert_eq!((first.key.as_str(), second.key.as_str()), ("m:1", "m:2"));
    // x has two leased steps: the other move's step on x waits, its step elsewhere does not.
    assert_eq!(cap("w3").await.unwrap().key, "lib");
    assert!(cap("w3").await.is_none());
    // An expired lease no longer counts.
    let later = Timestamp(NOW.0 + 61);
    let third = b
        .ledger
        .claim_step("w3".into(), later, 60, 2)
        .await
        .unwrap();
    assert!(third.is_some_and(|s| s.key == "m:1" || s.key == "m:2"));
    done(&b, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_exceed_a_servers_share() {
    const CLAIMERS: usize = 8;
    let b = Arc::new(backend().await);
    let id = draft_move(&b).await;
    let plan = (0..12)
        .map(|i| step(&format!("mailbox:{i}"), &[], &["imaps://x:993"]))
        .collect();
    b.ledger
        .start_run(id, plan, "op".into(), NOW)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..CLAIMERS {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            for _ in 0..3 {
                if b.ledger
                    .claim_step(format!("w{n}"), NOW, 600, 3)
                    .await
                    .unwrap()
                    .is_some()
                {
                    mine += 1;
                }
            }
            mine
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        claimed += t.await.unwrap();
    }
    assert_eq!(
        claimed, 3,
        "three leases on the server, however many claimers"
    );
    let running = b.store().steps(id).await.unwrap();
    assert_eq!(
        running
            .iter()
            .filter(|s| s.state == StepState::Running)
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_back_step_is_free_at_once_and_its_attempt_not_counted() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    let s = claim(&b, "leaving", NOW).await.unwrap();
    assert!(!b
        .ledger
        .hand_back_step(id, s.key.clone(), "intruder".into(), NOW)
        .await
        .unwrap());
    assert!(b
        .ledger
        .hand_back_step(id, s.key.clone(), "leaving".into(), NOW)
        .await
        .unwrap());
    let again = claim(&b, "w2", NOW).await.unwrap();
    assert_eq!((again.key, again.attempts), (s.key, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_leases_frees_a_dead_workers_steps_at_once() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(id, steps(&["mailbox:a"]), "op".into(), NOW)
        .await
        .unwrap();
    claim(&b, "dead", NOW).await.unwrap();
    assert!(b.ledger.release_leases().await.unwrap() >= 1);
    let step = claim(&b, "w2", NOW).await.unwrap();
    assert_eq!(
        (step.lease_owner.as_deref(), step.attempts),
        (Some("w2"), 2)
    );
}

/// A move whose target is reached through Graph: its tenant is not kept here, yet the move is
/// stored, runs, and only the local source's audit log records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_with_a_side_reached_through_graph_is_stored_and_audited_where_it_is_local() {
    let b = backend().await;
    let source = tenant(&b).await;
    let elsewhere = TenantId::new_random();
    let spec = MoveSpec {
        source_tenant_id: source.id,
        target_tenant_id: elsewhere,
        path: MovePath::KeepSource,
        users: vec![],
        domain_rewrite: None,
        allow_purchase: true,
        source_mail: None,
        target_mail: None,
        libraries: vec![],
        source_graph: None,
        target_graph: Some("contoso-graph".into()),
        pim: Default::default(),
    };
    let id = b
        .ledger
        .create_move(spec.clone(), "op".into(), NOW)
        .await
        .expect("a move with a Graph target is stored")
        .id;
    b.ledger
        .start_run(id, steps(&["report"]), "op".into(), NOW)
        .await
        .unwrap();
    let actions = |tenant: TenantId| {
        let store = b.store().clone();
        async move {
            store
                .audit_log(
                    tenant,
                    AuditFilter {
                        action: None,
                        target_id: Some(id.to_string()),
                    },
                    Default::default(),
                )
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|r| (r.action, r.after.unwrap()["side"].clone()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        actions(source.id).await,
        [
            ("move.started".to_string(), json!("source")),
            ("move.created".to_string(), json!("source"))
        ]
    );
    // A local side still has to exist.
    let unknown_local = MoveSpec {
        target_graph: None,
        pim: Default::default(),
        ..spec
    };
    let refused = b
        .ledger
        .create_move(unknown_local, "op".into(), NOW)
        .await
        .unwrap_err();
    assert_eq!(code(refused), (ErrorKind::NotFound, "NotFound"));
    // Were a record written for the Graph side, it would show once a tenant of that id exists.
    let same_id = Tenant {
        id: elsewhere,
        display_name: "Contoso".into(),
        default_domain: format!("t{}.onmicrosoft.com", uuid::Uuid::new_v4().simple()),
        created_at: NOW,
    };
    transaction(&**b.store(), move |tx| tx.insert_tenant(&same_id))
        .await
        .unwrap();
    assert!(
        actions(elsewhere).await.is_empty(),
        "nothing in the log of a tenant not kept here"
    );
}

/// A step waiting for an administrator, confirmed, then the move paused and resumed: the
/// confirmation stands for the action it confirmed. The same action (the same plan) keeps it, and
/// the step finishes at the next look; a changed action (more seats needed now) drops it, so the
/// run waits for the new one instead of going on on a confirmation of something else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_survives_pause_and_resume_for_the_action_it_confirmed() {
    let b = backend().await;
    let id = draft_move(&b).await;
    let await_seats = |seats: u32| {
        vec![
            NewStep {
                key: "await-seats:x".to_string(),
                step: json!({"kind": "awaitTargetSeats", "seats": seats}),
                depends_on: vec![],
                servers: vec![],
            },
            step("report", &["await-seats:x"], &[]),
        ]
    };
    let park_and_confirm = |at: Timestamp| {
        let ledger = b.ledger.clone();
        async move {
            let step = ledger
                .claim_step("w".into(), at, 60, 4)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(step.key, "await-seats:x");
            ledger
                .park_step(
                    id,
                    step.key,
                    "w".into(),
                    json!({"waitingForAdministrator": {"action": "buy"}}),
                    10,
                    at,
                )
                .await
                .unwrap();
            ledger
                .confirm_step(id, "await-seats:x".into(), "op:alice".into(), at)
                .await
                .unwrap();
        }
    };
    let confirmed_by = |step: &StepRecord| {
        tenantry_app::waiting::confirmation(step.result.as_ref()).map(|c| c["by"].clone())
    };
    b.ledger
        .start_run(id, await_seats(1), "op".into(), NOW)
        .await
        .unwrap();
    park_and_confirm(NOW).await;
    let pause = |at: Timestamp| {
        let ledger = b.ledger.clone();
        async move {
            ledger
                .set_move_state(id, RUNNING, MoveState::Paused, "op".into(), at)
                .await
                .unwrap();
        }
    };
    pause(NOW).await;
    let later = Timestamp(NOW.0 + 60);
    b.ledger
        .start_run(id, await_seats(1), "op".into(), later)
        .await
        .unwrap();
    let step = step_of(&b, id, "await-seats:x").await;
    assert_eq!(confirmed_by(&step), Some(json!("op:alice")), "{step:?}");
    assert_eq!(step.attempts, 0, "fresh attempts all the same");
    let next = claim(&b, "w", Timestamp(later.0 + 1)).await.unwrap();
    assert_eq!(next.key, "await-seats:x", "a confirmed step runs at once");
    assert_eq!(confirmed_by(&next), Some(json!("op:alice")));

    // The plan now asks for more: the old confirmation does not answer it.
    b.ledger
        .park_step(
            id,
            next.key,
            "w".into(),
            json!({"waitingForAdministrator": {"action": "buy"}}),
            10,
            Timestamp(later.0 + 1),
        )
        .await
        .unwrap();
    pause(Timestamp(later.0 + 2)).await;
    b.ledger
        .start_run(id, await_seats(2), "op".into(), Timestamp(later.0 + 3))
        .await
        .unwrap();
    let step = step_of(&b, id, "await-seats:x").await;
    assert_eq!(confirmed_by(&step), None, "{step:?}");
    assert!(
        tenantry_app::waiting::is_waiting(step.result.as_ref().unwrap()),
        "still shown as waiting for the new action: {step:?}"
    );
}

/// The operator confirms while the run is looking at the waiting step (it is Running for that
/// moment): the confirmation is taken, not refused, survives the look's parking, and the step is
/// looked at again at once instead of after the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_during_a_look_is_kept_and_looked_at_at_once() {
    let b = backend().await;
    let id = draft_move(&b).await;
    b.ledger
        .start_run(
            id,
            vec![NewStep {
                key: "await-source:x".to_string(),
                step: json!({"kind": "awaitSourceChange"}),
                depends_on: vec![],
                servers: vec![],
            }],
            "op".into(),
            NOW,
        )
        .await
        .unwrap();
    let waiting = json!({"waitingForAdministrator": {"action": "reduce"}});
    let look = claim(&b, "w", NOW).await.unwrap();
    b.ledger
        .park_step(id, look.key, "w".into(), waiting.clone(), 10, NOW)
        .await
        .unwrap();
    let later = Timestamp(NOW.0 + 11);
    let look = claim(&b, "w", later).await.unwrap();
    assert_eq!(look.state, StepState::Running);
    let confirmed = b
        .ledger
        .confirm_step(id, "await-source:x".into(), "op:alice".into(), later)
        .await
        .expect("a confirmation during a look is taken");
    assert_eq!(confirmed["confirmedBy"], "op:alice");
    // The look itself ends before it could see the confirmation.
    b.ledger
        .park_step(id, look.key, "w".into(), waiting, 10, later)
        .await
        .unwrap();
    let step = step_of(&b, id, "await-source:x").await;
    assert_eq!(
        tenantry_app::waiting::confirmation(step.result.as_ref()).map(|c| c["by"].clone()),
        Some(json!("op:alice")),
        "{step:?}"
    );
    let again = claim(&b, "w", Timestamp(later.0 + 1))
        .await
        .expect("looked at again at once, not after the 10 s pause");
    assert_eq!(again.key, "await-source:x");
}

// ---- the directory reads and applications (the Graph surface) ----------------------------------

async fn named_user(
    b: &Backend,
    tenant: TenantId,
    upn: &str,
    name: &str,
    location: Option<&str>,
    enabled: bool,
) -> User {
    let new = NewUser {
        user_principal_name: upn.into(),
        display_name: name.into(),
        usage_location: location.map(Into::into),
        account_enabled: enabled,
    };
    b.ledger
        .create_user(&operator(), tenant, new, NOW)
        .await
        .unwrap()
}

async fn matching(b: &Backend, tenant: TenantId, filter: UserFilter) -> Vec<String> {
    let page = PageRequest {
        top: 100,
        after: None,
    };
    let found = b
        .store()
        .query_users(tenant, filter.clone(), page)
        .await
        .unwrap();
    let count = b.store().count_users(tenant, filter).await.unwrap();
    assert_eq!(
        count,
        found.items.len() as u64,
        "the count agrees with the listing"
    );
    found
        .items
        .into_iter()
        .map(|u| u.user_principal_name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_by_principal_name_and_filtered_ignoring_case() {
    let b = backend().await;
    let t = tenant(&b).await;
    let other = tenant(&b).await;
    let sku = e3(&b).await;
    buy(&b, t.id, 5).await;
    let adele = named_user(
        &b,
        t.id,
        "Adele.Vance@contoso.com",
        "Adele Vance",
        Some("US"),
        true,
    )
    .await;
    named_user(
        &b,
        t.id,
        "alex@contoso.com",
        "Alex Wilber",
        Some("gb"),
        false,
    )
    .await;
    named_user(&b, t.id, "pct@contoso.com", "100% _Sales", None, true).await;
    named_user(
        &b,
        other.id,
        "adele.vance@contoso.com",
        "Adele Other",
        Some("US"),
        true,
    )
    .await;
    b.ledger
        .assign_licenses(&operator(), t.id, adele.id, licence(sku), vec![], NOW)
        .await
        .unwrap();

    let found = b
        .store()
        .find_user_by_upn(t.id, "ADELE.vance@CONTOSO.com".into())
        .await
        .unwrap()
        .expect("found whatever the case");
    assert_eq!(found.id, adele.id, "and only in its own tenant");
    assert!(b
        .store()
        .find_user_by_upn(t.id, "nobody@contoso.com".into())
        .await
        .unwrap()
        .is_none());
    let missing = b
        .store()
        .find_user_by_upn(TenantId::new_random(), "adele.vance@contoso.com".into())
        .await
        .unwrap_err();
    assert_eq!(code(missing).1, "NotFound");

    let all = |f: UserFilter| matching(&b, t.id, f);
    assert_eq!(all(UserFilter::default()).await.len(), 3);
    let upn = UserFilter {
        user_principal_name: Some("ADELE.VANCE@contoso.COM".into()),
        ..Default::default()
    };
    assert_eq!(all(upn).await, ["Adele.Vance@contoso.com"]);
    let disabled = UserFilter {
        account_enabled: Some(false),
        ..Default::default()
    };
    assert_eq!(all(disabled).await, ["alex@contoso.com"]);
    let location = UserFilter {
        usage_location: Some("GB".into()),
        ..Default::default()
    };
    assert_eq!(all(location).await, ["alex@contoso.com"]);
    let prefix = UserFilter {
        display_name_prefix: Some("al".into()),
        ..Default::default()
    };
    assert_eq!(all(prefix).await, ["alex@contoso.com"]);
    // LIKE's wildcards in the text are matched as themselves.
    let wildcard = UserFilter {
        display_name_prefix: Some("1_0".into()),
        ..Default::default()
    };
    assert!(all(wildcard).await.is_empty());
    let percent = UserFilter {
        display_name_contains: Some("% _SALES".into()),
        ..Default::default()
    };
    assert_eq!(all(percent).await, ["pct@contoso.com"]);
    let word = UserFilter {
        display_name_contains: Some("VANCE".into()),
        ..Default::default()
    };
    assert_eq!(all(word).await, ["Adele.Vance@contoso.com"]);
    let licensed = UserFilter {
        assigned_sku: Some(sku),
        ..Default::default()
    };
    assert_eq!(all(licensed).await, ["Adele.Vance@contoso.com"]);
    let both = UserFilter {
        assigned_sku: Some(sku),
        account_enabled: Some(false),
        ..Default::default()
    };
    assert!(all(both).await.is_empty(), "conditions combine with and");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_users_page_in_creation_order_from_the_skiptoken() {
    let b = backend().await;
    let t = tenant(&b).await;
    let mut enabled = Vec::new();
    for i in 0..7 {
        let on = i % 3 != 1;
        let upn = format!("u{i}@contoso.com");
        named_user(&b, t.id, &upn, &format!("User {i}"), None, on).await;
        if on {
            enabled.push(upn);
        }
    }
    let filter = UserFilter {
        account_enabled: Some(true),
        ..Default::default()
    };
    let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = b
            .store()
            .query_users(t.id, filter.clone(), PageRequest { top: 2, after })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        pages += 1;
        seen.extend(page.items.into_iter().map(|u| u.user_principal_name));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, enabled, "each matching user once, in creation order");
    assert_eq!(pages, 3, "five users in pages of two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_token_stands_for_its_application_until_it_expires() {
    let b = backend().await;
    let t = tenant(&b).await;
    let app = b
        .ledger
        .register_application(&operator(), t.id, "script", "LicenseAdmin", NOW)
        .await
        .unwrap();
    let client_id = app.record.client_id;
    let wrong = b
        .ledger
        .issue_app_token(t.id, client_id, "not the secret", 3600, NOW)
        .await
        .unwrap();
    assert!(wrong.is_none(), "a wrong secret gets nothing");
    let elsewhere = tenant(&b).await;
    let foreign = b
        .ledger
        .issue_app_token(elsewhere.id, client_id, &app.client_secret, 3600, NOW)
        .await
        .unwrap();
    assert!(foreign.is_none(), "another tenant's client gets nothing");
    let issued = b
        .ledger
        .issue_app_token(t.id, client_id, &app.client_secret, 3600, NOW)
        .await
        .unwrap()
        .expect("issued");
    let hash = tenantry_app::tokens::hash_token(&issued.access_token);
    let principal = |at: i64| {
        b.store()
            .principal_for_app_token(hash.clone(), Timestamp(at))
    };
    assert_eq!(
        principal(NOW.0 + 3599).await.unwrap(),
        Some(Principal::Tenant {
            tenant_id: t.id,
            role: Role::LicenseAdmin,
            token_id: TokenId(client_id),
        })
    );
    assert_eq!(principal(NOW.0 + 3600).await.unwrap(), None, "expired");
    assert_eq!(
        b.store()
            .principal_for_app_token(issued.access_token.clone(), NOW)
            .await
            .unwrap(),
        None,
        "the token itself must not be what is stored"
    );
    assert_eq!(b.ledger.sweep_app_tokens(NOW).await.unwrap(), 0);
    assert_eq!(
        b.ledger
            .sweep_app_tokens(Timestamp(NOW.0 + 3600))
            .await
            .unwrap(),
        1
    );
    let (record, secret_hash) =
        transaction(b.store().as_ref(), move |tx| tx.load_application(client_id))
            .await
            .unwrap()
            .expect("the application");
    assert_eq!(record.display_name, "script");
    assert_eq!(record.tenant_id, t.id);
    assert_eq!(
        secret_hash,
        tenantry_app::tokens::hash_token(&app.client_secret),
        "only the secret's hash is stored"
    );
}

/// Admin-center sessions: stored by id hash with their principal (operator or tenant role),
/// touched, deleted, and forgotten once idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_sessions_are_stored_touched_and_expired() {
    use tenantry_store::WebSession;
    let b = backend().await;
    let tenant = Principal::Tenant {
        tenant_id: TenantId::new_random(),
        role: Role::LicenseAdmin,
        token_id: TokenId::new_random(),
    };
    for (hash, principal) in [("h-op", Principal::Operator), ("h-tenant", tenant)] {
        b.store()
            .create_web_session(WebSession {
                id_hash: hash.into(),
                principal,
                csrf: format!("csrf-{hash}"),
                last_seen: NOW,
            })
            .await
            .unwrap();
    }
    let read = |hash: &str| b.store().web_session(hash.to_string());
    let stored = read("h-tenant").await.unwrap().unwrap();
    assert_eq!(
        (stored.principal, stored.csrf.as_str(), stored.last_seen),
        (tenant, "csrf-h-tenant", NOW)
    );
    assert_eq!(
        read("h-op").await.unwrap().unwrap().principal,
        Principal::Operator
    );
    assert!(read("unknown").await.unwrap().is_none());
    // Touched: the tenant session survives an expiry that forgets the idle operator one.
    b.store()
        .touch_web_session("h-tenant".into(), Timestamp(NOW.0 + 100))
        .await
        .unwrap();
    let expired = b
        .store()
        .expire_web_sessions(Timestamp(NOW.0 + 50))
        .await
        .unwrap();
    assert_eq!(expired, 1);
    assert!(read("h-op").await.unwrap().is_none());
    assert!(read("h-tenant").await.unwrap().is_some());
    b.store()
        .delete_web_session("h-tenant".into())
        .await
        .unwrap();
    assert!(read("h-tenant").await.unwrap().is_none());
}

/// A named lease (the lifecycle sweeper's) is held by one holder at a time: renewed by its
/// holder, refused to others until it expires; of many asking at once, exactly one gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_held_by_one_holder_at_a_time() {
    let b = backend().await;
    let take = |holder: &str, until: i64, now: i64| {
        b.store().take_lease(
            "sweeper",
            holder.to_string(),
            Timestamp(NOW.0 + until),
            Timestamp(NOW.0 + now),
        )
    };
    assert!(take("a", 120, 0).await.unwrap(), "free");
    assert!(!take("b", 120, 60).await.unwrap(), "a's until 120");
    assert!(take("a", 180, 60).await.unwrap(), "renewed by its holder");
    assert!(!take("b", 300, 150).await.unwrap(), "renewed until 180");
    assert!(take("b", 300, 181).await.unwrap(), "expired: taken over");
    assert!(!take("a", 400, 200).await.unwrap(), "a lost it");
    // Another lease name is independent.
    assert!(b
        .store()
        .take_lease(
            "other",
            "a".into(),
            Timestamp(NOW.0 + 400),
            Timestamp(NOW.0 + 200)
        )
        .await
        .unwrap());

    // Many at once, after b's lease ran out: exactly one wins.
    let at = Timestamp(NOW.0 + 1_000);
    let tries: Vec<_> = (0..8)
        .map(|i| {
            let store = b.store().clone();
            tokio::spawn(async move {
                store
                    .take_lease("sweeper", format!("p{i}"), Timestamp(at.0 + 120), at)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}
