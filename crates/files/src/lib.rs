//! tenantry-files: the document-library migration engine.
//!
//! Moves a tree of folders and files from one endpoint (a local folder / file share, a WebDAV
//! server, or a SharePoint / OneDrive library through Microsoft Graph) to another, checking SharePoint's naming rules before anything moves, hashing every
//! byte on the way, and remembering what it copied so a re-run only moves what changed.
//! See `ARCHITECTURE.md` beside this crate for the map.

pub mod cli;
pub mod endpoint;
pub mod graph;
pub mod hash;
pub mod limits;
pub mod local;
pub mod location;
pub mod migrate;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod relpath;
pub mod report;
pub mod retry;
pub mod state;
pub mod verify;
pub mod webdav;
