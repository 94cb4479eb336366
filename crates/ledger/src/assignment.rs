//! Licence assignment rules (Graph `assignLicense`), without the seat count: seats are checked
//! by the storage layer inside the transaction that takes them.

use crate::catalog::Sku;
use crate::error::LedgerError;
use crate::ids::{SkuId, UserId};
use crate::time::Timestamp;
use crate::user::User;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub user_id: UserId,
    pub sku_id: SkuId,
    pub disabled_plans: BTreeSet<Uuid>,
    pub assigned_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddLicense {
    pub sku_id: SkuId,
    pub disabled_plans: Vec<Uuid>,
}

/// What an `assignLicense` call does to one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentChange {
    /// New licences: each takes a seat.
    pub added: Vec<Assignment>,
    /// Licences the user already held, with new `disabledPlans`: no seat change.
    pub updated: Vec<Assignment>,
    /// Licences given back: each frees a seat.
    pub removed: Vec<SkuId>,
}

/// Checks an `assignLicense` request against the user's current licences and the catalog.
pub fn plan_assignment(
    user: &User,
    current: &[Assignment],
    add: &[AddLicense],
    remove: &[SkuId],
    catalog: &HashMap<SkuId, Sku>,
    now: Timestamp,
) -> Result<AssignmentChange, LedgerError> {
    if add.is_empty() && remove.is_empty() {
        return Err(LedgerError::invalid(
            "EmptyLicenseChange",
            "addLicenses and removeLicenses are both empty",
        ));
    }
    let mut seen = BTreeSet::new();
    for sku in add.iter().map(|a| a.sku_id).chain(remove.iter().copied()) {
        if !seen.insert(sku) {
            return Err(LedgerError::invalid(
                "DuplicateSku",
                format!("SKU {sku} appears more than once in addLicenses/removeLicenses"),
            ));
        }
    }
    if !add.is_empty() && user.usage_location.is_none() {
        return Err(LedgerError::invalid(
            "UsageLocationRequired",
            format!(
                "{} has no usage location; set usageLocation before assigning licences",
                user.user_principal_name
            ),
        ));
    }
    let held: HashMap<SkuId, &Assignment> = current.iter().map(|a| (a.sku_id, a)).collect();
    let mut change = AssignmentChange::default();
    for sku_id in remove {
        if !held.contains_key(sku_id) {
            return Err(LedgerError::invalid(
                "LicenseNotAssigned",
                format!(
                    "{} does not hold a licence of SKU {sku_id}",
                    user.user_principal_name
                ),
            ));
        }
        change.removed.push(*sku_id);
    }
    for license in add {
        let sku = catalog.get(&license.sku_id).ok_or_else(|| {
            LedgerError::invalid(
                "UnknownSku",
                format!("no SKU with skuId {}", license.sku_id),
            )
        })?;
        for plan in &license.disabled_plans {
            if sku.plan(*plan).is_none() {
                return Err(LedgerError::invalid(
                    "InvalidDisabledPlan",
                    format!("service plan {plan} is not part of {}", sku.sku_part_number),
                ));
            }
        }
        let assignment = Assignment {
            user_id: user.id,
            sku_id: sku.sku_id,
            disabled_plans: license.disabled_plans.iter().copied().collect(),
            assigned_at: held.get(&sku.sku_id).map_or(now, |a| a.assigned_at),
        };
        if held.contains_key(&sku.sku_id) {
            change.updated.push(assignment);
        } else {
            change.added.push(assignment);
        }
    }
    // The licences the user will hold: current ones, minus removed, with updates applied.
    let mut after: HashMap<SkuId, &Assignment> = held
        .into_iter()
        .filter(|(sku, _)| !change.removed.contains(sku))
        .collect();
    for a in change.added.iter().chain(&change.updated) {
        after.insert(a.sku_id, a);
    }
    check_plan_conflicts(&after, catalog)?;
    Ok(change)
}

/// Two different enabled plans of one exclusive group (Exchange Plan 1 and Plan 2, say) conflict.
fn check_plan_conflicts(
    licences: &HashMap<SkuId, &Assignment>,
    catalog: &HashMap<SkuId, Sku>,
) -> Result<(), LedgerError> {
    let mut by_group: HashMap<&str, (&str, &str, Uuid)> = HashMap::new();
    let mut skus: Vec<_> = licences.values().collect();
    skus.sort_by_key(|a| a.sku_id);
    for assignment in skus {
        let Some(sku) = catalog.get(&assignment.sku_id) else {
            continue;
        };
        for plan in &sku.service_plans {
            let (Some(group), false) = (
                plan.exclusive_group.as_deref(),
                assignment.disabled_plans.contains(&plan.service_plan_id),
            ) else {
                continue;
            };
            match by_group.get(group) {
                Some((other_sku, other_plan, other_id)) if *other_id != plan.service_plan_id => {
                    return Err(LedgerError::invalid(
                        "ConflictingServicePlans",
                        format!(
                            "{} in {} conflicts with {} in {}; disable one of them (disabledPlans)",
                            plan.service_plan_name, sku.sku_part_number, other_plan, other_sku
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    by_group.insert(
                        group,
                        (
                            &sku.sku_part_number,
                            &plan.service_plan_name,
                            plan.service_plan_id,
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::seed_catalog;
    use crate::ids::TenantId;

    fn catalog() -> HashMap<SkuId, Sku> {
        seed_catalog().into_iter().map(|s| (s.sku_id, s)).collect()
    }

    fn sku(part: &str) -> Sku {
        seed_catalog()
            .into_iter()
            .find(|s| s.sku_part_number == part)
            .unwrap()
    }

    fn user(location: Option<&str>) -> User {
        User::new(
            UserId::new_random(),
            TenantId::new_random(),
            "adele@contoso.com",
            "Adele",
            location,
            true,
            Timestamp(0),
        )
        .unwrap()
    }

    fn add(part: &str, disabled: Vec<Uuid>) -> AddLicense {
        AddLicense {
            sku_id: sku(part).sku_id,
            disabled_plans: disabled,
        }
    }

    #[test]
    fn assignment_needs_a_usage_location() {
        let err = plan_assignment(
            &user(None),
            &[],
            &[add("ENTERPRISEPACK", vec![])],
            &[],
            &catalog(),
            Timestamp(0),
        )
        .unwrap_err();
        assert_eq!(err.code, "UsageLocationRequired");
    }

    #[test]
    fn exchange_plan_one_and_two_conflict_unless_one_is_disabled() {
        let u = user(Some("US"));
        let e3 = plan_assignment(
            &u,
            &[],
            &[add("ENTERPRISEPACK", vec![])],
            &[],
            &catalog(),
            Timestamp(0),
        )
        .unwrap();
        let held = e3.added;
        let err = plan_assignment(
            &u,
            &held,
            &[add("EXCHANGESTANDARD", vec![])],
            &[],
            &catalog(),
            Timestamp(0),
        )
        .unwrap_err();
        assert_eq!(err.code, "ConflictingServicePlans");
        let exchange_p1 = sku("EXCHANGESTANDARD").service_plans[0].service_plan_id;
        // Same request with the conflicting plan disabled is fine.
        plan_assignment(
            &u,
            &held,
            &[add("EXCHANGESTANDARD", vec![exchange_p1])],
            &[],
            &catalog(),
            Timestamp(0),
        )
        .unwrap();
    }

    #[test]
    fn re_adding_a_held_sku_updates_disabled_plans_without_a_second_seat() {
        let u = user(Some("US"));
        let held = plan_assignment(
            &u,
            &[],
            &[add("ENTERPRISEPACK", vec![])],
            &[],
            &catalog(),
            Timestamp(0),
        )
        .unwrap()
        .added;
        let teams = sku("ENTERPRISEPACK")
            .service_plans
            .iter()
            .find(|p| p.service_plan_name == "TEAMS1")
            .unwrap()
            .service_plan_id;
        let change = plan_assignment(
            &u,
            &held,
            &[add("ENTERPRISEPACK", vec![teams])],
            &[],
            &catalog(),
            Timestamp(9),
        )
        .unwrap();
        assert!(change.added.is_empty());
        assert_eq!(change.updated.len(), 1);
        assert!(change.updated[0].disabled_plans.contains(&teams));
        assert_eq!(change.updated[0].assigned_at, Timestamp(0));
    }

    #[test]
    fn unknown_plans_skus_and_removals_are_refused() {
        let u = user(Some("US"));
        let cat = catalog();
        let err = plan_assignment(
            &u,
            &[],
            &[add("ENTERPRISEPACK", vec![Uuid::nil()])],
            &[],
            &cat,
            Timestamp(0),
        )
        .unwrap_err();
        assert_eq!(err.code, "InvalidDisabledPlan");
        let err = plan_assignment(
            &u,
            &[],
            &[AddLicense {
                sku_id: SkuId(Uuid::nil()),
                disabled_plans: vec![],
            }],
            &[],
            &cat,
            Timestamp(0),
        )
        .unwrap_err();
        assert_eq!(err.code, "UnknownSku");
        let err =
            plan_assignment(&u, &[], &[], &[sku("SPE_E3").sku_id], &cat, Timestamp(0)).unwrap_err();
        assert_eq!(err.code, "LicenseNotAssigned");
    }
}
