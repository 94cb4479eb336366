//! Thin standalone entry point (`tenantry-mail migrate|verify`); the main `tenantry` binary
//! wires the same `MailCommand` under `tenantry mail`.

use clap::Parser;
use tenantry_mail::cli::{run, MailCommand};

#[derive(Parser)]
#[command(name = "tenantry-mail", about = "IMAP to IMAP mailbox migration")]
struct Cli {
    #[command(subcommand)]
    cmd: MailCommand,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
