//! Bearer-token authentication. Tokens are random 256-bit secrets; only their SHA-256 is stored,
//! so a leaked database does not leak credentials (a slow hash adds nothing at this entropy).

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use std::collections::HashMap;
use std::sync::RwLock;
use tenantry_ledger::role::{Action, Principal};
use tenantry_ledger::TenantId;

pub const OPERATOR_TOKEN_SETTING: &str = "operator_token_sha256";

// Token secrets are made and hashed by the application layer, which issues tokens.
pub use tenantry_app::tokens::{hash_token, new_token};

/// Token hash → principal, filled on first use. Tokens are never modified once issued.
#[derive(Default)]
pub struct TokenCache {
    operator_hash: RwLock<Option<String>>,
    principals: RwLock<HashMap<String, Principal>>,
}

impl TokenCache {
    pub fn set_operator_hash(&self, hash: String) {
        *self.operator_hash.write().expect("token cache lock") = Some(hash);
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Principal);

impl Auth {
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

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("send a token: Authorization: Bearer <token>"))?;
        let hash = hash_token(token);
        let cache = &app.tokens;
        if cache
            .operator_hash
            .read()
            .expect("token cache lock")
            .as_deref()
            == Some(hash.as_str())
        {
            return Ok(Auth(Principal::Operator));
        }
        if let Some(principal) = cache
            .principals
            .read()
            .expect("token cache lock")
            .get(&hash)
        {
            return Ok(Auth(*principal));
        }
        match app.store.principal_for_token(hash.clone()).await? {
            Some(principal) => {
                cache
                    .principals
                    .write()
                    .expect("token cache lock")
                    .insert(hash, principal);
                Ok(Auth(principal))
            }
            None => Err(ApiError::unauthorized("the token is not valid")),
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
