//! The data engines the server's move runner drives: `tenantry-mail` for mailboxes,
//! `tenantry-files` for libraries and `tenantry-pim` for calendars and address books (in
//! `pim_engine`), behind the mover's `DataEngines` interface. Microsoft 365 locations
//! (`sharepoint://`, `onedrive://`, `exchange://`) are in [`graph`].

mod graph;
mod off_runtime;

pub(crate) use off_runtime::off_the_runtime;

use async_trait::async_trait;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tenantry_app::progress::Counts;
use tenantry_files::endpoint::Endpoint as Library;
use tenantry_files::endpoint::EndpointError;
use tenantry_files::graph::location::is_graph;
use tenantry_files::local::LocalEndpoint;
use tenantry_files::location::resolve_login;
use tenantry_files::migrate::{migrate, EndpointStep, MigrateOptions, DEFAULT_PARALLEL};
use tenantry_files::preflight::{map_entries, OnInvalid};
use tenantry_files::retry::RetryPolicy;
use tenantry_files::webdav::WebDavEndpoint;
use tenantry_mail::framer::Limits;
use tenantry_mail::session::{is_loopback, Auth, Endpoint, ImapError, Security, Session, Side};
use tenantry_mover::engines::{
    DataEngines, DavAccess, EngineError, LibraryAccess, MailAccess, PimKind, ProbeError,
    ProgressSink, Refusal,
};

pub fn real() -> Arc<dyn DataEngines> {
    Arc::new(Engines {
        http: reqwest::Client::new(),
    })
}

struct Engines {
    http: reqwest::Client,
}

fn mailbox(access: &MailAccess, side: Side, user: &str) -> Result<Endpoint, String> {
    let url = tenantry_mail::cli::parse_url(&access.url).map_err(|e| format!("{side}: {e}"))?;
    let security = if url.tls {
        Security::Tls
    } else if is_loopback(&url.host) {
        Security::Plain
    } else {
        Security::StartTls
    };
    Ok(Endpoint {
        side,
        host: url.host,
        port: url.port,
        user: user.to_string(),
        security,
        // The admin (master) user opens each user's mailbox: no user passwords needed.
        auth: Auth::Admin {
            admin: access.admin_user.clone(),
            password: access.password.0.clone(),
        },
        ca_file: None,
    })
}

impl Engines {
    /// A library to copy from or into, or to verify (`must_exist`: a source, or either side of
    /// a verification; a target folder is created by the copy). `state`: the step's state file,
    /// for the Graph endpoint's own tables. `listing: Saved` continues the step's delta
    /// listing; `Fresh` (a verification) lists it whole again — a change the service made
    /// without a new version would hide behind the saved delta.
    fn library(
        &self,
        access: &LibraryAccess,
        must_exist: bool,
        state: Option<&Path>,
        listing: graph::Listing,
    ) -> Result<Arc<dyn Library>, String> {
        if is_graph(&access.location) {
            return graph::library(access, must_exist, graph::Purpose::Files, state, listing);
        }
        self.library_with(access, RetryPolicy::default())
    }

    fn library_with(
        &self,
        access: &LibraryAccess,
        retry: RetryPolicy,
    ) -> Result<Arc<dyn Library>, String> {
        let location = &access.location;
        let http = location
            .strip_prefix("webdav://")
            .map(|r| format!("http://{r}"))
            .or_else(|| {
                location
                    .strip_prefix("webdavs://")
                    .map(|r| format!("https://{r}"))
            });
        match http {
            Some(url) => {
                // One login: the profile's, and a user in the URL only if it is the same.
                let (url, user, password) = resolve_login(
                    &url,
                    access.username.as_deref(),
                    access.password.as_ref().map(|p| p.0.as_str()),
                )?;
                let endpoint = WebDavEndpoint::new(self.http.clone(), &url, user, password, retry)
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(endpoint))
            }
            None if location.contains("://") => Err(format!(
                "{location}: use a path, webdav://, webdavs://, sharepoint:// or onedrive://"
            )),
            None => Ok(Arc::new(LocalEndpoint::new(location))),
        }
    }
}

/// How long a step waits for a target mailbox that does not exist yet (a new user's mailbox
/// appears some minutes after its licence) once the admin login is known to work.
const PROVISIONING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Engines {
    /// The step queue's kind of a mail engine error (`message` is what the step records).
    ///
    /// A refused login: on the source it is the connection profile's credentials (the run
    /// starts only after every source mailbox's login worked). On the target a master-user
    /// server answers a wrong admin password and a mailbox that does not exist yet alike, and
    /// the planner expects new mailboxes to appear late: a control login into a mailbox the same
    /// credentials opened before decides — refused too → authentication (not retried), works →
    /// the mailbox is not there yet (retried after [`PROVISIONING_WAIT`]). Without such a
    /// mailbox the refusal is transient: retried with back-off up to the attempt limit.
    async fn mail_error(&self, e: &ImapError, target: &MailAccess, message: String) -> EngineError {
        match e {
            ImapError::LoginRefused {
                side: Side::Source, ..
            } => EngineError::Authentication(message),
            ImapError::LoginRefused {
                side: Side::Target, ..
            } => self.target_refusal(target, message).await,
            ImapError::Refused { reason, .. } if e.is_transient() => {
                match tenantry_mail::sync::suggested_backoff(reason) {
                    Some(retry_after) => EngineError::Throttled {
                        retry_after,
                        message,
                    },
                    None => EngineError::Transient(message),
                }
            }
            _ if e.is_transient() => EngineError::Transient(message),
            _ => EngineError::Permanent(message),
        }
    }

    async fn target_refusal(&self, target: &MailAccess, message: String) -> EngineError {
        let Some(known) = &target.known_mailbox else {
            return EngineError::Transient(format!(
                "{message} (the target mailbox may not exist yet; if this persists, check the \
                 target connection profile's credentials)"
            ));
        };
        match self.probe_mailbox(target, known).await {
            Err(ProbeError::LoginRefused(_)) => EngineError::Authentication(format!(
                "{message}; the same admin login into {known}, which it opened before, is \
                 refused too"
            )),
            Ok(()) => EngineError::Throttled {
                retry_after: PROVISIONING_WAIT,
                message: format!(
                    "{message}: the target mailbox does not exist yet (the admin login works \
                     for {known})"
                ),
            },
            Err(ProbeError::Unreachable(_)) => EngineError::Transient(message),
        }
    }
}

/// Exchange Online's IMAP as a target (found by its host, as the CLI's `--target-kind auto`
/// does) keeps only its flags and folder names and refuses appends over its limit.
fn mail_options(target: &Endpoint) -> tenantry_mail::sync::Options {
    let exchange_target = tenantry_mail::cli::ImapKind::Auto.is_exchange(&target.host);
    tenantry_mail::sync::Options {
        exchange_target,
        max_message_size: exchange_target.then_some(tenantry_mail::sync::EXCHANGE_APPEND_LIMIT),
        ..Default::default()
    }
}

/// The IMAP error behind a mail engine failure, wherever it sits in the chain.
fn imap_cause(e: &anyhow::Error) -> Option<&ImapError> {
    e.chain().find_map(|c| c.downcast_ref::<ImapError>())
}

/// The step queue's kind of a files engine error: the endpoint's error when one caused it
/// (listing, creating the root), else a local fault (the state file) worth another attempt.
fn files_error(e: &anyhow::Error) -> EngineError {
    let message = format!("{e:#}");
    let endpoint = e.chain().find_map(|c| {
        c.downcast_ref::<EndpointStep>()
            .map(|s| &s.error)
            .or_else(|| c.downcast_ref::<EndpointError>())
    });
    let Some(endpoint) = endpoint else {
        return EngineError::Transient(message);
    };
    match endpoint {
        EndpointError::Throttled { retry_after, .. } => EngineError::Throttled {
            retry_after: retry_after.unwrap_or_default(),
            message,
        },
        EndpointError::Transient(_) => EngineError::Transient(message),
        EndpointError::Auth(_) | EndpointError::Refused(_) => EngineError::Authentication(message),
        EndpointError::InsufficientStorage
        | EndpointError::TooLarge
        | EndpointError::NotFound(_)
        | EndpointError::Http { .. }
        | EndpointError::Permanent(_) => EngineError::Permanent(message),
    }
}

/// Passes the engine's counters to the step's progress while `work` runs (four times a
/// second: the sink only keeps the latest), and once more when it ends.
pub(crate) async fn relay<T>(
    work: impl std::future::Future<Output = T>,
    sink: &Arc<dyn ProgressSink>,
    read: impl Fn() -> Counts,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick() => sink.report(read()),
        }
    };
    sink.report(read());
    out
}

/// Counts from an engine's (done, total) pairs.
fn counts(items: (u64, u64), bytes: (u64, u64)) -> Counts {
    Counts {
        items_done: items.0,
        items_total: known_total(items),
        bytes_done: bytes.0,
        bytes_total: known_total(bytes),
    }
}

/// A total of nothing with nothing done is not known yet (nothing listed); a total is never
/// below what is done.
pub(crate) fn known_total((done, total): (u64, u64)) -> Option<u64> {
    (total > 0 || done > 0).then_some(total.max(done))
}

/// One of an engine's progress counters, read while it runs.
pub(crate) fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// How long probing one mailbox (greeting and login) may take.
pub const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

#[async_trait]
impl DataEngines for Engines {
    async fn probe_mailbox(&self, server: &MailAccess, user: &str) -> Result<(), ProbeError> {
        if server.graph.is_some() {
            return self.probe_exchange(server, user).await;
        }
        let endpoint = mailbox(server, Side::Source, user).map_err(ProbeError::Unreachable)?;
        // A probe only greets and logs in: a server that trickles must not hold a plan (which
        // probes mailboxes one after another) for the 30-minute command deadline.
        let limits = Limits {
            deadline: PROBE_DEADLINE,
            ..Limits::default()
        };
        match Session::connect_with(&endpoint, &limits).await {
            Ok(session) => {
                session.logout().await;
                Ok(())
            }
            Err(e @ ImapError::LoginRefused { .. }) => Err(ProbeError::LoginRefused(e.to_string())),
            Err(e) => Err(ProbeError::Unreachable(e.to_string())),
        }
    }

    async fn migrate_mailbox(
        &self,
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
        state: &Path,
        restored: bool,
        sink: Arc<dyn ProgressSink>,
    ) -> Result<Value, EngineError> {
        if source.graph.is_some() || target.graph.is_some() {
            return self
                .migrate_exchange(source, source_user, target, target_user, state, restored)
                .await;
        }
        let src = mailbox(source, Side::Source, source_user).map_err(EngineError::Permanent)?;
        let tgt = mailbox(target, Side::Target, target_user).map_err(EngineError::Permanent)?;
        let options = tenantry_mail::sync::Options {
            restored_state: restored,
            ..mail_options(&tgt)
        };
        let progress = Arc::new(tenantry_mail::report::Progress::default());
        let counted = progress.clone();
        let report = relay(
            tenantry_mail::sync::migrate_mailbox(&src, &tgt, state, &options, progress),
            &sink,
            || {
                counts(
                    (load(&counted.messages), load(&counted.messages_total)),
                    (load(&counted.bytes), load(&counted.bytes_total)),
                )
            },
        )
        .await;
        let value = serde_json::to_value(&report).unwrap_or(Value::Null);
        if report.ok() {
            return Ok(value);
        }
        let message = format!("mailbox {source_user} not fully copied: {value}");
        // A mailbox-wide error has a typed cause; failed folders or messages are worth another
        // pass (the state makes it exact).
        Err(match report.cause.as_deref().and_then(imap_cause) {
            Some(imap) => self.mail_error(imap, target, message).await,
            None => EngineError::Transient(message),
        })
    }

    async fn verify_mailbox(
        &self,
        source: &MailAccess,
        source_user: &str,
        target: &MailAccess,
        target_user: &str,
    ) -> Result<Value, EngineError> {
        if source.graph.is_some() || target.graph.is_some() {
            return self
                .verify_exchange(source, source_user, target, target_user)
                .await;
        }
        let src = mailbox(source, Side::Source, source_user).map_err(EngineError::Permanent)?;
        let tgt = mailbox(target, Side::Target, target_user).map_err(EngineError::Permanent)?;
        let verified = tenantry_mail::verify::verify_mailbox(&src, &tgt, &mail_options(&tgt)).await;
        let report = match verified {
            Ok(report) => report,
            Err(e) => {
                let message = format!("{e:#}");
                return Err(match imap_cause(&e) {
                    Some(imap) => self.mail_error(imap, target, message).await,
                    None => EngineError::Transient(message),
                });
            }
        };
        if report.ok() {
            Ok(json!({"folders": report.folders.len()}))
        } else {
            Err(EngineError::Transient(report.differences.join("; ")))
        }
    }

    async fn probe_library(
        &self,
        library: &LibraryAccess,
        is_source: bool,
    ) -> Result<Vec<Refusal>, String> {
        let location = Path::new(&library.location);
        if !library.location.contains("://") {
            if is_source && !location.is_dir() {
                return Err(format!("{}: no such folder", library.location));
            }
            if !is_source && !location.is_dir() {
                return Ok(Vec::new()); // created by the migration
            }
        }
        // A probe answers fast: one retry, not the minutes a migration would wait.
        let quick = RetryPolicy {
            attempts: 2,
            ..RetryPolicy::default()
        };
        let endpoint = if is_graph(&library.location) {
            graph::library(
                library,
                is_source,
                graph::Purpose::Probe,
                None,
                graph::Listing::Fresh,
            )?
        } else {
            self.library_with(library, quick)?
        };
        let listing = endpoint.list().await.map_err(|e| e.to_string())?;
        if !is_source {
            // The target answers; what it holds is not copied, so its names do not matter.
            return Ok(Vec::new());
        }
        // Entries listed under unusable paths (`..`, another host) are named as refusals.
        let refused = listing.refused.into_iter().map(|r| Refusal {
            path: r.path,
            problem: r.reason,
        });
        Ok(map_entries(&listing.entries, OnInvalid::Rename)
            .findings
            .into_iter()
            .map(|f| Refusal {
                path: f.path,
                problem: f
                    .problems
                    .iter()
                    .map(|p| p.describe())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .chain(refused)
            .collect())
    }

    async fn migrate_library(
        &self,
        source: &LibraryAccess,
        target: &LibraryAccess,
        state: &Path,
        sink: Arc<dyn ProgressSink>,
    ) -> Result<Value, EngineError> {
        let (src, dst) = (
            self.library(source, true, Some(state), graph::Listing::Saved)
                .map_err(EngineError::Permanent)?,
            self.library(target, false, Some(state), graph::Listing::Saved)
                .map_err(EngineError::Permanent)?,
        );
        let options = MigrateOptions {
            parallel: DEFAULT_PARALLEL,
            dry_run: false,
            delete: false,
            checksum: false,
            on_invalid: OnInvalid::Rename,
            state_path: state.to_path_buf(),
            retry: RetryPolicy::default(),
            progress: false,
            counters: Some(tenantry_files::progress::Progress::new(0, 0)),
        };
        let counted = options.counters.clone().expect("set above");
        let (source_name, target_name) = (source.location.clone(), target.location.clone());
        let migration = off_the_runtime(move || async move {
            migrate(src, dst, &source_name, &target_name, &options).await
        });
        let report = relay(migration, &sink, || {
            counts(
                (load(&counted.files_done), load(&counted.files_total)),
                (load(&counted.bytes_done), load(&counted.bytes_total)),
            )
        })
        .await
        .map_err(|e| EngineError::Transient(format!("library migration: {e}")))?
        .map_err(|e| files_error(&e))?;
        let value = serde_json::to_value(&report).unwrap_or(Value::Null);
        if report.failures.is_empty() {
            Ok(value)
        } else {
            // Failed files are tried again by the next pass.
            Err(EngineError::Transient(format!(
                "library {} not fully copied: {}",
                source.location,
                json!(report.failures)
            )))
        }
    }

    async fn verify_library(
        &self,
        source: &LibraryAccess,
        target: &LibraryAccess,
        state: Option<&Path>,
    ) -> Result<Value, EngineError> {
        let (src, dst) = (
            self.library(source, true, state, graph::Listing::Fresh)
                .map_err(EngineError::Permanent)?,
            self.library(target, true, state, graph::Listing::Fresh)
                .map_err(EngineError::Permanent)?,
        );
        let report = tenantry_files::verify::verify(src, dst, OnInvalid::Rename, DEFAULT_PARALLEL)
            .await
            .map_err(|e| files_error(&anyhow::Error::new(e)))?;
        if report.ok() {
            let mut value = serde_json::to_value(&report).unwrap_or(Value::Null);
            if let (Some(state), false) = (state, report.changed_by_service.is_empty()) {
                value["service_rewrites"] =
                    graph::rewrites_of(state, &target.location, &report.changed_by_service);
            }
            Ok(value)
        } else {
            Err(EngineError::Transient(report.to_text()))
        }
    }

    async fn probe_dav(&self, kind: PimKind, server: &DavAccess) -> Result<(), String> {
        crate::pim_engine::probe(kind, server).await
    }

    async fn dav_user_has_home(
        &self,
        kind: PimKind,
        server: &DavAccess,
        user: &str,
    ) -> Result<bool, String> {
        crate::pim_engine::has_home(kind, server, user).await
    }

    async fn migrate_home(
        &self,
        kind: PimKind,
        source: &DavAccess,
        source_user: &str,
        target: &DavAccess,
        target_user: &str,
        state: &Path,
        restored: bool,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Value, EngineError> {
        crate::pim_engine::migrate(
            kind,
            source,
            source_user,
            target,
            target_user,
            state,
            restored,
            progress,
        )
        .await
    }

    async fn verify_home(
        &self,
        kind: PimKind,
        source: &DavAccess,
        source_user: &str,
        target: &DavAccess,
        target_user: &str,
    ) -> Result<Value, EngineError> {
        crate::pim_engine::verify(kind, source, source_user, target, target_user).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tenantry_mover::secrets::Secret;
    use tenantry_testkit::hostile::{multistatus, respond, HttpServer, ImapServer};

    fn library(location: String, user: &str) -> LibraryAccess {
        LibraryAccess {
            location,
            username: Some(user.into()),
            password: Some(Secret("pw".into())),
            graph: None,
        }
    }

    /// A library URL naming the profile's user sends one `Authorization` header, the
    /// profile's; a URL naming another user is refused before anything is sent.
    #[tokio::test]
    async fn a_user_in_the_url_and_a_profile_send_one_authorization() {
        let server = HttpServer::start(|req, w| {
            let body = multistatus(&[(req.path.as_str(), true, 0)]);
            respond(w, 207, &[], body.as_bytes())
        });
        let engines = real();
        let same = library(
            format!("webdav://bob@127.0.0.1:{}/lib/", server.port()),
            "bob",
        );
        engines.probe_library(&same, true).await.unwrap();
        let requests = server.requests();
        assert!(!requests.is_empty());
        for r in &requests {
            let auth: Vec<&str> = r
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.as_str())
                .collect();
            // "bob:pw"
            assert_eq!(auth, vec!["Basic Ym9iOnB3"], "{} {}", r.method, r.path);
        }

        let other = library(
            format!("webdav://alice@127.0.0.1:{}/lib/", server.port()),
            "bob",
        );
        let err = engines.probe_library(&other, true).await.unwrap_err();
        assert!(
            err.contains("\"alice\"") && err.contains("\"bob\""),
            "{err}"
        );
        assert_eq!(
            server.requests().len(),
            requests.len(),
            "a request went out"
        );
    }

    fn imap(url: String, admin: &str, password: &str) -> MailAccess {
        MailAccess {
            url,
            admin_user: admin.into(),
            password: Secret(password.into()),
            graph: None,
            known_mailbox: None,
        }
    }

    async fn migrate(src: &MailAccess, tgt: &MailAccess, target_user: &str) -> EngineError {
        let state = tempfile::tempdir().unwrap();
        real()
            .migrate_mailbox(
                src,
                "alice",
                tgt,
                target_user,
                &state.path().join("a.sqlite"),
                false,
                Arc::new(tenantry_mover::progress::NoProgress),
            )
            .await
            .unwrap_err()
    }

    /// A refused source login is the profile's credentials (every source login worked when the
    /// run started): an authentication failure, never retried, with what to fix.
    #[tokio::test]
    async fn a_refused_source_login_is_an_authentication_failure() {
        use tenantry_testkit::dovecot::{Config, Dovecot};
        let (source, target) = (
            Dovecot::start(Config::source()),
            Dovecot::start(Config::target()),
        );
        let wrong = imap(source.host_url(), "srcadmin", "not-the-password");
        let tgt = imap(target.host_url(), "admin", "adminpw");
        let e = migrate(&wrong, &tgt, "alice").await;
        let EngineError::Authentication(message) = &e else {
            panic!("{e:?}")
        };
        assert!(message.contains("login refused"), "{message}");
        assert!(!message.contains("not-the-password"), "{message}");
        assert!(e.describe().contains("fix the connection profile"), "{e}");
        let e = real()
            .verify_mailbox(&wrong, "alice", &tgt, "alice")
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Authentication(_)), "{e:?}");
    }

    /// A refused target login is a wrong admin password or a mailbox not there yet: a control
    /// login into a mailbox the credentials opened before tells which; without one, retry.
    #[tokio::test]
    async fn a_refused_target_login_is_told_apart_by_a_control_login() {
        use tenantry_testkit::dovecot::{Config, Dovecot};
        let (source, target) = (
            Dovecot::start(Config::source()),
            Dovecot::start(Config::target()),
        );
        let src = imap(source.host_url(), "srcadmin", "srcadminpw");
        let right = imap(target.host_url(), "admin", "adminpw");
        let wrong = imap(target.host_url(), "admin", "not-the-password");
        let known = |access: &MailAccess| MailAccess {
            known_mailbox: Some("alice".into()),
            ..access.clone()
        };
        // No mailbox "dave" on the target yet, and no control mailbox: retried with back-off.
        let e = migrate(&src, &right, "dave").await;
        assert!(matches!(e, EngineError::Transient(_)), "{e:?}");
        assert!(e.message().contains("may not exist yet"), "{e}");
        // The admin login works for alice: dave's mailbox is not there yet; wait for it.
        let e = migrate(&src, &known(&right), "dave").await;
        let EngineError::Throttled { retry_after, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(*retry_after, PROVISIONING_WAIT);
        // The admin login is refused for alice too: the profile is wrong, not retried.
        let e = migrate(&src, &known(&wrong), "alice").await;
        assert!(matches!(e, EngineError::Authentication(_)), "{e:?}");
        assert!(!e.describe().contains("not-the-password"), "{e}");
        let e = real()
            .verify_mailbox(&src, "alice", &known(&wrong), "alice")
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Authentication(_)), "{e:?}");
        // Without a control mailbox a wrong password cannot be told from a missing mailbox.
        let e = migrate(&src, &wrong, "alice").await;
        assert!(matches!(e, EngineError::Transient(_)), "{e:?}");
    }

    /// A library server refusing the profile's credentials (401) is an authentication
    /// failure; one answering 404 for the source is permanent. Neither is retried.
    #[tokio::test]
    async fn a_refused_library_login_is_an_authentication_failure() {
        let refusing = HttpServer::start(|_, w| {
            respond(w, 401, &[("WWW-Authenticate", "Basic realm=\"x\"")], b"")
        });
        let missing = HttpServer::start(|_, w| respond(w, 404, &[], b""));
        let state = tempfile::tempdir().unwrap();
        let at = |server: &HttpServer| {
            library(format!("webdav://127.0.0.1:{}/lib/", server.port()), "bob")
        };
        let e = real()
            .migrate_library(
                &at(&refusing),
                &at(&missing),
                &state.path().join("l.sqlite"),
                Arc::new(tenantry_mover::progress::NoProgress),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Authentication(_)), "{e:?}");
        assert!(e.describe().contains("fix the connection profile"), "{e}");
        assert!(!e.describe().contains("Ym9iOnB3"), "{e}");
        let e = real()
            .migrate_library(
                &at(&missing),
                &at(&missing),
                &state.path().join("m.sqlite"),
                Arc::new(tenantry_mover::progress::NoProgress),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Permanent(_)), "{e:?}");
    }

    /// A server that drops the connection is a transient failure (retried).
    #[tokio::test]
    async fn a_dropped_connection_is_a_transient_failure() {
        let server = ImapServer::start(|_| Ok(()));
        let url = format!("imap://127.0.0.1:{}", server.port());
        let e = migrate(
            &imap(url.clone(), "admin", "pw"),
            &imap(url, "admin", "pw"),
            "alice",
        )
        .await;
        assert!(matches!(e, EngineError::Transient(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_trickling_server_holds_a_probe_for_the_probe_deadline_only() {
        // One byte every 200 ms never trips the idle timeout: the probe waited the 30-minute
        // command deadline, and planning probes mailboxes one after another.
        let server = ImapServer::start(|c| {
            for _ in 0..3000 {
                c.send(b"x")?;
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        });
        let access = imap(format!("imap://127.0.0.1:{}", server.port()), "admin", "pw");
        let started = Instant::now();
        let e = real().probe_mailbox(&access, "alice").await.unwrap_err();
        let ProbeError::Unreachable(why) = e else {
            panic!("{e:?}")
        };
        assert!(why.contains("no complete response within 30 s"), "{why}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{:?}",
            started.elapsed()
        );
    }
}
