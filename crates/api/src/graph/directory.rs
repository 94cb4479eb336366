//! `/v1.0/subscribedSkus`, `/v1.0/directory/subscriptions`, `/v1.0/organization` and
//! `/v1.0/auditLogs/directoryAudits`: reads of the caller's tenant.

use super::dto;
use super::odata::Allowed;
use super::{collection, guid, page, query, GraphCaller};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;
use tenantry_ledger::role::Action;
use tenantry_ledger::subscription::Subscription;
use tenantry_ledger::{SubscriptionId, TenantId};
use tenantry_store::{AuditFilter, PageRequest};

pub(super) const SUBSCRIBED_SKU_PROPERTIES: &[&str] = &[
    "id",
    "accountId",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
];
pub(super) const SUBSCRIPTION_PROPERTIES: &[&str] = &[
    "id",
    "commerceSubscriptionId",
    "createdDateTime",
    "isTrial",
    "nextLifecycleDateTime",
    "ownerId",
    "ownerTenantId",
    "ownerType",
    "serviceStatus",
    "skuId",
    "skuPartNumber",
    "status",
    "totalLicenses",
];
pub(super) const ORGANIZATION_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "createdDateTime",
    "tenantType",
    "verifiedDomains",
];

fn select_only(properties: &'static [&'static str]) -> Allowed {
    Allowed {
        properties,
        paging: false,
        filtering: false,
    }
}

fn paged(properties: &'static [&'static str]) -> Allowed {
    Allowed {
        properties,
        paging: true,
        filtering: false,
    }
}

/// Every subscription of the tenant (a tenant has a handful; pages of 1,000).
async fn all_subscriptions(app: &AppState, tenant: TenantId) -> ApiResult<Vec<Subscription>> {
    let mut all = Vec::new();
    let mut page = PageRequest {
        top: 1000,
        after: None,
    };
    loop {
        let got = app.store.list_subscriptions(tenant, page).await?;
        all.extend(got.items);
        match got.next {
            Some(next) => page.after = Some(next),
            None => return Ok(all),
        }
    }
}

async fn subscribed_sku_values(app: &AppState, tenant: TenantId) -> ApiResult<Vec<Value>> {
    let subs = all_subscriptions(app, tenant).await?;
    Ok(app
        .store
        .subscribed_skus(tenant)
        .await?
        .iter()
        .map(|s| {
            let ids = subs
                .iter()
                .filter(|sub| sub.sku_id == s.sku.sku_id)
                .map(|sub| sub.id.0)
                .collect();
            dto::subscribed_sku(s, ids)
        })
        .collect())
}

pub async fn subscribed_skus(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(
        raw.as_deref(),
        &headers,
        select_only(SUBSCRIBED_SKU_PROPERTIES),
    )?;
    let value: Vec<Value> = subscribed_sku_values(&app, caller.tenant)
        .await?
        .into_iter()
        .map(|v| dto::selected(v, q.select.as_deref()))
        .collect();
    Ok(Json(collection(
        &app.graph.origin(&headers),
        "subscribedSkus",
        value,
        &q,
        None,
    )))
}

pub async fn subscribed_sku(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(
        raw.as_deref(),
        &headers,
        select_only(SUBSCRIBED_SKU_PROPERTIES),
    )?;
    subscribed_sku_values(&app, caller.tenant)
        .await?
        .into_iter()
        .find(|v| v["id"].as_str() == Some(id.as_str()))
        .map(|v| Json(dto::selected(v, q.select.as_deref())))
        .ok_or_else(|| ApiError::not_found("subscribedSku"))
}

pub async fn subscriptions(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(raw.as_deref(), &headers, paged(SUBSCRIPTION_PROPERTIES))?;
    let subs = app
        .store
        .list_subscriptions(caller.tenant, page(&q)?)
        .await?;
    let catalog = app.store.list_skus().await?;
    let value: Vec<Value> = subs
        .items
        .iter()
        .map(|s| {
            let sku = catalog.iter().find(|k| k.sku_id == s.sku_id);
            dto::selected(dto::company_subscription(s, sku), q.select.as_deref())
        })
        .collect();
    Ok(Json(collection(
        &app.graph.origin(&headers),
        "directory/subscriptions",
        value,
        &q,
        subs.next,
    )))
}

pub async fn subscription(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(
        raw.as_deref(),
        &headers,
        select_only(SUBSCRIPTION_PROPERTIES),
    )?;
    let id = SubscriptionId(guid(&id, "subscription")?);
    let sub = app.store.get_subscription(caller.tenant, id).await?;
    let catalog = app.store.list_skus().await?;
    let sku = catalog.iter().find(|k| k.sku_id == sub.sku_id);
    Ok(Json(dto::selected(
        dto::company_subscription(&sub, sku),
        q.select.as_deref(),
    )))
}

pub async fn organization(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::Read)?;
    let q = query(
        raw.as_deref(),
        &headers,
        select_only(ORGANIZATION_PROPERTIES),
    )?;
    let tenant = app.store.get_tenant(caller.tenant).await?;
    let value = vec![dto::selected(
        dto::organization(&tenant),
        q.select.as_deref(),
    )];
    Ok(Json(collection(
        &app.graph.origin(&headers),
        "organization",
        value,
        &q,
        None,
    )))
}

pub async fn directory_audits(
    State(app): State<AppState>,
    caller: GraphCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.authorize(Action::ReadAudit)?;
    let q = query(raw.as_deref(), &headers, paged(&[]))?;
    let records = app
        .store
        .audit_log(caller.tenant, AuditFilter::default(), page(&q)?)
        .await?;
    let described = app
        .ledger
        .describe_audit(caller.tenant, records.items)
        .await?;
    let value = described.iter().map(dto::directory_audit).collect();
    Ok(Json(collection(
        &app.graph.origin(&headers),
        "auditLogs/directoryAudits",
        value,
        &q,
        records.next,
    )))
}
