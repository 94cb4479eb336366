//! Graph's error envelope for everything under `/v1.0`: handlers and extractors keep returning
//! [`crate::error::ApiError`] (one error type for the whole API), and this middleware rewrites the
//! problem response into `{"error":{"code","message","innerError":{"request-id","date"}}}`,
//! keeping tenantry's stable code in `error.code`. Every response carries `request-id` (and
//! echoes `client-request-id`), as Graph's do.

use crate::clock::rfc3339;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

/// Largest problem body read back (ours are a few hundred bytes).
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

pub async fn graph_errors(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = request.headers().get("client-request-id").cloned();
    let response = next.run(request).await;
    let mut response = if response.status().is_client_error() || response.status().is_server_error()
    {
        let client = client_request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(&request_id);
        rewrite(response, &request_id, client, &rfc3339(app.clock.now())).await
    } else {
        response
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    if let Some(v) = client_request_id {
        headers.insert("client-request-id", v);
    }
    response
}

/// Graph answers a refused write with 400 where tenantry's `/v1` says 409 or 422 (a taken
/// userPrincipalName, no free licence, a bad property value); other statuses are the same.
fn graph_status(status: StatusCode) -> StatusCode {
    match status {
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    }
}

async fn rewrite(
    response: Response,
    request_id: &str,
    client_request_id: &str,
    date: &str,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let bytes = axum::body::to_bytes(body, MAX_PROBLEM_BYTES)
        .await
        .unwrap_or_default();
    let problem: Option<serde_json::Value> = is_problem
        .then(|| serde_json::from_slice(&bytes).ok())
        .flatten();
    let field = |name: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let code = field("code").unwrap_or_else(|| match parts.status {
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed".into(),
        StatusCode::NOT_FOUND => "NotFound".into(),
        s => s.canonical_reason().unwrap_or("Error").replace(' ', ""),
    });
    let message = field("detail").unwrap_or_else(|| match parts.status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this resource".into(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    });
    let envelope = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": request_id, "client-request-id": client_request_id, "date": date}
        }
    });
    parts.status = graph_status(parts.status);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(envelope.to_string()))
}
