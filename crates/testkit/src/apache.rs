//! A throwaway Apache 2 with mod_dav (apache2 and apache2-utils installed), plain or over TLS.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::net::{free_port, wait_for_port};
use crate::process::is_root;
use crate::{PASSWORD, USER};

/// An Apache 2 with mod_dav/mod_dav_fs and basic auth, single process (`-X`).
pub struct Apache {
    pub dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
    child: Child,
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
            crate::tls::loopback_ip_rsa(d);
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
