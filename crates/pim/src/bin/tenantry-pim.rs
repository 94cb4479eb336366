//! Standalone `tenantry-pim` binary: `tenantry-pim calendars ...` and `tenantry-pim contacts ...`,
//! the same commands as `tenantry calendars|contacts ...`.

use clap::{Parser, Subcommand};
use tenantry_pim::cli::PimCommand;
use tenantry_pim::kind::Kind;

#[derive(Parser)]
#[command(
    name = "tenantry-pim",
    version,
    about = "Calendar and contact migration (CalDAV, CardDAV)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Calendars and task lists (CalDAV).
    #[command(subcommand)]
    Calendars(PimCommand),
    /// Address books (CardDAV).
    #[command(subcommand)]
    Contacts(PimCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Calendars(c) => tenantry_pim::cli::run(Kind::Calendars, c).await,
        Cmd::Contacts(c) => tenantry_pim::cli::run(Kind::Contacts, c).await,
    }
}
