//! tenantry-pim: the calendar and contact migration engine.
//!
//! Copies CalDAV (RFC 4791) calendars and task lists, and CardDAV (RFC 6352) address books, from
//! one server to another: every object byte for byte as the source served it, under its own
//! resource name, without scheduling side effects; incremental through WebDAV sync (RFC 6578)
//! or ETags, resumable after a crash. See `ARCHITECTURE.md` beside this crate for the map.

pub mod cli;
pub mod collections;
pub mod dav;
pub mod discovery;
pub mod home_move;
pub mod kind;
pub mod location;
pub mod migrate;
pub mod object;
pub mod report;
pub mod state;
pub mod verify;
pub mod xml;
