//! Mailboxes into Exchange Online through Microsoft Graph (`exchange://{userPrincipalName}`).
//!
//! An IMAP source mailbox is copied into an Exchange Online mailbox as *received* mail: each
//! message is created in its folder with the MAPI properties that make it so set at creation
//! (a message created without them is a draft, and stays one). See ARCHITECTURE.md, "Exchange".
//!
//! - `delta` — one round of a Graph delta query (folder or item changes since the last run);
//! - `location` — `exchange://` URLs and the app-only credentials of each side;
//! - `mailbox_copy` — Exchange → Exchange through mailbox import/export (every item kind);
//! - `message` — one MIME message → the JSON of a Graph `message` (pure, no I/O);
//! - `mailbox` — the Graph calls on one mailbox, at most 4 in flight (Outlook's limit);
//! - `pacing` — the per-mailbox upload budget (150 MB per 5 minutes), kept on our side;
//! - `state` — source (folder, UIDVALIDITY, UID) → Exchange message id, intents first;
//! - `sync` — the copy; `verify` — the comparison of both sides.

pub mod delta;
pub mod location;
pub mod mailbox;
pub mod mailbox_copy;
pub mod message;
pub mod pacing;
pub mod state;
pub mod sync;
pub mod verify;
