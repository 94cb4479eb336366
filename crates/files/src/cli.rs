//! The `tenantry files ...` commands. The main binary wires `FilesCommand` into its own CLI and
//! calls `run`; `src/bin/tenantry-files.rs` does the same standalone.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::endpoint::{Endpoint, UploadPolicy};
use crate::graph::args::{GraphArgs, Side};
use crate::limits::{Limits, DEFAULT_MAX_DEPTH, DEFAULT_MAX_ENTRIES};
use crate::location::{self, Secret};
use crate::migrate::{migrate, MigrateOptions, DEFAULT_PARALLEL};
use crate::preflight::{map_entries, OnInvalid};
use crate::report::{for_terminal, write_findings};
use crate::retry::RetryPolicy;
use crate::state::state_file;
use crate::verify::verify;
use crate::webdav::http_client;

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Copy a document library (folder or WebDAV tree) to a target, incrementally.
    Migrate(MigrateArgs),
    /// Run the SharePoint pre-flight on a source alone; exits 2 if anything would be refused.
    Check(CheckArgs),
    /// Compare source and target: structure, sizes, content of every file, modification times.
    /// Content is compared by BLAKE3 over both sides, or, where a side is SharePoint/OneDrive,
    /// by the quickXorHash the service reports, computed over the other side only (nothing is
    /// downloaded from the service).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct Pair {
    /// Source: a folder path, or webdav://user@host[:port]/path (webdavs:// for TLS).
    #[arg(long)]
    pub source: String,
    /// Target: a folder path, or webdav://user@host[:port]/path (webdavs:// for TLS).
    #[arg(long)]
    pub target: String,
    /// File holding the source password (else env TENANTRY_SOURCE_PASSWORD).
    #[arg(long)]
    pub source_password_file: Option<PathBuf>,
    /// File holding the target password (else env TENANTRY_TARGET_PASSWORD).
    #[arg(long)]
    pub target_password_file: Option<PathBuf>,
    /// Transfers in flight at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// What to do with names SharePoint refuses.
    #[arg(long, value_enum, default_value_t = OnInvalid::Fail)]
    pub on_invalid: OnInvalid,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// PEM file of a CA to trust besides the system roots (self-hosted servers with a private CA).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// App-only credentials for sharepoint:// and onedrive:// locations.
    #[command(flatten)]
    pub graph: GraphArgs,
}

/// Bounds on what a server can make a run hold in memory.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Most files and folders a WebDAV listing may have; past it the run stops before copying
    /// (a listing costs about 200 bytes of memory per entry).
    #[arg(long, default_value_t = DEFAULT_MAX_ENTRIES)]
    pub max_entries: u64,
    /// Most folder levels a WebDAV listing descends; deeper stops the run before copying.
    #[arg(long, default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_entries: self.max_entries,
            max_depth: self.max_depth,
            ..Limits::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub pair: Pair,
    /// Where the state store (what was copied) lives.
    #[arg(long, default_value = ".tenantry-files")]
    pub state_dir: PathBuf,
    /// Show what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete target files and folders that are not in the source.
    #[arg(long)]
    pub delete: bool,
    /// Also re-hash files whose size and time are unchanged, and copy those whose content differs.
    #[arg(long)]
    pub checksum: bool,
    /// Attempts per request or file before it is reported as failed.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
    /// How uploads reach their final name on a WebDAV target: `staged` writes a temporary name
    /// then MOVEs it; `direct` PUTs to the final name (only for servers that write a PUT aside
    /// and rename it when complete, as Apache mod_dav_fs and nginx do); `auto` finds out with
    /// one probe upload.
    #[arg(long, value_enum, default_value_t = UploadPolicy::Auto)]
    pub upload: UploadPolicy,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A folder path or webdav:// URL.
    pub source: String,
    #[arg(long)]
    pub source_password_file: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// PEM file of a CA to trust besides the system roots.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub graph: GraphArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pair: Pair,
    /// The migration's state store, when there is one: SharePoint/OneDrive files the service
    /// rewrote after upload (Office documents, PDFs) are recorded there and reported as
    /// changed by the service rather than as differences.
    #[arg(long, default_value = ".tenantry-files")]
    pub state_dir: PathBuf,
}

/// Exit codes: 0 done, 1 some files failed or differ, 2 refused before anything moved.
pub async fn run(cmd: FilesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FilesCommand::Migrate(a) => run_migrate(a).await,
        FilesCommand::Check(a) => run_check(a).await,
        FilesCommand::Verify(a) => run_verify(a).await,
    }
}

fn client(parallel: usize, ca: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let pem = match ca {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("reading CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    Ok(http_client(parallel, pem.as_deref())?)
}

type Opened = std::sync::Arc<dyn Endpoint>;

/// `state`: the run's state store, where a Graph endpoint keeps its delta link and upload
/// sessions; `verifying`: Graph endpoints list afresh and only read the store.
fn open_pair(
    p: &Pair,
    retry: RetryPolicy,
    upload: UploadPolicy,
    state: Option<&std::path::Path>,
    verifying: bool,
) -> anyhow::Result<(Opened, Opened)> {
    let client = client(p.parallel, p.ca_cert.as_deref())?;
    let graph = |loc: &str, side| {
        let open = if verifying {
            crate::graph::location::open_for_verify
        } else {
            crate::graph::location::open
        };
        open(loc, side, &p.graph, &client, state)
    };
    let s = if crate::graph::location::is_graph(&p.source) {
        graph(&p.source, Side::Source)?
    } else {
        open_plain(
            &p.source,
            p.source_password_file.as_deref(),
            "TENANTRY_SOURCE_PASSWORD",
            &client,
            retry,
            upload,
            p.limits.limits(),
        )?
    };
    let t = if crate::graph::location::is_graph(&p.target) {
        graph(&p.target, Side::Target)?
    } else {
        open_plain(
            &p.target,
            p.target_password_file.as_deref(),
            "TENANTRY_TARGET_PASSWORD",
            &client,
            retry,
            upload,
            p.limits.limits(),
        )?
    };
    Ok((s, t))
}

fn open_plain(
    loc: &str,
    file: Option<&std::path::Path>,
    env: &'static str,
    client: &reqwest::Client,
    retry: RetryPolicy,
    upload: UploadPolicy,
    limits: Limits,
) -> anyhow::Result<Opened> {
    location::open(loc, Secret { file, env }, client, retry, upload, limits)
}

async fn run_migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    let retry = RetryPolicy {
        attempts: a.retries.max(1),
        ..Default::default()
    };
    let (sn, tn) = (
        location::display_name(&a.pair.source),
        location::display_name(&a.pair.target),
    );
    let state_path = state_file(&a.state_dir, &sn, &tn);
    let (s, t) = open_pair(&a.pair, retry, a.upload, Some(&state_path), false)?;
    let opts = MigrateOptions {
        parallel: a.pair.parallel,
        dry_run: a.dry_run,
        delete: a.delete,
        checksum: a.checksum,
        on_invalid: a.pair.on_invalid,
        state_path,
        retry,
        progress: !a.pair.json || std::io::stderr().is_terminal(),
        counters: None,
    };
    let report = migrate(s, t, &sn, &tn, &opts).await?;
    if a.pair.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.refused_by_preflight {
        ExitCode::from(2)
    } else if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let client = client(1, a.ca_cert.as_deref())?;
    let s = if crate::graph::location::is_graph(&a.source) {
        crate::graph::location::open(&a.source, Side::Source, &a.graph, &client, None)?
    } else {
        location::open(
            &a.source,
            Secret {
                file: a.source_password_file.as_deref(),
                env: "TENANTRY_SOURCE_PASSWORD",
            },
            &client,
            RetryPolicy::default(),
            UploadPolicy::Auto,
            a.limits.limits(),
        )?
    };
    let listing = s
        .list()
        .await
        .map_err(|e| anyhow::anyhow!("listing the source: {e}"))?;
    for r in &listing.refused {
        eprint!(
            "{}",
            for_terminal(&format!("source listing: {}: {}\n", r.path, r.reason))
        );
    }
    let list = listing.entries;
    let m = map_entries(&list, OnInvalid::Fail);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m.findings)?);
    } else {
        let mut out = String::new();
        write_findings(&mut out, &m.findings);
        if m.findings.is_empty() {
            out = format!("pre-flight: {} entries, no problems\n", list.len());
        }
        print!("{}", for_terminal(&out));
    }
    Ok(if m.findings.is_empty() && listing.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn run_verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (sn, tn) = (
        location::display_name(&a.pair.source),
        location::display_name(&a.pair.target),
    );
    let state_path = state_file(&a.state_dir, &sn, &tn);
    // Only a store a migration left: verify creates none.
    let state = state_path.exists().then_some(state_path.as_path());
    let (s, t) = open_pair(
        &a.pair,
        RetryPolicy::default(),
        UploadPolicy::Auto,
        state,
        true,
    )?;
    let rep = verify(s, t, a.pair.on_invalid, a.pair.parallel)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if a.pair.json {
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
