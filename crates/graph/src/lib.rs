//! tenantry-graph: the one Microsoft Graph client of tenantry.
//!
//! Everything in tenantry that talks to Microsoft Graph (document libraries today; licensing and
//! Exchange later) goes through [`GraphClient`], so that every request of a tenant shares one
//! token cache and one throttling budget:
//!
//! - app-only OAuth2 client credentials against
//!   `{TENANTRY_AUTHORITY}/{tenant}/oauth2/v2.0/token`, the token cached and refreshed before it
//!   expires ([`token`]); `token::AppTokens` gets tokens the same way for another resource
//!   (Exchange Online's IMAP: `https://outlook.office365.com/.default`);
//! - requests to `{TENANTRY_GRAPH_URL}/v1.0/...`, retried on 429/503/504 after `Retry-After`
//!   (or `RateLimit-Reset`, whichever is greater), with a bounded number in flight and one pause
//!   for the whole tenant ([`budget`]);
//! - JSON batching, up to 20 requests to a `POST /$batch`, each inner 429 honoured through the
//!   same budget and only the refused requests sent again ([`batch`]);
//! - paging through `@odata.nextLink` and delta through `@odata.deltaLink` ([`client`]), within
//!   [`config::Limits`]: a page's size, the items and pages of one listing, no link followed twice
//!   (a Graph URL comes from configuration, and a broken or hostile endpoint must not make a run
//!   grow without bound; bodies are read through [`body`]);
//! - the app's credential is a client secret or a certificate, whose private key signs a
//!   short-lived JWT assertion instead of a secret crossing the wire ([`certificate`]);
//! - typed errors carrying Graph's `error.code`, `request-id` and `client-request-id`
//!   ([`error`]); secrets and keys never appear in `Debug` output or errors
//!   ([`config::ClientSecret`], [`certificate::ClientCertificate`]).
//!
//! `args` (feature `clap`) holds the app-credential options every Graph location shares.
//!
//! [`shared::shared_client`] keeps one client per app, credential and purpose in the process
//! (tokens reused across steps and runs; a replaced secret gets a new client).
//!
//! [`quickxor`] is the content hash SharePoint and OneDrive for Business report.

#[cfg(feature = "clap")]
pub mod args;
pub mod batch;
pub mod body;
pub mod budget;
pub mod certificate;
pub mod client;
pub mod config;
pub mod error;
pub mod quickxor;
pub mod shared;
pub mod token;

pub use certificate::{CertificateError, ClientCertificate};
pub use client::{DeltaPage, GraphClient};
pub use config::{ClientCredential, ClientSecret, GraphConfig};
pub use error::{GraphError, RequestIds};
pub use shared::shared_client;
