//! `/v1.0/users`: list (OData), create, get, update (204), delete, `assignLicense`,
//! `licenseDetails` — users named by id or userPrincipalName.

use super::dto::{self, USER_PROPERTIES};
use super::odata::{Allowed, Condition};
use super::{collection, page, query, GraphCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::users::resolve;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use tenantry_app::{Caller, NewUser};
use tenantry_ledger::assignment::{AddLicense, Assignment};
use tenantry_ledger::role::Action;
use tenantry_ledger::user::UserPatch;
use tenantry_ledger::{SkuId, UserId};
use tenantry_store::UserFilter;

const LIST: Allowed = Allowed {
    properties: USER_PROPERTIES,
    paging: true,
    filtering: true,
};
const ONE: Allowed = Allowed {
    properties: USER_PROPERTIES,
    paging: false,
    filtering: false,
};
const NONE: Allowed = Allowed {
    properties: &[],
    paging: false,
    filtering: false,
};
const LICENSE_DETAILS: Allowed = Allowed {
    properties: &["id", "skuId", "skuPartNumber", "servicePlans"],
    paging: false,
    filtering: false,
};

fn filter_of(conditions: &[Condition]) -> ApiResult<UserFilter> {
    let mut f = UserFilter::default();
    let twice =
        || ApiError::bad_request("UnsupportedFilter", "$filter may test each property once");
    fn set<T>(slot: &mut Option<T>, value: T, twice: impl Fn() -> ApiError) -> ApiResult<()> {
        if slot.is_some() {
            return Err(twice());
        }
        *slot = Some(value);
        Ok(())
    }
    for c in conditions {
        match c {
            Condition::AssignedSku(s) => set(&mut f.assigned_sku, SkuId(*s), twice)?,
            Condition::UserPrincipalName(u) => set(&mut f.user_principal_name, u.clone(), twice)?,
            Condition::AccountEnabled(b) => set(&mut f.account_enabled, *b, twice)?,
            Condition::UsageLocation(l) => set(&mut f.usage_location, l.clone(), twice)?,
            Condition::DisplayNameStartsWith(p) => {
                set(&mut f.display_name_prefix, p.clone(), twice)?
            }
        }
    }
    Ok(f)
}

fn wants_licences(select: Option<&[String]>) -> bool {
    select.is_some_and(|s| s.iter().any(|p| p == "assignedLicenses"))
}

pub async fn list(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(raw.as_deref(), &headers, LIST)?;
    let mut filter = filter_of(&q.filter)?;
    filter.display_name_contains = q.search.clone();
    let tenant = caller.tenant;
    let count = if q.count {
        Some(app.store.count_users(tenant, filter.clone()).await?)
    } else {
        None
    };
    let users = app.store.query_users(tenant, filter, page(&q)?).await?;
    let select = q.select.as_deref();
    let mut licences: HashMap<UserId, Vec<Assignment>> = HashMap::new();
    if wants_licences(select) {
        for a in app.store.tenant_assignments(tenant, None).await? {
            licences.entry(a.user_id).or_default().push(a);
        }
    }
    let value: Vec<Value> = users
        .items
        .iter()
        .map(|u| {
            let held = wants_licences(select)
                .then(|| licences.get(&u.id).map(Vec::as_slice).unwrap_or(&[]));
            dto::selected(dto::user(u, held), select)
        })
        .collect();
    let mut body = collection(&app.graph.origin(&headers), "users", value, &q, users.next);
    if let Some(n) = count {
        body["@odata.count"] = n.into();
    }
    Ok(Json(body))
}

fn check_odata_type(given: Option<&str>, expected: &str) -> ApiResult<()> {
    match given {
        Some(t) if t != expected => Err(ApiError::bad_request(
            "InvalidODataType",
            format!("@odata.type must be {expected}"),
        )),
        _ => Ok(()),
    }
}

/// Graph's rule for `mailNickname`: 1-64 characters, none of `@()\[]";:<>,` or a space.
fn check_mail_nickname(nickname: &str) -> ApiResult<()> {
    let bad = nickname.is_empty()
        || nickname.chars().count() > 64
        || nickname
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@()\\[]\";:<>,".contains(c));
    if bad {
        return Err(ApiError::bad_request(
            "InvalidMailNickname",
            "mailNickname must be 1-64 characters without spaces or any of @ ( ) \\ [ ] \" ; : < > ,",
        ));
    }
    Ok(())
}

pub async fn create(
    State(app): State<AppState>,
    caller: GraphCaller,
    body: Result<ApiJson<dto::CreateUser>, ApiError>,
) -> ApiResult<Response> {
    caller.authorize(Action::ManageUsers)?;
    let ApiJson(body) = body?;
    check_odata_type(body.odata_type.as_deref(), "#microsoft.graph.user")?;
    check_mail_nickname(&body.mail_nickname)?;
    if body
        .password_profile
        .password
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "InvalidPasswordProfile",
            "passwordProfile.password is required",
        ));
    }
    let user = app
        .ledger
        .create_user(
            &Caller::new(caller.auth.0),
            caller.tenant,
            NewUser {
                user_principal_name: body.user_principal_name,
                display_name: body.display_name,
                usage_location: body.usage_location,
                account_enabled: body.account_enabled,
            },
            app.clock.now(),
        )
        .await?;
    let location = format!("/v1.0/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(dto::user(&user, Some(&[]))),
    )
        .into_response())
}

pub async fn get(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(raw.as_deref(), &headers, ONE)?;
    let id = resolve(&app, caller.tenant, &id).await?;
    let user = app.store.get_user(caller.tenant, id).await?;
    let select = q.select.as_deref();
    let licences = if wants_licences(select) {
        Some(app.store.license_details(caller.tenant, id).await?)
    } else {
        None
    };
    Ok(Json(dto::selected(
        dto::user(&user, licences.as_deref()),
        select,
    )))
}

pub async fn patch(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<ApiJson<dto::PatchUser>, ApiError>,
) -> ApiResult<StatusCode> {
    caller.authorize(Action::ManageUsers)?;
    query(raw.as_deref(), &headers, NONE)?;
    let ApiJson(body) = body?;
    check_odata_type(body.odata_type.as_deref(), "#microsoft.graph.user")?;
    let id = resolve(&app, caller.tenant, &id).await?;
    let patch = UserPatch {
        user_principal_name: body.user_principal_name,
        display_name: body.display_name,
        usage_location: body.usage_location,
        account_enabled: body.account_enabled,
    };
    app.ledger
        .update_user(
            &Caller::new(caller.auth.0),
            caller.tenant,
            id,
            None,
            patch,
            app.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    caller.authorize(Action::ManageUsers)?;
    query(raw.as_deref(), &headers, NONE)?;
    let id = resolve(&app, caller.tenant, &id).await?;
    app.ledger
        .delete_user(
            &Caller::new(caller.auth.0),
            caller.tenant,
            id,
            app.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn assign_license(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<ApiJson<dto::AssignLicense>, ApiError>,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::AssignLicenses)?;
    query(raw.as_deref(), &headers, NONE)?;
    let ApiJson(body) = body?;
    for a in &body.add_licenses {
        check_odata_type(a.odata_type.as_deref(), "#microsoft.graph.assignedLicense")?;
    }
    let id = resolve(&app, caller.tenant, &id).await?;
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
            &Caller::new(caller.auth.0),
            caller.tenant,
            id,
            add,
            remove,
            app.clock.now(),
        )
        .await?;
    Ok(Json(dto::user(&user, Some(&licences))))
}

pub async fn license_details(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(raw.as_deref(), &headers, LICENSE_DETAILS)?;
    let id = resolve(&app, caller.tenant, &id).await?;
    let licences = app.store.license_details(caller.tenant, id).await?;
    let catalog = app.store.list_skus().await?;
    let value: Vec<Value> = licences
        .iter()
        .map(|a| {
            let sku = catalog.iter().find(|s| s.sku_id == a.sku_id);
            dto::selected(dto::license_detail(a, sku), q.select.as_deref())
        })
        .collect();
    Ok(Json(json!({ "value": value })))
}
