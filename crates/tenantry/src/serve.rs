//! `tenantry serve`: the API on an embedded SQLite database or a shared PostgreSQL one.

use crate::node::{self, LocalPaths};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tenantry_api::server::Limits;
use tenantry_api::{
    clock::Clock, ensure_operator_token, spawn_lifecycle_sweeper, AppState, OperatorToken,
};
use tenantry_mover::runner::Runner;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database URL: sqlite://PATH (embedded, one process) or postgres://USER@HOST:PORT/DB
    /// (shared by many processes; then --data-dir and a secret key are required). No TLS to
    /// PostgreSQL yet: reach it on a trusted network or through a local tunnel.
    #[arg(
        long,
        env = "TENANTRY_DATABASE",
        default_value = "sqlite://./tenantry.db"
    )]
    pub database: String,
    /// Let the operator move the clock forward (POST /v1/admin/clock), for tests and demos of
    /// subscription lifecycles. Never in production.
    #[arg(long)]
    pub test_clock: bool,
    /// Key file for connection-profile secrets (created on first use, owner-only); the env
    /// `TENANTRY_SECRET_KEY` (64 hex characters) takes precedence. Default: beside the SQLite
    /// database; with PostgreSQL one of the two is required and the file must exist.
    #[arg(long)]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// Where the mail and files engines keep their resumable state. Default: beside the SQLite
    /// database; required with PostgreSQL.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// File holding the operator token (first line). Preferred over `TENANTRY_ADMIN_TOKEN`: a
    /// process's initial environment stays readable to its user and root for as long as it runs.
    #[arg(long, env = "TENANTRY_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Connections served at once; more wait in the listen backlog until one closes.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's head, counted from the connection's start or the
    /// previous response.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds an idle connection is kept open after a response.
    #[arg(long, default_value_t = 5)]
    pub keep_alive_timeout: u64,
    /// Seconds an application's access token (client credentials) stays valid.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub token_lifetime: i64,
    /// Requests one token may make on /v1.0 per `--graph-budget-window` seconds; past it, 429
    /// with Retry-After.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub graph_budget: u32,
    /// The URL clients reach this server at, e.g. `https://tenantry.example.com` behind a
    /// TLS-terminating proxy: absolute links (`@odata.nextLink`, the OpenID configuration) start
    /// with it. Unset, they follow the request's `Host` and `X-Forwarded-Proto`.
    #[arg(long, value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Failed authentications (bad tokens, wrong client secrets, failed sign-ins) one client
    /// address is given back per minute, once it has spent its burst of 10; until then every
    /// attempt from it waits (429). Lower it where guessing is a concern.
    #[arg(long, default_value_t = tenantry_api::throttle::DEFAULT_REFILL_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..=6000))]
    pub auth_failures_per_minute: u32,
    /// The window of `--graph-budget`, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub graph_budget_window: u64,
    /// Run no move steps in this process (PostgreSQL only): `tenantry worker` processes do.
    #[arg(long)]
    pub no_worker: bool,
    #[command(flatten)]
    pub worker: WorkerLimits,
}

/// How many move steps a process runs at once (`serve` and `worker` alike).
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerLimits {
    /// Move steps (mailboxes, libraries, …) this process runs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Move steps running at once on one mail server or library host, over every process
    /// sharing the database (each checks its own value when it claims: give all the same).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub per_server: u32,
    /// Seconds a claimed step stays this process's without renewal (renewed every third): how
    /// long the steps of a killed process wait before another process takes them over.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i64).range(3..=3600))]
    pub lease_secs: i64,
    /// After SIGTERM, seconds the running steps have to finish before their leases are handed
    /// back (another process takes them at once).
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
}

impl WorkerLimits {
    pub fn limits(&self) -> tenantry_mover::runner::Limits {
        tenantry_mover::runner::Limits {
            concurrency: self.concurrency as usize,
            per_server: self.per_server,
            lease_secs: self.lease_secs,
        }
    }
}

fn parse_public_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("give an http:// or https:// URL with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err("give only scheme, host and port (tenantry serves at the root)".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// Shortest operator token accepted: 32 characters of a random token are well above 128 bits.
const MIN_OPERATOR_TOKEN_CHARS: usize = 32;

/// The operator token from `--admin-token-file` or `TENANTRY_ADMIN_TOKEN` (never both), checked
/// for a minimum strength.
fn operator_token(args: &ServeArgs, from_env: Option<String>) -> anyhow::Result<Option<String>> {
    let token = match (&args.admin_token_file, from_env) {
        (Some(_), Some(_)) => anyhow::bail!(
            "give the operator token either in a file (--admin-token-file) or in TENANTRY_ADMIN_TOKEN, not both"
        ),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the operator token file {}", path.display())
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(
                !token.is_empty(),
                "the operator token file {} is empty",
                path.display()
            );
            Some(token)
        }
        (None, token) => token,
    };
    if let Some(token) = &token {
        let chars = token.chars().count();
        anyhow::ensure!(
            chars >= MIN_OPERATOR_TOKEN_CHARS && token.chars().all(|c| c.is_ascii_graphic()),
            "the operator token is too weak: it has {chars} characters, at least {MIN_OPERATOR_TOKEN_CHARS} printable ASCII characters without spaces are required (e.g. openssl rand -base64 32)"
        );
        let distinct: std::collections::HashSet<char> = token.chars().collect();
        anyhow::ensure!(
            distinct.len() >= 8,
            "the operator token is too weak: it repeats a few characters; use a random one (e.g. openssl rand -base64 32)"
        );
    }
    Ok(token)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    node::init_tracing();

    // Local paths first: a wrong command line is refused before anything touches the database.
    let local = LocalPaths::resolve(
        &args.database,
        args.data_dir.as_deref(),
        args.secret_key_file.as_deref(),
    )?;
    let env_key = node::take_secret_key(&local)?;
    // Read once and removed from the environment so that it does not reach child processes
    // (the process's initial environment block keeps it: prefer --admin-token-file).
    let env_token = std::env::var("TENANTRY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    std::env::remove_var("TENANTRY_ADMIN_TOKEN");
    let admin_token = operator_token(&args, env_token)?;

    let store = tenantry_store::open(&args.database)
        .await
        .context("cannot open the database")?;
    let clock = if args.test_clock {
        Clock::adjustable()
    } else {
        Clock::system()
    };
    let mover = node::mover(store.clone(), env_key.as_deref(), &local)?;
    let app = AppState::with_mover(store, clock, Some(mover.clone()));
    app.graph.set_token_lifetime_secs(args.token_lifetime);
    if let Some(url) = &args.public_url {
        app.graph.set_public_url(url);
    }
    app.auth_failures.configure(args.auth_failures_per_minute);
    app.graph.budget.configure(
        args.graph_budget,
        Duration::from_secs(args.graph_budget_window),
    );
    match ensure_operator_token(&app, admin_token.as_deref())
        .await
        .context("cannot set up the operator token")?
    {
        OperatorToken::Generated(token) => {
            println!("Operator token (shown only this once; store it now, e.g. export TENANTRY_TOKEN=...):");
            println!("  {token}");
        }
        OperatorToken::FromEnvironment => {
            tracing::info!("operator token taken from the configuration")
        }
        OperatorToken::Existing => {
            tracing::info!("operator token set on first start (only its hash is stored)")
        }
    }
    spawn_lifecycle_sweeper(app.clone(), Duration::from_secs(60));
    // SQLite: this process is the only worker on the database, so leases of a previous,
    // killed process are stale now. PostgreSQL: other processes' workers may hold live leases;
    // a dead one's expire and are claimed again.
    if !local.shared_database {
        let released = app
            .ledger
            .release_leases()
            .await
            .context("cannot read the move queue")?;
        if released > 0 {
            tracing::info!(
                released,
                "resuming move steps interrupted by the previous shutdown"
            );
        }
    }
    // The move runner stops with the server: no new steps, a grace period, leases handed back.
    let (stop_runner, stopping) = tokio::sync::watch::channel(false);
    let runner = if args.no_worker {
        anyhow::ensure!(
            local.shared_database,
            "--no-worker needs a PostgreSQL database: on SQLite this server is the only process that can run move steps"
        );
        None
    } else {
        let clock_app = app.clone();
        let runner = Arc::new(Runner {
            mover,
            worker: node::worker_name("serve"),
            clock: Arc::new(move || clock_app.clock.now()),
            limits: args.worker.limits(),
        });
        let grace = Duration::from_secs(args.worker.grace_secs);
        Some(tokio::spawn(runner.run(stopping, grace)))
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "tenantry listening on http://{addr} (database {})",
        args.database
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let limits = Limits {
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        keep_alive_timeout: Duration::from_secs(args.keep_alive_timeout.max(1)),
    };
    tenantry_api::server::serve(
        listener,
        tenantry_api::router_with(app, tenantry_web::routes()),
        limits,
        node::shutdown_signal(),
    )
    .await;
    if let Some(runner) = runner {
        let _ = stop_runner.send(true);
        let _ = runner.await;
    }
    Ok(())
}
