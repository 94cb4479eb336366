//! Tenant moves. Licences cannot be transferred between tenants, so a move buys what the target
//! needs, recreates the users there, moves their mailboxes and libraries, and only then cancels or
//! reduces what the source pays for.
//!
//! This crate is pure: the model of a move ([`model`]) and the planner ([`plan`]) that turns a
//! snapshot of both tenants into an ordered, deterministic plan with its blockers, and the plan's
//! dependency graph ([`schedule`]: which steps may run at once). Running the plan
//! (durable jobs, engines) lives elsewhere.

pub mod model;
pub mod plan;
pub mod schedule;
