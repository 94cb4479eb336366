//! The ledger's one error type: a kind (mapped to an HTTP status in exactly one place,
//! `tenantry_app::error::http_status`, for the API and the admin center alike),
//! a stable machine-readable code and a human-readable detail.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is well-formed but breaks a rule about its content (HTTP 422).
    Invalid,
    /// The object does not exist, or belongs to another tenant (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// The principal's role does not allow the operation (HTTP 403).
    Forbidden,
    /// The client's view of the object is stale (HTTP 412).
    PreconditionFailed,
    /// A system the operation depends on (a tenant reached through Microsoft Graph) failed or
    /// refused; the detail says which and why (HTTP 502).
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerError {
    pub kind: ErrorKind,
    /// Stable code clients can match on, e.g. `NoFreeSeat`.
    pub code: &'static str,
    pub detail: String,
}

impl LedgerError {
    pub fn new(kind: ErrorKind, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            detail: detail.into(),
        }
    }
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, detail)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorKind::NotFound, "NotFound", format!("{what} not found"))
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "Forbidden", detail)
    }
    pub fn upstream(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, code, detail)
    }
    pub fn stale(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::PreconditionFailed, "PreconditionFailed", detail)
    }
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for LedgerError {}
