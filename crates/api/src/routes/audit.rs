//! The audit log, newest first.

use super::{list, urlencode};
use crate::auth::Auth;
use crate::dto::{AuditRecordDto, List};
use crate::error::ApiResult;
use crate::extract::{parse_id, Paging};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use tenantry_ledger::role::Action;
use tenantry_ledger::TenantId;
use tenantry_store::AuditFilter;

#[derive(Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    #[serde(rename = "targetId")]
    target_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenantId}/auditLogs", tag = "audit",
    params(("tenantId" = String, Path), ("action" = Option<String>, Query), ("targetId" = Option<String>, Query),
        ("$top" = Option<u32>, Query), ("$skiptoken" = Option<String>, Query)),
    responses((status = 200, body = inline(List<AuditRecordDto>)), (status = 403), (status = 404)))]
pub async fn list_all(
    State(app): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
    Query(query): Query<AuditQuery>,
    Paging(page): Paging,
) -> ApiResult<Json<List<AuditRecordDto>>> {
    let tenant: TenantId = parse_id(&tenant, "tenant")?;
    auth.authorize(tenant, Action::ReadAudit)?;
    let mut extra = String::new();
    if let Some(a) = &query.action {
        extra.push_str(&format!("&action={}", urlencode(a)));
    }
    if let Some(t) = &query.target_id {
        extra.push_str(&format!("&targetId={}", urlencode(t)));
    }
    let records = app
        .store
        .audit_log(
            tenant,
            AuditFilter {
                action: query.action,
                target_id: query.target_id,
            },
            page,
        )
        .await?;
    let path = format!("/v1/tenants/{tenant}/auditLogs");
    let records = tenantry_store::Page {
        items: app.ledger.describe_audit(tenant, records.items).await?,
        next: records.next,
    };
    Ok(Json(list(
        records,
        &path,
        page.top,
        &extra,
        AuditRecordDto::from,
    )))
}
