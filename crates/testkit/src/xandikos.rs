//! A throwaway Xandikos server (python3 with the xandikos package): a second CalDAV/CardDAV
//! implementation beside Radicale, with sync-collection. It serves one principal, [`USER`],
//! whose homes are `/alice/calendars/` and `/alice/contacts/`. Xandikos authenticates only
//! over its own self-signed TLS (`--htpasswd` requires `--autocert`), so it runs without
//! authentication here and the engine reaches it with locations that name no user.

use std::process::{Child, Command, Stdio};

use crate::net::{free_port, wait_for_port};
use crate::USER;

/// A Xandikos server on a temporary folder (each collection a git repository).
pub struct Xandikos {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Xandikos {
    /// Starts with the user's principal and empty homes (`--autocreate`; no default
    /// collections, so a home holds only what a test puts there).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("xandikos.log");
        let mut child = Command::new("xandikos")
            .arg("serve")
            .arg("-d")
            .arg(dir.path().join("data"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--autocreate", "--no-detect-systemd"])
            .args(["--current-user-principal", &format!("/{USER}/")])
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("xandikos installed (scripts/deps/pim.pip)");
        wait_for_port(port, &mut child, &log);
        Xandikos { dir, port, child }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A location for the engine without a user (no authentication): `scheme://127.0.0.1:port{path}`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xandikos.log")).unwrap_or_default()
    }
}

impl Drop for Xandikos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
