//! Signing in and out, the operator's tenant list, and API tokens.

use crate::ctx::{page_response, CsrfForm, Ctx, Errors, FormError, Posted, WebError, WebResult};
use crate::session::{self, Sessions};
use crate::views::{date, Layout, SignInPage, TenantRow, TenantsPage, TokensPage};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tenantry_api::auth::{Auth, Credential};
use tenantry_api::AppState;
use tenantry_ledger::role::{Action, Principal, Role};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::TenantId;
use tenantry_store::{PageRequest, StoreError};

/// Parses the tenant of the URL and checks the principal may read it (another tenant: 404).
pub async fn load_tenant(app: &AppState, ctx: &Ctx, tenant: &str) -> WebResult<Tenant> {
    let id: TenantId = tenant.parse().map_err(|_| WebError::not_found("tenant"))?;
    ctx.authorize(id, Action::Read)?;
    Ok(app.store.get_tenant(id).await?)
}

pub async fn home(ctx: Ctx) -> Response {
    match ctx.principal {
        Principal::Operator => Redirect::to("/tenants").into_response(),
        Principal::Tenant { tenant_id, .. } => {
            Redirect::to(&format!("/tenants/{tenant_id}/products")).into_response()
        }
    }
}

pub async fn tenant_home(Path(tenant): Path<String>) -> Response {
    Redirect::to(&format!("/tenants/{}/products", urlencode_path(&tenant))).into_response()
}

fn urlencode_path(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

fn signin_response(
    status: StatusCode,
    csrf: &str,
    error: Option<String>,
    notice: Option<String>,
    set_cookie: Option<(String, bool)>,
) -> WebResult {
    let mut l = Layout::bare("Sign in");
    l.csrf = csrf.to_string();
    let mut response = page_response(status, false, SignInPage { l, error, notice })?;
    if let Some((id, secure)) = set_cookie {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, session::set_cookie(&id, secure));
    }
    Ok(response)
}

pub async fn signin_page(
    State(app): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> WebResult {
    let existing = match session::cookie_value(&headers) {
        Some(id) => sessions
            .get(app.store.as_ref(), &id, app.clock.now())
            .await?
            .map(|s| (id, s)),
        None => None,
    };
    if let Some((_, s)) = &existing {
        if s.principal.is_some() {
            return Ok(Redirect::to("/").into_response());
        }
    }
    let notice = q
        .contains_key("signed_out")
        .then(|| "You are signed out.".to_string());
    match existing {
        Some((_, s)) => signin_response(StatusCode::OK, &s.csrf, None, notice, None),
        None => {
            let (id, s) = sessions.create_anonymous();
            let secure = session::behind_https(&headers);
            signin_response(StatusCode::OK, &s.csrf, None, notice, Some((id, secure)))
        }
    }
}

/// The principal a token names, found the way the API finds it (same cache, same store call).
/// A refusal carries the status the page answers with (401, or 429 after too many failures).
async fn principal_for(
    app: &AppState,
    token: &str,
    client: Option<ConnectInfo<SocketAddr>>,
) -> Result<Principal, (StatusCode, String)> {
    let invalid = || {
        (
            StatusCode::UNAUTHORIZED,
            "That token is not valid. Paste the whole token, e.g. op_… or tnt_…".to_string(),
        )
    };
    if token.is_empty() || token.len() > 512 {
        return Err(invalid());
    }
    let request = axum::http::Request::builder()
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .map_err(|_| invalid())?;
    let (mut parts, ()) = request.into_parts();
    // The same per-address limit on failures as the API: the page passes the client's address on.
    if let Some(client) = client {
        parts.extensions.insert(client);
    }
    match Auth::from_request_parts(&mut parts, app).await {
        // Applications' access tokens are for programs and expire within hours: a session
        // signed in with one would outlive it.
        Ok(Auth(_, Credential::AppToken)) => Err(invalid()),
        Ok(Auth(principal, _)) => Ok(principal),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(invalid()),
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-ins from your address. Wait {} seconds, then try again.",
                e.retry_after.unwrap_or(1)
            ),
        )),
        Err(_) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not check the token; the cause has been logged.".into(),
        )),
    }
}

pub async fn signin(
    State(app): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    f: CsrfForm,
) -> WebResult {
    let token = f.form.get("token").trim().to_string();
    match principal_for(&app, &token, client.map(|Extension(c)| c)).await {
        Ok(principal) => {
            // A new session id at sign-in: an id seen before signing in is worth nothing after.
            let store = app.store.as_ref();
            f.sessions.remove(store, &f.sid).await?;
            let (id, _) = f.sessions.create(store, principal, app.clock.now()).await?;
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::set_cookie(&id, f.https));
            Ok(response)
        }
        Err((status, message)) => signin_response(status, &f.csrf, Some(message), None, None),
    }
}

pub async fn signout(State(app): State<AppState>, f: CsrfForm) -> WebResult {
    f.sessions.remove(app.store.as_ref(), &f.sid).await?;
    let mut response = Redirect::to("/signin?signed_out=1").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    Ok(response)
}

async fn tenants_page(
    app: &AppState,
    ctx: &Ctx,
    err: Errors,
    name: String,
    domain: String,
) -> WebResult {
    if !ctx.principal.is_operator() {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "Only the platform operator can list and create tenants.",
        ));
    }
    let page = app
        .store
        .list_tenants(PageRequest {
            top: 1000,
            after: None,
        })
        .await?;
    let tenants = page
        .items
        .into_iter()
        .map(|t| TenantRow {
            id: t.id.to_string(),
            name: t.display_name,
            domain: t.default_domain,
            created: date(t.created_at),
        })
        .collect();
    let status = err.status();
    ctx.page(
        status,
        TenantsPage {
            l: Layout::new(ctx, "Tenants", "tenants", None),
            tenants,
            err,
            name,
            domain,
        },
    )
}

pub async fn tenants(State(app): State<AppState>, ctx: Ctx) -> WebResult {
    tenants_page(&app, &ctx, Errors::default(), String::new(), String::new()).await
}

pub async fn create_tenant(State(app): State<AppState>, Posted { ctx, form }: Posted) -> WebResult {
    let name = form.get("name").to_string();
    let domain = form.get("domain").to_string();
    if !ctx.principal.is_operator() {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "Only the platform operator can create tenants.",
        ));
    }
    match app
        .ledger
        .create_tenant(&ctx.caller(), &name, &domain, app.clock.now())
        .await
    {
        Ok(t) => Ok(ctx.done(
            "/tenants",
            format!("Tenant {} ({}) created.", t.display_name, t.default_domain),
        )),
        Err(e) => {
            let err = FormError::from_store("create", e).into();
            tenants_page(&app, &ctx, err, name, domain).await
        }
    }
}

fn roles() -> Vec<(&'static str, &'static str)> {
    Role::ALL
        .into_iter()
        .map(|r| (r.as_str(), crate::views::role_label(r.as_str())))
        .collect()
}

pub async fn tokens(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    ctx.authorize(t.id, Action::ManageTokens)?;
    ctx.page(
        StatusCode::OK,
        TokensPage {
            l: Layout::new(&ctx, "API tokens", "tokens", Some(&t)),
            tid: t.id.to_string(),
            roles: roles(),
            err: Errors::default(),
            issued: None,
        },
    )
}

pub async fn issue_token(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    // Refused before anything else: a 403 page, whatever the page showed.
    ctx.authorize(t.id, Action::ManageTokens)?;
    let result = async {
        let issued = app
            .ledger
            .issue_token(&ctx.caller(), t.id, form.get("role"), app.clock.now())
            .await
            .map_err(|e| match e {
                // The form offers the roles as a list: say so, not the API's wording.
                StoreError::Ledger(e) if e.code == "InvalidRole" => {
                    FormError::invalid("token", "Choose one of the listed roles.")
                }
                e => FormError::from_store("token", e),
            })?;
        let label = crate::views::role_label(issued.record.role.as_str()).to_string();
        Ok::<_, FormError>((label, issued.token))
    }
    .await;
    let (err, issued) = match result {
        Ok(issued) => (Errors::default(), Some(issued)),
        Err(e) => (Errors::from(e), None),
    };
    ctx.page(
        err.status(),
        TokensPage {
            l: Layout::new(&ctx, "API tokens", "tokens", Some(&t)),
            tid: t.id.to_string(),
            roles: roles(),
            err,
            issued,
        },
    )
}
