//! What a buyer orders, with the defaults every surface applies the same way.

use serde::de::DeserializeOwned;
use std::collections::HashMap;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::subscription::{BillingCycle, Channel, SubscriptionOrder, Term};
use tenantry_ledger::{LedgerError, SkuId, TenantId};

/// Names the SKU of an order either way Graph clients do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SkuRef {
    Id(SkuId),
    PartNumber(String),
}

impl SkuRef {
    /// Exactly one of `skuId` and `skuPartNumber`.
    pub fn from_parts(id: Option<uuid::Uuid>, part: Option<String>) -> Result<SkuRef, LedgerError> {
        match (id, part) {
            (Some(id), None) => Ok(SkuRef::Id(SkuId(id))),
            (None, Some(part)) => Ok(SkuRef::PartNumber(part)),
            _ => Err(LedgerError::invalid(
                "SkuRequired",
                "name the product with exactly one of skuId or skuPartNumber",
            )),
        }
    }

    pub(crate) fn resolve<'a>(
        &self,
        catalog: &'a HashMap<SkuId, Sku>,
    ) -> Result<&'a Sku, LedgerError> {
        let found = match self {
            SkuRef::Id(id) => catalog.get(id),
            SkuRef::PartNumber(part) => catalog
                .values()
                .find(|s| s.sku_part_number.eq_ignore_ascii_case(part)),
        };
        found.ok_or_else(|| {
            let name = match self {
                SkuRef::Id(id) => id.to_string(),
                SkuRef::PartNumber(p) => p.clone(),
            };
            LedgerError::invalid(
                "UnknownSku",
                format!("no SKU {name} in the catalog (GET /v1/skus lists them)"),
            )
        })
    }
}

/// A purchase as a surface received it; `None` takes the default.
#[derive(Debug, Clone)]
pub struct Order {
    pub tenant: TenantId,
    pub sku: SkuRef,
    pub quantity: u32,
    /// Default: annual.
    pub term: Option<Term>,
    /// Default: monthly.
    pub billing_cycle: Option<BillingCycle>,
    /// Default: direct. Volume licensing is recorded by the operator only.
    pub channel: Option<Channel>,
    pub is_trial: bool,
    /// Default: on (recurring billing).
    pub auto_renew: Option<bool>,
}

impl Order {
    /// An order with every default: annual term, monthly billing, direct, renewing, paid.
    pub fn new(tenant: TenantId, sku: SkuRef, quantity: u32) -> Order {
        Order {
            tenant,
            sku,
            quantity,
            term: None,
            billing_cycle: None,
            channel: None,
            is_trial: false,
            auto_renew: None,
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.unwrap_or(Channel::Direct)
    }

    /// The order the ledger's purchase rule takes, defaults filled in.
    pub fn to_subscription_order(&self) -> SubscriptionOrder {
        SubscriptionOrder {
            tenant_id: self.tenant,
            quantity: self.quantity,
            term: self.term.unwrap_or(Term::Annual),
            billing_cycle: self.billing_cycle.unwrap_or(BillingCycle::Monthly),
            channel: self.channel(),
            is_trial: self.is_trial,
            auto_renew: self.auto_renew.unwrap_or(true),
        }
    }
}

/// A term by its API name (`monthly`, `annual`, `threeYear`); `None` for anything else.
pub fn parse_term(text: &str) -> Option<Term> {
    by_api_name(text)
}

/// A billing cycle by its API name (`monthly`, `perTerm`).
pub fn parse_billing_cycle(text: &str) -> Option<BillingCycle> {
    by_api_name(text)
}

/// A channel by its API name (`direct`, `partner`, `volume`).
pub fn parse_channel(text: &str) -> Option<Channel> {
    by_api_name(text)
}

/// The enum variant whose serialized name is `text`: one spelling for the API and the forms.
fn by_api_name<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_without_choices_takes_the_defaults() {
        let order = Order::new(TenantId::new_random(), SkuRef::PartNumber("E3".into()), 5)
            .to_subscription_order();
        assert_eq!(order.term, Term::Annual);
        assert_eq!(order.billing_cycle, BillingCycle::Monthly);
        assert_eq!(order.channel, Channel::Direct);
        assert!(order.auto_renew);
        assert!(!order.is_trial);
    }

    #[test]
    fn form_values_use_the_api_names() {
        assert_eq!(parse_term("threeYear"), Some(Term::ThreeYear));
        assert_eq!(parse_term("monthly"), Some(Term::Monthly));
        assert_eq!(parse_term("yearly"), None);
        assert_eq!(parse_billing_cycle("perTerm"), Some(BillingCycle::PerTerm));
        assert_eq!(parse_channel("volume"), Some(Channel::Volume));
        assert_eq!(parse_channel(""), None);
    }

    #[test]
    fn a_sku_is_named_exactly_once() {
        assert!(SkuRef::from_parts(None, None).is_err());
        assert!(SkuRef::from_parts(Some(uuid::Uuid::nil()), Some("E3".into())).is_err());
        assert_eq!(
            SkuRef::from_parts(None, Some("E3".into())).unwrap(),
            SkuRef::PartNumber("E3".into())
        );
    }
}
