//! Test support for the mail engine: the throwaway Dovecot instances and IMAP fixture helpers
//! come from `tenantry-testkit`; what is specific to this crate (running its CLI in-process, a
//! secret files) stays here; the connection-cutting proxy is the test kit's `faults::Proxy`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clap::Parser;
use tenantry_mail::cli::{run, MailCommand};

pub mod exchange;

// Each test binary uses only some of these, as with the rest of this module.
#[allow(unused_imports)]
pub use tenantry_testkit::{
    dovecot::{append, create, message, Config, Dovecot},
    process::run_measured,
};

/// Writes a secret to a file in `dir` and returns the path.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, secret).unwrap();
    p
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: MailCommand,
}

/// Runs `tenantry mail ...` in-process; returns the exit code as a number.
pub async fn cli(args: &[&str]) -> u8 {
    let mut argv = vec!["tenantry-mail"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    match run(cli.cmd).await {
        Ok(code) => {
            if code == std::process::ExitCode::SUCCESS {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}
