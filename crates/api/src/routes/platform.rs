//! Tenants, the SKU catalog, API tokens and the test clock.

use super::list;
use crate::auth::{Auth, Operator};
use crate::clock::rfc3339;
use crate::dto::{
    AdvanceClock, ApplicationDto, ApplicationSummaryDto, CreateApplication, CreateSku,
    CreateTenant, CreateToken, List, SkuDto, TenantDto, TokenDto,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, ApiJson, Paging};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use tenantry_app::{Caller, IssuedToken, RegisteredApplication};
use tenantry_ledger::catalog::{ServicePlan, Sku};
use tenantry_ledger::role::Action;
use tenantry_ledger::{SkuId, TenantId, TokenId};

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantDto), (status = 403), (status = 409, description = "domain in use"), (status = 422)))]
pub async fn create_tenant(
    State(app): State<AppState>,
    auth: Operator,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantDto>)> {
    let tenant = app
        .ledger
        .create_tenant(
            &Caller::new(auth.0 .0),
            &body.display_name,
            &body.default_domain,
            app.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(("$top" = Option<u32>, Query), ("$skiptoken" = Option<String>, Query)),
    responses((status = 200, body = inline(List<TenantDto>))))]
pub async fn list_tenants(
    State(app): State<AppState>,
    auth: Auth,
    Paging(page): Paging,
) -> ApiResult<Json<List<TenantDto>>> {
    if let tenantry_ledger::role::Principal::Tenant { tenant_id, .. } = auth.0 {
        // A tenant principal sees only its own tenant.
        let tenant = app.store.get_tenant(tenant_id).await?;
        return Ok(Json(List {
            value: vec![tenant.into()],
            next_link: None,
        }));
    }
    let tenants = app.store.list_tenants(page).await?;
    Ok(Json(list(
        tenants,
        "/v1/tenants",
        page.top,
        "",
        TenantDto::from,
    )))
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}", tag = "tenants", params(("tenantId" = String, Path)),
    responses((status = 200, body = TenantDto), (status = 404)))]
pub async fn get_tenant(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantDto>> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::Read)?;
    Ok(Json(app.store.get_tenant(tenant).await?.into()))
}

#[utoipa::path(get, path = "/v1/skus", tag = "catalog", responses((status = 200, body = inline(List<SkuDto>))))]
pub async fn list_skus(State(app): State<AppState>, _auth: Auth) -> ApiResult<Json<List<SkuDto>>> {
    let skus = app.store.list_skus().await?;
    Ok(Json(List {
        value: skus.iter().map(SkuDto::from).collect(),
        next_link: None,
    }))
}

#[utoipa::path(post, path = "/v1/skus", tag = "catalog", request_body = CreateSku,
    responses((status = 201, body = SkuDto), (status = 403), (status = 409), (status = 422)))]
pub async fn add_sku(
    State(app): State<AppState>,
    auth: Operator,
    ApiJson(body): ApiJson<CreateSku>,
) -> ApiResult<(StatusCode, Json<SkuDto>)> {
    let sku = Sku {
        sku_id: body.sku_id.map_or_else(SkuId::new_random, SkuId),
        sku_part_number: body.sku_part_number,
        display_name: body.display_name,
        monthly_price_cents: body.monthly_price_cents,
        custom: true,
        service_plans: body
            .service_plans
            .into_iter()
            .map(|p| ServicePlan {
                display_name: p
                    .display_name
                    .unwrap_or_else(|| p.service_plan_name.clone()),
                service_plan_id: p.service_plan_id,
                service_plan_name: p.service_plan_name,
                exclusive_group: p.exclusive_group,
            })
            .collect(),
    };
    let sku = app
        .ledger
        .add_sku(&Caller::new(auth.0 .0), sku, app.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(SkuDto::from(&sku))))
}

#[utoipa::path(post, path = "/v1/tenants/{tenantId}/tokens", tag = "tenants", params(("tenantId" = String, Path)),
    request_body = CreateToken, responses((status = 201, body = TokenDto), (status = 403), (status = 404), (status = 422)))]
pub async fn create_token(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
    body: Result<ApiJson<CreateToken>, ApiError>,
) -> ApiResult<axum::response::Response> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageTokens)?;
    auth.refuse_app_token()?;
    // The role is checked before the body, so a forbidden caller hears 403 whatever it sent.
    let ApiJson(body) = body?;
    let IssuedToken { record, token } = app
        .ledger
        .issue_token(&Caller::new(auth.0), tenant, &body.role, app.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        [(crate::idempotency::SECRET_FIELDS, "token")],
        Json(TokenDto {
            id: record.id.0,
            tenant_id: tenant.0,
            role: record.role.as_str().into(),
            token,
            created_date_time: rfc3339(record.created_at),
        }),
    )
        .into_response())
}

/// Registers an application for the OAuth2 client-credentials grant
/// (`POST /{tenantId}/oauth2/v2.0/token`); the client secret is shown in this answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenantId}/applications", tag = "tenants", params(("tenantId" = String, Path)),
    request_body = CreateApplication, responses((status = 201, body = ApplicationDto), (status = 403), (status = 404), (status = 422)))]
pub async fn create_application(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
    body: Result<ApiJson<CreateApplication>, ApiError>,
) -> ApiResult<axum::response::Response> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageTokens)?;
    auth.refuse_app_token()?;
    // The role is checked before the body, so a forbidden caller hears 403 whatever it sent.
    let ApiJson(body) = body?;
    let registered = app
        .ledger
        .register_application(
            &Caller::new(auth.0),
            tenant,
            &body.display_name,
            &body.role,
            app.clock.now(),
        )
        .await?;
    Ok(with_secret(StatusCode::CREATED, tenant, registered))
}

/// An application with its client secret, in the one answer that shows it (the idempotency
/// layer is told not to store the secret).
fn with_secret(
    status: StatusCode,
    tenant: TenantId,
    RegisteredApplication {
        record,
        client_secret,
    }: RegisteredApplication,
) -> axum::response::Response {
    (
        status,
        [(crate::idempotency::SECRET_FIELDS, "clientSecret")],
        Json(ApplicationDto {
            client_id: record.client_id,
            tenant_id: tenant.0,
            display_name: record.display_name,
            role: record.role.as_str().into(),
            client_secret,
            created_date_time: rfc3339(record.created_at),
        }),
    )
        .into_response()
}

/// The applications registered in the tenant (never their secrets).
#[utoipa::path(get, path = "/v1/tenants/{tenantId}/applications", tag = "tenants", params(("tenantId" = String, Path)),
    responses((status = 200, body = inline(List<ApplicationSummaryDto>)), (status = 403), (status = 404)))]
pub async fn list_applications(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
) -> ApiResult<Json<List<ApplicationSummaryDto>>> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageTokens)?;
    let value = app
        .store
        .list_applications(tenant)
        .await?
        .into_iter()
        .map(|a| ApplicationSummaryDto {
            client_id: a.client_id,
            tenant_id: tenant.0,
            display_name: a.display_name,
            role: a.role.as_str().into(),
            created_date_time: rfc3339(a.created_at),
        })
        .collect();
    Ok(Json(List {
        value,
        next_link: None,
    }))
}

/// Replaces an application's client secret: the old one and every access token issued with it
/// stop working at once; the new secret is shown in this answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenantId}/applications/{clientId}/rotateSecret", tag = "tenants",
    params(("tenantId" = String, Path), ("clientId" = String, Path)),
    responses((status = 200, body = ApplicationDto), (status = 403), (status = 404)))]
pub async fn rotate_application_secret(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, client)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageTokens)?;
    auth.refuse_app_token()?;
    let client_id: uuid::Uuid = parse_id(&client, "application (client)")?;
    let rotated = app
        .ledger
        .rotate_application_secret(&Caller::new(auth.0), tenant, client_id, app.clock.now())
        .await?;
    Ok(with_secret(StatusCode::OK, tenant, rotated))
}

/// Deletes an application: its secret and its access tokens stop working at once.
#[utoipa::path(delete, path = "/v1/tenants/{tenantId}/applications/{clientId}", tag = "tenants",
    params(("tenantId" = String, Path), ("clientId" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403), (status = 404, description = "no such application in this tenant")))]
pub async fn delete_application(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, client)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageTokens)?;
    auth.refuse_app_token()?;
    let client_id: uuid::Uuid = parse_id(&client, "application (client)")?;
    app.ledger
        .delete_application(&Caller::new(auth.0), tenant, client_id, app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes an API token: it stops working at once, on every server sharing the database.
#[utoipa::path(delete, path = "/v1/tenants/{tenantId}/tokens/{tokenId}", tag = "tenants",
    params(("tenantId" = String, Path), ("tokenId" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, description = "no such token in this tenant")))]
pub async fn revoke_token(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, token)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageTokens)?;
    auth.refuse_app_token()?;
    let token: TokenId = parse_id(&token, "token")?;
    app.ledger
        .revoke_token(&Caller::new(auth.0), tenant, token, app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves the test clock forward and applies the lifecycle transitions that are now due.
#[utoipa::path(post, path = "/v1/admin/clock", tag = "admin", request_body = AdvanceClock,
    responses((status = 200, description = "the new time"), (status = 403), (status = 404, description = "not in test-clock mode")))]
pub async fn advance_clock(
    State(app): State<AppState>,
    _auth: Operator,
    ApiJson(body): ApiJson<AdvanceClock>,
) -> ApiResult<Json<serde_json::Value>> {
    if !app.clock.adjustable {
        return Err(ApiError::not_found("route"));
    }
    if !(0..=3650).contains(&body.days) {
        return Err(ApiError::unprocessable(
            "InvalidDays",
            "days must be between 0 and 3650",
        ));
    }
    app.clock.advance(body.days * tenantry_ledger::time::DAY);
    let now = app.clock.now();
    let changed = app.ledger.advance_lifecycle(now).await?;
    Ok(Json(
        serde_json::json!({"now": rfc3339(now), "subscriptionsChanged": changed}),
    ))
}
