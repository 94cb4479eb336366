//! The report of a move: licence changes on both sides, and per user, mailbox, calendar and
//! address-book home and library the state, counts and errors of its steps, with the notices
//! of steps that left something out by design. JSON for programs, CSV for spreadsheets.

use serde_json::{json, Value};
use tenantry_moves::plan::{Plan, Step};
use tenantry_store::moves::StepState;
use tenantry_store::{Store, StoreError};
use uuid::Uuid;

pub async fn build(store: &dyn Store, move_id: Uuid) -> Result<Value, StoreError> {
    let record = store.get_move(move_id).await?;
    let steps = store.steps(move_id).await?;
    let plan: Option<Plan> = record
        .plan
        .clone()
        .and_then(|p| serde_json::from_value(p).ok());
    let mut rows = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, u32>::new();
    for step in &steps {
        *counts.entry(step.state.as_str()).or_default() += 1;
        let parsed: Option<Step> = serde_json::from_value(step.step.clone()).ok();
        let (kind, subject) = match &parsed {
            Some(Step::BuyTargetLicences {
                sku_part_number, ..
            }) => ("targetLicences", sku_part_number.clone()),
            Some(Step::CreateTargetUser { target_upn, .. }) => ("targetUser", target_upn.clone()),
            Some(Step::AssignTargetLicences { target_upn }) => {
                ("targetAssignment", target_upn.clone())
            }
            Some(Step::MigrateMailbox { source_upn, .. }) => ("mailbox", source_upn.clone()),
            Some(Step::MigrateLibrary { source, .. }) => ("library", source.clone()),
            Some(Step::MigrateCalendars { source_upn, .. }) => ("calendars", source_upn.clone()),
            Some(Step::MigrateContacts { source_upn, .. }) => ("contacts", source_upn.clone()),
            Some(Step::FinalDeltaPass) => ("finalDelta", String::new()),
            Some(Step::Verify) => ("verify", String::new()),
            Some(Step::UnassignSourceLicences { source_upn }) => {
                ("sourceAssignment", source_upn.clone())
            }
            Some(Step::SourceLicences { action }) => (
                "sourceLicences",
                serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v["subscriptionId"].as_str().map(str::to_string))
                    .unwrap_or_default(),
            ),
            Some(Step::AwaitTargetSeats {
                sku_part_number, ..
            }) => ("administratorPurchase", sku_part_number.clone()),
            Some(Step::AwaitSourceChange { action, .. }) => (
                "administratorSourceChange",
                action.subscription_id().to_string(),
            ),
            Some(Step::Report) => ("report", String::new()),
            None => ("unknown", step.key.clone()),
        };
        rows.push(json!({
            "key": step.key,
            "kind": kind,
            "subject": subject,
            "state": step.state.as_str(),
            "attempts": step.attempts,
            "result": step.result,
            "error": step.error,
        }));
    }
    let done = steps.iter().filter(|s| s.state == StepState::Done).count();
    // What administrators were asked to do (Graph tenants), and who confirmed it when.
    let administrator: Vec<Value> = rows
        .iter()
        .filter(|r| {
            r["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("administrator"))
        })
        .map(|r| {
            let result = &r["result"];
            json!({
                "key": r["key"],
                "state": r["state"],
                "action": result.get("done").or_else(|| result.get(tenantry_app::waiting::WAITING)),
                "seenInSubscribedSkus": result.get("seenInSubscribedSkus"),
                "seenInDirectorySubscriptions": result.get("seenInDirectorySubscriptions"),
                "confirmedBy": result.get("confirmedBy"),
                "confirmedAt": result.get("confirmedAt"),
            })
        })
        .collect();
    // What a step did not do by design and someone should know (a user with no calendar home
    // on the source): the step is done, the notice stays visible here.
    let notices: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let notice = r["result"]["result"]["notice"].as_str()?;
            Some(json!({"key": r["key"], "kind": r["kind"], "subject": r["subject"], "notice": notice}))
        })
        .collect();
    Ok(json!({
        "administratorActions": administrator,
        "notices": notices,
        "move": {
            "id": record.id,
            "state": record.state.as_str(),
            "path": record.spec.path,
            "sourceTenantId": record.spec.source_tenant_id,
            "targetTenantId": record.spec.target_tenant_id,
        },
        "summary": {"steps": steps.len(), "done": done, "byState": counts},
        "targetLicences": plan.as_ref().map(|p| json!(p.licences)),
        "sourceActions": plan.as_ref().map(|p| json!(p.source_actions)),
        "costs": plan.as_ref().map(|p| json!(p.costs)),
        "steps": rows,
    }))
}

/// One CSV field. Text from servers (errors, names) could start like a spreadsheet formula:
/// such a field gets a leading apostrophe, which spreadsheets show as text.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// One line per step: kind, subject, state, attempts, error, result.
pub fn to_csv(report: &Value) -> String {
    let mut out = String::from("kind,subject,state,attempts,error,result\n");
    for row in report["steps"].as_array().into_iter().flatten() {
        let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
        let result = if row["result"].is_null() {
            String::new()
        } else {
            row["result"].to_string()
        };
        out.push_str(
            &[
                csv_field(&text("kind")),
                csv_field(&text("subject")),
                csv_field(&text("state")),
                row["attempts"].to_string(),
                csv_field(&text("error")),
                csv_field(&result),
            ]
            .join(","),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("line\rbreak"), "\"line\rbreak\"");
    }
}
