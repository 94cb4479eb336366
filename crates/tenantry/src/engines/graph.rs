//! The move's data engines on Microsoft 365: SharePoint/OneDrive libraries through the files
//! engine's Graph endpoint, and Exchange Online mailboxes through the mail engine's `exchange`
//! module (IMAP → Exchange as received mail, Exchange → Exchange through mailbox
//! import/export), each with the app of its side's `graph` connection profile. The engines
//! keep their state in the step's state file (their own tables), which the runner saves to the
//! database like the IMAP and WebDAV steps', so a killed worker's step resumes elsewhere.

use super::{imap_cause, mailbox, Engines, PROVISIONING_WAIT};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tenantry_files::endpoint::Endpoint as Library;
use tenantry_files::graph::location::parse as parse_library;
use tenantry_files::graph::store::GraphStore;
use tenantry_files::graph::{GraphEndpoint, SmallUpload};
use tenantry_graph::client::encode_path;
use tenantry_graph::{GraphClient, GraphError};
use tenantry_mail::exchange::mailbox::Mailbox;
use tenantry_mail::exchange::mailbox_copy::{self, ExportMailbox};
use tenantry_mail::report::MailboxReport;
use tenantry_mail::session::Side;
use tenantry_mail::verify::VerifyReport;
use tenantry_mover::engines::{EngineError, GraphAccess, LibraryAccess, MailAccess, ProbeError};

/// What a client is for: each gets HTTP settings and retries of its own; all of one app
/// share the tenant's throttling budget (keyed by the app, in `tenantry_graph`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Transfers: long downloads and uploads, no redirects followed.
    Files,
    /// Mailbox calls: Outlook answers within minutes.
    Mail,
    /// A probe answers fast: two attempts, short waits (a plan probes one after another).
    Probe,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Files => "files",
            Purpose::Mail => "mail",
            Purpose::Probe => "probe",
        }
    }
}

/// The profile's client for `purpose`, shared in this process (`tenantry_graph::shared_client`:
/// tokens reused from step to step, a new client once the profile's credential is replaced).
fn client(access: &GraphAccess, purpose: Purpose) -> Result<GraphClient, String> {
    let mut cfg = access.profile.config()?;
    if purpose == Purpose::Probe {
        cfg.attempts = 2;
        cfg.max_wait = Duration::from_secs(10);
    }
    tenantry_graph::shared_client(cfg, purpose.name(), || match purpose {
        Purpose::Files => {
            tenantry_files::webdav::http_client(tenantry_files::migrate::DEFAULT_PARALLEL, None)
                .map_err(|e| e.to_string())
        }
        Purpose::Mail | Purpose::Probe => reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(if purpose == Purpose::Probe {
                30
            } else {
                600
            }))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}")),
    })
}

/// The step queue's kind of a Graph error: a refused app is the profile's to fix (never
/// retried), a throttled tenant waits as long as Graph asked.
pub(super) fn graph_error(e: &GraphError, message: String) -> EngineError {
    match e {
        GraphError::Throttled { retry_after, .. } => EngineError::Throttled {
            retry_after: *retry_after,
            message,
        },
        GraphError::Transient { .. } => EngineError::Transient(message),
        GraphError::Auth { .. } => EngineError::Authentication(message),
        GraphError::Permanent { .. } => EngineError::Permanent(message),
    }
}

/// The Graph error behind an engine failure, wherever it sits in the chain.
fn graph_cause(e: &anyhow::Error) -> Option<&GraphError> {
    e.chain().find_map(|c| c.downcast_ref::<GraphError>())
}

/// How a library is listed: from the step's saved delta (a copy), or whole (a verification).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    Saved,
    Fresh,
}

/// A SharePoint or OneDrive library; `state` is the step's state file (its delta link, open
/// upload sessions and the files the service rewrote live there, beside the files engine's
/// records; for a verification a copy of it), `None` for a probe.
pub(super) fn library(
    access: &LibraryAccess,
    must_exist: bool,
    purpose: Purpose,
    state: Option<&Path>,
    listing: Listing,
) -> Result<Arc<dyn Library>, String> {
    let location = &access.location;
    let graph = access.graph.as_ref().ok_or_else(|| {
        format!("{location}: a SharePoint/OneDrive library needs a graph connection profile")
    })?;
    let parsed = parse_library(location).map_err(|e| format!("{location}: {e:#}"))?;
    let store = state
        .map(|path| GraphStore::open(path, location))
        .transpose()
        .map_err(|e| format!("opening the state store: {e:#}"))?;
    let endpoint = GraphEndpoint::new(
        client(graph, purpose)?,
        location.clone(),
        parsed.drive,
        parsed.folder,
        store,
        // Keeps the modification time of small files too (one more request each).
        SmallUpload::Session,
    );
    let endpoint = if listing == Listing::Fresh {
        endpoint.fresh_listing()
    } else {
        endpoint
    };
    Ok(Arc::new(if must_exist {
        endpoint.must_exist()
    } else {
        endpoint
    }))
}

/// What the service did to each of `paths` in `location` after upload, as the step's `state`
/// recorded it: the size and quickXorHash sent and stored (a state that cannot be read leaves
/// the list empty; the files are still named in `changed_by_service`).
pub(super) fn rewrites_of(state: &Path, location: &str, paths: &[String]) -> Value {
    let recorded = GraphStore::open(state, location)
        .ok()
        .and_then(|store| store.rewrites().ok())
        .unwrap_or_default();
    paths
        .iter()
        .filter_map(|path| {
            let r = recorded.get(path)?;
            Some(json!({
                "path": path,
                "sent_size": r.sent_size,
                "sent_quick_xor_hash": r.sent_qxh,
                "stored_size": r.service_size,
                "stored_quick_xor_hash": r.service_qxh,
            }))
        })
        .collect()
}

fn app(server: &MailAccess) -> Result<&GraphAccess, String> {
    server
        .graph
        .as_ref()
        .ok_or_else(|| format!("{}: Exchange needs a graph connection profile", server.url))
}

/// Why opening an Exchange mailbox failed. A target mailbox Graph does not know yet is a new
/// user's (Exchange creates it some minutes after the licence): waited for, as on IMAP.
fn open_error(e: &anyhow::Error, side: Side, upn: &str) -> EngineError {
    let message = format!("{e:#}");
    match graph_cause(e) {
        Some(g) if g.is_not_found() && side == Side::Target => not_there_yet(upn, message),
        Some(g) => graph_error(g, message),
        None => EngineError::Transient(message),
    }
}

fn not_there_yet(upn: &str, message: String) -> EngineError {
    EngineError::Throttled {
        retry_after: PROVISIONING_WAIT,
        message: format!(
            "{message}: the target mailbox exchange://{upn} does not exist yet (Exchange creates \
             a new user's mailbox some minutes after its licence)"
        ),
    }
}

/// Why neither API opened `user`'s mailbox: a mailbox one says is not there (and the other
/// does not let the app in) is a missing mailbox; anything else is the app or Graph.
fn probe_refusal(user: &str, folders: &GraphError, settings: &GraphError) -> ProbeError {
    let missing = |e: &GraphError| e.is_not_found();
    let refused = |e: &GraphError| matches!(e, GraphError::Auth { .. });
    if (missing(folders) || refused(folders))
        && (missing(settings) || refused(settings))
        && (missing(folders) || missing(settings))
    {
        return ProbeError::LoginRefused(format!(
            "exchange://{user}: no such mailbox ({settings})"
        ));
    }
    let worst = if missing(settings) { folders } else { settings };
    ProbeError::Unreachable(format!("exchange://{user}: {worst}"))
}

impl Engines {
    /// Whether `user`'s mailbox answers with the profile's app: a mailbox Graph does not
    /// know is "login refused" (a source blocker; a target's may appear later), a refused app or
    /// an unreachable Graph blocks the move.
    pub(super) async fn probe_exchange(
        &self,
        server: &MailAccess,
        user: &str,
    ) -> Result<(), ProbeError> {
        let client = client(
            app(server).map_err(ProbeError::Unreachable)?,
            Purpose::Probe,
        )
        .map_err(ProbeError::Unreachable)?;
        // Through either API a copy may use: the app of an IMAP → Exchange move may read mail
        // folders only (Mail.ReadWrite), that of an Exchange → Exchange one mailbox settings
        // only (import/export); the probe does not know which way its side goes.
        let user_path = |rest: &str| format!("/users/{}/{rest}", encode_path(user));
        let folders = match client.get_json(&user_path("mailFolders/inbox")).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let settings = match client.get_json(&user_path("settings/exchange")).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        Err(probe_refusal(user, &folders, &settings))
    }

    /// The two mailboxes of an Exchange → Exchange copy.    /// The two mailboxes of an Exchange → Exchange copy.
    async fn export_pair(
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
    ) -> Result<(ExportMailbox, ExportMailbox), EngineError> {
        let open = |access: &MailAccess| {
            app(access)
                .and_then(|a| client(a, Purpose::Mail))
                .map_err(EngineError::Permanent)
        };
        let (src_client, dst_client) = (open(source)?, open(target)?);
        let src = ExportMailbox::open(src_client, source_user)
            .await
            .map_err(|e| open_error(&e, Side::Source, source_user))?;
        let dst = ExportMailbox::open(dst_client, target_user)
            .await
            .map_err(|e| open_error(&e, Side::Target, target_user))?;
        Ok((src, dst))
    }

    /// The target mailbox of an IMAP → Exchange copy, once Graph knows it.
    async fn exchange_target(
        target: &MailAccess,
        target_user: &str,
    ) -> Result<Mailbox, EngineError> {
        let client = app(target)
            .and_then(|a| client(a, Purpose::Mail))
            .map_err(EngineError::Permanent)?;
        let mailbox = Mailbox::new(client, target_user);
        match mailbox.well_known("inbox").await {
            Ok(Some(_)) => Ok(mailbox),
            Ok(None) => Err(not_there_yet(
                target_user,
                format!("exchange://{target_user}: no inbox"),
            )),
            Err(e) => Err(graph_error(&e, format!("exchange://{target_user}: {e}"))),
        }
    }

    /// A mailbox step with Exchange on at least one side.
    pub(super) async fn migrate_exchange(
        &self,
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
        state: &Path,
        restored: bool,
    ) -> Result<Value, EngineError> {
        let progress = Arc::new(tenantry_mail::report::Progress::default());
        // No state at all: a first run, or a worker killed before its first snapshot. Creating
        // a message or importing an item is not idempotent (IMAP's content match has no Graph
        // twin), so the copy looks for earlier copies in every target folder that holds
        // anything — none in a new user's empty mailbox.
        let restored = restored || !state.exists();
        let report: MailboxReport = match (&source.graph, &target.graph) {
            (None, Some(_)) => {
                let src =
                    mailbox(source, Side::Source, source_user).map_err(EngineError::Permanent)?;
                let dst = Self::exchange_target(target, target_user).await?;
                let options = tenantry_mail::sync::Options {
                    restored_state: restored,
                    ..Default::default()
                };
                tenantry_mail::exchange::sync::migrate_mailbox(
                    &src, &dst, state, &options, progress,
                )
                .await
            }
            (Some(_), Some(_)) => {
                let (src, dst) =
                    Self::export_pair(source, source_user, target, target_user).await?;
                mailbox_copy::migrate_mailbox(&src, &dst, state, &progress, restored).await
            }
            _ => return Err(exchange_to_imap()),
        };
        let value = serde_json::to_value(&report).unwrap_or(Value::Null);
        if report.ok() {
            return Ok(value);
        }
        let message = format!("mailbox {source_user} not fully copied: {value}");
        // A mailbox-wide error has a typed cause; failed folders or items are worth another
        // pass (the state makes it exact).
        Err(match report.cause.as_deref() {
            Some(cause) => self.cause_error(cause, target, message).await,
            None => EngineError::Transient(message),
        })
    }

    /// The kind of a mailbox-wide failure: the IMAP source's error, or Graph's.
    async fn cause_error(
        &self,
        cause: &anyhow::Error,
        target: &MailAccess,
        message: String,
    ) -> EngineError {
        if let Some(imap) = imap_cause(cause) {
            return self.mail_error(imap, target, message).await;
        }
        match graph_cause(cause) {
            Some(g) => graph_error(g, message),
            None => EngineError::Transient(message),
        }
    }

    pub(super) async fn verify_exchange(
        &self,
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
    ) -> Result<Value, EngineError> {
        let verified: anyhow::Result<VerifyReport> = match (&source.graph, &target.graph) {
            (None, Some(_)) => {
                let src =
                    mailbox(source, Side::Source, source_user).map_err(EngineError::Permanent)?;
                let dst = Self::exchange_target(target, target_user).await?;
                tenantry_mail::exchange::verify::verify_mailbox(
                    &src,
                    &dst,
                    &tenantry_mail::sync::Options::default(),
                )
                .await
            }
            (Some(_), Some(_)) => {
                let (src, dst) =
                    Self::export_pair(source, source_user, target, target_user).await?;
                mailbox_copy::verify_mailbox(&src, &dst).await
            }
            _ => return Err(exchange_to_imap()),
        };
        let report = match verified {
            Ok(report) => report,
            Err(e) => {
                let message = format!("{e:#}");
                return Err(self.cause_error(&e, target, message).await);
            }
        };
        if report.ok() {
            Ok(json!({"folders": report.folders.len()}))
        } else {
            Err(EngineError::Transient(report.differences.join("; ")))
        }
    }
}

/// The move's validation refuses it; a spec stored before that rule lands here.
fn exchange_to_imap() -> EngineError {
    EngineError::Permanent(
        "an exchange:// source needs an exchange:// target (mailbox import/export)".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_graph::error::RequestIds;

    fn ids() -> RequestIds {
        RequestIds {
            request_id: Some("r-1".into()),
            client_request_id: None,
        }
    }

    #[test]
    fn graph_errors_keep_their_kind_in_the_step_queue() {
        let throttled = GraphError::Throttled {
            status: 429,
            retry_after: Duration::from_secs(42),
            ids: ids(),
        };
        let EngineError::Throttled { retry_after, .. } = graph_error(&throttled, "m".into()) else {
            panic!("throttled")
        };
        assert_eq!(retry_after, Duration::from_secs(42));
        let auth = GraphError::Auth {
            status: 401,
            code: Some("invalid_client".into()),
            message: "bad secret".into(),
            ids: ids(),
        };
        let e = graph_error(&auth, "m".into());
        assert!(matches!(e, EngineError::Authentication(_)), "{e:?}");
        assert!(!e.is_retryable());
        let transient = GraphError::Transient {
            message: "connection reset".into(),
            ids: ids(),
        };
        assert!(matches!(
            graph_error(&transient, "m".into()),
            EngineError::Transient(_)
        ));
        let refused = GraphError::Permanent {
            status: 400,
            code: Some("invalidRequest".into()),
            message: "no".into(),
            ids: ids(),
        };
        assert!(matches!(
            graph_error(&refused, "m".into()),
            EngineError::Permanent(_)
        ));
    }

    #[test]
    fn a_probe_tells_a_missing_mailbox_from_a_refused_app() {
        let missing = || GraphError::Permanent {
            status: 404,
            code: Some("ErrorInvalidUser".into()),
            message: "not found".into(),
            ids: ids(),
        };
        let refused = || GraphError::Auth {
            status: 403,
            code: Some("ErrorAccessDenied".into()),
            message: "no permission".into(),
            ids: ids(),
        };
        let down = || GraphError::Transient {
            message: "connection refused".into(),
            ids: ids(),
        };
        let kind = |e: ProbeError| match e {
            ProbeError::LoginRefused(_) => "missing",
            ProbeError::Unreachable(_) => "unreachable",
        };
        assert_eq!(
            kind(probe_refusal("a@b", &missing(), &missing())),
            "missing"
        );
        // The app may use only one of the two APIs: the other's 403 says nothing.
        assert_eq!(
            kind(probe_refusal("a@b", &refused(), &missing())),
            "missing"
        );
        assert_eq!(
            kind(probe_refusal("a@b", &missing(), &refused())),
            "missing"
        );
        // Refused by both: the profile's app, which blocks the move on either side.
        assert_eq!(
            kind(probe_refusal("a@b", &refused(), &refused())),
            "unreachable"
        );
        assert_eq!(
            kind(probe_refusal("a@b", &missing(), &down())),
            "unreachable"
        );
        assert_eq!(
            kind(probe_refusal("a@b", &down(), &missing())),
            "unreachable"
        );
    }

    #[test]
    fn a_target_mailbox_graph_does_not_know_yet_is_waited_for_a_source_one_is_not() {
        let missing = || {
            anyhow::Error::new(GraphError::Permanent {
                status: 404,
                code: Some("ErrorInvalidUser".into()),
                message: "not found".into(),
                ids: ids(),
            })
            .context("exchange://dan@contoso.com: the mailbox settings")
        };
        let EngineError::Throttled {
            retry_after,
            message,
        } = open_error(&missing(), Side::Target, "dan@contoso.com")
        else {
            panic!("a missing target mailbox is waited for")
        };
        assert_eq!(retry_after, PROVISIONING_WAIT);
        assert!(message.contains("does not exist yet"), "{message}");
        let e = open_error(&missing(), Side::Source, "dan@fabrikam.com");
        assert!(matches!(e, EngineError::Permanent(_)), "{e:?}");
        // No Graph error in the chain (the state file): another attempt.
        let e = open_error(&anyhow::anyhow!("disk full"), Side::Target, "x@y");
        assert!(matches!(e, EngineError::Transient(_)), "{e:?}");
    }
}
