//! Throwaway Dovecot instances: each gets a temp dir, free loopback ports, passwd-file users
//! (and optionally a master user) and is killed on Drop. Needs dovecot-imapd and openssl.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "mail")]
use tenantry_mail::protocol::command::Command as ImapCommand;
#[cfg(feature = "mail")]
use tenantry_mail::session::{Auth, Endpoint, Security, Session, Side};

use crate::net::free_port;

/// How a [`Dovecot`] is set up: hierarchy separator, special-use folders, users, limits.
pub struct Config {
    pub separator: char,
    /// Folders auto-created with a special-use role: (name, role).
    pub special: Vec<(&'static str, &'static str)>,
    pub users: Vec<(&'static str, &'static str)>,
    pub master: Option<(&'static str, &'static str)>,
    /// quota_max_mail_size, e.g. "100k": larger APPENDs are refused.
    pub max_mail_size: Option<&'static str>,
    /// Replaces the post-login CAPABILITY list (e.g. to hide LITERAL+, CONDSTORE, LIST-EXTENDED).
    pub capability: Option<&'static str>,
}

impl Config {
    /// Source-like: '/' separator, "Sent", "Trash".
    pub fn source() -> Config {
        Config {
            separator: '/',
            special: vec![
                ("Sent", "\\Sent"),
                ("Trash", "\\Trash"),
                ("Drafts", "\\Drafts"),
            ],
            users: vec![("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw")],
            master: Some(("srcadmin", "srcadminpw")),
            max_mail_size: None,
            capability: None,
        }
    }
    /// Exchange-like target: '.' separator, "Sent Items", "Deleted Items", a master user.
    pub fn target() -> Config {
        Config {
            separator: '.',
            special: vec![
                ("Sent Items", "\\Sent"),
                ("Deleted Items", "\\Trash"),
                ("Drafts", "\\Drafts"),
            ],
            users: vec![
                ("alice", "alicepw2"),
                ("bob", "bobpw2"),
                ("carol", "carolpw2"),
            ],
            master: Some(("admin", "adminpw")),
            max_mail_size: None,
            capability: None,
        }
    }
}

/// A running Dovecot (IMAP on `port`, IMAPS on `tls_port`); killed on drop.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    pub separator: char,
}

impl Dovecot {
    pub fn start(cfg: Config) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("tenantry-dovecot-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Dovecot refuses to deliver mail as root; running as root (CI), mail belongs to nobody.
        let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
        let (mail_uid, mail_gid) = if uid.trim() == "0" {
            (65534, 65534)
        } else {
            let gid =
                String::from_utf8(Command::new("id").arg("-g").output().unwrap().stdout).unwrap();
            (uid.trim().parse().unwrap(), gid.trim().parse().unwrap())
        };
        crate::tls::localhost_ec(d);
        let passwd: String = cfg
            .users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(d.join("passwd"), passwd).unwrap();
        let master = cfg
            .master
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .unwrap_or_default();
        std::fs::write(d.join("master-users"), master).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let special: String = cfg
            .special
            .iter()
            .map(|(name, role)| format!("  mailbox \"{name}\" {{\n    special_use = {role}\n    auto = subscribe\n  }}\n"))
            .collect();
        let quota = match cfg.max_mail_size {
            Some(size) => format!(
                "mail_plugins = quota\nplugin {{\n  quota = count:User quota\n  quota_vsizes = yes\n  quota_max_mail_size = {size}\n}}\n"
            ),
            None => String::new(),
        };
        let caps = cfg
            .capability
            .map(|c| format!("imap_capability = {c}\n"))
            .unwrap_or_default();
        let layout = if cfg.separator == '/' {
            ":LAYOUT=fs"
        } else {
            ""
        };
        let p = d.display();
        let conf = format!(
            r#"base_dir = {p}/run
state_dir = {p}/state
log_path = {p}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{p}/cert.pem
ssl_key = <{p}/key.pem
auth_mechanisms = plain login xoauth2 oauthbearer
disable_plaintext_auth = no
auth_master_user_separator = *
mail_location = maildir:{p}/mail/%u{layout}
first_valid_uid = 1
mail_uid = {mail_uid}
mail_gid = {mail_gid}
default_login_user = dovenull
default_internal_user = dovecot
{caps}{quota}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {p}/master-users
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {p}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={p}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = {sep}
{special}}}
"#,
            sep = cfg.separator
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        for sub in ["mail", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let _ = Command::new("chown")
            .arg("-R")
            .arg(format!("{mail_uid}:{mail_gid}"))
            .arg(d.join("mail"))
            .arg(d.join("home"))
            .status();
        // The temp dir itself must be traversable by the mail user.
        let _ = Command::new("chmod").arg("755").arg(d).status();
        // Root's PATH on a minimal machine may lack /usr/sbin.
        let bin = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("dovecot");
        let child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dovecot not installed (apt-get install dovecot-imapd)");
        let dc = Dovecot {
            dir,
            child,
            port,
            tls_port,
            separator: cfg.separator,
        };
        dc.wait_ready();
        dc
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 512];
                let mut got = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&got).contains("ready.") {
                        let _ = s.write_all(b"x LOGOUT\r\n");
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default();
        panic!("dovecot did not start: {log}");
    }

    pub fn url(&self, user: &str) -> String {
        format!("imap://{user}@127.0.0.1:{}", self.port)
    }
    pub fn tls_url(&self, user: &str) -> String {
        format!("imaps://{user}@localhost:{}", self.tls_port)
    }
    pub fn host_url(&self) -> String {
        format!("imap://127.0.0.1:{}", self.port)
    }
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

/// Sessions through the mail engine (fixtures only).
#[cfg(feature = "mail")]
impl Dovecot {
    pub fn endpoint(&self, user: &str, password: &str) -> Endpoint {
        Endpoint {
            side: Side::Source,
            host: "127.0.0.1".into(),
            port: self.port,
            user: user.into(),
            security: Security::Plain,
            auth: Auth::Password(password.into()),
            ca_file: None,
        }
    }

    pub async fn session(&self, user: &str, password: &str) -> Session {
        Session::connect(&self.endpoint(user, password))
            .await
            .unwrap()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain-text message of at least `body_len` bytes (non-ASCII body lines), with a
/// Message-ID made from the subject if `message_id`.
pub fn message(subject: &str, extra_headers: &str, body_len: usize, message_id: bool) -> Vec<u8> {
    let mut m = String::new();
    m += "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\n";
    m += &format!("Subject: {subject}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\n");
    if message_id {
        m += &format!(
            "Message-ID: <{}@example.org>\r\n",
            subject.replace(' ', ".")
        );
    }
    m += extra_headers;
    m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
    let line = format!("{subject} body line ä ö ü.\r\n");
    while m.len() < body_len {
        m += &line;
    }
    m.into_bytes()
}

/// Test-side IMAP helpers built on the engine's session (they only create fixtures).
#[cfg(feature = "mail")]
pub async fn create(s: &mut Session, folder: &str, subscribe: bool) {
    let _ = s
        .run(ImapCommand::new("CREATE ").string(folder.as_bytes()))
        .await;
    if subscribe {
        s.run(ImapCommand::new("SUBSCRIBE ").string(folder.as_bytes()))
            .await
            .unwrap();
    }
}

/// APPENDs `body` to `folder`; returns the UID the server reports (APPENDUID), or 0.
#[cfg(feature = "mail")]
pub async fn append(s: &mut Session, folder: &str, flags: &str, date: &str, body: &[u8]) -> u32 {
    let cmd = ImapCommand::new("APPEND ")
        .string(folder.as_bytes())
        .text(&format!(" ({flags}) \"{date}\" "))
        .literal(body.to_vec());
    let (_, info) = s.run(cmd).await.unwrap();
    info.code.get(2).and_then(|v| v.as_u64()).unwrap_or(0) as u32
}
