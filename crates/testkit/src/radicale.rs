//! A throwaway Radicale server (python3 with the radicale package, CalDAV and CardDAV), with
//! htpasswd users whose passwords are stored in plain text (no bcrypt: logins stay fast).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::net::{free_port, wait_for_port};
use crate::{PASSWORD, USER};

/// A second user, for tests that need another principal on the same server.
pub const OTHER_USER: &str = "bob";

/// The service login of a server started with [`Radicale::start_for_users`]: it reads and
/// writes every user's home, as a move's connection profile does.
pub const SERVICE_USER: &str = "svc";

/// A Radicale server on a temporary storage folder; every user only sees their own home.
pub struct Radicale {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Radicale {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `[server]` settings, e.g. `("max_resource_size", "2000")`.
    pub fn start_with(server: &[(&str, &str)]) -> Self {
        Self::launch(&[USER, OTHER_USER], "[rights]\ntype = owner_only\n", server)
    }

    /// A server with these users (password [`PASSWORD`] each) and [`SERVICE_USER`], who may
    /// read and write every home; each user only their own. A user's home appears when the
    /// user first logs in (Radicale creates it then), as on a server where users sign in.
    pub fn start_for_users(users: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rights");
        std::fs::write(
            &rules,
            format!(
                "[service]\nuser: {SERVICE_USER}\ncollection: .*\npermissions: RrWw\n\n\
                 [owner]\nuser: .+\ncollection: {{user}}(/.*)?\npermissions: RrWw\n\n\
                 [root]\nuser: .+\ncollection:\npermissions: R\n"
            ),
        )
        .unwrap();
        let mut all = users.to_vec();
        all.push(SERVICE_USER);
        let rights = format!("[rights]\ntype = from_file\nfile = {}\n", rules.display());
        Self::launch_in(dir, &all, &rights, &[])
    }

    fn launch(users: &[&str], rights: &str, server: &[(&str, &str)]) -> Self {
        Self::launch_in(tempfile::tempdir().unwrap(), users, rights, server)
    }

    fn launch_in(
        dir: tempfile::TempDir,
        user_names: &[&str],
        rights: &str,
        server: &[(&str, &str)],
    ) -> Self {
        let d = dir.path();
        let users = d.join("users");
        let lines: String = user_names
            .iter()
            .map(|u| format!("{u}:{PASSWORD}\n"))
            .collect();
        std::fs::write(&users, lines).unwrap();
        let port = free_port();
        let extra: String = server.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let conf = format!(
            "[server]\nhosts = 127.0.0.1:{port}\n{extra}\
             [auth]\ntype = htpasswd\nhtpasswd_filename = {}\nhtpasswd_encryption = plain\ndelay = 0\n\
             {rights}\
             [storage]\nfilesystem_folder = {}\n\
             [logging]\nlevel = warning\n",
            users.display(),
            d.join("data").display()
        );
        std::fs::write(d.join("config"), conf).unwrap();
        let log = d.join("radicale.log");
        let mut child = Command::new("python3")
            .args(["-m", "radicale", "--config"])
            .arg(d.join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("python3 with radicale installed");
        wait_for_port(port, &mut child, &log);
        Radicale { dir, port, child }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A location for the engine: `scheme://alice@127.0.0.1:port{path}` (scheme `caldav`,
    /// `carddav`, ...).
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{USER}@127.0.0.1:{}{path}", self.port)
    }

    /// The folder holding a collection's items (`user/collection`), for fixtures the server
    /// would refuse over HTTP (two items with one UID).
    pub fn collection_dir(&self, path: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/collection-root")
            .join(path.trim_matches('/'))
    }

    /// What the server logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radicale.log")).unwrap_or_default()
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
