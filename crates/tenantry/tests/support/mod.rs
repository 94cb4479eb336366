//! Test harness: runs the real `tenantry serve` binary on a free loopback port, on the database
//! `TENANTRY_TEST_DATABASE` chooses (`tenantry_testkit::postgres`: a fresh PostgreSQL database
//! per server, or by default a temporary SQLite file), and talks to it over HTTP.
#![allow(dead_code)]

pub mod fleet;
pub mod mail;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const OPERATOR: &str = "op_test_token_for_this_run_only_7f3a9c";

pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
    child: Option<Child>,
    pub http: reqwest::Client,
    /// Lines the server printed on stdout at start-up.
    pub banner: Vec<String>,
    /// More `serve` options (`start_with_args`).
    extra_args: Vec<String>,
    /// The server's log goes to `log_path()` instead of the test's stderr.
    log_to_file: bool,
    /// PostgreSQL: the server's own database, dropped with it.
    pub postgres: Option<std::sync::Arc<tenantry_testkit::postgres::TestDatabase>>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenantry"))
}

impl Server {
    pub fn start() -> Server {
        Self::start_on(tenantry_testkit::postgres::database_from_env().map(std::sync::Arc::new))
    }

    /// A server on this PostgreSQL database (shared with other servers), or on SQLite (`None`).
    pub fn start_on(
        postgres: Option<std::sync::Arc<tenantry_testkit::postgres::TestDatabase>>,
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            dir,
            base: String::new(),
            child: None,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            banner: Vec::new(),
            extra_args: Vec::new(),
            log_to_file: false,
            postgres,
        };
        server.launch(Some(OPERATOR));
        server
    }

    /// A server on this PostgreSQL database with more `serve` options.
    pub fn start_on_with_args(
        postgres: std::sync::Arc<tenantry_testkit::postgres::TestDatabase>,
        args: &[&str],
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            dir,
            base: String::new(),
            child: None,
            http: reqwest::Client::new(),
            banner: Vec::new(),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            log_to_file: false,
            postgres: Some(postgres),
        };
        server.launch(Some(OPERATOR));
        server
    }

    /// The connection-profile key file (PostgreSQL: written by `launch`).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("tenantry.key")
    }

    /// A server started with more `serve` options, logging to `log_path()`.
    pub fn start_with_args(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            dir,
            base: String::new(),
            child: None,
            http: reqwest::Client::new(),
            banner: Vec::new(),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            log_to_file: true,
            // These servers' own files (database, logs) are what their tests look at.
            postgres: None,
        };
        server.launch(Some(OPERATOR));
        server
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn start_without_operator_token() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server {
            dir,
            base: String::new(),
            child: None,
            http: reqwest::Client::new(),
            banner: Vec::new(),
            extra_args: Vec::new(),
            log_to_file: false,
            postgres: tenantry_testkit::postgres::database_from_env().map(std::sync::Arc::new),
        };
        server.launch(None);
        server
    }

    pub fn database(&self) -> String {
        match &self.postgres {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("ledger.db").display()),
        }
    }

    /// Everything the database holds on disk, to look for secrets in: the SQLite file and its
    /// WAL, or a dump of the PostgreSQL database.
    pub fn stored_bytes(&self) -> Vec<Vec<u8>> {
        match &self.postgres {
            Some(db) => {
                let dump = Command::new(
                    tenantry_testkit::postgres::bin_dir()
                        .expect("PostgreSQL installed")
                        .join("pg_dump"),
                )
                .args(["--data-only", "-d", &db.url])
                .output()
                .expect("run pg_dump");
                assert!(dump.status.success(), "pg_dump failed");
                vec![dump.stdout]
            }
            None => vec![
                std::fs::read(self.dir.path().join("ledger.db")).unwrap(),
                std::fs::read(self.dir.path().join("ledger.db-wal")).unwrap_or_default(),
            ],
        }
    }

    pub fn launch(&mut self, operator_token: Option<&str>) {
        let mut cmd = Command::new(binary());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--test-clock",
            "--database",
            &self.database(),
        ]);
        if self.postgres.is_some() {
            // A shared database has no "beside the database": name both local paths.
            let key = self.dir.path().join("tenantry.key");
            if !key.exists() {
                std::fs::write(&key, "7".repeat(64)).unwrap();
            }
            cmd.arg("--secret-key-file")
                .arg(&key)
                .arg("--data-dir")
                .arg(self.dir.path().join("data"));
        }
        cmd.env_remove("TENANTRY_ADMIN_TOKEN")
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.log_to_file {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .expect("server log");
            cmd.stderr(log);
        }
        if let Some(token) = operator_token {
            cmd.env("TENANTRY_ADMIN_TOKEN", token);
        }
        let mut child = cmd.spawn().expect("start tenantry serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        self.banner.clear();
        loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            self.banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("tenantry listening on ") {
                self.base = rest.split_whitespace().next().unwrap().to_string();
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// Kills the server without warning (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch(Some(OPERATOR));
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    /// Like `post` but panics unless the answer is a success; returns the body.
    pub async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, token, body).await;
        assert!(status.is_success(), "{method} {path} → {status}: {value}");
        value
    }

    /// Polls a move until `until` holds, `within` at most; a move that fails meanwhile ends
    /// the test, naming `what` it was waited for.
    pub async fn wait_move(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        until: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, m) = self.get(&format!("/v1/moves/{id}"), OPERATOR).await;
            if until(&m) {
                return m;
            }
            assert!(
                m["state"] != "Failed",
                "move failed waiting for {what}: {m}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn tenant(&self, name: &str) -> String {
        let domain = format!("{}.onmicrosoft.com", name.to_lowercase());
        let t = self
            .ok(
                Method::POST,
                "/v1/tenants",
                OPERATOR,
                Some(json!({"displayName": name, "defaultDomain": domain})),
            )
            .await;
        t["id"].as_str().unwrap().to_string()
    }

    pub async fn token(&self, tenant: &str, role: &str) -> String {
        let t = self
            .ok(
                Method::POST,
                &format!("/v1/tenants/{tenant}/tokens"),
                OPERATOR,
                Some(json!({"role": role})),
            )
            .await;
        t["token"].as_str().unwrap().to_string()
    }

    pub async fn subscription(&self, tenant: &str, sku: &str, quantity: u32) -> Value {
        self.ok(
            Method::POST,
            &format!("/v1/tenants/{tenant}/subscriptions"),
            OPERATOR,
            Some(json!({"skuPartNumber": sku, "quantity": quantity})),
        )
        .await
    }

    pub async fn user(&self, tenant: &str, alias: &str) -> String {
        let u = self
            .ok(
                Method::POST,
                &format!("/v1/tenants/{tenant}/users"),
                OPERATOR,
                Some(json!({"userPrincipalName": format!("{alias}@example.com"), "displayName": alias, "usageLocation": "US"})),
            )
            .await;
        u["id"].as_str().unwrap().to_string()
    }

    pub async fn assign(
        &self,
        tenant: &str,
        user: &str,
        sku_id: &str,
        token: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/tenants/{tenant}/users/{user}/assignLicense"),
            token,
            json!({"addLicenses": [{"skuId": sku_id, "disabledPlans": []}], "removeLicenses": []}),
        )
        .await
    }

    pub async fn subscribed(&self, tenant: &str, part: &str) -> Value {
        let (_, skus) = self
            .get(&format!("/v1/tenants/{tenant}/subscribedSkus"), OPERATOR)
            .await;
        skus["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["skuPartNumber"] == part)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Users `{alias}@{domain}` in `tenant` (display name the alias), each assigned an E3
    /// licence (the tenant has the seats).
    pub async fn licensed_users(
        &self,
        tenant: &str,
        domain: &str,
        aliases: &[impl AsRef<str>],
        usage_location: &str,
    ) {
        for alias in aliases {
            let alias = alias.as_ref();
            let user = self
                .ok(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/users"),
                    OPERATOR,
                    Some(json!({"userPrincipalName": format!("{alias}@{domain}"),
                        "displayName": alias, "usageLocation": usage_location})),
                )
                .await;
            let assigned = self
                .assign(tenant, user["id"].as_str().unwrap(), E3, OPERATOR)
                .await;
            assert_eq!(assigned.0, 200, "{}", assigned.1);
        }
    }

    /// A move's two tenants on this server: Fabrikam, where each of `users`
    /// (`{alias}@fabrikam.com`, in DE) holds one of its `source_seats` E3 seats, and Contoso
    /// with `target_seats`. Returns (source, target).
    pub async fn move_tenants(
        &self,
        users: &[impl AsRef<str>],
        source_seats: u32,
        target_seats: u32,
    ) -> (String, String) {
        let source = self.tenant("Fabrikam").await;
        let target = self.tenant("Contoso").await;
        self.subscription(&source, "ENTERPRISEPACK", source_seats)
            .await;
        self.subscription(&target, "ENTERPRISEPACK", target_seats)
            .await;
        self.licensed_users(&source, "fabrikam.com", users, "DE")
            .await;
        (source, target)
    }

    /// Stores connection profiles with a login: (name, kind, username, password).
    pub async fn profiles(&self, profiles: &[(&str, &str, &str, &str)]) {
        for (name, kind, username, password) in profiles {
            let (status, p) = self
                .post(
                    "/v1/connectionProfiles",
                    OPERATOR,
                    json!({"name": name, "kind": kind, "username": username, "password": password}),
                )
                .await;
            assert_eq!(status, 201, "{p}");
        }
    }

    /// Creates a move (201) from its spec; returns its id.
    pub async fn create_move(&self, spec: Value) -> String {
        let (status, m) = self.post("/v1/moves", OPERATOR, spec).await;
        assert_eq!(status, 201, "{m}");
        m["id"].as_str().unwrap().to_string()
    }

    /// The move's plan, which must be runnable (no blocker).
    pub async fn runnable_plan(&self, id: &str) -> Value {
        let (_, plan) = self.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
        assert_eq!(plan["runnable"], true, "{plan}");
        plan
    }

    /// Starts the move (202).
    pub async fn run_move(&self, id: &str) {
        let (status, run) = self
            .post(&format!("/v1/moves/{id}/run"), OPERATOR, json!({}))
            .await;
        assert_eq!(status, 202, "{run}");
    }

    pub async fn advance_days(&self, days: i64) {
        self.ok(
            Method::POST,
            "/v1/admin/clock",
            OPERATOR,
            Some(json!({"days": days})),
        )
        .await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";

/// The IMAP profiles of the move tests' mail servers (`support::mail::dovecot` with these
/// admin logins): `src-imap` and `dst-imap`.
pub const MAIL_PROFILES: [(&str, &str, &str, &str); 2] = [
    ("src-imap", "imap", "srcadmin", "srcadminpw"),
    ("dst-imap", "imap", "admin", "adminpw"),
];

/// Where the first step of `kind` (`migrateMailbox`…) stands in a plan's steps.
pub fn step_position(plan: &Value, kind: &str) -> usize {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} step: {plan}"))
}

/// Asserts a problem+json answer with the given status and code.
pub fn assert_problem(result: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(
        result.0.as_u16(),
        status,
        "expected {status} {code}, got {}",
        result.1
    );
    assert_eq!(result.1["code"], code, "{}", result.1);
    assert_eq!(result.1["status"], status);
    assert!(result.1["detail"].as_str().is_some_and(|d| !d.is_empty()));
}
