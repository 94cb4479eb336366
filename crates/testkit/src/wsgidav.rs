//! A throwaway wsgidav server (python3 with the wsgidav package), in either of its two ways of
//! setting a file's modification time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::net::{free_port, wait_for_port};
use crate::{PASSWORD, USER};

/// How a client sets a file's modification time on the server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WsgiMtime {
    /// `honor_mtime_header`: X-OC-Mtime on PUT, as Nextcloud/ownCloud.
    OcHeader,
    /// `mutable_live_props`: PROPPATCH of getlastmodified.
    Proppatch,
}

/// A wsgidav server on a folder, with basic auth.
pub struct WsgiDav {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl WsgiDav {
    pub fn start(mode: WsgiMtime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("root")).unwrap();
        let port = free_port();
        let conf = serde_json::json!({
            "host": "127.0.0.1",
            "port": port,
            "provider_mapping": {"/": d.join("root")},
            "http_authenticator": {"accept_basic": true, "accept_digest": false, "default_to_digest": false},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
            "honor_mtime_header": mode == WsgiMtime::OcHeader,
            "mutable_live_props": if mode == WsgiMtime::Proppatch { vec!["{DAV:}getlastmodified"] } else { vec![] },
            "verbose": 1,
        });
        std::fs::write(d.join("wsgidav.json"), conf.to_string()).unwrap();
        let log = d.join("wsgidav.log");
        let mut child = Command::new("python3")
            .args(["-m", "wsgidav.server.server_cli", "-c"])
            .arg(d.join("wsgidav.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("python3 with wsgidav installed");
        wait_for_port(port, &mut child, &log);
        WsgiDav { dir, port, child }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn url(&self) -> String {
        format!("webdav://{USER}@127.0.0.1:{}/", self.port)
    }
}

impl Drop for WsgiDav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
