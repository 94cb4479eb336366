//! One user's calendars or address books as a tenant move copies them: both homes found through
//! the move's service logins (`discovery::user_home`), then the same run as `tenantry calendars
//! migrate` home to home, with its state store and report. A user without a home on the source
//! has nothing to move (reported, not an error); a target without the user's home yet is an
//! error of its own ([`NoTargetHome`]) that a move retries, as it waits for a new mailbox.

use std::path::Path;

use serde::Serialize;
use tenantry_files::retry::RetryPolicy;
use tenantry_files::webdav::http_client;

use crate::dav::Dav;
use crate::discovery::user_home;
use crate::kind::Kind;
use crate::location::{self, Access};
use crate::migrate::{migrate, Options, DEFAULT_PARALLEL};
use crate::report::MigrationReport;
use crate::verify::{verify, VerifyReport};

/// A CalDAV or CardDAV server of a move with its service login (never shown by `Debug`).
#[derive(Clone)]
pub struct ServiceLogin {
    /// `caldav[s]://host[:port]/[context/]` or `carddav[s]://…`.
    pub url: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ServiceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLogin")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The target has no home of the kind for the user (yet): a new user's home may appear only
/// once the user exists on that server.
#[derive(Debug, thiserror::Error)]
#[error("the target server has no {kind} home for {user} (yet): the user may not exist there; create the user on the target server or give the service login access to it")]
pub struct NoTargetHome {
    pub kind: &'static str,
    pub user: String,
}

/// What a user's run did.
#[derive(Debug, Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "outcome"
)]
pub enum HomeRun {
    /// The source names no home of the kind for the user: nothing to move.
    NoSourceHome { notice: String },
    Migrated {
        source_home: String,
        target_home: String,
        /// Boxed: the other outcome is a line of text.
        report: Box<MigrationReport>,
    },
}

/// What a user's verification found.
#[derive(Debug, Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "outcome"
)]
pub enum HomeCheck {
    NoSourceHome { notice: String },
    Verified(VerifyReport),
}

fn open(kind: Kind, server: &ServiceLogin) -> anyhow::Result<Dav> {
    let access = Access {
        url: location::server_url(kind, &server.url)?,
        user: Some(server.user.clone()),
        password: Some(server.password.clone()),
    };
    Ok(Dav::new(
        http_client(DEFAULT_PARALLEL, None)?,
        access,
        RetryPolicy::default(),
    ))
}

/// Both homes, each `Dav` pointed at its own; `None` when the source has none.
async fn homes(
    kind: Kind,
    source: &ServiceLogin,
    source_user: &str,
    target: &ServiceLogin,
    target_user: &str,
) -> anyhow::Result<Option<(Dav, Dav)>> {
    let (mut src, mut dst) = (open(kind, source)?, open(kind, target)?);
    let (s, t) = tokio::join!(
        user_home(&src, kind, source_user),
        user_home(&dst, kind, target_user)
    );
    let s = s.map_err(|e| anyhow::Error::new(e).context("discovery on the source"))?;
    let Some(source_home) = s else {
        return Ok(None);
    };
    let t = t.map_err(|e| anyhow::Error::new(e).context("discovery on the target"))?;
    let target_home = t.ok_or_else(|| NoTargetHome {
        kind: kind.name(),
        user: target_user.to_string(),
    })?;
    src.rebase(source_home);
    dst.rebase(target_home);
    Ok(Some((src, dst)))
}

/// Whether a server answers its service login and lets it find principals: the discovery of
/// the login's own home.
pub async fn probe(kind: Kind, server: &ServiceLogin) -> anyhow::Result<()> {
    let dav = open(kind, server)?;
    user_home(&dav, kind, &server.user).await?;
    Ok(())
}

/// Whether `user` has a home of the kind on the server.
pub async fn has_home(kind: Kind, server: &ServiceLogin, user: &str) -> anyhow::Result<bool> {
    let dav = open(kind, server)?;
    Ok(user_home(&dav, kind, user).await?.is_some())
}

fn no_source_home(kind: Kind, source: &ServiceLogin, user: &str) -> String {
    format!(
        "{user} has no {} home on the source server {}: nothing to move",
        kind.name(),
        source.url
    )
}

/// Copies every collection of the kind from the source user's home into the target user's,
/// incrementally through the state store at `state_path`; `state_restored` when that store was
/// put back from a snapshot and may be older than the target (`Options::state_restored`).
pub async fn migrate_home(
    kind: Kind,
    source: &ServiceLogin,
    source_user: &str,
    target: &ServiceLogin,
    target_user: &str,
    state_path: &Path,
    state_restored: bool,
) -> anyhow::Result<HomeRun> {
    migrate_home_counted(
        kind,
        source,
        source_user,
        target,
        target_user,
        state_path,
        state_restored,
        None,
    )
    .await
}

/// [`migrate_home`], counting objects and bytes into `counters` as it goes (a move's progress).
#[allow(clippy::too_many_arguments)]
pub async fn migrate_home_counted(
    kind: Kind,
    source: &ServiceLogin,
    source_user: &str,
    target: &ServiceLogin,
    target_user: &str,
    state_path: &Path,
    state_restored: bool,
    counters: Option<std::sync::Arc<crate::report::Progress>>,
) -> anyhow::Result<HomeRun> {
    let Some((src, dst)) = homes(kind, source, source_user, target, target_user).await? else {
        return Ok(HomeRun::NoSourceHome {
            notice: no_source_home(kind, source, source_user),
        });
    };
    // The homes name the state: the same pair of homes continues the same state.
    let (source_home, target_home) = (src.base().to_string(), dst.base().to_string());
    let options = Options {
        parallel: DEFAULT_PARALLEL,
        dry_run: false,
        state_path: state_path.to_path_buf(),
        progress: false,
        state_restored,
        counters,
    };
    let report = migrate(kind, &src, &dst, &source_home, &target_home, &options).await?;
    Ok(HomeRun::Migrated {
        source_home,
        target_home,
        report: Box::new(report),
    })
}

/// Compares the source user's home with the target user's, object by object.
pub async fn verify_home(
    kind: Kind,
    source: &ServiceLogin,
    source_user: &str,
    target: &ServiceLogin,
    target_user: &str,
) -> anyhow::Result<HomeCheck> {
    let Some((src, dst)) = homes(kind, source, source_user, target, target_user).await? else {
        return Ok(HomeCheck::NoSourceHome {
            notice: no_source_home(kind, source, source_user),
        });
    };
    Ok(HomeCheck::Verified(
        verify(kind, &src, &dst, DEFAULT_PARALLEL).await?,
    ))
}
