//! The web admin center of tenantry: server-rendered pages (askama templates compiled into the
//! binary, htmx for partial updates) over the licence ledger.
//!
//! It sits beside the API on the same port (`tenantry_api::router_with`) and talks to the store
//! exactly as the API does: every handler authorises the signed-in principal for the tenant and
//! the action (`Principal::authorize`), then makes at most one changing `LedgerStore` call, which
//! runs the domain rules and writes the audit record (other calls only read, to draw the page).
//! Nothing here decides a ledger rule; a refusal from the domain is shown as its `detail`, next to
//! the form that caused it. Two checks are phrased here before the store is asked: only the
//! operator records volume-licensing purchases (as in the API), and *Remove licences* must leave
//! at least one (the ledger's minimum quantity; cancelling is the way to stop paying for all).
//!
//! Tenant moves (`moves.rs`) are the operator's, as in the API: starting, pausing and cancelling
//! go through the mover's own rules (`tenantry_mover::control`), never re-implemented here.
//!
//! Sign-in takes an API token (the operator token, or a tenant token with a role) and resolves it
//! with the API's own `Auth` extractor; the browser then holds only a random session id in an
//! HttpOnly, SameSite=Strict cookie, and every POST carries the session's CSRF token.

mod account;
mod audit;
mod billing;
mod ctx;
mod directory;
mod moves;
mod session;
mod views;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Router};
use std::sync::Arc;
use tenantry_api::AppState;

const HTMX_JS: &str = include_str!("../assets/htmx.min.js");
const ADMIN_CSS: &str = include_str!("../assets/admin.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// Every page of the admin center, to merge beside the API with `tenantry_api::router_with`.
/// Each call makes its own (in-memory) session table.
pub fn routes() -> Router<AppState> {
    let t = "/tenants/{tenant}";
    Router::new()
        .route("/", get(account::home))
        .route("/signin", get(account::signin_page).post(account::signin))
        .route("/signout", post(account::signout))
        .route(
            "/tenants",
            get(account::tenants).post(account::create_tenant),
        )
        .route(t, get(account::tenant_home))
        .route(
            &format!("{t}/tokens"),
            get(account::tokens).post(account::issue_token),
        )
        .route(
            &format!("{t}/products"),
            get(billing::products).post(billing::buy),
        )
        .route(&format!("{t}/products/{{id}}"), get(billing::subscription))
        .route(
            &format!("{t}/products/{{id}}/{{op}}"),
            post(billing::change),
        )
        .route(&format!("{t}/licenses"), get(directory::licenses))
        .route(
            &format!("{t}/licenses/{{sku}}"),
            get(directory::license_sku),
        )
        .route(
            &format!("{t}/licenses/{{sku}}/{{op}}"),
            post(directory::assign_from_sku),
        )
        .route(
            &format!("{t}/users"),
            get(directory::users).post(directory::create_user),
        )
        .route(
            &format!("{t}/users/{{id}}"),
            get(directory::user).post(directory::edit_user),
        )
        .route(
            &format!("{t}/users/{{id}}/licenses"),
            post(directory::user_assign),
        )
        .route(
            &format!("{t}/users/{{id}}/licenses/remove"),
            post(directory::user_unassign),
        )
        .route(
            &format!("{t}/users/{{id}}/delete"),
            post(directory::delete_user),
        )
        .route(&format!("{t}/audit"), get(audit::audit))
        .route(&format!("{t}/moves"), get(moves::tenant_moves))
        .route("/moves", get(moves::list).post(moves::create))
        .route("/moves/new", get(moves::new_form))
        .route(
            "/moves/profiles",
            get(moves::profiles).post(moves::create_profile),
        )
        .route("/moves/profiles/login", post(moves::update_profile))
        .route("/moves/{id}", get(moves::show))
        .route("/moves/{id}/progress", get(moves::progress))
        .route("/moves/{id}/report", get(moves::report))
        .route("/moves/{id}/report.json", get(moves::report_json))
        .route("/moves/{id}/report.csv", get(moves::report_csv))
        .route("/moves/{id}/{op}", post(moves::act))
        // Any other page under a tenant: a readable 404 page rather than the API's JSON one.
        .route(&format!("{t}/{{*rest}}"), any(page_not_found))
        .layer(axum::middleware::map_response(security_headers))
        .route("/assets/htmx.min.js", get(htmx))
        .route("/assets/admin.css", get(css))
        .route("/assets/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .layer(Extension(Arc::new(session::Sessions::default())))
}

async fn page_not_found() -> ctx::WebError {
    ctx::WebError::not_found("page")
}

/// Pages are never cached, never framed, and run only this origin's scripts and styles.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX_JS)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", ADMIN_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}
