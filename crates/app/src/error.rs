//! The one mapping from an error kind to an HTTP status, shared by the API (problem+json) and
//! the admin center (the status of a page that shows a refusal).

use tenantry_ledger::ErrorKind;
use tenantry_store::StoreError;

/// The HTTP status of a ledger refusal of `kind`.
pub fn http_status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::Invalid => 422,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Forbidden => 403,
        ErrorKind::PreconditionFailed => 412,
        ErrorKind::Upstream => 502,
    }
}

/// The HTTP status of any error of the application layer (an internal failure is a 500).
pub fn status_of(e: &StoreError) -> u16 {
    match e {
        StoreError::Ledger(e) => http_status(e.kind),
        StoreError::Internal(_) => 500,
    }
}
