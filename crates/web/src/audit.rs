//! The audit log (filters: action, target).

use crate::account::load_tenant;
use crate::ctx::{Ctx, WebResult};
use crate::views::{date_time, AuditPage, AuditRow, Layout};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use tenantry_api::AppState;
use tenantry_ledger::role::Action;
use tenantry_store::{AuditFilter, PageRequest};

/// The actions the store records, offered as a filter.
const ACTIONS: [&str; 17] = [
    "tenant.created",
    "token.created",
    "token.revoked",
    "application.created",
    "application.secretRotated",
    "application.deleted",
    "sku.added",
    "subscription.created",
    "subscription.quantityChanged",
    "subscription.cancelled",
    "subscription.reactivated",
    "subscription.trialExtended",
    "subscription.lifecycle",
    "user.created",
    "user.updated",
    "user.licensesChanged",
    "user.deleted",
];

#[derive(serde::Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    after: Option<String>,
}

fn pretty(v: Option<serde_json::Value>) -> Option<String> {
    v.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
}

pub async fn audit(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    ctx.authorize(t.id, Action::ReadAudit)?;
    let q = query.map(|q| q.0).unwrap_or_default();
    let action = q.action.trim().to_string();
    let target = q.target.trim().to_string();
    let page = app
        .store
        .audit_log(
            t.id,
            AuditFilter {
                action: (!action.is_empty()).then(|| action.clone()),
                target_id: (!target.is_empty()).then(|| target.clone()),
            },
            PageRequest {
                top: 100,
                after: q.after.as_deref().and_then(|a| a.parse().ok()),
            },
        )
        .await?;
    let records = app
        .ledger
        .describe_audit(t.id, page.items)
        .await?
        .into_iter()
        .map(|d| {
            let dash = |v: Option<String>| v.unwrap_or_else(|| "–".into());
            AuditRow {
                seq: d.record.seq,
                at: date_time(d.record.at),
                actor: d.actor,
                action: d.record.action,
                target_type: d.record.target_type,
                target_id: d.record.target_id,
                target_name: d.target_name,
                summary: d.summary,
                changes: d
                    .changes
                    .into_iter()
                    .map(|c| (c.name, dash(c.old), dash(c.new)))
                    .collect(),
                before: pretty(d.record.before),
                after: pretty(d.record.after),
            }
        })
        .collect();
    let actions = ACTIONS.to_vec();
    ctx.page(
        StatusCode::OK,
        AuditPage {
            l: Layout::new(&ctx, "Audit log", "audit", Some(&t)),
            tid: t.id.to_string(),
            action,
            target,
            actions,
            records,
            next: page.next,
        },
    )
}
