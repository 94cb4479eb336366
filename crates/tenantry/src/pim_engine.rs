//! Calendars and address books of a move: `tenantry-pim` behind the mover's `DataEngines`
//! (`probe_dav`, `migrate_home`, `verify_home` of `engines::Engines` call these), and its
//! errors as the step queue's kinds.

use crate::engines::{known_total, load};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tenantry_app::progress::Counts;
use tenantry_mover::engines::{DavAccess, EngineError, PimKind, ProgressSink};
use tenantry_pim::dav::DavError;
use tenantry_pim::home_move::{self, HomeCheck, HomeRun, NoTargetHome, ServiceLogin};
use tenantry_pim::kind::Kind;
use tenantry_pim::report::Progress;

/// How long a step waits for a target home that is not there yet (the user may appear on the
/// target's calendar server some time after it was created) before it looks again.
const HOME_WAIT: Duration = Duration::from_secs(60);

fn kind(kind: PimKind) -> Kind {
    match kind {
        PimKind::Calendars => Kind::Calendars,
        PimKind::Contacts => Kind::Contacts,
    }
}

fn login(access: &DavAccess) -> ServiceLogin {
    ServiceLogin {
        url: access.url.clone(),
        user: access.username.clone(),
        password: access.password.0.clone(),
    }
}

/// The step queue's kind of a calendar/contact engine error, by the cause in its chain: the
/// server refusing the service login (401, or 403 on a principal or home it needs) is the
/// profile's to fix, never retried; throttling waits as long as the server asked; a target
/// without the user's home yet waits for it like a mailbox being provisioned; a server that
/// answers nonsense or refuses for good is permanent; anything else (network, 5xx, the local
/// state file) is worth another attempt.
pub fn engine_error(e: &anyhow::Error) -> EngineError {
    let message = format!("{e:#}");
    if e.chain().any(|c| c.is::<NoTargetHome>()) {
        return EngineError::Throttled {
            retry_after: HOME_WAIT,
            message,
        };
    }
    let Some(dav) = e.chain().find_map(|c| c.downcast_ref::<DavError>()) else {
        return EngineError::Transient(message);
    };
    match dav {
        DavError::Auth(_) | DavError::Refused { status: 403, .. } => {
            EngineError::Authentication(message)
        }
        DavError::Throttled { retry_after, .. } => EngineError::Throttled {
            retry_after: retry_after.unwrap_or_default(),
            message,
        },
        DavError::Transient(_) => EngineError::Transient(message),
        DavError::NotFound
        | DavError::Refused { .. }
        | DavError::Redirect { .. }
        | DavError::Protocol(_) => EngineError::Permanent(message),
    }
}

/// The calendar engine on its blocking thread, stopped with its step.
async fn off_the_runtime<T, F, Fut>(work: F) -> Result<T, EngineError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    crate::engines::off_the_runtime(work)
        .await
        .map_err(|e| EngineError::Transient(format!("the calendar engine: {e}")))
}

pub async fn probe(pim: PimKind, server: &DavAccess) -> Result<(), String> {
    home_move::probe(kind(pim), &login(server))
        .await
        .map_err(|e| format!("{e:#}"))
}

pub async fn has_home(pim: PimKind, server: &DavAccess, user: &str) -> Result<bool, String> {
    home_move::has_home(kind(pim), &login(server), user)
        .await
        .map_err(|e| format!("{e:#}"))
}

#[allow(clippy::too_many_arguments)]
pub async fn migrate(
    pim: PimKind,
    source: &DavAccess,
    source_user: &str,
    target: &DavAccess,
    target_user: &str,
    state: &Path,
    restored: bool,
    sink: Arc<dyn ProgressSink>,
) -> Result<Value, EngineError> {
    let (src, dst) = (login(source), login(target));
    let (source_name, target_name) = (source_user.to_string(), target_user.to_string());
    let state = state.to_path_buf();
    let counters = Arc::new(Progress::default());
    let counted = counters.clone();
    let run = off_the_runtime(move || async move {
        home_move::migrate_home_counted(
            kind(pim),
            &src,
            &source_name,
            &dst,
            &target_name,
            &state,
            restored,
            Some(counted),
        )
        .await
    });
    // Objects to copy are known collection by collection (the total grows as each is listed);
    // the bytes to copy are not known beforehand.
    let run = crate::engines::relay(run, &sink, || {
        let done = load(&counters.done);
        Counts {
            items_done: done,
            items_total: known_total((done, load(&counters.listed))),
            bytes_done: load(&counters.bytes),
            bytes_total: None,
        }
    })
    .await?
    .map_err(|e| engine_error(&e))?;
    let value = serde_json::to_value(&run).unwrap_or(Value::Null);
    match &run {
        HomeRun::Migrated { report, .. } if !report.ok() => {
            // Objects left behind are listed by the next attempt too (the state makes it
            // exact): failures a retry cannot fix end the move with this list after the last.
            Err(EngineError::Transient(format!(
                "{} of {source_user} not fully copied: {}",
                pim.name(),
                json!({"failures": report.failures, "duplicates": report.duplicates, "refused": report.refused})
            )))
        }
        _ => Ok(value),
    }
}

pub async fn verify(
    pim: PimKind,
    source: &DavAccess,
    source_user: &str,
    target: &DavAccess,
    target_user: &str,
) -> Result<Value, EngineError> {
    let (src, dst) = (login(source), login(target));
    let (source_name, target_name) = (source_user.to_string(), target_user.to_string());
    let check = off_the_runtime(move || async move {
        home_move::verify_home(kind(pim), &src, &source_name, &dst, &target_name).await
    })
    .await?
    .map_err(|e| engine_error(&e))?;
    match check {
        HomeCheck::Verified(report) if !report.ok() => {
            Err(EngineError::Transient(report.to_text()))
        }
        // Every object is on the target as `identical` or `same_content` (a target that
        // re-serialises, like Xandikos, stores other bytes with every property kept): both
        // counts, or a clean check of such a target would read as objects missing.
        HomeCheck::Verified(report) => Ok(json!({
            "collections": report.collections,
            "objects": report.objects,
            "identical": report.identical,
            "same_content": report.same_content,
            "only_on_target": report.only_on_target,
        })),
        HomeCheck::NoSourceHome { notice } => Ok(json!({"notice": notice})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_mover::secrets::Secret;
    use tenantry_testkit::radicale::{Radicale, SERVICE_USER};
    use tenantry_testkit::xandikos::Xandikos;
    use tenantry_testkit::PASSWORD;

    fn access(port: u16) -> DavAccess {
        DavAccess {
            url: format!("caldav://127.0.0.1:{port}/"),
            username: SERVICE_USER.into(),
            password: Secret(PASSWORD.into()),
        }
    }

    /// Xandikos re-serialises the events it stores: a move's verification shows them as the same
    /// content, so the step's result accounts for every object (it named only the identical
    /// ones: 0 of 1 read as a calendar lost).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_verified_move_into_a_reserialising_target_accounts_for_every_object() {
        let src = Radicale::start_for_users(&["alice"]);
        let dst = Xandikos::start();
        let http = reqwest::Client::new();
        for (method, path, body) in [
            ("MKCALENDAR", "/alice/work/", ""),
            (
                "PUT",
                "/alice/work/standup.ics",
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:standup@example.org\r\nDTSTAMP:20240101T090000Z\r\nDTSTART:20240102T090000Z\r\nSUMMARY:Stand-up\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            ),
        ] {
            let status = http
                .request(method.parse().unwrap(), src.http(path))
                .basic_auth("alice", Some(PASSWORD))
                .body(body)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 201, "{method} {path}");
        }
        let state = tempfile::tempdir().unwrap();
        let state = state.path().join("calendars.sqlite");
        let (s, t) = (access(src.port), access(dst.port));
        let pim = PimKind::Calendars;
        let seen = Arc::new(Seen::default());
        migrate(pim, &s, "alice", &t, "alice", &state, false, seen.clone())
            .await
            .unwrap();
        // The step's progress: the one object copied of one, its bytes counted.
        let last = seen.0.lock().unwrap().last().cloned().expect("reported");
        assert_eq!((last.items_done, last.items_total), (1, Some(1)));
        assert!(
            last.bytes_done > 0 && last.bytes_total.is_none(),
            "{last:?}"
        );
        let v = verify(pim, &s, "alice", &t, "alice").await.unwrap();
        assert_eq!(
            (&v["objects"], &v["identical"], &v["same_content"]),
            (&json!(1), &json!(0), &json!(1)),
            "{v}"
        );
    }

    /// What the engine reported to its step's progress.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<Counts>>);
    impl ProgressSink for Seen {
        fn report(&self, counts: Counts) {
            self.0.lock().unwrap().push(counts);
        }
    }

    #[test]
    fn dav_errors_become_the_queues_kinds() {
        let wrapped = |e: DavError| anyhow::Error::new(e).context("discovery on the target");
        let kind_of = |e: DavError| engine_error(&wrapped(e));
        assert!(matches!(
            kind_of(DavError::Auth(401)),
            EngineError::Authentication(_)
        ));
        assert!(matches!(
            kind_of(DavError::Refused {
                status: 403,
                reason: None
            }),
            EngineError::Authentication(_)
        ));
        let throttled = kind_of(DavError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        });
        assert!(
            matches!(throttled, EngineError::Throttled { retry_after, .. } if retry_after == Duration::from_secs(7)),
            "{throttled:?}"
        );
        assert!(matches!(
            kind_of(DavError::Transient("HTTP 502".into())),
            EngineError::Transient(_)
        ));
        assert!(matches!(
            kind_of(DavError::Protocol("href refused".into())),
            EngineError::Permanent(_)
        ));
        let missing = anyhow::Error::new(NoTargetHome {
            kind: "calendars",
            user: "adele@contoso.com".into(),
        });
        let e = engine_error(&missing);
        assert!(
            matches!(&e, EngineError::Throttled { retry_after, message } if *retry_after == HOME_WAIT && message.contains("adele@contoso.com")),
            "{e:?}"
        );
        assert!(matches!(
            engine_error(&anyhow::anyhow!("state file: disk full")),
            EngineError::Transient(_)
        ));
    }
}
