//! Data access for the ledger and moves, behind traits ([`LedgerStore`], [`MoveStore`]) so that
//! backends can be swapped at start-up and run by the same conformance suite
//! (`crates/app/tests/conformance.rs`).
//!
//! This crate holds no business rule: the application layer (`tenantry-app`) writes each
//! operation once and runs it as a unit of work over the primitives of [`LedgerTx`], inside one
//! write transaction of the backend ([`LedgerStore::write_tx`]).

pub mod directory;
pub mod moves;
mod postgres;
mod sqlite;
pub mod tx;

use async_trait::async_trait;
use std::sync::Arc;
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::audit::AuditRecord;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::counting::SubscribedSku;
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::User;
use tenantry_ledger::{LedgerError, SkuId, SubscriptionId, TenantId, Timestamp, TokenId, UserId};

pub use directory::{AppTokenRecord, ApplicationRecord, DirectoryStore, UserFilter};
pub use moves::{MoveStore, MoveTx};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use tx::{transaction, LedgerTx, SeatPool, TxWork, UserWrite};

/// Everything the server stores, behind one object.
pub trait Store: LedgerStore + MoveStore + DirectoryStore {}
impl<T: LedgerStore + MoveStore + DirectoryStore> Store for T {}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule of the ledger refused the operation.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The database failed; details are for the server log, not for clients.
    #[error("storage failure: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Internal(format!("corrupt stored JSON: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Keyset paging: at most `top` items after the opaque position `after`.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub top: u32,
    pub after: Option<i64>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            top: 100,
            after: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The position to ask for the next page from, when there is one.
    pub next: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub target_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: TokenId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub created_at: Timestamp,
}

/// A stored response to replay for a repeated `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone)]
pub enum IdempotencyBegin {
    /// First use of the key: go ahead, then call `idempotency_finish`.
    Proceed,
    /// Same key, same request: answer what was answered before.
    Replay(StoredResponse),
    /// Same key, another request.
    Mismatch,
    /// Same key, the first request is still running.
    InProgress,
}

/// Data access for the ledger.
///
/// # Concurrency contract (every backend, checked by the conformance suite)
/// - **Writes are units of work.** Every change runs in [`LedgerStore::write_tx`]: one
///   transaction, serializable (SQLite: the single writer thread, `BEGIN IMMEDIATE`, each unit in
///   its own savepoint inside a group commit; PostgreSQL: `SERIALIZABLE`, retried on a
///   serialization failure, which is why a unit of work must be safe to run again). The unit
///   hears its result only once the commit is durable; a unit that returns an error leaves
///   nothing behind.
/// - **Optimistic versions are checked in the write itself**: `UPDATE … WHERE version = ?`
///   ([`LedgerTx::update_subscription`], [`LedgerTx::update_user`]), never read-then-compare.
/// - **Seats are taken by a conditional update** (`consumed < capacity`,
///   [`LedgerTx::take_seat`]); `capacity` is recomputed from the subscriptions in the same
///   transaction whenever one is written. Nothing counts then checks.
/// - **The audit record of a change is written in the change's transaction**, and the audit
///   log is append-only (the backend refuses UPDATE and DELETE on it).
/// - Reads (the other methods) see committed data only and may run beside writes.
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// Runs one unit of work in one write transaction (see the contract above). Callers use
    /// [`transaction`], its typed form.
    async fn write_tx(&self, work: TxWork) -> Result<Box<dyn std::any::Any + Send>>;

    // Platform and tokens.
    async fn setting(&self, key: &'static str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &'static str, value: String) -> Result<()>;
    async fn principal_for_token(&self, token_hash: String) -> Result<Option<Principal>>;

    // Tenants and the catalog.
    async fn get_tenant(&self, id: TenantId) -> Result<Tenant>;
    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>>;
    async fn list_skus(&self) -> Result<Vec<Sku>>;

    // Subscriptions.
    async fn get_subscription(&self, tenant: TenantId, id: SubscriptionId) -> Result<Subscription>;
    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Subscription>>;

    // Users and licences.
    async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<User>;
    async fn list_users(
        &self,
        tenant: TenantId,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>>;
    async fn license_details(&self, tenant: TenantId, user: UserId) -> Result<Vec<Assignment>>;
    /// Every licence held in the tenant, or only those of one SKU: one query for pages that
    /// show many users' licences.
    async fn tenant_assignments(
        &self,
        tenant: TenantId,
        sku: Option<SkuId>,
    ) -> Result<Vec<Assignment>>;
    async fn subscribed_skus(&self, tenant: TenantId) -> Result<Vec<SubscribedSku>>;

    // Audit.
    async fn audit_log(
        &self,
        tenant: TenantId,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditRecord>>;

    // Idempotency keys.
    async fn idempotency_begin(
        &self,
        scope: String,
        key: String,
        request_hash: String,
        now: Timestamp,
    ) -> Result<IdempotencyBegin>;
    async fn idempotency_finish(
        &self,
        scope: String,
        key: String,
        response: Option<StoredResponse>,
    ) -> Result<()>;
    /// Forgets the keys first used before `before`; returns how many.
    async fn idempotency_expire(&self, before: Timestamp) -> Result<usize>;

    // Admin-center sessions (signed in), by the hash of their id: every process sees them,
    // and a restart signs nobody out.
    async fn create_web_session(&self, session: WebSession) -> Result<()>;
    async fn web_session(&self, id_hash: String) -> Result<Option<WebSession>>;
    async fn touch_web_session(&self, id_hash: String, now: Timestamp) -> Result<()>;
    async fn delete_web_session(&self, id_hash: String) -> Result<()>;
    /// Forgets the sessions last seen before `before`; returns how many.
    async fn expire_web_sessions(&self, before: Timestamp) -> Result<usize>;

    /// Takes or renews the lease `name` for `holder` until `until`: `true` when `holder` now
    /// holds it (it was free, expired before `now`, or already `holder`'s). One atomic
    /// conditional upsert, so of processes asking at once exactly one gets a free lease.
    async fn take_lease(
        &self,
        name: &'static str,
        holder: String,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool>;
}

/// A signed-in admin-center session as stored: never its id (only a hash of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub id_hash: String,
    pub principal: Principal,
    pub csrf: String,
    pub last_seen: Timestamp,
}

/// A stored principal's columns: `(tenant_id, role, token_id)`, all `None` for the operator.
pub(crate) fn principal_columns(
    p: &Principal,
) -> (Option<String>, Option<&'static str>, Option<String>) {
    match p {
        Principal::Operator => (None, None, None),
        Principal::Tenant {
            tenant_id,
            role,
            token_id,
        } => (
            Some(tenant_id.to_string()),
            Some(role.as_str()),
            Some(token_id.to_string()),
        ),
    }
}

/// The principal stored as [`principal_columns`]; `None` for a row this binary cannot read.
pub(crate) fn principal_of(
    tenant_id: Option<String>,
    role: Option<String>,
    token_id: Option<String>,
) -> Option<Principal> {
    match (tenant_id, role, token_id) {
        (None, None, None) => Some(Principal::Operator),
        (Some(tenant), Some(role), Some(token)) => Some(Principal::Tenant {
            tenant_id: tenant.parse().ok()?,
            role: Role::parse(&role)?,
            token_id: token.parse().ok()?,
        }),
        _ => None,
    }
}

/// Opens the store a database URL names: `postgres://…` (or `postgresql://…`) for PostgreSQL,
/// `sqlite://PATH` or a bare path for SQLite. Either is migrated to this binary's schema.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    Ok(Arc::new(SqliteStore::open(std::path::Path::new(path))?))
}

/// Whether `url` names a PostgreSQL database (shared by processes, possibly on other machines).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
