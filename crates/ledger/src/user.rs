//! Users of a tenant, as far as licensing cares about them.

use crate::error::LedgerError;
use crate::ids::{TenantId, UserId};
use crate::tenant::validate_display_name;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub user_principal_name: String,
    pub display_name: String,
    /// ISO 3166-1 alpha-2 country code; required before a licence can be assigned.
    pub usage_location: Option<String>,
    pub account_enabled: bool,
    pub created_at: Timestamp,
    pub version: u64,
}

/// Normalises a userPrincipalName (`alias@domain`, domain lower-cased) and checks its shape.
pub fn validate_upn(upn: &str) -> Result<String, LedgerError> {
    let err = || {
        LedgerError::invalid(
            "InvalidUserPrincipalName",
            format!(
                "'{upn}' is not a valid userPrincipalName (alias@domain, at most 113 characters)"
            ),
        )
    };
    let (alias, domain) = upn.trim().rsplit_once('@').ok_or_else(err)?;
    let alias_ok = !alias.is_empty()
        && alias.len() <= 64
        && !alias.starts_with('.')
        && !alias.ends_with('.')
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+'".contains(c));
    if !alias_ok {
        return Err(err());
    }
    let domain = crate::tenant::validate_domain(domain).map_err(|_| err())?;
    let upn = format!("{alias}@{domain}");
    if upn.len() > 113 {
        return Err(err());
    }
    Ok(upn)
}

/// Upper-cases and checks a two-letter usage location.
pub fn validate_usage_location(location: &str) -> Result<String, LedgerError> {
    let location = location.trim().to_ascii_uppercase();
    if location.len() != 2 || !location.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(LedgerError::invalid(
            "InvalidUsageLocation",
            format!("usageLocation must be a two-letter ISO 3166 country code such as US or FR, not '{location}'"),
        ));
    }
    Ok(location)
}

/// Changes to a user; `None` leaves a field alone. `usage_location: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub usage_location: Option<Option<String>>,
    pub account_enabled: Option<bool>,
}

impl User {
    pub fn new(
        id: UserId,
        tenant_id: TenantId,
        upn: &str,
        display_name: &str,
        usage_location: Option<&str>,
        account_enabled: bool,
        now: Timestamp,
    ) -> Result<User, LedgerError> {
        Ok(User {
            id,
            tenant_id,
            user_principal_name: validate_upn(upn)?,
            display_name: validate_display_name(display_name)?,
            usage_location: usage_location.map(validate_usage_location).transpose()?,
            account_enabled,
            created_at: now,
            version: 1,
        })
    }

    /// Applies a patch; `has_licences` forbids clearing the usage location of a licensed user.
    pub fn apply(&mut self, patch: &UserPatch, has_licences: bool) -> Result<(), LedgerError> {
        if let Some(upn) = &patch.user_principal_name {
            self.user_principal_name = validate_upn(upn)?;
        }
        if let Some(name) = &patch.display_name {
            self.display_name = validate_display_name(name)?;
        }
        if let Some(location) = &patch.usage_location {
            if location.is_none() && has_licences {
                return Err(LedgerError::conflict(
                    "UsageLocationRequired",
                    "a licensed user needs a usage location; remove the licences first",
                ));
            }
            self.usage_location = location
                .as_deref()
                .map(validate_usage_location)
                .transpose()?;
        }
        if let Some(enabled) = patch.account_enabled {
            self.account_enabled = enabled;
        }
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upns_are_normalised_and_checked() {
        assert_eq!(
            validate_upn("Adele.V@Contoso.com").unwrap(),
            "Adele.V@contoso.com"
        );
        for bad in [
            "",
            "adele",
            "@contoso.com",
            "a@b",
            "a b@contoso.com",
            ".a@contoso.com",
        ] {
            assert!(validate_upn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_location_is_two_letters() {
        assert_eq!(validate_usage_location("fr").unwrap(), "FR");
        for bad in ["", "F", "FRA", "1A"] {
            assert_eq!(
                validate_usage_location(bad).unwrap_err().code,
                "InvalidUsageLocation"
            );
        }
    }
}
