//! Small helpers for the audit records the operations write.

use tenantry_ledger::assignment::Assignment;

pub fn json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Licences as the audit log shows them: product and disabled plans.
pub fn assignment_summary(assignments: &[Assignment]) -> serde_json::Value {
    serde_json::Value::Array(
        assignments
            .iter()
            .map(|a| serde_json::json!({"skuId": a.sku_id, "disabledPlans": a.disabled_plans}))
            .collect(),
    )
}
