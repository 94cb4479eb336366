//! tenantry's mailbox migration engine: IMAP to IMAP, byte-identical, incremental, crash-safe.
//!
//! Layers, bottom up: `protocol` (wire format, no I/O) → `framer` (one response off the wire,
//! within limits) → `session` (one connection) →
//! `folders` (listing, name mapping) and `state` (SQLite) → `sync` / `verify` (algorithms) →
//! `report` and `cli` (people and machines). See ARCHITECTURE.md.

pub mod cli;
pub mod exchange;
pub mod folders;
pub mod framer;
pub mod protocol;
pub mod report;
pub mod session;
pub mod state;
pub mod sync;
pub mod throttle;
pub mod verify;
