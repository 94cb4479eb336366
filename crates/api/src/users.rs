//! A user named in a path: by id (a GUID) or, as Graph allows, by userPrincipalName.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use tenantry_ledger::{LedgerError, TenantId, UserId};

/// The id of the user `raw` names in `tenant`: a GUID as it is, a userPrincipalName looked up
/// (case-insensitively). Call it after authorizing: a lookup reads the tenant.
pub async fn resolve(app: &AppState, tenant: TenantId, raw: &str) -> ApiResult<UserId> {
    if let Ok(id) = raw.parse::<UserId>() {
        return Ok(id);
    }
    if !raw.contains('@') {
        return Err(ApiError::bad_request(
            "MalformedId",
            format!("'{raw}' is neither a user id (a GUID) nor a userPrincipalName"),
        ));
    }
    app.store
        .find_user_by_upn(tenant, raw.to_string())
        .await?
        .map(|u| u.id)
        .ok_or_else(|| LedgerError::not_found("user").into())
}
