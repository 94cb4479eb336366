//! Tenants: one organisation each.

use crate::error::LedgerError;
use crate::ids::TenantId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    /// The tenant's initial domain, e.g. `contoso.onmicrosoft.com`; unique across the platform.
    pub default_domain: String,
    pub created_at: Timestamp,
}

pub fn validate_display_name(name: &str) -> Result<String, LedgerError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(LedgerError::invalid(
            "InvalidDisplayName",
            "displayName must be 1-256 printable characters",
        ));
    }
    Ok(name.to_string())
}

/// Normalises a DNS domain name (lower case) and checks its shape.
pub fn validate_domain(domain: &str) -> Result<String, LedgerError> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if domain.len() > 253 || !domain.contains('.') || !labels_ok {
        return Err(LedgerError::invalid(
            "InvalidDomain",
            format!("'{domain}' is not a valid domain name (e.g. contoso.onmicrosoft.com)"),
        ));
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_and_checked() {
        assert_eq!(
            validate_domain(" Contoso.OnMicrosoft.com. ").unwrap(),
            "contoso.onmicrosoft.com"
        );
        for bad in ["", "contoso", "-a.com", "a..com", "a_b.com", "x.com/evil"] {
            assert_eq!(
                validate_domain(bad).unwrap_err().code,
                "InvalidDomain",
                "{bad}"
            );
        }
    }
}
