//! Subscriptions (buy, add or remove seats, cancel, reactivate, the refused transfer) and the
//! per-SKU counts of `subscribedSkus`.

use super::list;
use crate::dto::{
    CreateSubscription, List, PatchSubscription, SubscribedSkuDto, SubscriptionDto, TransferRequest,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{etag, parse_id, ApiJson, IfMatch, Paging};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use tenantry_app::{Caller, Order, SkuRef, SubscriptionChange};
use tenantry_ledger::role::Action;
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::{SkuId, SubscriptionId, TenantId};

async fn part_numbers(app: &AppState) -> ApiResult<HashMap<SkuId, String>> {
    Ok(app
        .store
        .list_skus()
        .await?
        .into_iter()
        .map(|s| (s.sku_id, s.sku_part_number))
        .collect())
}

async fn render(
    app: &AppState,
    sub: &Subscription,
    outcome: Option<serde_json::Value>,
) -> ApiResult<SubscriptionDto> {
    let parts = part_numbers(app).await?;
    let mut dto = SubscriptionDto::new(
        sub,
        parts.get(&sub.sku_id).cloned().unwrap_or_default(),
        app.clock.now(),
    );
    dto.outcome = outcome;
    Ok(dto)
}

fn with_etag(status: StatusCode, dto: SubscriptionDto, version: u64) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, Json(dto)).into_response()
}

fn ids(tenant: &str, id: &str) -> ApiResult<(TenantId, SubscriptionId)> {
    Ok((parse_id(tenant, "tenant")?, parse_id(id, "subscription")?))
}

#[utoipa::path(post, path = "/v1/tenants/{tenantId}/subscriptions", tag = "subscriptions", params(("tenantId" = String, Path)),
    request_body = CreateSubscription,
    responses((status = 201, body = SubscriptionDto), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    Path(tenant): Path<String>,
    body: Result<ApiJson<CreateSubscription>, ApiError>,
) -> ApiResult<Response> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageBilling)?;
    // The role is checked before the body, so a forbidden caller hears 403 whatever it sent.
    let ApiJson(body) = body?;
    let order = Order {
        tenant,
        sku: SkuRef::from_parts(body.sku_id, body.sku_part_number)?,
        quantity: body.quantity,
        term: body.term,
        billing_cycle: body.billing_cycle,
        channel: body.channel,
        is_trial: body.is_trial,
        auto_renew: body.auto_renew,
    };
    let (sub, money) = app
        .ledger
        .buy(&Caller::new(auth.0), order, app.clock.now())
        .await?;
    let dto = render(&app, &sub, serde_json::to_value(money).ok()).await?;
    Ok(with_etag(StatusCode::CREATED, dto, sub.version))
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/subscriptions", tag = "subscriptions",
    params(("tenantId" = String, Path), ("$top" = Option<u32>, Query), ("$skiptoken" = Option<String>, Query)),
    responses((status = 200, body = inline(List<SubscriptionDto>)), (status = 404)))]
pub async fn list_all(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    Path(tenant): Path<String>,
    Paging(page): Paging,
) -> ApiResult<Json<List<SubscriptionDto>>> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::Read)?;
    let subs = app.store.list_subscriptions(tenant, page).await?;
    let parts = part_numbers(&app).await?;
    let now = app.clock.now();
    let path = format!("/v1/tenants/{tenant}/subscriptions");
    Ok(Json(list(subs, &path, page.top, "", |s| {
        SubscriptionDto::new(&s, parts.get(&s.sku_id).cloned().unwrap_or_default(), now)
    })))
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/subscriptions/{id}", tag = "subscriptions",
    params(("tenantId" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = SubscriptionDto, headers(("ETag" = String))), (status = 404)))]
pub async fn get(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (tenant, id) = ids(&tenant, &id)?;
    auth.authorize(tenant, Action::Read)?;
    let sub = app.store.get_subscription(tenant, id).await?;
    let dto = render(&app, &sub, None).await?;
    Ok(with_etag(StatusCode::OK, dto, sub.version))
}

async fn change(
    app: &AppState,
    auth: &crate::auth::Auth,
    tenant: &str,
    id: &str,
    if_match: Option<u64>,
    change: SubscriptionChange,
) -> ApiResult<Response> {
    let (tenant, id) = ids(tenant, id)?;
    auth.authorize(tenant, Action::ManageBilling)?;
    let (sub, outcome) = app
        .ledger
        .change_subscription(
            &Caller::new(auth.0),
            tenant,
            id,
            if_match,
            change,
            app.clock.now(),
        )
        .await?;
    let dto = render(app, &sub, outcome.to_json()).await?;
    Ok(with_etag(StatusCode::OK, dto, sub.version))
}

/// Sets the number of seats. Adding is immediate (prorated charge); removing is immediate and
/// refunded only for seats bought in the last 7 days, otherwise scheduled for the renewal date.
#[utoipa::path(patch, path = "/v1/tenants/{tenantId}/subscriptions/{id}", tag = "subscriptions",
    params(("tenantId" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PatchSubscription,
    responses((status = 200, body = SubscriptionDto), (status = 409, description = "below assigned, volume, not active"),
        (status = 412, description = "stale ETag"), (status = 422)))]
pub async fn patch(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    IfMatch(if_match): IfMatch,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<ApiJson<PatchSubscription>, ApiError>,
) -> ApiResult<Response> {
    auth.authorize(parse_id(&tenant, "tenant")?, Action::ManageBilling)?;
    let ApiJson(body) = body?;
    change(
        &app,
        &auth,
        &tenant,
        &id,
        if_match,
        SubscriptionChange::SetQuantity(body.quantity),
    )
    .await
}

#[utoipa::path(post, path = "/v1/tenants/{tenantId}/subscriptions/{id}/cancel", tag = "subscriptions",
    params(("tenantId" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = SubscriptionDto), (status = 409)))]
pub async fn cancel(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    IfMatch(if_match): IfMatch,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    change(
        &app,
        &auth,
        &tenant,
        &id,
        if_match,
        SubscriptionChange::Cancel,
    )
    .await
}

#[utoipa::path(post, path = "/v1/tenants/{tenantId}/subscriptions/{id}/reactivate", tag = "subscriptions",
    params(("tenantId" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = SubscriptionDto), (status = 409)))]
pub async fn reactivate(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    IfMatch(if_match): IfMatch,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    change(
        &app,
        &auth,
        &tenant,
        &id,
        if_match,
        SubscriptionChange::Reactivate,
    )
    .await
}

#[utoipa::path(post, path = "/v1/tenants/{tenantId}/subscriptions/{id}/extendTrial", tag = "subscriptions",
    params(("tenantId" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = SubscriptionDto), (status = 409)))]
pub async fn extend_trial(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    IfMatch(if_match): IfMatch,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    change(
        &app,
        &auth,
        &tenant,
        &id,
        if_match,
        SubscriptionChange::ExtendTrial,
    )
    .await
}

/// Always refused (409 `LicenseTransferNotSupported`): licences never move between tenants.
#[utoipa::path(post, path = "/v1/tenants/{tenantId}/subscriptions/{id}/transfer", tag = "subscriptions",
    params(("tenantId" = String, Path), ("id" = String, Path)), request_body(content = Option<TransferRequest>),
    responses((status = 409, description = "always: LicenseTransferNotSupported, with guidance")))]
pub async fn transfer(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (tenant, id) = ids(&tenant, &id)?;
    match app
        .ledger
        .transfer_subscription(&Caller::new(auth.0), tenant, id)
        .await? {}
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/subscribedSkus", tag = "subscriptions", params(("tenantId" = String, Path)),
    responses((status = 200, body = inline(List<SubscribedSkuDto>)), (status = 404)))]
pub async fn subscribed_skus(
    State(app): State<AppState>,
    auth: crate::auth::Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Json<List<SubscribedSkuDto>>> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::Read)?;
    let skus = app.store.subscribed_skus(tenant).await?;
    Ok(Json(List {
        value: skus.into_iter().map(SubscribedSkuDto::from).collect(),
        next_link: None,
    }))
}
