//! Runs tenant moves: gathers a snapshot of both tenants and probes the data servers, plans with
//! `tenantry-moves`, and executes the plan's steps as durable jobs stored in the database.
//!
//! Every step is idempotent: ledger effects that could happen twice (a new subscription, a new
//! user) are recorded in the same transaction as the effect (`tenantry_app::Ledger::apply_effect`); the others
//! set absolute values (a seat total, a licence set); the data engines are incremental and
//! resumable by design. So a crash at any point, then a restart, finishes without a second
//! purchase, user, message or file.

pub mod admin;
pub mod control;
pub mod engine_state;
pub mod engines;
pub mod gather;
pub mod graph_profile;
pub mod ports;
pub mod progress;
pub mod report;
pub mod runner;
pub mod secrets;
pub mod tenant;
pub mod tenant_graph;
pub mod write_limit;
