//! `tenantry`: the server and the command-line client in one binary.

mod cli;
mod client;
mod engines;
mod moves_cli;
mod node;
mod pim_engine;
mod serve;
mod table;
mod worker;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
