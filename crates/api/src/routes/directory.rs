//! Users and their licences (`assignLicense`, `licenseDetails`).

use super::{list, urlencode};
use crate::auth::Auth;
use crate::dto::{AssignLicense, CreateUser, LicenseDetailDto, List, PatchUser, UserDto};
use crate::error::{ApiError, ApiResult};
use crate::extract::{etag, parse_id, ApiJson, IfMatch, Paging};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_app::{Caller, NewUser};
use tenantry_ledger::assignment::AddLicense;
use tenantry_ledger::role::Action;
use tenantry_ledger::user::UserPatch;
use tenantry_ledger::{SkuId, TenantId, UserId};

/// The tenant and the user a path names (by id or userPrincipalName), once `action` is allowed:
/// a forbidden caller hears 403 (or 404 for another tenant) before any lookup.
async fn user_in(
    app: &AppState,
    auth: &Auth,
    action: Action,
    tenant: &str,
    user: &str,
) -> ApiResult<(TenantId, UserId)> {
    let tenant: TenantId = parse_id(tenant, "tenant")?;
    auth.authorize(tenant, action)?;
    Ok((tenant, crate::users::resolve(app, tenant, user).await?))
}

fn user_response(status: StatusCode, dto: UserDto) -> Response {
    let tag = dto.etag.clone();
    (status, [(header::ETAG, tag)], Json(dto)).into_response()
}

#[utoipa::path(post, path = "/v1/tenants/{tenantId}/users", tag = "users", params(("tenantId" = String, Path)),
    request_body = CreateUser, responses((status = 201, body = UserDto), (status = 403), (status = 409), (status = 422)))]
pub async fn create(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
    body: Result<ApiJson<CreateUser>, ApiError>,
) -> ApiResult<Response> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ManageUsers)?;
    // The role is checked before the body, so a forbidden caller hears 403 whatever it sent.
    let ApiJson(body) = body?;
    let user = app
        .ledger
        .create_user(
            &Caller::new(auth.0),
            tenant,
            NewUser {
                user_principal_name: body.user_principal_name,
                display_name: body.display_name,
                usage_location: body.usage_location,
                account_enabled: body.account_enabled,
            },
            app.clock.now(),
        )
        .await?;
    Ok(user_response(
        StatusCode::CREATED,
        UserDto::new(user, Some(&[])),
    ))
}

#[derive(Deserialize)]
pub struct UserQuery {
    /// Prefix of the userPrincipalName or displayName.
    #[serde(rename = "$search")]
    search: Option<String>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/users", tag = "users",
    params(("tenantId" = String, Path), ("$search" = Option<String>, Query, description = "prefix of UPN or display name"),
        ("$top" = Option<u32>, Query), ("$skiptoken" = Option<String>, Query)),
    responses((status = 200, body = inline(List<UserDto>)), (status = 404)))]
pub async fn list_all(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
    Query(query): Query<UserQuery>,
    Paging(page): Paging,
) -> ApiResult<Json<List<UserDto>>> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::Read)?;
    let search = query.search.filter(|s| !s.is_empty());
    let extra = search
        .as_ref()
        .map(|s| format!("&$search={}", urlencode(s)))
        .unwrap_or_default();
    let users = app.store.list_users(tenant, search, page).await?;
    let path = format!("/v1/tenants/{tenant}/users");
    Ok(Json(list(users, &path, page.top, &extra, |u| {
        UserDto::new(u, None)
    })))
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/users/{id}", tag = "users",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "user id or userPrincipalName")), responses((status = 200, body = UserDto), (status = 404)))]
pub async fn get(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (tenant, id) = user_in(&app, &auth, Action::Read, &tenant, &id).await?;
    let user = app.store.get_user(tenant, id).await?;
    let licences = app.store.license_details(tenant, id).await?;
    Ok(user_response(
        StatusCode::OK,
        UserDto::new(user, Some(&licences)),
    ))
}

#[utoipa::path(patch, path = "/v1/tenants/{tenantId}/users/{id}", tag = "users",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "user id or userPrincipalName"), ("If-Match" = Option<String>, Header)),
    request_body = PatchUser, responses((status = 200, body = UserDto), (status = 404), (status = 409), (status = 412), (status = 422)))]
pub async fn patch(
    State(app): State<AppState>,
    auth: Auth,
    IfMatch(if_match): IfMatch,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<ApiJson<PatchUser>, ApiError>,
) -> ApiResult<Response> {
    let (tenant, id) = user_in(&app, &auth, Action::ManageUsers, &tenant, &id).await?;
    // The role is checked before the body, so a forbidden caller hears 403 whatever it sent.
    let ApiJson(body) = body?;
    let patch = UserPatch {
        user_principal_name: body.user_principal_name,
        display_name: body.display_name,
        usage_location: body.usage_location,
        account_enabled: body.account_enabled,
    };
    let user = app
        .ledger
        .update_user(
            &Caller::new(auth.0),
            tenant,
            id,
            if_match,
            patch,
            app.clock.now(),
        )
        .await?;
    Ok(user_response(StatusCode::OK, UserDto::new(user, None)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenantId}/users/{id}", tag = "users",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "user id or userPrincipalName")), responses((status = 204), (status = 404)))]
pub async fn delete(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (tenant, id) = user_in(&app, &auth, Action::ManageUsers, &tenant, &id).await?;
    app.ledger
        .delete_user(&Caller::new(auth.0), tenant, id, app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Graph `assignLicense`: adds and removes licences in one step; all or nothing.
#[utoipa::path(post, path = "/v1/tenants/{tenantId}/users/{id}/assignLicense", tag = "users",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "user id or userPrincipalName")), request_body = AssignLicense,
    responses((status = 200, body = UserDto), (status = 404), (status = 409, description = "NoFreeSeat"), (status = 422)))]
pub async fn assign_license(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<ApiJson<AssignLicense>, ApiError>,
) -> ApiResult<Response> {
    let (tenant, id) = user_in(&app, &auth, Action::AssignLicenses, &tenant, &id).await?;
    // The role is checked before the body, so a forbidden caller hears 403 whatever it sent.
    let ApiJson(body) = body?;
    let add = body
        .add_licenses
        .into_iter()
        .map(|a| AddLicense {
            sku_id: SkuId(a.sku_id),
            disabled_plans: a.disabled_plans,
        })
        .collect();
    let remove = body.remove_licenses.into_iter().map(SkuId).collect();
    let (user, licences) = app
        .ledger
        .assign_licenses(
            &Caller::new(auth.0),
            tenant,
            id,
            add,
            remove,
            app.clock.now(),
        )
        .await?;
    let version = user.version;
    let mut response = user_response(StatusCode::OK, UserDto::new(user, Some(&licences)));
    if let Ok(v) = etag(version).parse() {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/users/{id}/licenseDetails", tag = "users",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "user id or userPrincipalName")),
    responses((status = 200, body = inline(List<LicenseDetailDto>)), (status = 404)))]
pub async fn license_details(
    State(app): State<AppState>,
    auth: Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<List<LicenseDetailDto>>> {
    let (tenant, id) = user_in(&app, &auth, Action::Read, &tenant, &id).await?;
    let licences = app.store.license_details(tenant, id).await?;
    let catalog = app.store.list_skus().await?;
    let value = licences
        .iter()
        .map(|a| LicenseDetailDto::new(a, catalog.iter().find(|s| s.sku_id == a.sku_id)))
        .collect();
    Ok(Json(List {
        value,
        next_link: None,
    }))
}
