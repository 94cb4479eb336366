//! Typed identifiers, so that a user id can never be passed where a tenant id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// An organisation (a Microsoft 365 tenant).
    TenantId
);
id_type!(
    /// A product in the catalog (Graph `skuId`).
    SkuId
);
id_type!(
    /// A purchase of seats of one SKU by one tenant.
    SubscriptionId
);
id_type!(
    /// A user of one tenant.
    UserId
);
id_type!(
    /// An API token (its secret is never stored, only a hash).
    TokenId
);
