//! The conformance suite: the data-access contract and the business operations, run against the
//! backend `TENANTRY_TEST_DATABASE` names (default: a temporary SQLite file). Every backend must
//! pass all of it unchanged. Tests use fresh random domains, so a shared database also works.

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
use tenantry_store::{transaction, AuditFilter, SeatPool, Store, StoreError, UserWrite};

const NOW: Timestamp = Timestamp(1_800_000_000);
const E3: &str = "ENTERPRISEPACK";

struct Backend {
    ledger: Ledger,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn store(&self) -> &Arc<dyn Store> {
        self.ledger.store()
    }
}

fn backend() -> Backend {
    match std::env::var("TENANTRY_TEST_DATABASE") {
        Ok(url) if !url.is_empty() => {
            let store = tenantry_store::open(&url)
                .unwrap_or_else(|e| panic!("cannot open TENANTRY_TEST_DATABASE: {e}"));
            Backend {
                ledger: Ledger::new(store),
                _dir: None,
            }
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
            Backend {
                ledger: Ledger::new(tenantry_store::open(&url).unwrap()),
                _dir: Some(dir),
            }
        }
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = backend();
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
    let b = Arc::new(backend());
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
    let b = Arc::new(backend());
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
    let b = backend();
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
