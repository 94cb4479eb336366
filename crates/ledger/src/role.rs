//! Who may do what. A principal acts in one tenant with one role; the operator runs the platform.

use crate::error::LedgerError;
use crate::ids::{TenantId, TokenId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    GlobalAdmin,
    BillingAdmin,
    LicenseAdmin,
    UserAdmin,
    GlobalReader,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::GlobalAdmin,
        Role::BillingAdmin,
        Role::LicenseAdmin,
        Role::UserAdmin,
        Role::GlobalReader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::GlobalAdmin => "GlobalAdmin",
            Role::BillingAdmin => "BillingAdmin",
            Role::LicenseAdmin => "LicenseAdmin",
            Role::UserAdmin => "UserAdmin",
            Role::GlobalReader => "GlobalReader",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Operations, grouped the way the roles grant them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the tenant, its subscriptions, SKUs and users.
    Read,
    /// Buy, add or remove seats, cancel, reactivate.
    ManageBilling,
    /// Assign and unassign licences.
    AssignLicenses,
    /// Create, change and delete users.
    ManageUsers,
    /// Read the audit log.
    ReadAudit,
    /// Issue API tokens for the tenant.
    ManageTokens,
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::GlobalAdmin => true,
            Role::BillingAdmin => matches!(action, Read | ManageBilling),
            Role::LicenseAdmin => matches!(action, Read | AssignLicenses),
            Role::UserAdmin => matches!(action, Read | ManageUsers),
            Role::GlobalReader => matches!(action, Read | ReadAudit),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// Runs the platform: creates tenants, acts in any tenant.
    Operator,
    Tenant {
        tenant_id: TenantId,
        role: Role,
        token_id: TokenId,
    },
}

impl Principal {
    /// Checks that this principal may perform `action` in `tenant`. Another tenant's objects
    /// answer "not found", so that their existence does not leak.
    pub fn authorize(&self, tenant: TenantId, action: Action) -> Result<(), LedgerError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { tenant_id, .. } if *tenant_id != tenant => {
                Err(LedgerError::not_found("tenant"))
            }
            Principal::Tenant { role, .. } if role.allows(action) => Ok(()),
            Principal::Tenant { role, .. } => Err(LedgerError::forbidden(format!(
                "the {} role cannot {}",
                role.as_str(),
                describe(action)
            ))),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }

    /// How the audit log names this principal.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator".to_string(),
            Principal::Tenant { role, token_id, .. } => {
                format!("token:{token_id} ({})", role.as_str())
            }
        }
    }
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::Read => "read this tenant",
        Action::ManageBilling => "buy, remove or cancel licences",
        Action::AssignLicenses => "assign or unassign licences",
        Action::ManageUsers => "create, change or delete users",
        Action::ReadAudit => "read the audit log",
        Action::ManageTokens => "issue API tokens",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn principal(role: Role, tenant: TenantId) -> Principal {
        Principal::Tenant {
            tenant_id: tenant,
            role,
            token_id: TokenId::new_random(),
        }
    }

    #[test]
    fn the_role_matrix_matches_microsoft_365() {
        use Action::*;
        let t = TenantId::new_random();
        let expect = [
            (Role::BillingAdmin, ManageBilling, true),
            (Role::BillingAdmin, AssignLicenses, false),
            (Role::LicenseAdmin, AssignLicenses, true),
            (Role::LicenseAdmin, ManageBilling, false),
            (Role::UserAdmin, ManageUsers, true),
            (Role::UserAdmin, AssignLicenses, false),
            (Role::GlobalReader, Read, true),
            (Role::GlobalReader, ReadAudit, true),
            (Role::GlobalReader, ManageUsers, false),
            (Role::GlobalAdmin, ManageTokens, true),
            (Role::LicenseAdmin, ManageTokens, false),
        ];
        for (role, action, allowed) in expect {
            let result = principal(role, t).authorize(t, action);
            assert_eq!(result.is_ok(), allowed, "{role:?} {action:?}");
            if let Err(e) = result {
                assert_eq!(e.kind, ErrorKind::Forbidden);
            }
        }
    }

    #[test]
    fn another_tenant_is_not_found_even_for_a_global_admin() {
        let err = principal(Role::GlobalAdmin, TenantId::new_random())
            .authorize(TenantId::new_random(), Action::Read)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
}
