//! Storage for the ledger, behind one trait ([`LedgerStore`]) so that backends can be swapped at
//! start-up and run by the same tests.
//!
//! Every mutation runs the domain rules of `tenantry-ledger` inside the storage transaction, writes
//! its audit record in that same transaction, and takes seats with a conditional update, never a
//! count-then-check in application code.

pub mod moves;
mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;
use tenantry_ledger::assignment::{AddLicense, Assignment};
use tenantry_ledger::audit::AuditRecord;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::counting::SubscribedSku;
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::subscription::{
    CancelOutcome, Money, SeatChange, Subscription, SubscriptionOrder,
};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::{User, UserPatch};
use tenantry_ledger::{LedgerError, SkuId, SubscriptionId, TenantId, Timestamp, TokenId, UserId};

pub use moves::MoveStore;
pub use sqlite::SqliteStore;

/// Everything the server stores, behind one object.
pub trait Store: LedgerStore + MoveStore {}
impl<T: LedgerStore + MoveStore> Store for T {}

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

/// Names the SKU of an order either way Graph clients do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum SkuRef {
    Id(SkuId),
    PartNumber(String),
}

/// A change to an existing subscription.
#[derive(Debug, Clone, Copy)]
pub enum SubscriptionChange {
    SetQuantity(u32),
    Cancel,
    Reactivate,
    ExtendTrial,
}

#[derive(Debug, Clone)]
pub enum ChangeOutcome {
    Seats(SeatChange),
    Cancelled(CancelOutcome),
    Reactivated(Money),
    TrialExtended,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewUser {
    pub user_principal_name: String,
    pub display_name: String,
    pub usage_location: Option<String>,
    pub account_enabled: bool,
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

#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    // Platform and tokens.
    async fn setting(&self, key: &'static str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &'static str, value: String) -> Result<()>;
    async fn create_token(
        &self,
        tenant: TenantId,
        role: Role,
        token_hash: String,
        actor: String,
        now: Timestamp,
    ) -> Result<TokenRecord>;
    async fn principal_for_token(&self, token_hash: String) -> Result<Option<Principal>>;

    // Tenants.
    async fn create_tenant(
        &self,
        display_name: String,
        default_domain: String,
        actor: String,
        now: Timestamp,
    ) -> Result<Tenant>;
    async fn get_tenant(&self, id: TenantId) -> Result<Tenant>;
    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>>;

    // Catalog.
    async fn list_skus(&self) -> Result<Vec<Sku>>;
    async fn add_sku(&self, sku: Sku, actor: String, now: Timestamp) -> Result<Sku>;

    // Subscriptions.
    async fn create_subscription(
        &self,
        order: SubscriptionOrder,
        sku: SkuRef,
        actor: String,
        now: Timestamp,
    ) -> Result<(Subscription, Money)>;
    async fn get_subscription(&self, tenant: TenantId, id: SubscriptionId) -> Result<Subscription>;
    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Subscription>>;
    /// Applies `change` if the subscription's version still equals `if_match` (when given).
    async fn change_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        if_match: Option<u64>,
        change: SubscriptionChange,
        actor: String,
        now: Timestamp,
    ) -> Result<(Subscription, ChangeOutcome)>;
    /// Applies every lifecycle transition due by `now`; returns how many subscriptions changed.
    async fn advance_lifecycle(&self, now: Timestamp) -> Result<usize>;

    // Users and licences.
    async fn create_user(
        &self,
        tenant: TenantId,
        user: NewUser,
        actor: String,
        now: Timestamp,
    ) -> Result<User>;
    async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<User>;
    async fn list_users(
        &self,
        tenant: TenantId,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>>;
    async fn update_user(
        &self,
        tenant: TenantId,
        id: UserId,
        if_match: Option<u64>,
        patch: UserPatch,
        actor: String,
        now: Timestamp,
    ) -> Result<User>;
    /// Deletes a user and gives their seats back.
    async fn delete_user(
        &self,
        tenant: TenantId,
        id: UserId,
        actor: String,
        now: Timestamp,
    ) -> Result<()>;
    async fn assign_licenses(
        &self,
        tenant: TenantId,
        user: UserId,
        add: Vec<AddLicense>,
        remove: Vec<SkuId>,
        actor: String,
        now: Timestamp,
    ) -> Result<(User, Vec<Assignment>)>;
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
    /// Deletes an API token of `tenant` (audited): it stops working at once, on every server
    /// sharing the database.
    async fn revoke_token(
        &self,
        tenant: TenantId,
        id: TokenId,
        actor: String,
        now: Timestamp,
    ) -> Result<()>;
}

/// Opens the store a database URL names: `sqlite://PATH` (or a bare path).
pub fn open(url: &str) -> Result<Arc<dyn Store>> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Internal(
            "PostgreSQL support is not built yet; use sqlite://PATH".into(),
        ));
    }
    Ok(Arc::new(SqliteStore::open(std::path::Path::new(path))?))
}
