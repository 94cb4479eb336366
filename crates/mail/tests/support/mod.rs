//! Throwaway Dovecot instances for the integration tests: each gets a temp dir, free loopback
//! ports, passwd-file users (and optionally a master user) and is killed on Drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use tenantry_mail::cli::{run, MailCommand};
use tenantry_mail::protocol::command::Command as ImapCommand;
use tenantry_mail::session::{Auth, Endpoint, Security, Session, Side};

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

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    pub separator: char,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        make_certs(d);
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

/// A private CA (ca.pem) and a leaf for localhost/127.0.0.1 signed by it (cert.pem, key.pem):
/// webpki rejects a self-signed CA certificate used directly as the server's.
fn make_certs(d: &Path) {
    let sh = format!(
        "set -e; cd '{}'; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr; \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf; \
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem",
        d.display()
    );
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a secret to a file in `dir` and returns the path.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, secret).unwrap();
    p
}

/// Test-side IMAP helpers built on the engine's session (they only create fixtures).
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

pub async fn append(s: &mut Session, folder: &str, flags: &str, date: &str, body: &[u8]) -> u32 {
    let cmd = ImapCommand::new("APPEND ")
        .string(folder.as_bytes())
        .text(&format!(" ({flags}) \"{date}\" "))
        .literal(body.to_vec());
    let (_, info) = s.run(cmd).await.unwrap();
    info.code.get(2).and_then(|v| v.as_u64()).unwrap_or(0) as u32
}

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

/// Runs a child to completion; returns (success, peak RSS in KB, wall time). The peak is the
/// child's own VmHWM sampled from /proc: wait4's ru_maxrss would also count the parent's
/// memory at spawn time (the child shares it until exec).
pub fn run_measured(cmd: &mut Command) -> (bool, u64, Duration) {
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(st) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = st
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.success(), peak, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
