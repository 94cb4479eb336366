//! `tenantry serve`: the API on an embedded SQLite database.

use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tenantry_api::{
    clock::Clock, ensure_operator_token, spawn_lifecycle_sweeper, AppState, OperatorToken,
};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database URL: sqlite://PATH.
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
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();

    let store = tenantry_store::open(&args.database).context("cannot open the database")?;
    let clock = if args.test_clock {
        Clock::adjustable()
    } else {
        Clock::system()
    };
    let app = AppState::new(store, clock);
    // Read once and removed from the environment so that it does not linger in child processes.
    let env_token = std::env::var("TENANTRY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    std::env::remove_var("TENANTRY_ADMIN_TOKEN");
    match ensure_operator_token(&app, env_token.as_deref())
        .await
        .context("cannot set up the operator token")?
    {
        OperatorToken::Generated(token) => {
            println!("Operator token (shown only this once; store it now, e.g. export TENANTRY_TOKEN=...):");
            println!("  {token}");
        }
        OperatorToken::FromEnvironment => {
            tracing::info!("operator token taken from TENANTRY_ADMIN_TOKEN")
        }
        OperatorToken::Existing => {
            tracing::info!("operator token set on first start (only its hash is stored)")
        }
    }
    spawn_lifecycle_sweeper(app.clone(), Duration::from_secs(60));

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
    axum::serve(
        listener,
        tenantry_api::router_with(app, tenantry_web::routes()),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("server failed")?;
    Ok(())
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
