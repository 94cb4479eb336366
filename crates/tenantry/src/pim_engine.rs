//! Calendars and address books of a move: `tenantry-pim` behind the mover's `DataEngines`
//! (`probe_dav`, `migrate_home`, `verify_home` of `engines::Engines` call these), and its
//! errors as the step queue's kinds.

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tenantry_mover::engines::{DavAccess, EngineError, PimKind};
use tenantry_pim::dav::DavError;
use tenantry_pim::home_move::{self, HomeCheck, HomeRun, NoTargetHome, ServiceLogin};
use tenantry_pim::kind::Kind;

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

pub async fn migrate(
    pim: PimKind,
    source: &DavAccess,
    source_user: &str,
    target: &DavAccess,
    target_user: &str,
    state: &Path,
    restored: bool,
) -> Result<Value, EngineError> {
    let (src, dst) = (login(source), login(target));
    let (source_name, target_name) = (source_user.to_string(), target_user.to_string());
    let state = state.to_path_buf();
    let run = off_the_runtime(move || async move {
        home_move::migrate_home(
            kind(pim),
            &src,
            &source_name,
            &dst,
            &target_name,
            &state,
            restored,
        )
        .await
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
        HomeCheck::Verified(report) => Ok(json!({
            "collections": report.collections,
            "objects": report.objects,
            "identical": report.identical,
        })),
        HomeCheck::NoSourceHome { notice } => Ok(json!({"notice": notice})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
