//! Starting, pausing and cancelling a move: the rules the API and the admin center share.

use crate::gather::Mover;
use crate::graph_profile::GraphProfile;
use tenantry_app::Ledger;
use tenantry_ledger::{LedgerError, Timestamp};
use tenantry_moves::plan::Plan;
use tenantry_store::moves::{MoveRecord, MoveState, NewStep, ProfileKind, ProfileRecord};
use tenantry_store::StoreError;
use uuid::Uuid;

/// The states a move can be paused from.
pub const PAUSE_FROM: &[MoveState] = &[MoveState::Running];
/// The states a move can be cancelled from.
pub const CANCEL_FROM: &[MoveState] = &[
    MoveState::Draft,
    MoveState::Running,
    MoveState::Paused,
    MoveState::Failed,
];

/// Whether a move in this state may be started (or resumed).
pub fn can_start(state: MoveState) -> bool {
    matches!(
        state,
        MoveState::Draft | MoveState::Paused | MoveState::Failed
    )
}

/// What [`Mover::start`] did.
pub enum Start {
    /// The steps are recorded and the move is Running.
    Running(MoveRecord),
    /// The fresh plan has blockers: nothing was started.
    Blocked(Plan),
}

/// One line per blocker: `code (subject): message`.
pub fn blocker_lines(plan: &Plan) -> Vec<String> {
    plan.blockers()
        .map(|f| format!("{} ({}): {}", f.code, f.subject, f.message))
        .collect()
}

impl Mover {
    /// Plans again (a plan is never older than the state it runs on), refuses a plan with
    /// blockers, then records the steps and sets the move Running. Only a draft, paused or
    /// failed move can start (`InvalidMoveState` otherwise).
    pub async fn start(
        &self,
        id: Uuid,
        actor: String,
        now: Timestamp,
    ) -> Result<Start, StoreError> {
        let record = self.store.get_move(id).await?;
        if !can_start(record.state) {
            return Err(LedgerError::conflict(
                "InvalidMoveState",
                format!(
                    "this move is {}; only a draft, paused or failed move can run",
                    record.state.as_str()
                ),
            )
            .into());
        }
        let plan = self.plan(id, now).await?;
        if !plan.is_runnable() {
            return Ok(Start::Blocked(plan));
        }
        let steps = plan
            .schedule(&record.spec)
            .into_iter()
            .map(|s| NewStep {
                step: serde_json::to_value(&s.step).unwrap_or_default(),
                key: s.key,
                depends_on: s.after,
                servers: s.servers,
            })
            .collect();
        let record = Ledger::new(self.store.clone())
            .start_run(id, steps, actor, now)
            .await?;
        Ok(Start::Running(record))
    }
}

impl Mover {
    /// Stores a connection profile: `kind` is `imap` or `webdav`; the password is sealed with
    /// this server's key and never returned.
    pub async fn create_profile(
        &self,
        name: &str,
        kind: &str,
        username: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<ProfileRecord, StoreError> {
        let kind = ProfileKind::parse(kind)
            .filter(|k| *k != ProfileKind::Graph)
            .ok_or_else(|| {
                LedgerError::invalid(
                    "InvalidProfileKind",
                    "kind must be imap or webdav (a graph profile takes tenantId, clientId, clientSecret or clientCertificate, authority and graphUrl)",
                )
            })?;
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 100 || username.trim().is_empty() {
            return Err(LedgerError::invalid(
                "InvalidProfile",
                "name (1-100 characters) and username are required",
            )
            .into());
        }
        let sealed = self.sealer.seal(password);
        self.store
            .create_profile(name, kind, username.to_string(), sealed, now)
            .await
    }

    /// Replaces a profile's username and password (after a server refused them); a running
    /// step uses the new ones from its next attempt, a failed move from its resumption.
    pub async fn update_profile(
        &self,
        name: &str,
        username: &str,
        password: &str,
    ) -> Result<ProfileRecord, StoreError> {
        // A graph profile seals a whole app registration (tenant, client, secret, URLs), not a
        // user name and a password: replacing those would leave it unreadable.
        let current = self.store.get_profile(name.trim().to_string()).await?;
        if current.kind == tenantry_store::moves::ProfileKind::Graph {
            return Err(LedgerError::invalid(
                "ProfileKindNotUpdatable",
                "a graph profile takes no user name and password: replace its credential with \
                 clientSecret or clientCertificate (tenantry profile update --client-secret-file \
                 or --client-certificate)",
            )
            .into());
        }
        if username.trim().is_empty() || password.is_empty() {
            return Err(LedgerError::invalid(
                "InvalidProfile",
                "username and password are required",
            )
            .into());
        }
        let sealed = self.sealer.seal(password);
        self.store
            .update_profile(name.trim().to_string(), username.to_string(), sealed)
            .await
    }
}

impl Mover {
    /// Replaces a `graph` profile's credential — a new client secret, or a certificate — as
    /// when the old secret expires mid-move; tenant, app and URLs stay. The plan uses it at
    /// once and each step from its next attempt (clients are keyed by the credential's
    /// fingerprint; a running step keeps the one it started with).
    pub async fn update_graph_credential(
        &self,
        name: &str,
        client_secret: Option<&str>,
        client_certificate: Option<&str>,
    ) -> Result<ProfileRecord, StoreError> {
        let name = name.trim();
        let current = self.graph_profile(name).await?;
        let replaced = GraphProfile::new(
            &current.tenant_id,
            &current.client_id,
            client_secret,
            client_certificate,
            Some(&current.authority),
            Some(&current.graph_url),
        )?;
        let sealed = self.sealer.seal(&replaced.to_plain());
        self.store
            .update_profile(name.to_string(), replaced.client_id.clone(), sealed)
            .await
    }

    /// Stores a `graph` profile: the client id is its user name; the whole profile, secret
    /// included, is sealed with this server's key and never returned.
    pub async fn create_graph_profile(
        &self,
        name: &str,
        profile: &GraphProfile,
        now: Timestamp,
    ) -> Result<ProfileRecord, StoreError> {
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 100 {
            return Err(LedgerError::invalid(
                "InvalidProfile",
                "name (1-100 characters) is required",
            )
            .into());
        }
        let sealed = self.sealer.seal(&profile.to_plain());
        self.store
            .create_profile(
                name,
                ProfileKind::Graph,
                profile.client_id.clone(),
                sealed,
                now,
            )
            .await
    }
}
