//! Test support for the mail engine: the throwaway Dovecot instances and IMAP fixture helpers
//! come from `tenantry-testkit`; what is specific to this crate (running its CLI in-process, a
//! connection-cutting proxy, secret files) stays here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clap::Parser;
use tenantry_mail::cli::{run, MailCommand};

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

/// A TCP proxy to `port` that cuts its first `cuts` connections after `after` bytes from the
/// client (mid-APPEND), to exercise reconnect-and-resume. Returns the proxy's port.
pub async fn cutting_proxy(port: u16, after: u64, cuts: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            n += 1;
            let cut = n <= cuts;
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut sent = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(k) = cr.read(&mut buf).await {
                    // Past the limit: drop both directions, the client sees a dead connection.
                    if k == 0 || (cut && sent + k as u64 > after) {
                        break;
                    }
                    sent += k as u64;
                    if sw.write_all(&buf[..k]).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    local
}
