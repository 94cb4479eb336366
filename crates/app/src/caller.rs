//! Who asks: a principal (for the role check) and the name the audit log records.

use tenantry_ledger::role::{Action, Principal};
use tenantry_ledger::{LedgerError, TenantId};

#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// How the audit log names the caller.
    pub actor: String,
}

impl Caller {
    /// A person or script with a token.
    pub fn new(principal: Principal) -> Caller {
        Caller {
            actor: principal.actor(),
            principal,
        }
    }

    /// The server acting on its own (lifecycle sweeper, move runner): operator rights, named
    /// `actor` in the audit log.
    pub fn system(actor: impl Into<String>) -> Caller {
        Caller {
            principal: Principal::Operator,
            actor: actor.into(),
        }
    }

    pub fn authorize(&self, tenant: TenantId, action: Action) -> Result<(), LedgerError> {
        self.principal.authorize(tenant, action)
    }

    pub fn require_operator(&self) -> Result<(), LedgerError> {
        if self.principal.is_operator() {
            Ok(())
        } else {
            Err(LedgerError::forbidden(
                "only the platform operator can do this",
            ))
        }
    }
}
