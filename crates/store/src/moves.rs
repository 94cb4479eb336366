//! Storage of tenant moves: the move and its plan, the steps of its run (a durable job queue with
//! leases), the ledger effects each step made, and encrypted connection profiles.

use crate::{Page, PageRequest, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tenantry_ledger::{TenantId, Timestamp};
use tenantry_moves::model::MoveSpec;
use tenantry_moves::plan::TenantSnapshot;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveState {
    /// Created; no plan run yet.
    Draft,
    /// Steps are being executed.
    Running,
    /// Stopped by an administrator; resumes where it stopped.
    Paused,
    /// Stopped for good by an administrator.
    Cancelled,
    /// A step failed after its retries; fix the cause, then resume.
    Failed,
    Completed,
}

impl MoveState {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveState::Draft => "Draft",
            MoveState::Running => "Running",
            MoveState::Paused => "Paused",
            MoveState::Cancelled => "Cancelled",
            MoveState::Failed => "Failed",
            MoveState::Completed => "Completed",
        }
    }
    pub fn parse(s: &str) -> Option<MoveState> {
        [
            Self::Draft,
            Self::Running,
            Self::Paused,
            Self::Cancelled,
            Self::Failed,
            Self::Completed,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct MoveRecord {
    pub id: Uuid,
    pub spec: MoveSpec,
    pub state: MoveState,
    /// The last plan computed (JSON of `tenantry_moves::plan::Plan`).
    pub plan: Option<serde_json::Value>,
    pub fingerprint: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "Pending",
            StepState::Running => "Running",
            StepState::Done => "Done",
            StepState::Failed => "Failed",
        }
    }
    pub fn parse(s: &str) -> Option<StepState> {
        [Self::Pending, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct StepRecord {
    pub move_id: Uuid,
    pub seq: i64,
    pub key: String,
    /// JSON of `tenantry_moves::plan::Step`.
    pub step: serde_json::Value,
    pub state: StepState,
    pub attempts: u32,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub updated_at: Timestamp,
}

/// What a connection profile logs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// A mail server (the admin or master user of an IMAP server).
    Imap,
    /// A WebDAV server holding document libraries.
    Webdav,
}

impl ProfileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Imap => "imap",
            ProfileKind::Webdav => "webdav",
        }
    }
    pub fn parse(s: &str) -> Option<ProfileKind> {
        [ProfileKind::Imap, ProfileKind::Webdav]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct ProfileRecord {
    pub id: Uuid,
    pub name: String,
    pub kind: ProfileKind,
    pub username: String,
    /// Encrypted; only the move runner decrypts it.
    pub secret: Vec<u8>,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait MoveStore: Send + Sync + 'static {
    async fn create_move(
        &self,
        spec: MoveSpec,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord>;
    async fn get_move(&self, id: Uuid) -> Result<MoveRecord>;
    async fn list_moves(&self, page: PageRequest) -> Result<Page<MoveRecord>>;
    async fn save_plan(
        &self,
        id: Uuid,
        plan: serde_json::Value,
        fingerprint: String,
        now: Timestamp,
    ) -> Result<MoveRecord>;
    /// Starts (or restarts) the run: records the steps not recorded yet and sets `Running`.
    async fn start_run(
        &self,
        id: Uuid,
        steps: Vec<(String, serde_json::Value)>,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord>;
    /// Moves from one of `from` to `to`; refuses other transitions with a clear conflict.
    async fn set_move_state(
        &self,
        id: Uuid,
        from: &'static [MoveState],
        to: MoveState,
        actor: String,
        now: Timestamp,
    ) -> Result<MoveRecord>;
    /// Takes the lease of the next step to run: the first unfinished step of a running move
    /// whose lease is free or expired.
    async fn claim_step(
        &self,
        worker: String,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<StepRecord>>;
    /// Frees every lease: for a server starting on a database no other worker uses (SQLite), so
    /// the steps a killed process was running resume at once instead of after their lease.
    async fn release_leases(&self) -> Result<u64>;
    /// Extends a lease while a long step (a mailbox) runs.
    async fn renew_lease(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        until: Timestamp,
    ) -> Result<bool>;
    /// Records a step's end. A failure is retried until `max_attempts`, then fails the move.
    async fn finish_step(
        &self,
        move_id: Uuid,
        key: String,
        worker: String,
        outcome: std::result::Result<serde_json::Value, String>,
        max_attempts: u32,
        now: Timestamp,
    ) -> Result<()>;
    async fn steps(&self, move_id: Uuid) -> Result<Vec<StepRecord>>;
    /// A consistent view of one tenant for the planner.
    async fn tenant_snapshot(&self, tenant: TenantId) -> Result<TenantSnapshot>;
    /// Target UPNs (lower case) of users this move created.
    async fn users_created_by_move(&self, move_id: Uuid) -> Result<Vec<String>>;

    async fn create_profile(
        &self,
        name: String,
        kind: ProfileKind,
        username: String,
        secret: Vec<u8>,
        now: Timestamp,
    ) -> Result<ProfileRecord>;
    async fn get_profile(&self, name: String) -> Result<ProfileRecord>;
    async fn list_profiles(&self) -> Result<Vec<ProfileRecord>>;
}
