//! Health, metrics and the OpenAPI document.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

pub async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    match app.store.setting(crate::auth::OPERATOR_TOKEN_SETTING).await {
        Ok(_) => (
            axum::http::StatusCode::OK,
            Json(serde_json::json!({"status": "ok"})),
        ),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "database unavailable"})),
        ),
    }
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
