//! Reads the Graph surface needs beyond [`crate::LedgerStore`]: users by principal name and by
//! filter (with their count), and the principal of an application's access token.

use crate::{Page, PageRequest, Result};
use async_trait::async_trait;
use tenantry_ledger::role::{Principal, Role};
use tenantry_ledger::user::User;
use tenantry_ledger::{SkuId, TenantId, Timestamp};
use uuid::Uuid;

/// Which users a listing returns: every condition given must hold (they combine with `and`).
/// Text comparisons ignore ASCII case, as Microsoft Graph's do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    pub user_principal_name: Option<String>,
    pub account_enabled: Option<bool>,
    pub usage_location: Option<String>,
    pub display_name_prefix: Option<String>,
    /// A word the display name contains (`$search="displayName:…"`).
    pub display_name_contains: Option<String>,
    /// Users holding a licence of this SKU.
    pub assigned_sku: Option<SkuId>,
}

/// An application registered for the client-credentials grant (never its secret).
#[derive(Debug, Clone)]
pub struct ApplicationRecord {
    pub client_id: Uuid,
    pub tenant_id: TenantId,
    pub display_name: String,
    pub role: Role,
    pub created_at: Timestamp,
}

/// An access token issued to an application: only its hash is stored.
#[derive(Debug, Clone)]
pub struct AppTokenRecord {
    pub token_hash: String,
    pub client_id: Uuid,
    pub tenant_id: TenantId,
    pub role: Role,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// The user of `tenant` with this principal name (case-insensitive).
    async fn find_user_by_upn(&self, tenant: TenantId, upn: String) -> Result<Option<User>>;
    /// Users matching `filter`, in creation order, with keyset paging.
    async fn query_users(
        &self,
        tenant: TenantId,
        filter: UserFilter,
        page: PageRequest,
    ) -> Result<Page<User>>;
    /// How many users match `filter`.
    async fn count_users(&self, tenant: TenantId, filter: UserFilter) -> Result<u64>;
    /// The principal an application access token stands for, unless unknown or expired at `now`.
    async fn principal_for_app_token(
        &self,
        token_hash: String,
        now: Timestamp,
    ) -> Result<Option<Principal>>;
    /// The applications registered in `tenant`, oldest first (never their secrets).
    async fn list_applications(&self, tenant: TenantId) -> Result<Vec<ApplicationRecord>>;
}
