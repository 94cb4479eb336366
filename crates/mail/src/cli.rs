//! `tenantry mail migrate|verify`: argument parsing, credentials, batch files, output.
//! Secrets come from files or the environment only, never from the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use crate::exchange::location::is_exchange;
use crate::exchange::mailbox::Mailbox;
use crate::report::{spawn_ticker, Progress, RunReport};
use crate::session::{is_loopback, AppToken, Auth, Endpoint, Security, Side};
use crate::sync::{migrate_mailbox, Options, EXCHANGE_APPEND_LIMIT};
use crate::verify::{verify_mailbox, VerifyReport};
use tenantry_graph::token::{AppTokens, EXCHANGE_ONLINE_SCOPE};

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Copy mailboxes from a source IMAP server to a target (incremental, resumable).
    // Boxed (both): IMAP and Exchange options make them the largest of tenantry's commands.
    Migrate(Box<MigrateArgs>),
    /// Compare source and target; exits non-zero and lists every difference.
    Verify(Box<VerifyArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AuthMethod {
    /// PLAIN when offered, else LOGIN; XOAUTH2 when a token file is given.
    Auto,
    Login,
    Plain,
    Xoauth2,
    Oauthbearer,
}

/// What an imap(s):// side is.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ImapKind {
    /// Exchange Online's IMAP when the host is outlook.office365.com, else plain IMAP.
    Auto,
    Imap,
    /// Exchange Online's IMAP: app-only XOAUTH2 from --tenant-id/--client-id and the client
    /// secret (unless a password or token file is given); as a target also its flags, folder
    /// names and 35 MB append limit.
    ExchangeImap,
}

/// Exchange Online's IMAP host (learn.microsoft.com: "POP, IMAP, and SMTP settings").
pub const EXCHANGE_IMAP_HOST: &str = "outlook.office365.com";

impl ImapKind {
    pub fn is_exchange(self, host: &str) -> bool {
        match self {
            ImapKind::Auto => host.eq_ignore_ascii_case(EXCHANGE_IMAP_HOST),
            ImapKind::Imap => false,
            ImapKind::ExchangeImap => true,
        }
    }
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    /// imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT] (the user is omitted with --batch).
    #[arg(long)]
    pub source: String,
    /// As --source, or exchange://USER@DOMAIN: an Exchange Online mailbox through Microsoft
    /// Graph with app-only credentials (--tenant-id, --client-id, TENANTRY_CLIENT_SECRET).
    #[arg(long)]
    pub target: String,
    /// File holding the source password (default: env TENANTRY_SOURCE_PASSWORD).
    #[arg(long)]
    pub source_password_file: Option<PathBuf>,
    #[arg(long)]
    pub target_password_file: Option<PathBuf>,
    /// Log in as this admin / master user on behalf of the mailbox user (SASL PLAIN authzid);
    /// the password is the admin's.
    #[arg(long)]
    pub source_admin: Option<String>,
    #[arg(long)]
    pub target_admin: Option<String>,
    #[arg(long, value_enum, default_value_t = AuthMethod::Auto)]
    pub source_auth: AuthMethod,
    #[arg(long, value_enum, default_value_t = AuthMethod::Auto)]
    pub target_auth: AuthMethod,
    /// OAuth2 access token file (XOAUTH2 / OAUTHBEARER).
    #[arg(long)]
    pub source_token_file: Option<PathBuf>,
    #[arg(long)]
    pub target_token_file: Option<PathBuf>,
    /// What the source is (auto: Exchange Online's IMAP for outlook.office365.com).
    #[arg(long, value_enum, default_value_t = ImapKind::Auto)]
    pub source_kind: ImapKind,
    /// What the target is: exchange-imap keeps only the flags Exchange keeps (the others are
    /// listed as not carried), renames folder names it refuses, and quarantines messages above
    /// --max-message-size (default 35000000 there).
    #[arg(long, value_enum, default_value_t = ImapKind::Auto)]
    pub target_kind: ImapKind,
    /// Extra trusted CA certificates (PEM).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Upgrade imap:// connections with STARTTLS (always done for non-loopback hosts).
    #[arg(long)]
    pub starttls: bool,
    /// Allow imap:// without TLS to a non-loopback host.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Map a source folder to a target folder by name: `SOURCE=TARGET` (decoded names, each
    /// with its own server's separator). Repeatable; wins over role mapping.
    #[arg(long = "folder-map", value_name = "SOURCE=TARGET")]
    pub folder_map: Vec<String>,
    /// Leave a source folder out (decoded name, source separator; `NAME/*` adds its
    /// subfolders). Repeatable. E.g. Exchange's `Files`, `Calendar/*`, `Contacts/*`.
    #[arg(long, value_name = "FOLDER")]
    pub exclude: Vec<String>,
    /// CSV: source_user,target_user[,source_password,target_password]; one mailbox per line.
    #[arg(long)]
    pub batch: Option<PathBuf>,
    /// Mailboxes processed at once in batch mode.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// Connections per side and mailbox (folders run in parallel).
    #[arg(long, default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// Longest silence, in seconds, from a server that owes an answer (1 to 604800, a week).
    #[arg(long = "timeout", value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout_secs: u64,
    /// Longest wait, in seconds, for one command's complete answer (a server that trickles
    /// data stays within --timeout; this cuts it off). 1 to 604800; extended by one second
    /// per 64 KiB of message data the command moves.
    #[arg(long = "command-timeout", value_name = "SECS", default_value_t = DEFAULT_COMMAND_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub command_timeout_secs: u64,
    #[command(flatten)]
    pub exchange: crate::exchange::location::ExchangeArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

const DEFAULT_CONNECTIONS: usize = 4;
const DEFAULT_TIMEOUT_SECS: u64 = 300;
const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 1800;

/// Upper bound of --timeout and --command-timeout: longer waits are no use, and far larger
/// ones would overflow the clock.
const MAX_TIMEOUT_SECS: u64 = 7 * 86400;

/// Upper bound of --max-message-size: a literal buffer of this size (and a quarter) is the
/// most a server can make tenantry reserve.
const MAX_MESSAGE_SIZE: u64 = 1 << 32;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Where the per-mailbox state (SQLite) lives. Default: $XDG_STATE_HOME/tenantry/mail.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Show what would be copied; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report, don't send, messages larger than this many bytes. Default 268435456 (256 MiB);
    /// 35000000 for an Exchange Online target (which refuses larger APPENDs without announcing
    /// a limit: such messages are quarantined and listed). At most 4294967296 (4 GiB); a
    /// server's literals may exceed it by a quarter at most (a larger body is read, thrown away
    /// and reported).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_MESSAGE_SIZE))]
    pub max_message_size: Option<u64>,
    /// Bytes of messages per pipelined batch (tuning and tests).
    #[arg(long, default_value_t = 4 << 20, hide = true)]
    pub batch_bytes: u64,
    /// Messages per pipelined batch (tuning and tests).
    #[arg(long, default_value_t = 500, hide = true)]
    pub batch_count: usize,
    /// Ignore APPENDUID, as if the target lacked UIDPLUS (tests the fallback).
    #[arg(long, hide = true)]
    pub ignore_appenduid: bool,
    /// Send single pipelined APPENDs even when the target offers MULTIAPPEND.
    #[arg(long, hide = true)]
    pub no_multiappend: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// One parsed `imap(s)://user@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

pub fn parse_url(s: &str) -> Result<Url> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("imaps://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("imap://") {
        (false, r)
    } else {
        bail!("'{s}': expected imaps://USER@HOST[:PORT] or imap://USER@HOST[:PORT]");
    };
    let rest = rest.trim_end_matches('/');
    // The last '@' separates the user, so `imaps://alice@example.com@host` works too.
    let (user, hostport) = match rest.rfind('@') {
        Some(i) => (Some(percent_decode(&rest[..i])), &rest[i + 1..]),
        None => (None, rest),
    };
    // A password in the URL would show in the process list, errors and state-file names.
    if user.as_deref().is_some_and(|u| u.contains(':')) {
        bail!(
            "a password in the URL is refused: use --source-password-file / --target-password-file \
             or TENANTRY_SOURCE_PASSWORD / TENANTRY_TARGET_PASSWORD"
        );
    }
    let default_port = if tls { 993 } else { 143 };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']').context("unterminated IPv6 address")?;
        (
            h.to_string(),
            p.strip_prefix(':').map(str::parse).transpose()?,
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(p.parse().with_context(|| format!("bad port in '{s}'"))?),
            ),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        bail!("'{s}': no host");
    }
    Ok(Url {
        tls,
        user: user.filter(|u| !u.is_empty()),
        host,
        port: port.unwrap_or(default_port),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_secret(path: &Path) -> Result<String> {
    let s =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

struct SideArgs<'a> {
    side: Side,
    url: &'a str,
    password_file: &'a Option<PathBuf>,
    admin: &'a Option<String>,
    auth: AuthMethod,
    token_file: &'a Option<PathBuf>,
    kind: ImapKind,
    env: &'a str,
}

fn endpoint(
    a: &SideArgs,
    conn: &ConnArgs,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<Endpoint> {
    let url = parse_url(a.url).with_context(|| format!("--{}", a.side))?;
    let user = user
        .map(str::to_string)
        .or(url.user.clone())
        .with_context(|| format!("{}: no user in {}", a.side, a.url))?;
    let security = if url.tls {
        Security::Tls
    } else if conn.starttls || !is_loopback(&url.host) {
        if conn.insecure_plaintext && !conn.starttls {
            Security::Plain
        } else {
            Security::StartTls
        }
    } else {
        Security::Plain
    };
    let secret = || -> Result<String> {
        if let Some(p) = password {
            return Ok(p.to_string());
        }
        if let Some(f) = a.password_file {
            return read_secret(f);
        }
        std::env::var(a.env).with_context(|| {
            format!(
                "{}: no password: use --{}-password-file or {}",
                a.side, a.side, a.env
            )
        })
    };
    let token = || -> Result<String> {
        let f = a
            .token_file
            .as_ref()
            .with_context(|| format!("{}: OAuth2 needs --{}-token-file", a.side, a.side))?;
        read_secret(f)
    };
    let exchange = a.kind.is_exchange(&url.host);
    // App-only tokens: Exchange Online with neither a password file nor an admin given, or
    // XOAUTH2 asked for without a token file.
    let app = || -> Result<Auth> {
        let cfg = conn.exchange.config(a.side).with_context(|| {
            format!(
                "{}: XOAUTH2 needs --{}-token-file, or app credentials",
                a.side, a.side
            )
        })?;
        Ok(Auth::XOAuth2App(AppToken(Arc::new(AppTokens::new(
            cfg,
            EXCHANGE_ONLINE_SCOPE,
        )))))
    };
    let auth = match (a.auth, a.token_file) {
        // A password from the batch file is the user's own: log in as the user.
        _ if password.is_some() => Auth::Password(secret()?),
        // An app token opens every mailbox of the tenant: it goes to Exchange Online only.
        (AuthMethod::Xoauth2, None) if exchange => app()?,
        (AuthMethod::Auto, None) if exchange && a.password_file.is_none() && a.admin.is_none() => {
            app()?
        }
        (AuthMethod::Xoauth2, _) | (AuthMethod::Auto, Some(_)) => Auth::XOAuth2(token()?),
        (AuthMethod::Oauthbearer, _) => Auth::OAuthBearer(token()?),
        _ => match a.admin {
            Some(admin) => Auth::Admin {
                admin: admin.clone(),
                password: secret()?,
            },
            None => Auth::Password(secret()?),
        },
    };
    Ok(Endpoint {
        side: a.side,
        host: url.host,
        port: url.port,
        user,
        security,
        auth,
        ca_file: conn.ca_file.clone(),
    })
}

fn source_args(conn: &ConnArgs) -> SideArgs<'_> {
    SideArgs {
        side: Side::Source,
        url: &conn.source,
        password_file: &conn.source_password_file,
        admin: &conn.source_admin,
        auth: conn.source_auth,
        token_file: &conn.source_token_file,
        kind: conn.source_kind,
        env: "TENANTRY_SOURCE_PASSWORD",
    }
}

/// Builds the list of (source, target) mailboxes from the flags or the batch file.
fn jobs(conn: &ConnArgs) -> Result<Vec<(Endpoint, Endpoint)>> {
    let src = source_args(conn);
    let tgt = SideArgs {
        side: Side::Target,
        url: &conn.target,
        password_file: &conn.target_password_file,
        admin: &conn.target_admin,
        auth: conn.target_auth,
        token_file: &conn.target_token_file,
        kind: conn.target_kind,
        env: "TENANTRY_TARGET_PASSWORD",
    };
    jobs_with(conn, &src, |user, password| {
        endpoint(&tgt, conn, user, password)
    })
}

/// The (source, target) pairs of the flags or the batch file, the target built by `target`
/// from the line's target user and password (both `None` without a batch file).
fn jobs_with<T>(
    conn: &ConnArgs,
    src: &SideArgs,
    target: impl Fn(Option<&str>, Option<&str>) -> Result<T>,
) -> Result<Vec<(Endpoint, T)>> {
    let Some(batch) = &conn.batch else {
        return Ok(vec![(
            endpoint(src, conn, None, None)?,
            target(None, None)?,
        )]);
    };
    let rows = batch_rows(batch)?;
    let mut out = Vec::new();
    for row in rows {
        let cols = &row.fields;
        if cols.len() < 2 || cols.len() > 4 || cols[0].is_empty() || cols[1].is_empty() {
            bail!(
                "{}: line {}: expected source_user,target_user[,source_password,target_password], found {} field(s)",
                batch.display(),
                row.line,
                cols.len()
            );
        }
        let pw = |i: usize| Some(row.field(i)).filter(|p| !p.is_empty());
        out.push((
            endpoint(src, conn, Some(&cols[0]), pw(2))?,
            target(Some(&cols[1]), pw(3))?,
        ));
    }
    Ok(out)
}

fn folder_map(conn: &ConnArgs) -> Result<BTreeMap<String, String>> {
    conn.folder_map
        .iter()
        .map(|m| {
            let (a, b) = m
                .split_once('=')
                .with_context(|| format!("--folder-map '{m}': expected SOURCE=TARGET"))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect()
}

fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("tenantry/mail");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/tenantry/mail"),
        None => PathBuf::from(".tenantry-state/mail"),
    }
}

pub fn state_file(dir: &Path, src: &Endpoint, tgt: &Endpoint) -> PathBuf {
    let clean = |s: String| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    dir.join(format!(
        "{}__{}.sqlite",
        clean(format!("{}@{}_{}", src.user, src.host, src.port)),
        clean(format!("{}@{}_{}", tgt.user, tgt.host, tgt.port))
    ))
}

/// Runs every job, at most `parallel` at once, each on its own task (so mailboxes spread over
/// the runtime's threads); results come back in input order.
async fn for_each_parallel<T, F, Fut>(items: Vec<T>, parallel: usize, f: F) -> Vec<Fut::Output>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let n = items.len();
    let f = Arc::new(f);
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let (f, sem) = (f.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, f(item).await)
        });
    }
    let mut out: Vec<(usize, Fut::Output)> = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        match r {
            Ok(x) => out.push(x),
            // A panicking job is a bug; surface it rather than report a partial run as fine.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

pub async fn run(cmd: MailCommand) -> Result<ExitCode> {
    let conn = match &cmd {
        MailCommand::Migrate(a) => &a.conn,
        MailCommand::Verify(a) => &a.conn,
    };
    let to_exchange = is_exchange(&conn.target);
    if is_exchange(&conn.source) {
        return match cmd {
            MailCommand::Migrate(a) if to_exchange => migrate_exchange_to_exchange(*a).await,
            MailCommand::Migrate(_) => {
                bail!("exchange:// as a source needs an exchange:// target (mailbox import/export)")
            }
            MailCommand::Verify(a) if to_exchange => verify_exchange_to_exchange(*a).await,
            MailCommand::Verify(_) => {
                bail!("exchange:// as a source needs an exchange:// target (mailbox import/export)")
            }
        };
    }
    match cmd {
        MailCommand::Migrate(a) if to_exchange => migrate_to_exchange(*a).await,
        MailCommand::Verify(a) if to_exchange => verify_exchange(*a).await,
        MailCommand::Migrate(a) => migrate(*a).await,
        MailCommand::Verify(a) => verify(*a).await,
    }
}

/// (IMAP source, Exchange mailbox) pairs: the UPN from `exchange://{upn}` or the batch line.
fn exchange_jobs(conn: &ConnArgs) -> Result<Vec<(Endpoint, Mailbox)>> {
    let client = conn.exchange.client(Side::Target)?;
    let upn = crate::exchange::location::parse(&conn.target)?;
    jobs_with(conn, &source_args(conn), |user, _| {
        let upn = user.map(str::to_string).or(upn.clone()).context(
            "target: exchange:// needs a userPrincipalName (exchange://USER@DOMAIN, or --batch)",
        )?;
        Ok(Mailbox::new(client.clone(), &upn).with_upload_budget(
            conn.exchange.exchange_upload_budget,
            Duration::from_secs(conn.exchange.exchange_upload_window),
        ))
    })
}

fn exchange_state_file(dir: &Path, src: &Endpoint, mbx: &Mailbox) -> PathBuf {
    let tgt = Endpoint {
        side: Side::Target,
        host: "exchange".into(),
        port: 0,
        user: mbx.upn().to_string(),
        security: Security::Tls,
        auth: Auth::Password(String::new()),
        ca_file: None,
    };
    state_file(dir, src, &tgt)
}

fn options(conn: &ConnArgs) -> Result<Options> {
    Ok(Options {
        folder_map: folder_map(conn)?,
        exclude: conn.exclude.clone(),
        idle_timeout: Duration::from_secs(conn.timeout_secs.max(1)),
        command_timeout: Duration::from_secs(conn.command_timeout_secs.max(1)),
        ..Default::default()
    })
}

async fn migrate_to_exchange(a: MigrateArgs) -> Result<ExitCode> {
    refuse_imap_options(&a.conn, true)?;
    if a.ignore_appenduid || a.no_multiappend {
        bail!("--ignore-appenduid and --no-multiappend apply to an IMAP target only");
    }
    let jobs = exchange_jobs(&a.conn)?;
    let opts = Options {
        dry_run: a.dry_run,
        batch_bytes: a.batch_bytes.max(1),
        batch_count: a.batch_count.max(1),
        max_message_size: a.max_message_size,
        ..options(&a.conn)?
    };
    let dir = a.state_dir.clone().unwrap_or_else(default_state_dir);
    let progress = Arc::new(Progress::default());
    let ticker = spawn_ticker(progress.clone(), a.conn.quiet || a.conn.json);
    let (opts, p) = (Arc::new(opts), progress.clone());
    let mailboxes = for_each_parallel(jobs, a.conn.parallel, move |(s, t)| {
        let (opts, progress) = (opts.clone(), p.clone());
        let path = exchange_state_file(&dir, &s, &t);
        async move { crate::exchange::sync::migrate_mailbox(&s, &t, &path, &opts, progress).await }
    })
    .await;
    if let Some(t) = ticker {
        t.abort();
    }
    print_run(
        RunReport {
            mailboxes,
            dry_run: a.dry_run,
        },
        a.conn.json,
    )
}

/// (source UPN, target UPN) of each Exchange → Exchange copy: the two exchange:// locations,
/// or the batch file's `source_user,target_user` lines (no passwords: both sides use the app
/// credentials).
fn export_users(conn: &ConnArgs) -> Result<Vec<(String, String)>> {
    use crate::exchange::location::parse;
    let (su, tu) = (parse(&conn.source)?, parse(&conn.target)?);
    let Some(batch) = &conn.batch else {
        let (Some(su), Some(tu)) = (su, tu) else {
            bail!("Exchange → Exchange needs exchange://USER@DOMAIN on both sides (or --batch)");
        };
        return Ok(vec![(su, tu)]);
    };
    if su.is_some() || tu.is_some() {
        bail!("with --batch, give --source exchange:// and --target exchange:// without a user (the users come from the batch file)");
    }
    let rows = batch_rows(batch)?;
    let mut out = Vec::new();
    for row in rows {
        let cols = &row.fields;
        let line = |what: &str| format!("{}: line {}: {what}", batch.display(), row.line);
        if cols.len() > 2 && cols[2..].iter().any(|c| !c.is_empty()) {
            bail!(line("exchange:// mailboxes take no passwords (the app credentials are used): expected source_user,target_user"));
        }
        if cols.len() < 2 || cols[0].is_empty() || cols[1].is_empty() {
            bail!(line("expected source_user,target_user"));
        }
        let upn = |u: &str| {
            parse(&format!("exchange://{u}"))
                .map_err(|e| anyhow::anyhow!(line(&format!("{e:#}"))))?
                .context(line("empty user"))
        };
        let (source, target) = (upn(&cols[0])?, upn(&cols[1])?);
        // Two lines for one mailbox would run at once, each importing every item.
        let lower = |u: &str| u.to_lowercase();
        if let Some((s, t)) = out.iter().find(|(s, t): &&(String, String)| {
            lower(s) == lower(&source) || lower(t) == lower(&target)
        }) {
            bail!(line(&format!(
                "{source} → {target} repeats a mailbox of an earlier line ({s} → {t}): each source and each target once"
            )));
        }
        out.push((source, target));
    }
    Ok(out)
}

/// Options that mean something for IMAP only: an exchange:// side refuses them rather than
/// ignore them. `target_only`: only the target is exchange:// (the IMAP source keeps its own).
fn refuse_imap_options(conn: &ConnArgs, target_only: bool) -> Result<()> {
    let mut given: Vec<&str> = Vec::new();
    let mut check = |set: bool, name: &'static str| {
        if set {
            given.push(name)
        }
    };
    check(
        conn.target_password_file.is_some(),
        "--target-password-file",
    );
    check(conn.target_admin.is_some(), "--target-admin");
    check(conn.target_auth != AuthMethod::Auto, "--target-auth");
    check(conn.target_token_file.is_some(), "--target-token-file");
    check(conn.target_kind != ImapKind::Auto, "--target-kind");
    // IMAP → Exchange copies one folder at a time with Graph's 4 requests per mailbox.
    check(conn.connections != DEFAULT_CONNECTIONS, "--connections");
    if !target_only {
        check(
            conn.source_password_file.is_some(),
            "--source-password-file",
        );
        check(conn.source_admin.is_some(), "--source-admin");
        check(conn.source_auth != AuthMethod::Auto, "--source-auth");
        check(conn.source_token_file.is_some(), "--source-token-file");
        check(conn.source_kind != ImapKind::Auto, "--source-kind");
        check(conn.ca_file.is_some(), "--ca-file");
        check(conn.starttls, "--starttls");
        check(conn.insecure_plaintext, "--insecure-plaintext");
        check(!conn.folder_map.is_empty(), "--folder-map");
        check(!conn.exclude.is_empty(), "--exclude");
        check(conn.timeout_secs != DEFAULT_TIMEOUT_SECS, "--timeout");
        check(
            conn.command_timeout_secs != DEFAULT_COMMAND_TIMEOUT_SECS,
            "--command-timeout",
        );
    }
    if given.is_empty() {
        return Ok(());
    }
    let side = if target_only {
        "an exchange:// target"
    } else {
        "Exchange → Exchange (mailbox import/export)"
    };
    bail!(
        "{} not supported for {side}: they apply to IMAP only (Graph's own limits and timeouts govern these requests; 4 per mailbox)",
        given.join(", ") + if given.len() == 1 { " is" } else { " are" }
    )
}

/// The mailboxes of each Exchange → Exchange copy, opened.
async fn export_pair(
    conn: &ConnArgs,
    (su, tu): &(String, String),
) -> Result<(
    crate::exchange::mailbox_copy::ExportMailbox,
    crate::exchange::mailbox_copy::ExportMailbox,
)> {
    use crate::exchange::mailbox_copy::ExportMailbox;
    let src = ExportMailbox::open(conn.exchange.client(Side::Source)?, su).await?;
    let dst = ExportMailbox::open(conn.exchange.client(Side::Target)?, tu).await?;
    Ok((src, dst))
}

async fn verify_exchange_to_exchange(a: VerifyArgs) -> Result<ExitCode> {
    refuse_imap_options(&a.conn, false)?;
    let users = export_users(&a.conn)?;
    let conn = Arc::new(a.conn);
    let c = conn.clone();
    let results = for_each_parallel(users, conn.parallel, move |pair| {
        let conn = c.clone();
        async move {
            let describe = || format!("exchange://{} -> exchange://{}", pair.0, pair.1);
            let (src, dst) = export_pair(&conn, &pair)
                .await
                .map_err(|e| format!("{}: {e:#}", describe()))?;
            crate::exchange::mailbox_copy::verify_mailbox(&src, &dst)
                .await
                .map_err(|e| format!("{}: {e:#}", describe()))
        }
    })
    .await;
    print_verify(results, conn.json)
}

/// Exchange → Exchange: the mailbox pairs of the two exchange:// locations or the batch file,
/// `--parallel` at once.
async fn migrate_exchange_to_exchange(a: MigrateArgs) -> Result<ExitCode> {
    use crate::exchange::mailbox_copy::{migrate_mailbox_with, CopyMode};
    refuse_imap_options(&a.conn, false)?;
    let mut refused: Vec<&str> = Vec::new();
    if a.max_message_size.is_some() {
        refused.push("--max-message-size");
    }
    if a.ignore_appenduid {
        refused.push("--ignore-appenduid");
    }
    if a.no_multiappend {
        refused.push("--no-multiappend");
    }
    if !refused.is_empty() {
        bail!(
            "{}: IMAP options, not supported for Exchange → Exchange (items move whole through import/export)",
            refused.join(", ")
        );
    }
    let users = export_users(&a.conn)?;
    let dir = a.state_dir.clone().unwrap_or_else(default_state_dir);
    let mode = CopyMode {
        restored: false,
        dry_run: a.dry_run,
    };
    let progress = Arc::new(Progress::default());
    let ticker = spawn_ticker(progress.clone(), a.conn.quiet || a.conn.json);
    let (json, parallel) = (a.conn.json, a.conn.parallel);
    let conn = Arc::new(a.conn);
    let p = progress.clone();
    let mailboxes = for_each_parallel(users, parallel, move |pair| {
        let (conn, progress, dir) = (conn.clone(), p.clone(), dir.clone());
        async move {
            let (src, dst) = match export_pair(&conn, &pair).await {
                Ok(p) => p,
                Err(e) => {
                    return crate::report::MailboxReport {
                        source: format!("exchange://{}", pair.0),
                        target: format!("exchange://{}", pair.1),
                        error: Some(format!("{e:#}")),
                        cause: Some(Arc::new(e)),
                        ..Default::default()
                    }
                }
            };
            let dst = dst.with_upload_budget(
                conn.exchange.exchange_upload_budget,
                Duration::from_secs(conn.exchange.exchange_upload_window),
            );
            let path = export_state_file(&dir, &pair.0, &pair.1);
            migrate_mailbox_with(&src, &dst, &path, &progress, mode).await
        }
    })
    .await;
    if let Some(t) = ticker {
        t.abort();
    }
    print_run(
        RunReport {
            mailboxes,
            dry_run: mode.dry_run,
        },
        json,
    )
}

/// The state file of an Exchange → Exchange pair.
fn export_state_file(dir: &Path, source: &str, target: &str) -> PathBuf {
    let side = |side, user: &str| Endpoint {
        side,
        host: "exchange".into(),
        port: 0,
        user: user.to_string(),
        security: Security::Tls,
        auth: Auth::Password(String::new()),
        ca_file: None,
    };
    state_file(
        dir,
        &side(Side::Source, source),
        &side(Side::Target, target),
    )
}

fn print_run(report: RunReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn verify_exchange(a: VerifyArgs) -> Result<ExitCode> {
    refuse_imap_options(&a.conn, true)?;
    let jobs = exchange_jobs(&a.conn)?;
    let opts = Arc::new(options(&a.conn)?);
    let results = for_each_parallel(jobs, a.conn.parallel, move |(s, t)| {
        let opts = opts.clone();
        async move {
            crate::exchange::verify::verify_mailbox(&s, &t, &opts)
                .await
                .map_err(|e| format!("{} -> {}: {e:#}", s.describe(), t.describe()))
        }
    })
    .await;
    print_verify(results, a.conn.json)
}

/// Whether the target is Exchange Online's IMAP (`--target-kind`, or its host).
fn exchange_target(conn: &ConnArgs) -> Result<bool> {
    let url = parse_url(&conn.target).context("--target")?;
    Ok(conn.target_kind.is_exchange(&url.host))
}

async fn migrate(a: MigrateArgs) -> Result<ExitCode> {
    let jobs = jobs(&a.conn)?;
    let exchange_target = exchange_target(&a.conn)?;
    let opts = Options {
        dry_run: a.dry_run,
        connections: a.conn.connections.max(1),
        folder_map: folder_map(&a.conn)?,
        exclude: a.conn.exclude.clone(),
        batch_bytes: a.batch_bytes.max(1),
        batch_count: a.batch_count.max(1),
        ignore_appenduid: a.ignore_appenduid,
        multiappend: !a.no_multiappend,
        max_message_size: a
            .max_message_size
            .or(exchange_target.then_some(EXCHANGE_APPEND_LIMIT)),
        idle_timeout: Duration::from_secs(a.conn.timeout_secs.max(1)),
        command_timeout: Duration::from_secs(a.conn.command_timeout_secs.max(1)),
        restored_state: false,
        exchange_target,
    };
    let dir = a.state_dir.clone().unwrap_or_else(default_state_dir);
    let progress = Arc::new(Progress::default());
    let ticker = spawn_ticker(progress.clone(), a.conn.quiet || a.conn.json);
    let (opts, p) = (Arc::new(opts), progress.clone());
    let mailboxes = for_each_parallel(jobs, a.conn.parallel, move |(s, t)| {
        let (opts, progress, path) = (opts.clone(), p.clone(), state_file(&dir, &s, &t));
        async move { migrate_mailbox(&s, &t, &path, &opts, progress).await }
    })
    .await;
    if let Some(t) = ticker {
        t.abort();
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
    }
    let report = RunReport {
        mailboxes,
        dry_run: a.dry_run,
    };
    if a.conn.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let jobs = jobs(&a.conn)?;
    let opts = Options {
        exchange_target: exchange_target(&a.conn)?,
        folder_map: folder_map(&a.conn)?,
        exclude: a.conn.exclude.clone(),
        idle_timeout: Duration::from_secs(a.conn.timeout_secs.max(1)),
        command_timeout: Duration::from_secs(a.conn.command_timeout_secs.max(1)),
        ..Default::default()
    };
    let opts = Arc::new(opts);
    let results = for_each_parallel(jobs, a.conn.parallel, move |(s, t)| {
        let opts = opts.clone();
        async move {
            verify_mailbox(&s, &t, &opts)
                .await
                .map_err(|e| format!("{} -> {}: {e:#}", s.describe(), t.describe()))
        }
    })
    .await;
    print_verify(results, a.conn.json)
}

fn print_verify(
    results: Vec<std::result::Result<VerifyReport, String>>,
    as_json: bool,
) -> Result<ExitCode> {
    let mut ok = true;
    let mut json = Vec::new();
    for r in results {
        match r {
            Ok(rep) => {
                ok &= rep.ok();
                if !as_json {
                    let msgs: usize = rep.folders.iter().map(|f| f.source_count).sum();
                    println!(
                        "{} -> {}: {} folders, {msgs} source messages, {} difference(s)",
                        rep.source,
                        rep.target,
                        rep.folders.len(),
                        rep.differences.len()
                    );
                    for d in &rep.differences {
                        println!("  {}", crate::report::for_terminal(d));
                    }
                }
                json.push(serde_json::to_value(&rep)?);
            }
            Err(e) => {
                ok = false;
                if !as_json {
                    println!("{}", crate::report::for_terminal(&e));
                }
                json.push(serde_json::json!({ "error": e }));
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The rows of a `--batch` file (a first line starting with "source" is its header).
fn batch_rows(batch: &std::path::Path) -> Result<Vec<tenantry_csv::Row>> {
    let bytes = std::fs::read(batch).with_context(|| format!("cannot read {}", batch.display()))?;
    tenantry_csv::read_rows(&bytes, |first| {
        first.field(0).to_ascii_lowercase().starts_with("source")
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", batch.display()))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct W {
        #[command(flatten)]
        a: MigrateArgs,
    }

    fn endpoints(extra: &[&str]) -> Result<(Endpoint, Endpoint)> {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let pw = pw.display().to_string();
        let mut argv = vec![
            "x",
            "--source-password-file",
            &pw,
            "--target-password-file",
            &pw,
        ];
        argv.extend_from_slice(extra);
        let w = W::try_parse_from(argv)?;
        Ok(jobs(&w.a.conn)?.remove(0))
    }

    #[test]
    fn plaintext_only_to_loopback_unless_asked() {
        let (s, t) = endpoints(&[
            "--source",
            "imap://a@127.0.0.1:1143",
            "--target",
            "imap://b@mail.example.com",
        ])
        .unwrap();
        assert_eq!(s.security, Security::Plain);
        assert_eq!(
            t.security,
            Security::StartTls,
            "non-loopback imap:// must upgrade"
        );
        assert_eq!(
            t.auth,
            Auth::Password("s3cret".into()),
            "trailing newline of the file dropped"
        );
        let (_, t) = endpoints(&[
            "--source",
            "imaps://a@h",
            "--target",
            "imap://b@mail.example.com",
            "--insecure-plaintext",
        ])
        .unwrap();
        assert_eq!(t.security, Security::Plain);
        let (s, _) = endpoints(&[
            "--source",
            "imaps://a@h",
            "--target",
            "imap://b@localhost",
            "--source-admin",
            "root",
        ])
        .unwrap();
        assert_eq!((s.security, s.port), (Security::Tls, 993));
        assert!(matches!(s.auth, Auth::Admin { ref admin, .. } if admin == "root"));
        assert!(
            !format!("{:?}", s.auth).contains("s3cret"),
            "secrets redacted in Debug"
        );
        assert!(
            endpoints(&["--source", "imaps://h", "--target", "imaps://b@h"]).is_err(),
            "no user"
        );
    }

    #[test]
    fn parses_urls() {
        let u = parse_url("imaps://alice@example.com@mail.example.com:1993").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice@example.com"));
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("mail.example.com", 1993, true)
        );
        let u = parse_url("imap://bob%40x.org@[::1]").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port),
            (Some("bob@x.org"), "::1", 143)
        );
        assert!(parse_url("http://x").is_err());
        let err = parse_url("imaps://alice:hunter2@mail.example.com")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("password in the URL") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(parse_url("imaps://u@h:notaport").is_err());
        assert!(parse_url("imaps://").is_err());
    }
}
