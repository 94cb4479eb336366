//! The `tenantry calendars ...` and `tenantry contacts ...` commands: the same `PimCommand`
//! under two names, the kind decided by the name. The main binary wires both and calls `run`;
//! `src/bin/tenantry-pim.rs` does the same standalone.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tenantry_files::retry::RetryPolicy;
use tenantry_files::webdav::http_client;

use crate::dav::Dav;
use crate::kind::Kind;
use crate::location::{self, Secret};
use crate::migrate::{migrate, Options, DEFAULT_PARALLEL};
use crate::state::state_file;
use crate::verify::verify;

#[derive(Debug, Subcommand)]
pub enum PimCommand {
    /// Copy collections (one, or every one below a user's home) to a target, incrementally.
    Migrate(MigrateArgs),
    /// Compare source and target: every object byte for byte, every collection's properties.
    Verify(Pair),
}

#[derive(Debug, Args)]
pub struct Pair {
    /// Source: caldav://user@host[:port]/path/ (calendars) or carddav://... (contacts); the
    /// `s` forms (caldavs://, carddavs://) use TLS. A collection, or a home holding several.
    #[arg(long)]
    pub source: String,
    /// Target: a collection (created if absent), or the target user's home.
    #[arg(long)]
    pub target: String,
    /// File holding the source password (else env TENANTRY_SOURCE_PASSWORD).
    #[arg(long)]
    pub source_password_file: Option<PathBuf>,
    /// File holding the target password (else env TENANTRY_TARGET_PASSWORD).
    #[arg(long)]
    pub target_password_file: Option<PathBuf>,
    /// Objects in flight at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// PEM file of a CA to trust besides the system roots (self-hosted servers with a private CA).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub pair: Pair,
    /// Where the state store (what was copied, sync tokens) lives; calendars and contacts may
    /// share it.
    #[arg(long, default_value = ".tenantry-pim")]
    pub state_dir: PathBuf,
    /// Show what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Attempts per request before an object is reported as failed.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
}

/// Exit codes: 0 everything copied (or identical), 1 something was not, 2 could not run.
pub async fn run(kind: Kind, cmd: PimCommand) -> ExitCode {
    let r = match cmd {
        PimCommand::Migrate(a) => run_migrate(kind, a).await,
        PimCommand::Verify(a) => run_verify(kind, a).await,
    };
    r.unwrap_or_else(|e| {
        eprintln!("error: {}", crate::report::for_terminal(&format!("{e:#}")));
        ExitCode::from(2)
    })
}

fn open_pair(kind: Kind, p: &Pair, retry: RetryPolicy) -> anyhow::Result<(Dav, Dav)> {
    let pem = match &p.ca_cert {
        Some(f) => Some(read(f)?),
        None => None,
    };
    let client = http_client(p.parallel, pem.as_deref())?;
    let s = location::parse(
        kind,
        &p.source,
        Secret {
            file: p.source_password_file.as_deref(),
            env: "TENANTRY_SOURCE_PASSWORD",
        },
    )
    .context("--source")?;
    let t = location::parse(
        kind,
        &p.target,
        Secret {
            file: p.target_password_file.as_deref(),
            env: "TENANTRY_TARGET_PASSWORD",
        },
    )
    .context("--target")?;
    Ok((
        Dav::new(client.clone(), s, retry),
        Dav::new(client, t, retry),
    ))
}

/// Finds each side's home when its location names only a server (RFC 6764).
async fn discover(kind: Kind, s: &mut Dav, t: &mut Dav) -> anyhow::Result<()> {
    for (side, dav) in [("source", s), ("target", t)] {
        if let Some(home) = crate::discovery::resolve_home(dav, kind)
            .await
            .with_context(|| format!("--{side}"))?
        {
            eprintln!(
                "{side}: discovered the {} home {}",
                kind.name(),
                home.path()
            );
        }
    }
    Ok(())
}

fn read(f: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(f).with_context(|| format!("reading CA certificate {}", f.display()))
}

async fn run_migrate(kind: Kind, a: MigrateArgs) -> anyhow::Result<ExitCode> {
    let retry = RetryPolicy {
        attempts: a.retries.max(1),
        ..Default::default()
    };
    let (mut s, mut t) = open_pair(kind, &a.pair, retry)?;
    discover(kind, &mut s, &mut t).await?;
    let (sn, tn) = (
        location::display_name(kind, &a.pair.source),
        location::display_name(kind, &a.pair.target),
    );
    let opts = Options {
        parallel: a.pair.parallel,
        dry_run: a.dry_run,
        state_path: state_file(&a.state_dir, kind, &sn, &tn),
        progress: !a.pair.json || std::io::stderr().is_terminal(),
        // The CLI's state file is its own last run's: a changed ETag is a change on the target.
        state_restored: false,
        counters: None,
    };
    let report = migrate(kind, &s, &t, &sn, &tn, &opts).await?;
    if a.pair.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_verify(kind: Kind, a: Pair) -> anyhow::Result<ExitCode> {
    let (mut s, mut t) = open_pair(kind, &a, RetryPolicy::default())?;
    discover(kind, &mut s, &mut t).await?;
    let rep = verify(kind, &s, &t, a.parallel).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", rep.to_text());
    }
    Ok(if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
