//! Throwaway PostgreSQL for tests: a server in a temporary directory on a free loopback port
//! (trust authentication on loopback only, `fsync` and `synchronous_commit` on, as in
//! production), and a fresh database per test.
//!
//! # Which database a test gets (`TENANTRY_TEST_DATABASE`)
//! - unset, empty or `sqlite`: none — the test uses a temporary SQLite file of its own;
//! - `postgres`: a server this test process starts on first use (found under
//!   `/usr/lib/postgresql/<version>/bin`, the Debian `postgresql` package), shared by the
//!   process's tests and stopped when the process ends;
//! - `postgres://…`: that server (`scripts/test` starts one and passes its URL).
//!
//! With PostgreSQL, every test gets its own database (`t_<random>`), dropped when the
//! [`TestDatabase`] is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A fresh database on a PostgreSQL server; dropped (connections included) on drop.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The database `TENANTRY_TEST_DATABASE` asks for (see the module doc), `None` for SQLite.
pub fn database_from_env() -> Option<TestDatabase> {
    let wanted = std::env::var("TENANTRY_TEST_DATABASE").unwrap_or_default();
    match wanted.as_str() {
        "" | "sqlite" => None,
        "postgres" => Some(shared_server().fresh_database()),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(fresh_database(url))
        }
        other => panic!(
            "TENANTRY_TEST_DATABASE must be unset, sqlite, postgres or a postgres:// URL, not {other}"
        ),
    }
}

/// For tests that need PostgreSQL whatever `TENANTRY_TEST_DATABASE` says: its database when it
/// names PostgreSQL, else one on a server this process starts when PostgreSQL is installed, else
/// `None` (the caller says it skipped).
pub fn postgres_database() -> Option<TestDatabase> {
    match database_from_env() {
        Some(db) => Some(db),
        None if bin_dir().is_some() => Some(shared_server().fresh_database()),
        None => None,
    }
}

/// A new, empty database on the server `admin_url` names (a database the user may connect to).
pub fn fresh_database(admin_url: &str) -> TestDatabase {
    let name = format!("t_{}", random_hex());
    psql(admin_url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a postgres URL ends with /DATABASE");
    TestDatabase {
        url: format!("{base}/{name}"),
        admin_url: admin_url.to_string(),
        name,
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    hex::encode(bytes)
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new(bin_dir().map(|d| d.join("psql")).unwrap_or("psql".into()))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The directory of the newest installed PostgreSQL's programs, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The server `TENANTRY_TEST_DATABASE=postgres` shares among one test process's tests.
fn shared_server() -> std::sync::MutexGuard<'static, PgServer> {
    static SHARED: OnceLock<Mutex<PgServer>> = OnceLock::new();
    SHARED
        .get_or_init(|| Mutex::new(PgServer::start()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A running throwaway server. It stops, and its directory is removed, when this is dropped
/// **or when the process that started it ends**: a watchdog shell holds the server and waits
/// for our end of a pipe to close.
pub struct PgServer {
    pub port: u16,
    child: Child,
    watchdog: Option<ChildStdin>,
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = bin_dir().expect(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install the \
             Debian package postgresql, or leave TENANTRY_TEST_DATABASE unset for SQLite",
        );
        let dir = tempfile::Builder::new()
            .prefix("tenantry-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        // initdb refuses to run as root: the server then runs as the `postgres` user.
        let as_user = crate::process::is_root().then_some("postgres");
        if let Some(user) = as_user {
            let ok = Command::new("chown")
                .args([&format!("{user}:"), dir.to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot give {} to the {user} user", dir.display());
        }
        let data = dir.join("data");
        let log = dir.join("server.log");
        let init = run_as(as_user, &bin.join("initdb"))
            .args(["-D", data.to_str().unwrap()])
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = crate::net::free_port();
        // The watchdog: start the server, wait for stdin to close (our drop, or our exit),
        // then stop it quickly and remove its directory.
        let script = r#"
            "$1/postgres" -D "$2/data" -p "$3" -c listen_addresses=127.0.0.1 \
                -c unix_socket_directories="$2" -c fsync=on -c synchronous_commit=on \
                -c max_connections=300 >"$2/server.log" 2>&1 &
            pg=$!
            cat >/dev/null
            kill -INT "$pg"; wait "$pg"
            rm -rf "$2"
        "#;
        let mut child = run_as(as_user, Path::new("/bin/sh"))
            .args(["-c", script, "sh"])
            .arg(&bin)
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let watchdog = child.stdin.take();
        crate::net::wait_for_port(port, &mut child, &log);
        let server = PgServer {
            port,
            child,
            watchdog,
        };
        // Accepting connections is not yet accepting queries: wait until a query answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while psql(&server.admin_url(), "SELECT 1").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres did not answer: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    /// The `postgres` database as its superuser, for creating and dropping databases.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn fresh_database(&self) -> TestDatabase {
        fresh_database(&self.admin_url())
    }
}

fn run_as(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut pipe) = self.watchdog.take() {
            let _ = pipe.flush();
        }
        let _ = self.child.wait();
    }
}
