//! The write side of data access: the primitives one ledger transaction offers, and the unit of
//! work that runs over them. Business rules are not here: the application layer (`tenantry-app`)
//! decides, these methods only read and write rows.

use crate::moves::MoveTx;
use crate::{AppTokenRecord, ApplicationRecord, Result, StoreError, TokenRecord};
use std::any::Any;
use std::collections::HashMap;
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::role::Role;
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use tenantry_ledger::{SkuId, SubscriptionId, TenantId, Timestamp, TokenId, UserId};
use uuid::Uuid;

/// Seats of one SKU in one tenant: `capacity` sums the subscriptions' assignable seats,
/// `consumed` counts assignments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeatPool {
    pub capacity: u32,
    pub consumed: u32,
}

/// How a conditional user update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserWrite {
    Written,
    /// The stored version is no longer the one expected: someone else wrote first.
    Stale,
    /// Another user of the tenant already has this user principal name.
    UpnTaken,
}

/// What one write transaction can do. Every method runs inside the transaction that
/// [`crate::LedgerStore::write_tx`] opened; nothing is visible to others before it commits, and
/// all of it is undone when the unit of work returns an error.
///
/// Methods are synchronous: the transaction is already open and owned by this unit of work
/// (SQLite: on the writer thread; PostgreSQL: one connection in one `SERIALIZABLE` transaction).
///
/// A unit of work also reaches the move primitives ([`MoveTx`], a supertrait), so a move's state
/// change and its audit record commit together.
pub trait LedgerTx: MoveTx {
    // ---- catalog and tenants ----
    /// The SKU catalog as of this transaction.
    fn catalog(&mut self) -> Result<&HashMap<SkuId, Sku>>;
    /// Adds a SKU; `false` when its id or part number (case-insensitive) is taken.
    fn insert_sku(&mut self, sku: &Sku) -> Result<bool>;
    fn tenant_exists(&mut self, tenant: TenantId) -> Result<bool>;
    /// Adds a tenant; `false` when its default domain belongs to another tenant.
    fn insert_tenant(&mut self, tenant: &Tenant) -> Result<bool>;
    /// Stores a token's hash (never the token) and who issued it.
    fn insert_token(
        &mut self,
        record: &TokenRecord,
        token_hash: &str,
        created_by: &str,
    ) -> Result<()>;
    /// Deletes a token of `tenant`; its role, or `None` when there is no such token there.
    fn delete_token(&mut self, tenant: TenantId, id: TokenId) -> Result<Option<Role>>;

    // ---- subscriptions and seats ----
    fn load_subscription(
        &mut self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>>;
    /// Subscriptions with a lifecycle transition due by `now`.
    fn subscriptions_due(&mut self, now: Timestamp) -> Result<Vec<Subscription>>;
    /// Adds a subscription and recomputes its seat pool's capacity.
    fn insert_subscription(&mut self, sub: &Subscription) -> Result<()>;
    /// Writes `sub` only where the stored version is still `expected` (a conditional update,
    /// never read-then-compare); `false` when it is not. Recomputes the seat pool's capacity.
    fn update_subscription(&mut self, sub: &Subscription, expected: u64) -> Result<bool>;
    fn seat_pool(&mut self, tenant: TenantId, sku: SkuId) -> Result<SeatPool>;
    /// Takes one seat with a conditional update (`consumed < capacity`); `false` when none is free.
    fn take_seat(&mut self, tenant: TenantId, sku: SkuId) -> Result<bool>;
    fn release_seat(&mut self, tenant: TenantId, sku: SkuId) -> Result<()>;

    // ---- users and their licences ----
    fn load_user(&mut self, tenant: TenantId, id: UserId) -> Result<Option<User>>;
    /// Adds a user; `false` when the tenant has a user with this principal name.
    fn insert_user(&mut self, user: &User) -> Result<bool>;
    /// Writes `user` only where the stored version is still `expected`.
    fn update_user(&mut self, user: &User, expected: u64) -> Result<UserWrite>;
    /// Removes a user and their licence rows (seats are released by the caller).
    fn delete_user(&mut self, tenant: TenantId, id: UserId) -> Result<()>;
    fn user_assignments(&mut self, user: UserId) -> Result<Vec<Assignment>>;
    fn insert_assignment(&mut self, tenant: TenantId, assignment: &Assignment) -> Result<()>;
    /// Stores new `disabled_plans` for a licence the user holds.
    fn update_assignment(&mut self, assignment: &Assignment) -> Result<()>;
    fn delete_assignment(&mut self, user: UserId, sku: SkuId) -> Result<()>;

    // ---- audit (append-only) and move effects ----
    fn insert_audit(&mut self, entry: AuditEntry, at: Timestamp) -> Result<()>;
    /// The value a move recorded for an effect key, if it made that effect already.
    fn find_effect(&mut self, move_id: Uuid, key: &str) -> Result<Option<String>>;
    fn record_effect(&mut self, move_id: Uuid, key: &str, value: &str) -> Result<()>;

    // ---- applications (client credentials) and their access tokens ----
    /// Registers an application with the hash of its secret (never the secret).
    fn insert_application(
        &mut self,
        app: &ApplicationRecord,
        secret_hash: &str,
        created_by: &str,
    ) -> Result<()>;
    /// An application and its secret's hash.
    fn load_application(&mut self, client_id: Uuid) -> Result<Option<(ApplicationRecord, String)>>;
    fn insert_app_token(&mut self, token: &AppTokenRecord) -> Result<()>;
    /// Deletes the access tokens expired at `now`; how many.
    fn delete_expired_app_tokens(&mut self, now: Timestamp) -> Result<usize>;
    /// Replaces an application's secret hash; `false` when there is no such application.
    fn set_application_secret(&mut self, client_id: Uuid, secret_hash: &str) -> Result<bool>;
    /// Deletes every access token issued to the application; how many.
    fn delete_app_tokens_of(&mut self, client_id: Uuid) -> Result<usize>;
    /// Deletes the application (its access tokens first); `false` when there is none.
    fn delete_application(&mut self, client_id: Uuid) -> Result<bool>;
}

/// A unit of work, type-erased so that the store trait stays object-safe; [`transaction`] gives
/// callers the typed form. It is `Fn`, not `FnOnce`: a backend may run it again after a
/// serialization failure (PostgreSQL), so it must not consume what it captured.
pub type TxWork = Box<dyn Fn(&mut dyn LedgerTx) -> Result<Box<dyn Any + Send>> + Send + 'static>;

/// Runs `work` in one write transaction of `store` and returns its typed result.
pub async fn transaction<S, R, F>(store: &S, work: F) -> Result<R>
where
    S: crate::LedgerStore + ?Sized,
    R: Send + 'static,
    F: Fn(&mut dyn LedgerTx) -> Result<R> + Send + 'static,
{
    let erased: TxWork = Box::new(move |tx| work(tx).map(|r| Box::new(r) as Box<dyn Any + Send>));
    store
        .write_tx(erased)
        .await?
        .downcast::<R>()
        .map(|r| *r)
        .map_err(|_| StoreError::Internal("a unit of work returned an unexpected type".into()))
}
