//! `Idempotency-Key` on POST: the same key with the same request answers the first response again
//! with no second effect; the same key with another request is refused (422).
//!
//! Keys are scoped to the principal that sent them and honoured only once it is authenticated;
//! they expire after [`KEEP_FOR_SECS`] (the lifecycle sweeper deletes them). The key is reserved before the request runs,
//! so two concurrent retries cannot both take effect (the second hears 409 until the first ends).

use crate::auth::Auth;
use crate::error::ApiError;
use crate::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tenantry_store::{IdempotencyBegin, StoredResponse};

const HEADER: &str = "idempotency-key";

/// How long a key and its stored response are kept.
pub const KEEP_FOR_SECS: i64 = 24 * 3600;

/// Set by a handler whose response carries a secret shown once (a new token): the listed
/// top-level fields are blanked in the copy kept for replays, so the secret never rests in the
/// database.
pub const SECRET_FIELDS: &str = "x-tenantry-secret-fields";

fn without_secrets(body: &[u8], fields: Option<&str>) -> String {
    let text = String::from_utf8_lossy(body).into_owned();
    let Some(fields) = fields else { return text };
    let Ok(serde_json::Value::Object(mut object)) =
        serde_json::from_str::<serde_json::Value>(&text)
    else {
        return text;
    };
    for field in fields.split(',').map(str::trim) {
        if object.contains_key(field) {
            object.insert(field.to_string(), serde_json::Value::Null);
        }
    }
    object.insert(
        "replayNote".into(),
        serde_json::Value::String(
            "a replay: the secret was shown only in the first response".into(),
        ),
    );
    serde_json::Value::Object(object).to_string()
}

pub async fn enforce(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => {
            return ApiError::bad_request(
                "InvalidIdempotencyKey",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .into_response()
        }
    };
    let (mut parts, body) = request.into_parts();
    // Only an authenticated caller gets a key stored, scoped to its principal: an anonymous or
    // refused request goes on unrecorded and is answered 401 by the route's own `Auth`.
    let scope = match Auth::from_request_parts(&mut parts, &app).await {
        Ok(auth) => auth.actor(),
        Err(_) => return next.run(Request::from_parts(parts, body)).await,
    };
    let bytes = match to_bytes(body, crate::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
            )
            .into_response()
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.to_string());
    hasher.update([0]);
    hasher.update(&bytes);
    let request_hash = hex::encode(hasher.finalize());

    let now = app.clock.now();
    match app
        .store
        .idempotency_begin(scope.clone(), key.clone(), request_hash, now)
        .await
    {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(IdempotencyBegin::Mismatch) => {
            return ApiError::unprocessable(
                "IdempotencyKeyReused",
                "this Idempotency-Key was already used with a different request; use a new key",
            )
            .into_response()
        }
        Ok(IdempotencyBegin::InProgress) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "IdempotencyKeyInUse",
                "a request with this Idempotency-Key is still running; retry later",
            )
            .into_response()
        }
        Ok(IdempotencyBegin::Replay(stored)) => return replay(stored),
        Ok(IdempotencyBegin::Proceed) => {}
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (mut parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let secrets = parts.headers.remove(SECRET_FIELDS);
    // Server errors are not remembered: the client may retry them with the same key.
    let stored = (!parts.status.is_server_error()).then(|| StoredResponse {
        status: parts.status.as_u16(),
        body: without_secrets(&body, secrets.as_ref().and_then(|v| v.to_str().ok())),
    });
    if let Err(e) = app.store.idempotency_finish(scope, key, stored).await {
        tracing::error!(error = %e, "could not record an idempotent response");
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut response = (status, stored.body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
