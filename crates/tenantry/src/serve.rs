//! `tenantry serve`: the API on an embedded SQLite database or a shared PostgreSQL one.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tenantry_api::server::Limits;
use tenantry_api::{
    clock::Clock, ensure_operator_token, spawn_lifecycle_sweeper, AppState, OperatorToken,
};
use tenantry_mover::gather::Mover;
use tenantry_mover::runner::Runner;
use tenantry_mover::secrets::Sealer;

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
    /// The window of `--graph-budget`, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub graph_budget_window: u64,
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();

    // Local paths first: a wrong command line is refused before anything touches the database.
    let local = LocalPaths::resolve(&args)?;
    let env_key = std::env::var("TENANTRY_SECRET_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    std::env::remove_var("TENANTRY_SECRET_KEY");
    if local.shared_database && env_key.is_none() && !local.key_file.exists() {
        anyhow::bail!(
            "the secret key file {} does not exist: with PostgreSQL every process must use the same key, \
             so it is not created here; copy the key of the first server, or create one with \
             `openssl rand -hex 32 > FILE` (mode 600)",
            local.key_file.display()
        );
    }
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
    let key_file = local.key_file;
    let sealer = Sealer::load(env_key.as_deref(), &key_file).map_err(anyhow::Error::msg)?;
    let mover = Arc::new(Mover {
        store: store.clone(),
        engines: crate::engines::real(),
        sealer,
        data_dir: local.data_dir,
    });
    let app = AppState::with_mover(store, clock, Some(mover.clone()));
    app.graph.set_token_lifetime_secs(args.token_lifetime);
    if let Some(url) = &args.public_url {
        app.graph.set_public_url(url);
    }
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
    let clock_app = app.clone();
    Arc::new(Runner {
        mover,
        worker: format!("serve-{}", std::process::id()),
        clock: Arc::new(move || clock_app.clock.now()),
    })
    .spawn();

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
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// Where this process keeps its local files: the key that seals connection profiles and the
/// engines' resumable state.
struct LocalPaths {
    key_file: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    /// PostgreSQL: other processes, maybe on other machines, share the database.
    shared_database: bool,
}

impl LocalPaths {
    /// SQLite: both default to beside the database file. PostgreSQL has no such place: the
    /// data directory must be named, and the key given (every process sharing the database must
    /// seal and open profiles with the same key).
    fn resolve(args: &ServeArgs) -> anyhow::Result<LocalPaths> {
        if tenantry_store::is_postgres(&args.database) {
            let data_dir = args.data_dir.clone().context(
                "with a PostgreSQL database, pass --data-dir DIR: where this process keeps the \
                 mail and files engines' resumable state",
            )?;
            let has_env_key = std::env::var("TENANTRY_SECRET_KEY").is_ok_and(|k| !k.is_empty());
            let key_file = match (&args.secret_key_file, has_env_key) {
                (Some(file), _) => file.clone(),
                // Not read: the key comes from the environment.
                (None, true) => data_dir.join("tenantry.key"),
                (None, false) => anyhow::bail!(
                    "with a PostgreSQL database, pass --secret-key-file FILE or set \
                     TENANTRY_SECRET_KEY: every process sharing the database must use the same key"
                ),
            };
            return Ok(LocalPaths {
                key_file,
                data_dir,
                shared_database: true,
            });
        }
        let db_dir = std::path::Path::new(
            args.database
                .strip_prefix("sqlite://")
                .unwrap_or(&args.database),
        )
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
        Ok(LocalPaths {
            key_file: args
                .secret_key_file
                .clone()
                .unwrap_or_else(|| db_dir.join("tenantry.key")),
            data_dir: args
                .data_dir
                .clone()
                .unwrap_or_else(|| db_dir.join("tenantry-data")),
            shared_database: false,
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
