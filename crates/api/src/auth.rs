//! Bearer-token authentication. Tokens are random 256-bit secrets; only their SHA-256 is stored,
//! so a leaked database does not leak credentials (a slow hash adds nothing at this entropy).

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::RwLock;
use tenantry_ledger::role::{Action, Principal};
use tenantry_ledger::TenantId;

/// How an application's access token begins (issued by `tenantry_app::Ledger::issue_app_token`).
const APP_TOKEN_PREFIX: &str = "tat_";

pub const OPERATOR_TOKEN_SETTING: &str = "operator_token_sha256";

// Token secrets are made and hashed by the application layer, which issues tokens.
pub use tenantry_app::tokens::{hash_token, new_token};

/// The operator token's hash. Tenant tokens are looked up in the database on every request (one
/// indexed read), never cached, so a revoked token stops working at once on every server.
#[derive(Default)]
pub struct TokenCache {
    operator_hash: RwLock<Option<String>>,
}

impl TokenCache {
    pub fn set_operator_hash(&self, hash: String) {
        *self.operator_hash.write().expect("token cache lock") = Some(hash);
    }
}

/// The authenticated caller, and how it authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Principal, pub Credential);

/// What a caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Operator,
    /// A tenant's API token (lasting, revocable).
    ApiToken,
    /// An application's access token from client credentials (expires within hours).
    AppToken,
}

impl Auth {
    /// Refuses an application's access token where lasting credentials are made (API tokens,
    /// applications): an hour-long token must not be turned into access that never expires.
    pub fn refuse_app_token(&self) -> ApiResult<()> {
        if self.1 == Credential::AppToken {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "AppTokenCannotIssueCredentials",
                "an application's access token cannot create or revoke API tokens or \
                 applications: use a tenant admin's API token or the operator token",
            ));
        }
        Ok(())
    }

    pub fn authorize(&self, tenant: TenantId, action: Action) -> ApiResult<()> {
        self.0.authorize(tenant, action).map_err(ApiError::from)
    }

    pub fn require_operator(&self) -> ApiResult<()> {
        if self.0.is_operator() {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Forbidden",
                "only the platform operator can do this",
            ))
        }
    }

    pub fn actor(&self) -> String {
        self.0.actor()
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address, as the server loop recorded it (unknown in in-process tests).
pub(crate) fn client_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("send a token: Authorization: Bearer <token>"))?;
        let client = client_address(parts);
        if let Some(wait) = app.auth_failures.wait(client) {
            return Err(ApiError::too_many_failed_authentications(wait));
        }
        let hash = hash_token(token);
        if app
            .tokens
            .operator_hash
            .read()
            .expect("token cache lock")
            .as_deref()
            == Some(hash.as_str())
        {
            return Ok(Auth(Principal::Operator, Credential::Operator));
        }
        // Applications' access tokens (client credentials) expire; API tokens do not.
        let credential = if token.starts_with(APP_TOKEN_PREFIX) {
            Credential::AppToken
        } else {
            Credential::ApiToken
        };
        let principal = if credential == Credential::AppToken {
            app.store
                .principal_for_app_token(hash, app.clock.now())
                .await?
        } else {
            app.store.principal_for_token(hash).await?
        };
        match principal {
            Some(principal) => Ok(Auth(principal, credential)),
            None => {
                app.auth_failures.failed(client);
                // The token itself is never logged, not even in part.
                tracing::warn!(%client, path = %parts.uri.path(), "authentication failed: unknown, revoked or expired token");
                Err(ApiError::unauthorized("the token is not valid"))
            }
        }
    }
}

/// The operator, checked before the body is read: a tenant principal gets 403, not a
/// validation error about a body it may not send at all.
#[derive(Debug, Clone, Copy)]
pub struct Operator(pub Auth);

impl Operator {
    pub fn actor(&self) -> String {
        self.0.actor()
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, app).await?;
        auth.require_operator()?;
        Ok(Operator(auth))
    }
}
