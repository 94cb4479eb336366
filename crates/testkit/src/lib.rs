//! Test kit: throwaway servers and helpers shared by the integration tests and the benchmarks.
//!
//! Each server runs the real program (Dovecot, Apache with mod_dav, wsgidav, Radicale, Xandikos)
//! on free loopback ports with its own configuration in a temporary directory, and is stopped on
//! drop. Nothing here knows about a particular binary: the helpers that run `tenantry-mail` or
//! `tenantry-files` stay in the tests of those crates. Not for production use.
//!
//! With the `mail` feature, [`dovecot::Dovecot`] also opens IMAP sessions through the mail
//! engine and fills mailboxes (fixtures only).
//!
//! [`graph_fake`] is a stateful fake of Microsoft Graph (drives, uploads, delta, tokens, JSON
//! batching; Outlook mail folders, messages and attachment upload sessions; mailbox
//! import/export), written from Microsoft's documentation: Microsoft's services cannot run here.
//!
//! [`exchange_imap`] puts Exchange Online's IMAP behaviour (XOAUTH2 app tokens, throttling
//! answers, dropped connections) in front of a real Dovecot.
//!
//! [`hostile`] has servers that misbehave on request (scripted HTTP/WebDAV and IMAP peers).

pub mod apache;
pub mod dovecot;
pub mod exchange_imap;
pub mod faults;
pub mod graph_fake;
pub mod hostile;
pub mod net;
pub mod postgres;
pub mod process;
pub mod radicale;
pub mod tls;
pub mod tree;
pub mod wsgidav;
pub mod xandikos;

/// The basic-auth user of the WebDAV servers ([`apache::Apache`], [`wsgidav::WsgiDav`]).
pub const USER: &str = "alice";
/// The password of [`USER`].
pub const PASSWORD: &str = "s3cret-Pa55";
