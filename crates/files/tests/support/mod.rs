//! Test harness: throwaway Apache mod_dav and wsgidav servers on loopback ports in temporary
//! directories (stopped on drop), fixture trees, and a tree fingerprint to compare both sides.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-Pa55";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "server exited with {st}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not listen on {port}");
}

fn is_root() -> bool {
    // SAFETY-free check: `id -u` keeps us off libc.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// An Apache 2 with mod_dav/mod_dav_fs and basic auth, single process (`-X`).
pub struct Apache {
    pub dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
    child: Child,
}

/// Makes a throwaway CA and a certificate for 127.0.0.1 signed by it, in `d`.
fn make_certs(d: &Path) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl installed");
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tenantry test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

impl Apache {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Serves https with a certificate from a throwaway CA (see `ca_cert`).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Apache drops to www-data when started as root: it must reach the tree.
        Command::new("chmod").arg("755").arg(d).status().unwrap();
        std::fs::create_dir_all(d.join("root")).unwrap();
        std::fs::create_dir_all(d.join("lock")).unwrap();
        // SHA-1 password hashes, not bcrypt: Apache checks the password on every request, and
        // bcrypt would spend 2-3 ms of server CPU per request, which on a 2-core machine made
        // the server, not the clients, the limit of every benchmark run (3,200 small files:
        // 11.9 s with bcrypt, 4.6 s with SHA-1). Loopback-only throwaway servers.
        let mut hp = Command::new("htpasswd")
            .args(["-i", "-c", "-s"])
            .arg(d.join("htpasswd"))
            .arg(USER)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("htpasswd (apache2-utils) installed");
        hp.stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        assert!(hp.wait().unwrap().success());
        let port = free_port();
        let m = "/usr/lib/apache2/modules";
        let user = if is_root() {
            "User www-data\nGroup www-data\n"
        } else {
            ""
        };
        let tls_conf = if tls {
            make_certs(d);
            format!(
                "LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so\nLoadModule ssl_module {m}/mod_ssl.so\nSSLEngine on\nSSLSessionCache none\nSSLCertificateFile {d}/server.pem\nSSLCertificateKeyFile {d}/server.key\n",
                d = d.display()
            )
        } else {
            String::new()
        };
        let conf = format!(
            r#"ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}
ErrorLog {d}/error.log
LogLevel warn
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authn_core_module {m}/mod_authn_core.so
LoadModule authn_file_module {m}/mod_authn_file.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule authz_user_module {m}/mod_authz_user.so
LoadModule auth_basic_module {m}/mod_auth_basic.so
LoadModule dav_module {m}/mod_dav.so
LoadModule dav_fs_module {m}/mod_dav_fs.so
{user}{tls_conf}Mutex file:{d}
DAVLockDB {d}/lock/DAVLock
LimitRequestBody 0
EnableSendfile On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
ThreadsPerChild 32
DocumentRoot {d}/root
<Directory {d}/root>
  Dav On
  AuthType Basic
  AuthName "tenantry test"
  AuthBasicProvider file
  AuthUserFile {d}/htpasswd
  Require valid-user
</Directory>
"#,
            d = d.display()
        );
        std::fs::write(d.join("httpd.conf"), conf).unwrap();
        let mut a = Apache {
            port,
            tls,
            child: Command::new("apache2")
                .arg("-X")
                .arg("-f")
                .arg(d.join("httpd.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(d.join("stderr.log")).unwrap(),
                ))
                .spawn()
                .expect("apache2 installed"),
            dir,
        };
        a.fix_owner();
        wait_for_port(port, &mut a.child, &a.dir.path().join("stderr.log"));
        a
    }

    /// The document root on disk (what the server serves).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "webdavs" } else { "webdav" };
        format!("{scheme}://{USER}@127.0.0.1:{}/", self.port)
    }

    /// The PEM of the CA that signed a TLS server's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Files written by the test (as root) must be writable by the server.
    pub fn fix_owner(&self) {
        if is_root() {
            Command::new("chown")
                .args(["-R", "www-data:www-data"])
                .arg(self.dir.path().join("root"))
                .arg(self.dir.path().join("lock"))
                .status()
                .unwrap();
        }
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// The `tenantry-files` binary: cargo's for tests, the sibling executable for the benchmark
/// (which includes this module too).
pub fn bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_tenantry-files") {
        Some(p) => p.into(),
        None => std::env::current_exe()
            .unwrap()
            .with_file_name("tenantry-files"),
    }
}

/// Runs `tenantry-files` with both passwords in the environment.
pub fn cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
        .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

/// Runs `migrate --json` and returns the exit code and the report.
pub fn migrate(
    source: &str,
    target: &str,
    state: &Path,
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let st = state.to_str().unwrap();
    let mut args = vec![
        "migrate",
        "--source",
        source,
        "--target",
        target,
        "--state-dir",
        st,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(PASSWORD), "password leaked: {stderr}");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {} stderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Runs `verify --json` and returns the exit code and the report.
pub fn verify(source: &str, target: &str) -> (i32, serde_json::Value) {
    let out = cli(&["verify", "--source", source, "--target", target, "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

pub fn set_mtime(p: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .or_else(|_| std::fs::File::open(p))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

pub fn write_file(root: &Path, rel: &str, content: &[u8], mtime: u64) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    set_mtime(&p, mtime);
}

/// A small tree with what tends to break: non-ASCII and spaced names, characters that need
/// percent-encoding, an empty folder, an empty file, binary content, deep nesting, old times.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let bin: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_file(
        root,
        "Verträge 2019/Angebot Müller & Söhne.docx",
        b"contract v1",
        1_262_304_000,
    );
    write_file(
        root,
        "Verträge 2019/résumé #2 (final) 100%.pdf",
        &bin,
        1_300_000_000,
    );
    write_file(
        root,
        "日本語/報告書.xlsx",
        b"\x00\x01binary\xff",
        1_400_000_000,
    );
    write_file(root, "a/b/c/d/deep file+plus.txt", b"deep", 1_500_000_000);
    write_file(root, "empty.txt", b"", 1_600_000_000);
    write_file(root, "top level.txt", b"hello world", 1_650_000_000);
    std::fs::create_dir_all(root.join("Empty Folder/also empty")).unwrap();
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub is_dir: bool,
    pub sha256: String,
    pub mtime: u64,
}

/// Every folder and file below `root` (temporary upload names included, so they show up).
pub fn fingerprint(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = e.metadata().unwrap();
            let mtime = md
                .modified()
                .unwrap()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            if md.is_dir() {
                out.insert(
                    rel,
                    Node {
                        is_dir: true,
                        sha256: String::new(),
                        mtime,
                    },
                );
                walk(root, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.insert(
                    rel,
                    Node {
                        is_dir: false,
                        sha256: hex::encode(Sha256::digest(&data)),
                        mtime,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts both trees hold the same folders and files with the same content; with
/// `mtimes`, files also have the same modification time (to the second).
pub fn assert_same_tree(a: &Path, b: &Path, mtimes: bool) {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let ka: Vec<_> = fa.keys().collect();
    let kb: Vec<_> = fb.keys().collect();
    assert_eq!(ka, kb, "same paths on both sides");
    for (k, na) in &fa {
        let nb = &fb[k];
        assert_eq!(na.is_dir, nb.is_dir, "{k}");
        assert_eq!(na.sha256, nb.sha256, "content of {k}");
        if mtimes && !na.is_dir {
            assert_eq!(na.mtime, nb.mtime, "mtime of {k}");
        }
    }
}
