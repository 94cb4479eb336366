//! The data engines as the mover sees them: probe, migrate and verify a mailbox or a library.
//! The real implementation drives `tenantry-mail` and `tenantry-files`; tests of the ledger side
//! of a move can use [`NoData`] when a move has no mail servers and no libraries.

use crate::graph_profile::GraphProfile;
pub use crate::progress::ProgressSink;
use crate::secrets::Secret;
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;
pub use tenantry_app::EngineError;
pub use tenantry_moves::model::PimKind;

/// An app registration from a connection profile of kind `graph`, for the data a side keeps in
/// Microsoft 365 (SharePoint/OneDrive libraries, Exchange Online mailboxes).
#[derive(Debug, Clone)]
pub struct GraphAccess {
    pub profile: GraphProfile,
}

/// A mail server with the credentials from its connection profile: an IMAP server's admin
/// user and password, or for `exchange://` the app in `graph` (user and password then empty).
#[derive(Debug, Clone)]
pub struct MailAccess {
    pub url: String,
    pub admin_user: String,
    pub password: Secret,
    pub graph: Option<GraphAccess>,
    /// A mailbox these credentials opened before (one this move already migrated into): a
    /// control login into it tells a refused admin login from a mailbox that does not exist
    /// yet, which a master-user server answers alike.
    pub known_mailbox: Option<String>,
}

/// A library location with the credentials from its connection profile, if any: a WebDAV
/// user and password, or for `sharepoint://` and `onedrive://` the app in `graph`.
#[derive(Debug, Clone)]
pub struct LibraryAccess {
    pub location: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub graph: Option<GraphAccess>,
}

/// A CalDAV or CardDAV server with the service login from its connection profile: it opens
/// every moving user's home, as the IMAP admin opens their mailboxes.
#[derive(Debug, Clone)]
pub struct DavAccess {
    pub url: String,
    pub username: String,
    pub password: Secret,
}

/// Why a probe failed: an unreachable server blocks a move; a refused login may only mean the
/// target mailbox does not exist yet.
#[derive(Debug, Clone)]
pub enum ProbeError {
    Unreachable(String),
    LoginRefused(String),
}

/// A name in a source library that the target refuses.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub path: String,
    pub problem: String,
}

#[async_trait]
pub trait DataEngines: Send + Sync + 'static {
    /// Logs into `user`'s mailbox and out again.
    async fn probe_mailbox(&self, server: &MailAccess, user: &str) -> Result<(), ProbeError>;
    /// Copies what is new or changed; `state` is the engine's resumable state file, `restored`
    /// when it was put back from a saved snapshot (which may be older than what the target
    /// already holds). Messages and bytes copied of those to copy go to `progress`.
    #[allow(clippy::too_many_arguments)]
    async fn migrate_mailbox(
        &self,
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
        state: &Path,
        restored: bool,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<serde_json::Value, EngineError>;
    /// Compares both sides; `Err` lists the differences.
    async fn verify_mailbox(
        &self,
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
    ) -> Result<serde_json::Value, EngineError>;
    /// Lists the library and returns the names the target would refuse. A source must exist; a
    /// target folder may not exist yet (it is created), but its server must answer.
    async fn probe_library(
        &self,
        library: &LibraryAccess,
        is_source: bool,
    ) -> Result<Vec<Refusal>, String>;
    /// Files and bytes copied of those to copy go to `progress`.
    async fn migrate_library(
        &self,
        source: &LibraryAccess,
        target: &LibraryAccess,
        state: &Path,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<serde_json::Value, EngineError>;
    /// Compares both sides; `Err` lists the differences. `state` is a copy of the library
    /// step's saved state (`None` when none was saved): it knows the files the service rewrote
    /// after upload, which are then reported as changed by the service, not as differences.
    async fn verify_library(
        &self,
        source: &LibraryAccess,
        target: &LibraryAccess,
        state: Option<&Path>,
    ) -> Result<serde_json::Value, EngineError>;
    /// Logs into a CalDAV/CardDAV server and finds its principals (discovery), so that a run
    /// does not start against a server that cannot answer.
    async fn probe_dav(&self, _kind: PimKind, _server: &DavAccess) -> Result<(), String> {
        Err(NO_PIM.into())
    }
    /// Whether `user` has a home of the kind on the server (discovery through the service
    /// login), so that a plan shows who has nothing of the kind to move.
    async fn dav_user_has_home(
        &self,
        _kind: PimKind,
        _server: &DavAccess,
        _user: &str,
    ) -> Result<bool, String> {
        Err(NO_PIM.into())
    }
    /// Copies a user's calendars (or address books) home to home; `state`, `restored` and
    /// `progress` (objects copied of those to copy, bytes copied) as for a mailbox. A user
    /// without a home on the source is a result (with a `notice`), not an error.
    #[allow(clippy::too_many_arguments)]
    async fn migrate_home(
        &self,
        _kind: PimKind,
        _source: &DavAccess,
        _source_user: &str,
        _target: &DavAccess,
        _target_user: &str,
        _state: &Path,
        _restored: bool,
        _progress: Arc<dyn ProgressSink>,
    ) -> Result<serde_json::Value, EngineError> {
        Err(EngineError::Permanent(NO_PIM.into()))
    }
    /// Compares a user's homes object by object; `Err` lists the differences.
    async fn verify_home(
        &self,
        _kind: PimKind,
        _source: &DavAccess,
        _source_user: &str,
        _target: &DavAccess,
        _target_user: &str,
    ) -> Result<serde_json::Value, EngineError> {
        Err(EngineError::Permanent(NO_PIM.into()))
    }
}

const NO_PIM: &str = "this server was built without the calendar and contact engine";

/// For moves without data: every data operation is refused, which the planner never schedules.
pub struct NoData;

#[async_trait]
impl DataEngines for NoData {
    async fn probe_mailbox(&self, _: &MailAccess, _: &str) -> Result<(), ProbeError> {
        Err(ProbeError::Unreachable(
            "this server was built without the mail engine".into(),
        ))
    }
    async fn migrate_mailbox(
        &self,
        _: &MailAccess,
        _: &str,
        _: &MailAccess,
        _: &str,
        _: &Path,
        _: bool,
        _: Arc<dyn ProgressSink>,
    ) -> Result<serde_json::Value, EngineError> {
        Err(EngineError::Permanent(
            "this server was built without the mail engine".into(),
        ))
    }
    async fn verify_mailbox(
        &self,
        _: &MailAccess,
        _: &str,
        _: &MailAccess,
        _: &str,
    ) -> Result<serde_json::Value, EngineError> {
        Err(EngineError::Permanent(
            "this server was built without the mail engine".into(),
        ))
    }
    async fn probe_library(&self, _: &LibraryAccess, _: bool) -> Result<Vec<Refusal>, String> {
        Err("this server was built without the files engine".into())
    }
    async fn migrate_library(
        &self,
        _: &LibraryAccess,
        _: &LibraryAccess,
        _: &Path,
        _: Arc<dyn ProgressSink>,
    ) -> Result<serde_json::Value, EngineError> {
        Err(EngineError::Permanent(
            "this server was built without the files engine".into(),
        ))
    }
    async fn verify_library(
        &self,
        _: &LibraryAccess,
        _: &LibraryAccess,
        _: Option<&Path>,
    ) -> Result<serde_json::Value, EngineError> {
        Err(EngineError::Permanent(
            "this server was built without the files engine".into(),
        ))
    }
}
