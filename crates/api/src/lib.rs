//! The HTTP API of tenantry: Graph-shaped licensing resources over the ledger store.
//!
//! A request goes: metrics → idempotency (POST with `Idempotency-Key`) → route → `Auth`
//! extractor (bearer token → principal) → handler (role check, then one operation of the
//! application layer, `tenantry_app::Ledger`, or one read) → DTO.
//! Errors of every layer become `application/problem+json` in `error.rs`, nowhere else.

pub mod auth;
pub mod clock;
pub mod dto;
pub mod error;
pub mod extract;
pub mod graph;
pub mod idempotency;
mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod throttle;
pub mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use routes::{audit, billing, directory, moves, ops, platform};
use std::sync::Arc;
use std::time::Duration;
use tenantry_store::Store;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    /// Every business operation (the store is for reads that need no rule).
    pub ledger: tenantry_app::Ledger,
    pub clock: clock::Clock,
    pub tokens: auth::TokenCache,
    /// Failed authentications per client address (429 past a burst).
    pub auth_failures: throttle::FailureLimiter,
    /// Tenant moves: absent when the server runs without them (the API answers 503).
    pub mover: Option<Arc<tenantry_mover::gather::Mover>>,
    /// The Graph surface's request budget and token lifetime.
    pub graph: graph::Settings,
    metrics: metrics::Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: clock::Clock) -> AppState {
        Self::with_mover(store, clock, None)
    }

    pub fn with_mover(
        store: Arc<dyn Store>,
        clock: clock::Clock,
        mover: Option<Arc<tenantry_mover::gather::Mover>>,
    ) -> AppState {
        AppState(Arc::new(Inner {
            ledger: tenantry_app::Ledger::new(store.clone()),
            store,
            clock,
            tokens: auth::TokenCache::default(),
            auth_failures: throttle::FailureLimiter::default(),
            mover,
            graph: graph::Settings::default(),
            metrics: metrics::Metrics::default(),
        }))
    }
}

/// How the operator token was settled at start-up.
pub enum OperatorToken {
    /// Taken from the environment.
    FromEnvironment,
    /// Generated now: to be shown once, never again.
    Generated(String),
    /// Generated on an earlier start; only its hash is stored.
    Existing,
}

/// Makes sure an operator token exists: the one given, or a new one on first start.
pub async fn ensure_operator_token(
    app: &AppState,
    from_env: Option<&str>,
) -> anyhow_like::Result<OperatorToken> {
    use auth::{hash_token, new_token, OPERATOR_TOKEN_SETTING};
    if let Some(token) = from_env {
        let hash = hash_token(token);
        app.store
            .set_setting(OPERATOR_TOKEN_SETTING, hash.clone())
            .await?;
        app.tokens.set_operator_hash(hash);
        return Ok(OperatorToken::FromEnvironment);
    }
    if let Some(hash) = app.store.setting(OPERATOR_TOKEN_SETTING).await? {
        app.tokens.set_operator_hash(hash);
        return Ok(OperatorToken::Existing);
    }
    let token = new_token("op");
    let hash = hash_token(&token);
    app.store
        .set_setting(OPERATOR_TOKEN_SETTING, hash.clone())
        .await?;
    app.tokens.set_operator_hash(hash);
    Ok(OperatorToken::Generated(token))
}

/// Store errors at start-up, without pulling an error framework into the library.
pub mod anyhow_like {
    pub type Result<T> = std::result::Result<T, tenantry_store::StoreError>;
}

/// The API alone.
pub fn router(app: AppState) -> Router {
    router_with(app, Router::new())
}

/// The API plus `extra` routes (the admin center), behind the same middleware and fallback.
pub fn router_with(app: AppState, extra: Router<AppState>) -> Router {
    let tenant = "/v1/tenants/{tenant}";
    let api = Router::new()
        .route(
            "/v1/tenants",
            post(platform::create_tenant).get(platform::list_tenants),
        )
        .route(tenant, get(platform::get_tenant))
        .route("/v1/skus", get(platform::list_skus).post(platform::add_sku))
        .route(&format!("{tenant}/tokens"), post(platform::create_token))
        .route(
            &format!("{tenant}/applications"),
            post(platform::create_application).get(platform::list_applications),
        )
        .route(
            &format!("{tenant}/applications/{{client}}"),
            delete(platform::delete_application),
        )
        .route(
            &format!("{tenant}/applications/{{client}}/rotateSecret"),
            post(platform::rotate_application_secret),
        )
        .route(
            &format!("{tenant}/tokens/{{token}}"),
            delete(platform::revoke_token),
        )
        .route("/v1/admin/clock", post(platform::advance_clock))
        .route(
            &format!("{tenant}/subscriptions"),
            post(billing::create).get(billing::list_all),
        )
        .route(
            &format!("{tenant}/subscriptions/{{id}}"),
            get(billing::get).patch(billing::patch),
        )
        .route(
            &format!("{tenant}/subscriptions/{{id}}/cancel"),
            post(billing::cancel),
        )
        .route(
            &format!("{tenant}/subscriptions/{{id}}/reactivate"),
            post(billing::reactivate),
        )
        .route(
            &format!("{tenant}/subscriptions/{{id}}/extendTrial"),
            post(billing::extend_trial),
        )
        .route(
            &format!("{tenant}/subscriptions/{{id}}/transfer"),
            post(billing::transfer),
        )
        .route(
            &format!("{tenant}/subscribedSkus"),
            get(billing::subscribed_skus),
        )
        .route(
            &format!("{tenant}/users"),
            post(directory::create).get(directory::list_all),
        )
        .route(
            &format!("{tenant}/users/{{id}}"),
            get(directory::get)
                .patch(directory::patch)
                .delete(directory::delete),
        )
        .route(
            &format!("{tenant}/users/{{id}}/assignLicense"),
            post(directory::assign_license),
        )
        .route(
            &format!("{tenant}/users/{{id}}/licenseDetails"),
            get(directory::license_details),
        )
        .route(&format!("{tenant}/auditLogs"), get(audit::list_all))
        .route(
            "/v1/connectionProfiles",
            post(moves::create_profile).get(moves::list_profiles),
        )
        .route("/v1/connectionProfiles/{name}", put(moves::update_profile))
        .route("/v1/moves", post(moves::create).get(moves::list_all))
        .route("/v1/moves/{id}", get(moves::get))
        .route("/v1/moves/{id}/plan", get(moves::plan))
        .route("/v1/moves/{id}/run", post(moves::run))
        .route("/v1/moves/{id}/pause", post(moves::pause))
        .route("/v1/moves/{id}/resume", post(moves::resume))
        .route("/v1/moves/{id}/cancel", post(moves::cancel))
        .route(
            "/v1/moves/{id}/steps/{key}/confirm",
            post(moves::confirm_step),
        )
        .route("/v1/moves/{id}/report", get(moves::report))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            idempotency::enforce,
        ));
    Router::new()
        .merge(api)
        .merge(graph::routes(app.clone()))
        .merge(extra)
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// How long an admin-center session lasts without a request (the sweeper forgets it then).
pub const WEB_SESSION_IDLE_SECS: i64 = 8 * 3600;

/// The lease that lets one process at a time sweep ([`spawn_lifecycle_sweeper`]).
pub const SWEEPER_LEASE: &str = "lifecycle-sweeper";

/// Applies subscription lifecycle transitions as time passes, forgets idempotency keys
/// older than [`idempotency::KEEP_FOR_SECS`], expired application access tokens and idle
/// admin-center sessions. One process at a time sweeps: each tick takes or renews the
/// database lease [`SWEEPER_LEASE`] for two periods, so another process takes over only when
/// the holder has stopped.
pub fn spawn_lifecycle_sweeper(app: AppState, every: Duration) {
    let holder = format!("sweeper-{}", uuid::Uuid::new_v4());
    let lease_secs = 2 * (every.as_secs() as i64).max(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = app.clock.now();
            let until = tenantry_ledger::Timestamp(now.0 + lease_secs);
            match app
                .store
                .take_lease(SWEEPER_LEASE, holder.clone(), until, now)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "the sweeper's lease could not be taken");
                    continue;
                }
            }
            if let Err(e) = app.ledger.advance_lifecycle(now).await {
                tracing::error!(error = %e, "lifecycle sweep failed");
            }
            let expired = tenantry_ledger::Timestamp(now.0 - idempotency::KEEP_FOR_SECS);
            if let Err(e) = app.store.idempotency_expire(expired).await {
                tracing::error!(error = %e, "idempotency key sweep failed");
            }
            if let Err(e) = app.ledger.sweep_app_tokens(now).await {
                tracing::error!(error = %e, "expired access token sweep failed");
            }
            let idle = tenantry_ledger::Timestamp(now.0 - WEB_SESSION_IDLE_SECS);
            if let Err(e) = app.store.expire_web_sessions(idle).await {
                tracing::error!(error = %e, "idle admin-center session sweep failed");
            }
        }
    });
}
