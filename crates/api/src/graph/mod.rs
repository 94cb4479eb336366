//! The Microsoft Graph–compatible surface: `/v1.0/…` on the same listener, the tenant taken from
//! the token (a tenant token or an application's access token), and the OAuth2 token endpoint
//! `POST /{tenantId}/oauth2/v2.0/token` (client credentials).
//!
//! Handlers follow the `/v1` shape — authorize, then one operation of `tenantry_app::Ledger` or
//! one read, then a DTO — and differ only in what Graph needs: OData options ([`odata`]), users
//! by id or userPrincipalName, Graph's field names ([`dto`]) and Graph's error envelope
//! ([`envelope`]). The operator token is refused here: it has no tenant to act in.

pub mod budget;
pub mod directory;
pub mod dto;
pub mod envelope;
pub mod odata;
pub mod openapi;
pub mod token;
pub mod users;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicI64, Ordering};
use tenantry_ledger::role::{Action, Principal};
use tenantry_ledger::TenantId;
use uuid::Uuid;

/// Settings of the Graph surface, set by `serve` at start-up.
pub struct Settings {
    pub budget: budget::RequestBudget,
    token_lifetime_secs: AtomicI64,
    /// The URL clients reach this server at (`serve --public-url`), for absolute links; unset,
    /// the request's `Host` (and a proxy's `X-Forwarded-Proto`) stand in.
    public_url: std::sync::OnceLock<String>,
}

/// Lifetime of an application's access token unless configured (Entra ID's default, one hour).
pub const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 3600;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            budget: budget::RequestBudget::default(),
            token_lifetime_secs: AtomicI64::new(DEFAULT_TOKEN_LIFETIME_SECS),
            public_url: std::sync::OnceLock::new(),
        }
    }
}

impl Settings {
    pub fn token_lifetime_secs(&self) -> i64 {
        self.token_lifetime_secs.load(Ordering::Relaxed)
    }
    pub fn set_token_lifetime_secs(&self, secs: i64) {
        self.token_lifetime_secs
            .store(secs.max(1), Ordering::Relaxed);
    }
    /// Sets the public URL once, at start-up (without a trailing `/`).
    pub fn set_public_url(&self, url: &str) {
        let _ = self.public_url.set(url.trim_end_matches('/').to_string());
    }
    /// The origin absolute links start with: the configured public URL, else what the request
    /// says (see [`base_url`]).
    pub fn origin(&self, headers: &HeaderMap) -> String {
        match self.public_url.get() {
            Some(url) => url.clone(),
            None => base_url(headers),
        }
    }
}

/// The caller of a `/v1.0` request and the tenant it acts in, within its request budget.
pub struct GraphCaller {
    pub auth: Auth,
    pub tenant: TenantId,
}

impl GraphCaller {
    pub fn authorize(&self, action: Action) -> ApiResult<()> {
        self.auth.authorize(self.tenant, action)
    }
}

impl FromRequestParts<AppState> for GraphCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let auth = Auth::from_request_parts(parts, app).await?;
        let (tenant, key) = match auth.0 {
            Principal::Tenant {
                tenant_id,
                token_id,
                ..
            } => (tenant_id, token_id.0),
            Principal::Operator => return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "OperatorTokenNotAccepted",
                "/v1.0 acts in the tenant of the token: use a tenant token or an application's \
                     access token (client credentials); the operator token works on /v1",
            )),
        };
        if let Err(wait) = app.graph.budget.take(key) {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!("this token made too many requests; retry in {seconds} s"),
            );
            e.retry_after = Some(seconds);
            return Err(e);
        }
        Ok(GraphCaller { auth, tenant })
    }
}

/// The origin a client reached us at, for absolute `@odata.nextLink`s when no public URL is
/// configured: the `Host` it used, and `https` only when a proxy in front says so.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// Whether the request asked for `ConsistencyLevel: eventual` (needed by `$count`, `$search`).
pub fn eventual(headers: &HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// Parses a request's OData options for an endpoint accepting `allowed`.
pub fn query(
    raw: Option<&str>,
    headers: &HeaderMap,
    allowed: odata::Allowed,
) -> ApiResult<odata::Query> {
    odata::parse(raw.unwrap_or(""), allowed, eventual(headers))
        .map_err(|r| ApiError::bad_request(r.code, r.message))
}

/// The link to the page after `next`, carrying the request's other options.
/// Entries a page holds when `$top` does not say.
const DEFAULT_TOP: u32 = 100;

/// The page a query asks for: `$top` entries (100 unless it says), after `$skiptoken`.
pub fn page(query: &odata::Query) -> ApiResult<tenantry_store::PageRequest> {
    Ok(tenantry_store::PageRequest {
        top: query.top.unwrap_or(DEFAULT_TOP),
        after: query
            .skiptoken
            .as_deref()
            .map(skiptoken::decode)
            .transpose()?,
    })
}

/// A collection answer: `@odata.context` for the entity set at `path`, the values, and an
/// absolute `@odata.nextLink` when the listing goes on after `next`; `base` is
/// [`Settings::origin`].
pub fn collection(
    base: &str,
    path: &str,
    value: Vec<serde_json::Value>,
    query: &odata::Query,
    next: Option<i64>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "@odata.context": format!("{base}/v1.0/$metadata#{path}"),
        "value": value
    });
    if let Some(next) = next {
        body["@odata.nextLink"] = next_link(base, path, query, next).into();
    }
    body
}

pub fn next_link(base: &str, path: &str, query: &odata::Query, next: i64) -> String {
    use crate::routes::urlencode;
    let mut link = format!("{base}/v1.0/{path}?");
    for (k, v) in &query.carried {
        link.push_str(&format!("{}={}&", urlencode(k), urlencode(v)));
    }
    link.push_str(&format!("$skiptoken={}", skiptoken::encode(next)));
    link
}

/// `$skiptoken` values: an opaque text for a position in a listing.
pub mod skiptoken {
    use crate::error::{ApiError, ApiResult};
    use base64::Engine;

    const PREFIX: &str = "tenantry1:";

    pub fn encode(position: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{PREFIX}{position}"))
    }

    pub fn decode(token: &str) -> ApiResult<i64> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix(PREFIX).and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidSkipToken",
                    "$skiptoken must come from an @odata.nextLink",
                )
            })
    }
}

/// Parses an id from the path; Graph ids are GUIDs.
pub fn guid(raw: &str, what: &str) -> ApiResult<Uuid> {
    crate::extract::parse_id(raw, what)
}

/// The `/v1.0` routes (Graph's error envelope on every response) and the token endpoint.
pub fn routes(app: AppState) -> Router<AppState> {
    let v1 = Router::new()
        .route("/subscribedSkus", get(directory::subscribed_skus))
        .route("/subscribedSkus/{id}", get(directory::subscribed_sku))
        .route("/directory/subscriptions", get(directory::subscriptions))
        .route(
            "/directory/subscriptions/{id}",
            get(directory::subscription),
        )
        .route("/organization", get(directory::organization))
        .route(
            "/auditLogs/directoryAudits",
            get(directory::directory_audits),
        )
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            get(users::get).patch(users::patch).delete(users::delete),
        )
        .route("/users/{id}/assignLicense", post(users::assign_license))
        .route("/users/{id}/licenseDetails", get(users::license_details))
        .fallback(|| async { ApiError::not_found("resource") })
        .layer(axum::middleware::from_fn_with_state(
            app,
            envelope::graph_errors,
        ));
    Router::new()
        .nest("/v1.0", v1)
        .route(
            "/openapi/graph.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token::issue))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(token::authorize).post(token::authorize),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(token::openid_configuration),
        )
}
