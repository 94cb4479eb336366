//! What every page handler gets: the signed-in session ([`Ctx`]), CSRF-checked form data
//! ([`Posted`]), and one error type ([`WebError`]) that becomes a readable page, never a trace.

use crate::session::{self, Sessions};
use crate::views::{ErrorPage, Layout};
use askama::Template;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::sync::Arc;
use tenantry_api::AppState;
use tenantry_ledger::role::{Action, Principal};
use tenantry_ledger::{ErrorKind, LedgerError, TenantId};
use tenantry_store::StoreError;

/// Header htmx requests carry the CSRF token in (set once on `<body hx-headers=…>`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Name of the hidden CSRF field in every form.
pub const CSRF_FIELD: &str = "csrf";

/// A page that cannot be shown, or an action refused: rendered as a readable page.
#[derive(Debug)]
pub enum WebError {
    /// No session: go to the sign-in page.
    SignIn,
    Page {
        status: StatusCode,
        message: String,
    },
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        WebError::Page {
            status,
            message: message.into(),
        }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::SignIn => StatusCode::SEE_OTHER,
            WebError::Page { status, .. } => *status,
        }
    }
    pub fn message(&self) -> String {
        match self {
            WebError::SignIn => "please sign in".into(),
            WebError::Page { message, .. } => message.clone(),
        }
    }
}

/// The status of a refusal: the API's, from the one mapping in the application layer.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(tenantry_app::error::http_status(kind))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<LedgerError> for WebError {
    fn from(e: LedgerError) -> Self {
        WebError::new(status_of(e.kind), e.detail)
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Ledger(e) => e.into(),
            StoreError::Internal(message) => {
                tracing::error!(%message, "storage failure (admin center)");
                WebError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The server could not complete this; the cause has been logged.",
                )
            }
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "template failure");
        WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page could not be rendered; the cause has been logged.",
        )
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn => Redirect::to("/signin").into_response(),
            WebError::Page { status, message } => {
                let title = status.canonical_reason().unwrap_or("Error").to_string();
                let page = ErrorPage {
                    l: Layout::bare(&title),
                    status: status.as_u16(),
                    message,
                };
                match page.render() {
                    Ok(html) => (status, Html(html)).into_response(),
                    Err(_) => (status, "error").into_response(),
                }
            }
        }
    }
}

pub type WebResult<T = Response> = Result<T, WebError>;

/// A signed-in request.
pub struct Ctx {
    pub sessions: Arc<Sessions>,
    pub sid: String,
    pub principal: Principal,
    pub csrf: String,
    /// Sent by htmx (`HX-Request: true`): refusals answer 200 with the form and its message, so
    /// that htmx swaps them in (it ignores 4xx bodies) and the browser logs no failed request.
    pub htmx: bool,
}

fn sessions_of(parts: &Parts) -> Arc<Sessions> {
    parts
        .extensions
        .get::<Arc<Sessions>>()
        .cloned()
        .unwrap_or_default()
}

fn is_htmx(parts: &Parts) -> bool {
    parts
        .headers
        .get("hx-request")
        .is_some_and(|v| v.as_bytes() == b"true")
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let sessions = sessions_of(parts);
        let sid = session::cookie_value(&parts.headers).ok_or(WebError::SignIn)?;
        let s = sessions
            .get(app.store.as_ref(), &sid, app.clock.now())
            .await?
            .ok_or(WebError::SignIn)?;
        let principal = s.principal.ok_or(WebError::SignIn)?;
        Ok(Ctx {
            htmx: is_htmx(parts),
            sessions,
            sid,
            principal,
            csrf: s.csrf,
        })
    }
}

impl Ctx {
    pub fn can(&self, tenant: TenantId, action: Action) -> bool {
        self.principal.authorize(tenant, action).is_ok()
    }

    pub fn authorize(&self, tenant: TenantId, action: Action) -> WebResult<()> {
        self.principal
            .authorize(tenant, action)
            .map_err(WebError::from)
    }

    /// The caller the application layer authorizes and audits.
    pub fn caller(&self) -> tenantry_app::Caller {
        tenantry_app::Caller::new(self.principal)
    }

    pub fn actor(&self) -> String {
        self.principal.actor()
    }

    pub fn take_flash(&self) -> Option<String> {
        self.sessions.take_flash(&self.sid)
    }

    /// After a successful POST: remember the message and show `to` (Post/Redirect/Get).
    pub fn done(&self, to: &str, message: impl Into<String>) -> Response {
        self.sessions.set_flash(&self.sid, message.into());
        see_other(to)
    }

    /// Renders a page; a refusal keeps its status unless htmx asked (see [`Ctx::htmx`]).
    pub fn page(&self, status: StatusCode, page: impl Template) -> WebResult {
        page_response(status, self.htmx, page)
    }
}

/// A 303 to a path of this site (never panics on odd input: falls back to `/`).
pub fn see_other(to: &str) -> Response {
    let location = HeaderValue::from_str(to)
        .ok()
        .filter(|_| to.starts_with('/') && !to.starts_with("//"))
        .unwrap_or_else(|| HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

pub fn page_response(status: StatusCode, htmx: bool, page: impl Template) -> WebResult {
    let html = page.render()?;
    let mut response = Html(html).into_response();
    if htmx && status != StatusCode::OK {
        if let Ok(v) = HeaderValue::from_str(status.as_str()) {
            response.headers_mut().insert("x-tenantry-status", v);
        }
    } else {
        *response.status_mut() = status;
    }
    Ok(response)
}

/// The fields of a submitted form, in order (repeated names allowed: checkbox lists).
#[derive(Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }
}

/// A form POST whose CSRF token matched the session's. The session may be anonymous (the
/// sign-in form); handlers that need a principal take [`Posted`] instead.
pub struct CsrfForm {
    pub sessions: Arc<Sessions>,
    pub sid: String,
    pub principal: Option<Principal>,
    pub csrf: String,
    pub htmx: bool,
    /// Reached over HTTPS (a proxy said so): cookies get `Secure`.
    pub https: bool,
    pub form: FormData,
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let sessions = sessions_of(&parts);
        let expired = || {
            WebError::new(
                StatusCode::FORBIDDEN,
                "Your session has expired or this form is out of date. Reload the page and try again.",
            )
        };
        let sid = session::cookie_value(&parts.headers).ok_or_else(expired)?;
        let s = sessions
            .get(state.store.as_ref(), &sid, state.clock.now())
            .await?
            .ok_or_else(expired)?;
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let htmx = is_htmx(&parts);
        let https = session::behind_https(&parts.headers);
        let req = Request::from_parts(parts, body);
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|e| {
                WebError::new(
                    StatusCode::BAD_REQUEST,
                    format!("The form could not be read: {}", e.body_text()),
                )
            })?;
        let form = FormData(pairs);
        let sent = header_token.unwrap_or_else(|| form.get(CSRF_FIELD).to_string());
        if !session::same_secret(&sent, &s.csrf) {
            return Err(WebError::new(
                StatusCode::FORBIDDEN,
                "This form's security token does not match your session (CSRF check). Reload the page and try again.",
            ));
        }
        Ok(CsrfForm {
            sessions,
            sid,
            principal: s.principal,
            csrf: s.csrf,
            htmx,
            https,
            form,
        })
    }
}

/// A signed-in, CSRF-checked form POST.
pub struct Posted {
    pub ctx: Ctx,
    pub form: FormData,
}

impl FromRequest<AppState> for Posted {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let f = CsrfForm::from_request(req, state).await?;
        let principal = f.principal.ok_or(WebError::SignIn)?;
        Ok(Posted {
            ctx: Ctx {
                sessions: f.sessions,
                sid: f.sid,
                principal,
                csrf: f.csrf,
                htmx: f.htmx,
            },
            form: f.form,
        })
    }
}

/// A refusal to show next to the form that caused it.
#[derive(Debug, Clone)]
pub struct FormError {
    /// Which form on the page (e.g. `buy`, `remove`).
    pub form: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl FormError {
    pub fn new(form: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            form,
            status,
            message: message.into(),
        }
    }
    pub fn invalid(form: &'static str, message: impl Into<String>) -> Self {
        Self::new(form, StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn from_web(form: &'static str, e: WebError) -> Self {
        Self::new(form, e.status(), e.message())
    }
    pub fn from_store(form: &'static str, e: StoreError) -> Self {
        Self::from_web(form, e.into())
    }
}

/// The errors of a page's forms, looked up by form name from templates.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub Option<FormError>);

impl Errors {
    pub fn get(&self, form: &str) -> Option<&str> {
        self.0
            .as_ref()
            .filter(|e| e.form == form)
            .map(|e| e.message.as_str())
    }
    pub fn status(&self) -> StatusCode {
        self.0.as_ref().map_or(StatusCode::OK, |e| e.status)
    }
}

impl From<FormError> for Errors {
    fn from(e: FormError) -> Self {
        Errors(Some(e))
    }
}

/// Parses a whole number from a form field, with a message a person can act on.
pub fn parse_count(form: &'static str, value: &str, what: &str) -> Result<u32, FormError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            FormError::invalid(
                form,
                format!("Enter the {what} as a whole number of at least 1."),
            )
        })
}
