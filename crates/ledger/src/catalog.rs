//! The SKU catalog: products with their service plans, seeded with the identifiers Microsoft
//! publishes in "Product names and service plan identifiers for licensing".

use crate::error::LedgerError;
use crate::ids::SkuId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub service_plan_id: Uuid,
    pub service_plan_name: String,
    pub display_name: String,
    /// Plans of the same group exclude each other on one user (Exchange Online Plan 1 and Plan 2
    /// cannot both be enabled: Graph answers "conflicting service plans").
    pub exclusive_group: Option<String>,
}

/// A price cap far above any real licence (a million a month, per seat).
pub const MAX_MONTHLY_PRICE_CENTS: u64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    pub sku_id: SkuId,
    pub sku_part_number: String,
    pub display_name: String,
    pub service_plans: Vec<ServicePlan>,
    /// List price of one seat for one month, in cents; drives proration.
    pub monthly_price_cents: u64,
    /// Added by an operator rather than seeded.
    pub custom: bool,
}

impl Sku {
    pub fn plan(&self, id: Uuid) -> Option<&ServicePlan> {
        self.service_plans.iter().find(|p| p.service_plan_id == id)
    }

    /// Checks an operator-supplied SKU before it joins the catalog.
    pub fn validate(&self) -> Result<(), LedgerError> {
        let part = &self.sku_part_number;
        if part.is_empty()
            || part.len() > 64
            || !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(LedgerError::invalid(
                "InvalidSkuPartNumber",
                "skuPartNumber must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        if self.display_name.trim().is_empty() || self.display_name.len() > 256 {
            return Err(LedgerError::invalid(
                "InvalidDisplayName",
                "displayName must be 1-256 characters",
            ));
        }
        if self.monthly_price_cents > MAX_MONTHLY_PRICE_CENTS {
            return Err(LedgerError::invalid(
                "InvalidPrice",
                format!("monthlyPriceCents must be at most {MAX_MONTHLY_PRICE_CENTS}"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for plan in &self.service_plans {
            if !seen.insert(plan.service_plan_id) {
                return Err(LedgerError::invalid(
                    "DuplicateServicePlan",
                    format!("service plan {} is listed twice", plan.service_plan_id),
                ));
            }
            if plan.service_plan_name.trim().is_empty() {
                return Err(LedgerError::invalid(
                    "InvalidServicePlan",
                    "every service plan needs a servicePlanName",
                ));
            }
        }
        Ok(())
    }
}

/// (id, name, display name, exclusive group)
type PlanSeed = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const EXCHANGE_P1: PlanSeed = (
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "EXCHANGE_S_STANDARD",
    "Exchange Online (Plan 1)",
    Some("exchange"),
);
const EXCHANGE_P2: PlanSeed = (
    "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "EXCHANGE_S_ENTERPRISE",
    "Exchange Online (Plan 2)",
    Some("exchange"),
);
const EXCHANGE_KIOSK: PlanSeed = (
    "4a82b400-a79f-41a4-b4e2-e94f5787b113",
    "EXCHANGE_S_DESKLESS",
    "Exchange Online Kiosk",
    Some("exchange"),
);
const SHAREPOINT_P1: PlanSeed = (
    "c7699d2e-19aa-44de-8edf-1736da088ca1",
    "SHAREPOINTSTANDARD",
    "SharePoint (Plan 1)",
    Some("sharepoint"),
);
const SHAREPOINT_P2: PlanSeed = (
    "5dbe027f-2339-4123-9542-606e4d348a72",
    "SHAREPOINTENTERPRISE",
    "SharePoint (Plan 2)",
    Some("sharepoint"),
);
const SHAREPOINT_KIOSK: PlanSeed = (
    "902b47e5-dcb2-4fdc-858b-c63a90a2bdb9",
    "SHAREPOINTDESKLESS",
    "SharePoint Kiosk",
    Some("sharepoint"),
);
const OFFICE_WEB: PlanSeed = (
    "e95bec33-7c88-4a70-8e19-b10bd9d0c014",
    "SHAREPOINTWAC",
    "Office for the Web",
    None,
);
const APPS_ENTERPRISE: PlanSeed = (
    "43de0ff5-c92c-492b-9116-175376d08c38",
    "OFFICESUBSCRIPTION",
    "Microsoft 365 Apps for enterprise",
    None,
);
const APPS_BUSINESS: PlanSeed = (
    "094e7854-93fc-4d55-b2c0-3ab5369ebdc1",
    "O365_BUSINESS",
    "Microsoft 365 Apps for business",
    None,
);
const OFFICE_MOBILE: PlanSeed = (
    "c63d4d19-e8cb-460e-b37c-4d6c34603745",
    "OFFICEMOBILE_SUBSCRIPTION",
    "Office Mobile Apps for Office 365",
    None,
);
const SKYPE_P2: PlanSeed = (
    "0feaeb32-d00e-4d66-bd5a-43b5b83db82c",
    "MCOSTANDARD",
    "Skype for Business Online (Plan 2)",
    None,
);
const TEAMS: PlanSeed = (
    "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "TEAMS1",
    "Microsoft Teams",
    None,
);
const YAMMER: PlanSeed = (
    "7547a3fe-08ee-4ccb-b430-5077c5041653",
    "YAMMER_ENTERPRISE",
    "Viva Engage (Yammer)",
    None,
);
const SWAY: PlanSeed = ("a23b959c-7ce8-4e57-9140-b90eb88a9e97", "SWAY", "Sway", None);
const FORMS_E1: PlanSeed = (
    "159f4cd6-e380-449f-a816-af1a9ef76344",
    "FORMS_PLAN_E1",
    "Microsoft Forms (Plan E1)",
    None,
);
const FORMS_E3: PlanSeed = (
    "2789c901-c14e-48ab-a76a-be334d9d793a",
    "FORMS_PLAN_E3",
    "Microsoft Forms (Plan E3)",
    None,
);
const PLANNER: PlanSeed = (
    "b737dad2-2f6c-4c65-90e3-ca563267e8b9",
    "PROJECTWORKMANAGEMENT",
    "Microsoft Planner",
    None,
);
const INTUNE: PlanSeed = (
    "c1ec4a95-1f05-45b3-a911-aa3fa01094f5",
    "INTUNE_A",
    "Microsoft Intune",
    None,
);
const ENTRA_P1: PlanSeed = (
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
    "AAD_PREMIUM",
    "Microsoft Entra ID P1",
    None,
);
const ENTRA_P2: PlanSeed = (
    "eec0eb4f-6444-4f95-aba0-50c24d67f998",
    "AAD_PREMIUM_P2",
    "Microsoft Entra ID P2",
    None,
);
const DEFENDER_O365_P1: PlanSeed = (
    "f20fedf3-f3c3-43c3-8267-2bfdd51c0939",
    "ATP_ENTERPRISE",
    "Microsoft Defender for Office 365 (Plan 1)",
    None,
);
const PHONE_SYSTEM: PlanSeed = (
    "4828c8ec-dc2e-4779-b502-87ac9ce28ab7",
    "MCOEV",
    "Microsoft Teams Phone Standard",
    None,
);
const POWER_BI_PRO_PLAN: PlanSeed = (
    "70d33638-9c74-4d01-bfd3-562de28bd4ba",
    "BI_AZURE_P2",
    "Power BI Pro",
    None,
);

const O365_E3_PLANS: &[PlanSeed] = &[
    EXCHANGE_P2,
    SHAREPOINT_P2,
    OFFICE_WEB,
    APPS_ENTERPRISE,
    SKYPE_P2,
    TEAMS,
    YAMMER,
    SWAY,
    FORMS_E3,
    PLANNER,
];

/// (skuId, skuPartNumber, display name, monthly price in cents, plans)
type SkuSeed = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    &'static [&'static [PlanSeed]],
);

const SEED: &[SkuSeed] = &[
    (
        "18181a46-0d4e-45cd-891e-60aabd171b4e",
        "STANDARDPACK",
        "Office 365 E1",
        1_000,
        &[&[
            EXCHANGE_P1,
            SHAREPOINT_P1,
            OFFICE_WEB,
            SKYPE_P2,
            TEAMS,
            YAMMER,
            SWAY,
            FORMS_E1,
            PLANNER,
        ]],
    ),
    (
        "6fd2c87f-b296-42f0-b197-1e91e994b900",
        "ENTERPRISEPACK",
        "Office 365 E3",
        2_300,
        &[O365_E3_PLANS],
    ),
    (
        "c7df2760-2c81-4ef7-b578-5b5392b571df",
        "ENTERPRISEPREMIUM",
        "Office 365 E5",
        3_800,
        &[
            O365_E3_PLANS,
            &[PHONE_SYSTEM, POWER_BI_PRO_PLAN, DEFENDER_O365_P1],
        ],
    ),
    (
        "05e9a617-0261-4cee-bb44-138d3ef5d965",
        "SPE_E3",
        "Microsoft 365 E3",
        3_600,
        &[O365_E3_PLANS, &[INTUNE, ENTRA_P1]],
    ),
    (
        "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
        "SPE_E5",
        "Microsoft 365 E5",
        5_700,
        &[
            O365_E3_PLANS,
            &[
                INTUNE,
                ENTRA_P1,
                ENTRA_P2,
                PHONE_SYSTEM,
                POWER_BI_PRO_PLAN,
                DEFENDER_O365_P1,
            ],
        ],
    ),
    (
        "3b555118-da6a-4418-894f-7df1e2096870",
        "O365_BUSINESS_ESSENTIALS",
        "Microsoft 365 Business Basic",
        600,
        &[&[
            EXCHANGE_P1,
            SHAREPOINT_P1,
            OFFICE_WEB,
            SKYPE_P2,
            TEAMS,
            FORMS_E1,
            PLANNER,
        ]],
    ),
    (
        "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
        "O365_BUSINESS_PREMIUM",
        "Microsoft 365 Business Standard",
        1_250,
        &[&[
            EXCHANGE_P1,
            SHAREPOINT_P1,
            OFFICE_WEB,
            APPS_BUSINESS,
            SKYPE_P2,
            TEAMS,
            FORMS_E1,
            PLANNER,
        ]],
    ),
    (
        "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
        "SPB",
        "Microsoft 365 Business Premium",
        2_200,
        &[&[
            EXCHANGE_P1,
            SHAREPOINT_P1,
            OFFICE_WEB,
            APPS_BUSINESS,
            SKYPE_P2,
            TEAMS,
            FORMS_E1,
            PLANNER,
            INTUNE,
            ENTRA_P1,
            DEFENDER_O365_P1,
        ]],
    ),
    (
        "4b9405b0-7788-4568-add1-99614e613b69",
        "EXCHANGESTANDARD",
        "Exchange Online (Plan 1)",
        400,
        &[&[EXCHANGE_P1]],
    ),
    (
        "19ec0d23-8335-4cbd-94ac-6050e30712fa",
        "EXCHANGEENTERPRISE",
        "Exchange Online (Plan 2)",
        800,
        &[&[EXCHANGE_P2]],
    ),
    (
        "66b55226-6b4f-492c-910c-a3b7a3c9d993",
        "SPE_F1",
        "Microsoft 365 F3",
        800,
        &[&[
            EXCHANGE_KIOSK,
            SHAREPOINT_KIOSK,
            OFFICE_WEB,
            OFFICE_MOBILE,
            TEAMS,
            INTUNE,
            ENTRA_P1,
        ]],
    ),
    (
        "4b585984-651b-448a-9e53-3b10f069cf7f",
        "DESKLESSPACK",
        "Office 365 F3",
        225,
        &[&[
            EXCHANGE_KIOSK,
            SHAREPOINT_KIOSK,
            OFFICE_WEB,
            OFFICE_MOBILE,
            TEAMS,
        ]],
    ),
    (
        "f8a1db68-be16-40ed-86d5-cb42ce701560",
        "POWER_BI_PRO",
        "Power BI Pro",
        1_000,
        &[&[POWER_BI_PRO_PLAN]],
    ),
    // Microsoft's add-on for its own cross-tenant mailbox and OneDrive migration: one licence
    // per migrated user, a one-time fee (no monthly price; Microsoft does not publish it). Its
    // service plans are EXCHANGEONLINE_T2TMBXMOVE and SHAREPOINTONLINE_T2TODMOVE; their
    // servicePlanIds were not found in a source that could be checked, so none is seeded
    // rather than an invented one (a tenant's subscribedSkus shows them).
    (
        CROSS_TENANT_MIGRATION_SKU,
        CROSS_TENANT_MIGRATION_PART,
        "Cross Tenant User Data Migration",
        0,
        &[],
    ),
];

/// Microsoft's Cross Tenant User Data Migration add-on (skuId, skuPartNumber, service plans).
pub const CROSS_TENANT_MIGRATION_SKU: &str = "946ce899-873d-44bb-9d8b-671870cbfdbf";
pub const CROSS_TENANT_MIGRATION_PART: &str = "Cross_tenant_user_data_migration";
pub const CROSS_TENANT_MIGRATION_PLANS: &[&str] =
    &["EXCHANGEONLINE_T2TMBXMOVE", "SHAREPOINTONLINE_T2TODMOVE"];

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("seed identifiers are valid GUIDs")
}

/// The built-in catalog.
pub fn seed_catalog() -> Vec<Sku> {
    SEED.iter()
        .map(|(id, part, name, price, plan_groups)| Sku {
            sku_id: SkuId(uuid(id)),
            sku_part_number: part.to_string(),
            display_name: name.to_string(),
            monthly_price_cents: *price,
            custom: false,
            service_plans: plan_groups
                .iter()
                .flat_map(|group| group.iter())
                .map(|(id, plan, display, group)| ServicePlan {
                    service_plan_id: uuid(id),
                    service_plan_name: plan.to_string(),
                    display_name: display.to_string(),
                    exclusive_group: group.map(str::to_string),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_well_formed() {
        let catalog = seed_catalog();
        let mut ids = std::collections::HashSet::new();
        let mut parts = std::collections::HashSet::new();
        for sku in &catalog {
            sku.validate().unwrap();
            assert!(ids.insert(sku.sku_id), "duplicate skuId {}", sku.sku_id);
            assert!(parts.insert(sku.sku_part_number.clone()));
            assert!(
                !sku.service_plans.is_empty() || sku.sku_part_number == CROSS_TENANT_MIGRATION_PART
            );
        }
        let e3 = catalog
            .iter()
            .find(|s| s.sku_part_number == "ENTERPRISEPACK")
            .unwrap();
        assert_eq!(
            e3.sku_id.to_string(),
            "6fd2c87f-b296-42f0-b197-1e91e994b900"
        );
        assert!(e3
            .service_plans
            .iter()
            .any(|p| p.service_plan_name == "EXCHANGE_S_ENTERPRISE"));
        let migration = catalog
            .iter()
            .find(|s| s.sku_id.to_string() == "946ce899-873d-44bb-9d8b-671870cbfdbf")
            .expect("the cross-tenant migration add-on is seeded");
        assert_eq!(
            migration.sku_part_number,
            "Cross_tenant_user_data_migration"
        );
    }
}
