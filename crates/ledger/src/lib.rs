//! The licence ledger's domain core.
//!
//! Everything here is pure: no I/O, no clock, no randomness. Callers pass the current time
//! (`Timestamp`) and the facts the rules need; the rules answer with new state or a
//! [`LedgerError`] carrying a stable code. Storage and HTTP live in other crates.

pub mod assignment;
pub mod audit;
pub mod catalog;
pub mod counting;
pub mod error;
pub mod guidance;
pub mod ids;
pub mod money;
pub mod role;
pub mod subscription;
pub mod tenant;
pub mod time;
pub mod user;

pub use error::{ErrorKind, LedgerError};
pub use ids::{SkuId, SubscriptionId, TenantId, TokenId, UserId};
pub use time::Timestamp;

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
