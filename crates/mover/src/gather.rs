//! From a stored move to a fresh plan: snapshots of both tenants, what the move already created,
//! and probes of every mail server and library. The planning itself is pure (`tenantry-moves`).

use crate::engines::{
    DataEngines, DavAccess, GraphAccess, LibraryAccess, MailAccess, PimKind, ProbeError,
};
use crate::secrets::{Sealer, Secret};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tenantry_ledger::{LedgerError, Timestamp};
use tenantry_moves::model::{
    is_exchange, is_graph_library, DavServer, LibraryMapping, MailServer, MoveSpec,
};
use tenantry_moves::plan::{
    plan, user_pairs, Plan, PlanInput, ProbeFailure, Probes, RefusedName, Step,
};
use tenantry_store::moves::{ProfileKind, ProfileRecord, StepState};
use tenantry_store::{Store, StoreError};
use uuid::Uuid;

/// Everything a move needs at run time.
pub struct Mover {
    pub store: Arc<dyn Store>,
    pub engines: Arc<dyn DataEngines>,
    pub sealer: Sealer,
    /// Where the engines keep their resumable state, one folder per move.
    pub data_dir: PathBuf,
}

impl Mover {
    /// A profile of the `expected` kind (`what` names the place that uses it) with its sealed
    /// secret opened. A profile's secret goes only to the kind of server it was made for: a
    /// `graph` profile's sealed secret is the app's whole JSON, which must never reach an IMAP or
    /// WebDAV server as a password.
    pub(crate) async fn open_profile(
        &self,
        name: &str,
        expected: ProfileKind,
        what: &str,
    ) -> Result<(ProfileRecord, Secret), StoreError> {
        let profile = self.store.get_profile(name.to_string()).await?;
        if profile.kind != expected {
            return Err(LedgerError::invalid(
                "InvalidProfileKind",
                format!(
                    "profile {name} is of kind {}; {what} needs a {} profile",
                    profile.kind.as_str(),
                    expected.as_str()
                ),
            )
            .into());
        }
        let secret = self
            .sealer
            .open(&profile.secret)
            .map_err(StoreError::Internal)?;
        Ok((profile, secret))
    }

    pub async fn mail_access(&self, server: &MailServer) -> Result<MailAccess, StoreError> {
        if is_exchange(&server.url) {
            let graph = self.graph_access(&server.profile).await?;
            return Ok(MailAccess {
                url: server.url.clone(),
                admin_user: String::new(),
                password: Secret(String::new()),
                graph: Some(graph),
                known_mailbox: None,
            });
        }
        let (profile, password) = self
            .open_profile(&server.profile, ProfileKind::Imap, "an IMAP server")
            .await?;
        Ok(MailAccess {
            url: server.url.clone(),
            admin_user: profile.username,
            password,
            graph: None,
            known_mailbox: None,
        })
    }

    /// A CalDAV/CardDAV server with its profile's service login (a `webdav` profile: CalDAV and
    /// CardDAV are WebDAV).
    pub async fn dav_access(&self, server: &DavServer) -> Result<DavAccess, StoreError> {
        let (profile, password) = self
            .open_profile(
                &server.profile,
                ProfileKind::Webdav,
                "a CalDAV or CardDAV server",
            )
            .await?;
        Ok(DavAccess {
            url: server.url.clone(),
            username: profile.username,
            password,
        })
    }

    /// (source, target) servers of a kind with their logins; `None` when the move does not
    /// carry that kind.
    pub async fn dav_pair(
        &self,
        spec: &MoveSpec,
        kind: PimKind,
    ) -> Result<Option<(DavAccess, DavAccess)>, StoreError> {
        let (Some(source), Some(target)) = spec.pim.of(kind) else {
            return Ok(None);
        };
        Ok(Some((
            self.dav_access(source).await?,
            self.dav_access(target).await?,
        )))
    }

    pub async fn library_access(
        &self,
        location: &str,
        profile: Option<&String>,
    ) -> Result<LibraryAccess, StoreError> {
        if is_graph_library(location) {
            // The move was validated with a profile named here; a spec stored before that rule
            // existed may lack it.
            let name = profile.ok_or_else(|| {
                LedgerError::invalid(
                    "GraphProfileRequired",
                    format!("{location}: a SharePoint/OneDrive library needs a graph connection profile"),
                )
            })?;
            return Ok(LibraryAccess {
                location: location.to_string(),
                username: None,
                password: None,
                graph: Some(self.graph_access(name).await?),
            });
        }
        let Some(name) = profile else {
            return Ok(LibraryAccess {
                location: location.to_string(),
                username: None,
                password: None,
                graph: None,
            });
        };
        let (profile, password) = self
            .open_profile(name, ProfileKind::Webdav, "a WebDAV library")
            .await?;
        Ok(LibraryAccess {
            location: location.to_string(),
            username: Some(profile.username),
            password: Some(password),
            graph: None,
        })
    }

    /// The app of a `graph` profile (`InvalidProfileKind` for a profile of another kind).
    async fn graph_access(&self, name: &str) -> Result<GraphAccess, StoreError> {
        Ok(GraphAccess {
            profile: self.graph_profile(name).await?,
        })
    }

    pub async fn libraries(
        &self,
        mapping: &LibraryMapping,
    ) -> Result<(LibraryAccess, LibraryAccess), StoreError> {
        Ok((
            self.library_access(&mapping.source, mapping.source_profile.as_ref())
                .await?,
            self.library_access(&mapping.target, mapping.target_profile.as_ref())
                .await?,
        ))
    }

    pub fn state_dir(&self, move_id: Uuid) -> PathBuf {
        self.data_dir.join("moves").join(move_id.to_string())
    }

    /// The plan to show: computed afresh (and stored) while the move can still start; once it
    /// runs or has ended, the plan it runs on, since the worker reads that one.
    pub async fn current_plan(&self, move_id: Uuid, now: Timestamp) -> Result<Plan, StoreError> {
        let record = self.store.get_move(move_id).await?;
        if !crate::control::can_start(record.state) {
            if let Some(plan) = record.plan.and_then(|p| serde_json::from_value(p).ok()) {
                return Ok(plan);
            }
        }
        self.plan(move_id, now).await
    }

    /// Computes the plan of a move as things are now, and stores it; a tenant reached through
    /// Graph that cannot be read is a 502 `TenantUnreachable` naming it and Graph's reason
    /// (an expired client secret, a missing permission), not an internal error.
    pub async fn plan(&self, move_id: Uuid, now: Timestamp) -> Result<Plan, StoreError> {
        let record = self.store.get_move(move_id).await?;
        let spec = &record.spec;
        let (source_port, target_port) = self.ports(spec).await.map_err(StoreError::Internal)?;
        let (source, target) = tokio::try_join!(
            snapshot(source_port.as_ref()),
            snapshot(target_port.as_ref())
        )?;
        let mut catalog: HashMap<_, _> = self
            .store
            .list_skus()
            .await?
            .into_iter()
            .map(|s| (s.sku_id, s))
            .collect();
        // A Microsoft tenant may hold SKUs the local catalog lacks: known by their subscribedSkus.
        for sku in source.skus.into_iter().chain(target.skus) {
            catalog.entry(sku.sku_id).or_insert(sku);
        }
        let (source, target) = (source.snapshot, target.snapshot);
        let mut created: BTreeSet<String> = self
            .store
            .users_created_by_move(move_id)
            .await?
            .into_iter()
            .collect();
        if spec.target_graph.is_some() {
            created.extend(self.graph_users_of_move(move_id).await?);
        }
        let probes = self.probe(&record.spec, &source).await;
        let plan = plan(&PlanInput {
            spec,
            source: &source,
            target: &target,
            catalog: &catalog,
            probes: &probes,
            created_by_move: &created,
            now,
        });
        let json = serde_json::to_value(&plan).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.store
            .save_plan(move_id, json, plan.fingerprint.clone(), now)
            .await?;
        Ok(plan)
    }

    /// Target UPNs this move created through Graph, where no ledger transaction records them:
    /// those of its user-creation steps that ran at least once. A step that crashed after
    /// Graph's answer left a user the move made; it is the move's, not a name taken by someone.
    async fn graph_users_of_move(&self, move_id: uuid::Uuid) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .steps(move_id)
            .await?
            .into_iter()
            .filter(|s| s.attempts > 0 || s.state == StepState::Done)
            .filter_map(|s| match serde_json::from_value(s.step).ok()? {
                Step::CreateTargetUser { target_upn, .. } => Some(target_upn.to_lowercase()),
                _ => None,
            })
            .collect())
    }

    async fn probe(
        &self,
        spec: &tenantry_moves::model::MoveSpec,
        source: &tenantry_moves::plan::TenantSnapshot,
    ) -> Probes {
        let mut probes = Probes::default();
        let failure = |side: &str, subject: &str, problem: String| ProbeFailure {
            side: side.to_string(),
            subject: subject.to_string(),
            problem,
        };
        // Who moves where (the planner's rule), once for every probe below.
        let pairs = user_pairs(spec, source);
        let upns: Vec<String> = pairs.iter().map(|(source, _)| source.clone()).collect();
        if let (Some(src), Some(dst)) = (&spec.source_mail, &spec.target_mail) {
            let sides = [("source", src), ("target", dst)];
            let mut access = Vec::new();
            for (side, server) in sides {
                match self.mail_access(server).await {
                    Ok(a) => access.push(Some(a)),
                    Err(e) => {
                        probes
                            .mail_failures
                            .push(failure(side, &server.url, error_text(e)));
                        access.push(None);
                    }
                }
            }
            // Source mailboxes of the users that move: every login must work now.
            if let Some(a) = &access[0] {
                for upn in &upns {
                    match self.engines.probe_mailbox(a, upn).await {
                        Ok(()) => {}
                        Err(ProbeError::Unreachable(e)) => {
                            probes.mail_failures.push(failure("source", &a.url, e));
                            break;
                        }
                        Err(ProbeError::LoginRefused(e)) => {
                            probes.mail_failures.push(failure("source", upn, e))
                        }
                    }
                }
            }
            // The target server must answer; its mailboxes may appear only once users are licensed.
            if let (Some(a), Some((_, target_upn))) = (&access[1], pairs.first()) {
                if let Err(ProbeError::Unreachable(e)) =
                    self.engines.probe_mailbox(a, target_upn).await
                {
                    probes.mail_failures.push(failure("target", &a.url, e));
                }
            }
        }
        let (failures, missing) = self.probe_dav(spec, &upns).await;
        probes.dav_failures = failures;
        probes.dav_homes_missing = missing;
        for mapping in &spec.libraries {
            // Each moving user's OneDrive: every source one must answer now; the target ones
            // appear only once the target users are licensed, so they are not probed.
            let (each, probe_target) = if mapping.per_user() {
                let users: Vec<LibraryMapping> =
                    upns.iter().map(|upn| mapping.for_user(upn, upn)).collect();
                (users, false)
            } else {
                (vec![mapping.clone()], true)
            };
            for mapping in &each {
                self.probe_library_pair(mapping, probe_target, &mut probes)
                    .await;
            }
        }
        probes
    }
}

impl Mover {
    /// Probes one library's source (its names the target would refuse) and, with
    /// `probe_target`, its target.
    async fn probe_library_pair(
        &self,
        mapping: &LibraryMapping,
        probe_target: bool,
        probes: &mut Probes,
    ) {
        let failure = |side: &str, subject: &str, problem: String| ProbeFailure {
            side: side.to_string(),
            subject: subject.to_string(),
            problem,
        };
        let (src, dst) = match self.libraries(mapping).await {
            Ok(pair) => pair,
            Err(e) => {
                let e = failure("library", &mapping.source, error_text(e));
                probes.library_failures.push(e);
                return;
            }
        };
        match self.engines.probe_library(&src, true).await {
            Ok(refusals) => {
                probes
                    .refused_names
                    .extend(refusals.into_iter().map(|r| RefusedName {
                        library: mapping.source.clone(),
                        path: r.path,
                        problem: r.problem,
                    }))
            }
            Err(e) => probes
                .library_failures
                .push(failure("source", &mapping.source, e)),
        }
        if probe_target {
            if let Err(e) = self.engines.probe_library(&dst, false).await {
                probes
                    .library_failures
                    .push(failure("target", &mapping.target, e));
            }
        }
    }

    /// Every CalDAV/CardDAV server the move carries data with must answer its profile's login
    /// (failures block the plan); each moving user's source home is looked up (those without
    /// one are warnings: nothing of the kind moves for them). `upns`: the moving users' source
    /// UPNs.
    async fn probe_dav(
        &self,
        spec: &MoveSpec,
        upns: &[String],
    ) -> (Vec<ProbeFailure>, Vec<ProbeFailure>) {
        let (mut failures, mut missing) = (Vec::new(), Vec::new());
        for kind in spec.pim.kinds() {
            let (source, target) = spec.pim.of(kind);
            for (side, server) in [("source", source), ("target", target)] {
                let Some(server) = server else { continue };
                let access = match self.dav_access(server).await {
                    Err(e) => Err(format!("profile {}: {}", server.profile, error_text(e))),
                    Ok(access) => match self.engines.probe_dav(kind, &access).await {
                        Ok(()) => Ok(access),
                        Err(e) => Err(e),
                    },
                };
                let access = match access {
                    Ok(access) => access,
                    Err(problem) => {
                        failures.push(ProbeFailure {
                            side: side.to_string(),
                            subject: format!("{} server {}", kind.name(), server.url),
                            problem,
                        });
                        continue;
                    }
                };
                if side != "source" {
                    continue;
                }
                for upn in upns {
                    match self.engines.dav_user_has_home(kind, &access, upn).await {
                        Ok(true) => {}
                        Ok(false) => missing.push(ProbeFailure {
                            side: kind.name().to_string(),
                            subject: upn.clone(),
                            problem: format!(
                                "{upn} has no {} home on the source server {}: nothing of this \
                                 kind moves for this user (check that the server names principals \
                                 by the user principal name)",
                                kind.name(),
                                server.url
                            ),
                        }),
                        Err(problem) => {
                            failures.push(ProbeFailure {
                                side: side.to_string(),
                                subject: format!("{} server {}", kind.name(), server.url),
                                problem,
                            });
                            break;
                        }
                    }
                }
            }
        }
        (failures, missing)
    }
}

fn error_text(e: StoreError) -> String {
    match e {
        StoreError::Ledger(LedgerError { detail, .. }) => detail,
        StoreError::Internal(m) => m,
    }
}

/// A side's tenant as it is now.
async fn snapshot(
    port: &dyn crate::tenant::TenantPort,
) -> Result<crate::tenant::TenantView, StoreError> {
    port.snapshot().await.map_err(|e| {
        if port.remote() {
            LedgerError::upstream("TenantUnreachable", format!("{}: {e}", port.describe())).into()
        } else {
            StoreError::Internal(e)
        }
    })
}
