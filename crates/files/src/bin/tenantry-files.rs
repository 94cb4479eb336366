//! Standalone `tenantry-files` binary: the same commands as `tenantry files ...`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "tenantry-files",
    version,
    about = "Document-library migration (file shares, WebDAV)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: tenantry_files::cli::FilesCommand,
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
    match tenantry_files::cli::run(Cli::parse().cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
