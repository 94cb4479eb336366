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
    /// The worker holding the step while it runs (`None` when free).
    pub lease_owner: Option<String>,
    /// Running: when the lease ends. Pending after a failure: not before then (back-off).
    pub lease_until: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Keys of the steps of this move that must be done before this one may be claimed.
    /// `None` for a step stored before steps had dependencies: it waits for every step before
    /// it (the order steps once ran in).
    pub depends_on: Option<Vec<String>>,
    /// The servers the step works on: at most `per_server` leased steps per server at once.
    pub servers: Vec<String>,
    /// The worker that claimed the step last, and when (kept once it is done: who ran it).
    pub claimed_by: Option<String>,
    pub claimed_at: Option<Timestamp>,
}

/// How far a running step is, as its engine last reported it (the runner writes it at most about
/// once a second, and once when the engine ends). Counts are of this attempt; a total is `None`
/// until the engine knows it and may grow as it lists more. The window is where the rate is
/// measured from (`tenantry_app::progress` moves it along): the counts at `window_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepProgress {
    pub move_id: Uuid,
    pub key: String,
    pub items_done: u64,
    pub items_total: Option<u64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// When the attempt reporting this began.
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub window_at: Timestamp,
    pub window_items: u64,
    pub window_bytes: u64,
}

/// A step of a run as the application layer records it (see [`StepRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub key: String,
    /// JSON of `tenantry_moves::plan::Step`.
    pub step: serde_json::Value,
    pub depends_on: Vec<String>,
    pub servers: Vec<String>,
}

/// What a connection profile logs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// A mail server (the admin or master user of an IMAP server).
    Imap,
    /// A WebDAV server holding document libraries.
    Webdav,
    /// An app registration in a tenant reached through Microsoft Graph (client credentials);
    /// the user name is the client id, the sealed secret the whole profile.
    Graph,
}

impl ProfileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Imap => "imap",
            ProfileKind::Webdav => "webdav",
            ProfileKind::Graph => "graph",
        }
    }
    pub fn parse(s: &str) -> Option<ProfileKind> {
        [ProfileKind::Imap, ProfileKind::Webdav, ProfileKind::Graph]
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

/// What one write transaction can do to moves and their steps: rows only, no rule. The move state
/// machine (which transition is allowed, retries and back-off, when a move completes or fails)
/// is written once in the application layer (`tenantry_app::moves`) over these primitives.
///
/// # Contract (every backend, checked by the conformance suite)
/// - Conditional writes ([`MoveTx::update_move_state`], [`MoveTx::update_step`]) change a row
///   only where it is still in the state (and, for a step, held by the lease owner) the caller
///   read; `false` otherwise. Nothing is read-then-compared outside the write.
/// - [`MoveTx::claim_next_step`] is one atomic primitive: of the running moves (oldest first,
///   then plan order), the first step that is `Pending` (or `Running` with an expired lease)
///   whose lease is free or expired (`lease_until < now`, or none), whose dependencies are all
///   `Done` (a step without stored dependencies waits for every step before it), and none of
///   whose servers already has `per_server` steps under a live lease (counted over every
///   worker sharing the database), becomes `Running`, leased to `worker` until `lease_until`,
///   `claimed_by`/`claimed_at` set, its `attempts` counted up by one. Concurrent claims never
///   return the same step while its lease is live, never exceed the per-server count, and do
///   not wait for each other (PostgreSQL: `FOR UPDATE SKIP LOCKED` and serializable
///   transactions; SQLite: the single writer and a conditional update).
pub trait MoveTx {
    fn load_move(&mut self, id: Uuid) -> Result<Option<MoveRecord>>;
    fn insert_move(&mut self, record: &MoveRecord) -> Result<()>;
    /// Sets the move's state where it is still `expected`; `false` when it is not.
    fn update_move_state(
        &mut self,
        id: Uuid,
        expected: MoveState,
        to: MoveState,
        now: Timestamp,
    ) -> Result<bool>;
    /// The steps of a move, in order.
    fn move_steps(&mut self, move_id: Uuid) -> Result<Vec<StepRecord>>;
    fn load_step(&mut self, move_id: Uuid, key: &str) -> Result<Option<StepRecord>>;
    fn insert_step(&mut self, step: &StepRecord) -> Result<()>;
    /// Writes every field of `step` where the stored step is still in state `expected` and
    /// held by `expected_owner` (`None`: held by nobody); `false` when it is not.
    fn update_step(
        &mut self,
        step: &StepRecord,
        expected: StepState,
        expected_owner: Option<&str>,
    ) -> Result<bool>;
    fn delete_step(&mut self, move_id: Uuid, key: &str) -> Result<()>;
    /// Takes the lease of the next step to run (see the contract above).
    fn claim_next_step(
        &mut self,
        worker: &str,
        lease_until: Timestamp,
        now: Timestamp,
        per_server: u32,
    ) -> Result<Option<StepRecord>>;
    /// Frees every running step's lease (back to `Pending`); the number freed.
    fn release_all_leases(&mut self) -> Result<u64>;
    /// Stores a data engine's resumable state (`key` names it within the move), one version
    /// above the stored one; returns the new version (1 for the first).
    fn put_engine_state(
        &mut self,
        move_id: Uuid,
        key: &str,
        state: &[u8],
        now: Timestamp,
    ) -> Result<i64>;
    /// Stores a step's progress, replacing the one stored for it.
    fn put_step_progress(&mut self, progress: &StepProgress) -> Result<()>;
}

/// A data engine's resumable state as last saved by a worker: an engine's whole state file.
/// Internal to the workers: never part of an API answer.
#[derive(Clone)]
pub struct EngineState {
    pub version: i64,
    pub state: Vec<u8>,
}

/// Reads of moves, and the writes that are plain rows (a plan, a connection profile). State
/// changes go through [`MoveTx`] inside [`crate::LedgerStore::write_tx`].
#[async_trait]
pub trait MoveStore: Send + Sync + 'static {
    async fn get_move(&self, id: Uuid) -> Result<MoveRecord>;
    async fn list_moves(&self, page: PageRequest) -> Result<Page<MoveRecord>>;
    async fn save_plan(
        &self,
        id: Uuid,
        plan: serde_json::Value,
        fingerprint: String,
        now: Timestamp,
    ) -> Result<MoveRecord>;
    /// Whether [`MoveTx::claim_next_step`] would find a step now: a read, so that idle workers
    /// polling the queue never open a write transaction.
    async fn claimable_step_exists(&self, now: Timestamp, per_server: u32) -> Result<bool>;
    async fn steps(&self, move_id: Uuid) -> Result<Vec<StepRecord>>;
    /// The engine state `key` of a move, as last saved ([`MoveTx::put_engine_state`]).
    async fn engine_state(&self, move_id: Uuid, key: String) -> Result<Option<EngineState>>;
    /// The progress last stored for the steps of a move ([`MoveTx::put_step_progress`]).
    async fn step_progress(&self, move_id: Uuid) -> Result<Vec<StepProgress>>;
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
    /// Replaces a profile's login (name and kind stay): the fix for credentials a server
    /// refused. Not found when there is no such profile.
    async fn update_profile(
        &self,
        name: String,
        username: String,
        secret: Vec<u8>,
    ) -> Result<ProfileRecord>;
    async fn list_profiles(&self) -> Result<Vec<ProfileRecord>>;
}
