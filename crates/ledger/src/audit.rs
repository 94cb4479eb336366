//! The audit log's record: who did what to which object, with the object before and after.

use crate::ids::TenantId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Monotonic sequence number, assigned by storage.
    pub seq: i64,
    pub tenant_id: Option<TenantId>,
    pub actor: String,
    /// A stable verb such as `subscription.quantityChanged`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub at: Timestamp,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit record before storage gives it a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub tenant_id: Option<TenantId>,
    pub actor: String,
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}
