//! The application layer: every business operation of the ledger, written once, for the API, the
//! admin center, the CLI (through the API) and the move runner alike.
//!
//! # Design
//! - **One operation, one function.** [`Ledger`] holds the operations (`buy`,
//!   `change_subscription`, `assign_licenses`, `create_user`, `issue_token`, …). Each one
//!   authorizes the [`Caller`], applies the pure rules of `tenantry-ledger`, and reads and writes
//!   through data access. The surfaces only parse their input (JSON, a form) into the types here
//!   and render the outcome; none of them decides a rule.
//! - **Rules run inside the transaction, written here.** A write is a closure over
//!   [`tenantry_store::LedgerTx`] — load, decide, `take_seat`, `insert_audit` — that the backend
//!   runs inside one serializable transaction (`tenantry_store::transaction`). The backend only
//!   implements the primitives; a PostgreSQL backend implements the same ones and inherits every
//!   rule. Units of work are synchronous and hold no state outside the transaction, so a backend
//!   may run one again after a serialization failure.
//! - **Concurrency** is the data-access contract (doc of [`tenantry_store::LedgerStore`]):
//!   optimistic versions are checked by the write itself, seats are taken by a conditional
//!   update, the audit record commits with the change.
//! - **One error type** ([`tenantry_store::StoreError`]: a ledger refusal with a kind and a stable
//!   code, or an internal failure) and **one mapping to an HTTP status** ([`error::http_status`]),
//!   used by the API's problem+json and the admin center's pages.
//! - Reads that need no rule stay direct data-access calls (`store.get_user`, …), after the
//!   surface's `authorize`.
//!
//! - **Moves** ([`moves`]): the move state machine (start, pause, cancel, the step queue with
//!   leases, retries and back-off) is written here too, over the move primitives of
//!   [`tenantry_store::MoveTx`].
//! - A unit of work is `Fn`: a backend may run it again after a serialization failure, so it
//!   clones what it needs from its captures instead of consuming them.

pub mod applications;
mod audit;
pub mod audit_view;
mod caller;
pub mod effects;
pub mod engine_error;
pub mod error;
pub mod format;
pub mod moves;
pub mod orders;
mod platform;
pub mod progress;
mod subscriptions;
pub mod tokens;
mod users;
pub mod waiting;

pub use applications::{AppAccessToken, RegisteredApplication};
pub use caller::Caller;
pub use effects::{EffectOutcome, MoveEffect};
pub use engine_error::EngineError;
pub use orders::{Order, SkuRef};
pub use platform::IssuedToken;
pub use subscriptions::{ChangeOutcome, SubscriptionChange};
pub use users::NewUser;

use std::sync::Arc;
use tenantry_store::Store;

pub type Result<T, E = tenantry_store::StoreError> = std::result::Result<T, E>;

/// The ledger's operations over one store. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
}

impl Ledger {
    pub fn new(store: Arc<dyn Store>) -> Ledger {
        Ledger { store }
    }

    /// Data access, for reads that need no rule.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn write<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&mut dyn tenantry_store::LedgerTx) -> Result<R> + Send + 'static,
    {
        tenantry_store::transaction(&*self.store, work).await
    }
}
