//! Mailboxes into Exchange Online through Microsoft Graph (`exchange://{userPrincipalName}`).
//!
//! An IMAP source mailbox is copied into an Exchange Online mailbox as *received* mail: each
//! message is created in its folder with the MAPI properties that make it so set at creation
//! (a message created without them is a draft, and stays one). See ARCHITECTURE.md, "Exchange".
//!
//! - `location` — `exchange://` URLs and the app-only credentials of each side;
//! - `message` — one MIME message → the JSON of a Graph `message` (pure, no I/O);
//! - `mailbox` — the Graph calls on one mailbox, at most 4 in flight (Outlook's limit);
//! - `state` — source (folder, UIDVALIDITY, UID) → Exchange message id, intents first;
//! - `sync` — the copy; `verify` — the comparison of both sides.

pub mod location;
pub mod mailbox;
pub mod message;
pub mod state;
pub mod sync;
pub mod verify;
