//! Limits of the real `tenantry serve` against hostile clients, over real sockets: connection
//! count and timeouts, bounded metrics labels, idempotency only for authenticated callers,
//! failed-authentication rate limit, token revocation, operator token strength and file
//! permissions.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{assert_problem, Server, OPERATOR};

fn connect(base: &str) -> TcpStream {
    let stream = TcpStream::connect(base.trim_start_matches("http://")).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection (EOF or reset); false if it stays open past
/// the read timeout.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_connections_beyond_the_limit_are_closed_and_healthz_still_answers() {
    let server = Server::start_with_args(&[
        "--max-connections",
        "20",
        "--header-read-timeout",
        "2",
        "--keep-alive-timeout",
        "2",
    ]);
    // Three times the limit, each sending only part of a request head.
    let mut half_sent: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut s = connect(&server.base);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let health = server
        .http
        .get(format!("{}/healthz", server.base))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("/healthz answers while the server is at its connection limit");
    assert_eq!(health.status(), StatusCode::OK);
    // It had to wait for a slot: the limit held (20 slots, freed no earlier than 2 s).
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered in {:?}: the connection limit did not hold",
        started.elapsed()
    );
    let closed = tokio::task::spawn_blocking(move || {
        half_sent
            .iter_mut()
            .map(closed_by_server)
            .filter(|closed| *closed)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        closed, 60,
        "every half-sent connection is closed by the header-read timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_does_not_hold_its_connection() {
    let server = Server::start_with_args(&["--header-read-timeout", "2"]);
    let base = server.base.clone();
    let (answer, closed) = tokio::task::spawn_blocking(move || {
        let mut s = connect(&base);
        let head = format!(
            "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"displayName\""
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = [0u8; 12];
        let got = s.read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..got]).into_owned();
        (answer, closed_by_server(&mut s))
    })
    .await
    .unwrap();
    // The stalled body fails its request (a 4xx, not a 5xx), and the connection is let go.
    assert!(answer.starts_with("HTTP/1.1 4"), "answered {answer:?}");
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    // The header-read timeout is long here, so only the keep-alive timeout can close it in time.
    let server =
        Server::start_with_args(&["--header-read-timeout", "120", "--keep-alive-timeout", "1"]);
    let base = server.base.clone();
    let (answered, closed_after) = tokio::task::spawn_blocking(move || {
        let mut s = connect(&base);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let answered = String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200");
        let idle_since = Instant::now();
        let closed = closed_by_server(&mut s);
        (answered, closed.then(|| idle_since.elapsed()))
    })
    .await
    .unwrap();
    assert!(answered);
    let closed_after = closed_after.expect("the idle connection was closed");
    assert!(
        closed_after < Duration::from_secs(60),
        "closed after {closed_after:?}, long before the 120 s header-read timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_do_not_grow_the_metrics() {
    let server = Server::start_with_args(&[]);
    for i in 0..1000u32 {
        let method =
            Method::from_bytes(format!("M{:08X}", i.wrapping_mul(2_654_435_761)).as_bytes())
                .unwrap();
        let path = if i % 2 == 0 {
            "/v1/tenants".to_string()
        } else {
            format!("/no/such/path/{i}")
        };
        let _ = server
            .http
            .request(method, format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
    }
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.len() < 4096,
        "/metrics is {} bytes after 1,000 invented methods:\n{metrics}",
        metrics.len()
    );
    assert!(metrics.contains("method=\"OTHER\",route=\"/v1/tenants\""));
    assert!(metrics.contains("route=\"unmatched\""));
    assert!(!metrics.contains("/no/such/path"));
}

fn idempotency_rows(server: &Server) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        server.dir.path().join("ledger.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT count(*) FROM idempotency_keys", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_post_with_an_idempotency_key_stores_nothing() {
    let server = Server::start_with_args(&[]);
    for (i, token) in [None, Some("tnt_not_a_real_token")].into_iter().enumerate() {
        let mut request = server
            .http
            .post(format!("{}/v1/tenants", server.base))
            .header("Idempotency-Key", format!("anonymous-{i}"))
            .json(&json!({"displayName": "X", "defaultDomain": "x.onmicrosoft.com"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(idempotency_rows(&server), 0);
    // An authenticated one is still kept (and replayed).
    for _ in 0..2 {
        let response = server
            .http
            .post(format!("{}/v1/tenants", server.base))
            .bearer_auth(OPERATOR)
            .header("Idempotency-Key", "operator-1")
            .json(&json!({"displayName": "Y", "defaultDomain": "y.onmicrosoft.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(idempotency_rows(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_rate_limited_and_logged_without_the_token() {
    // One failure given back a minute: the limit still holds when the right token is tried
    // however slowly this machine runs the test (at the default, a second's stall frees it).
    let server = Server::start_with_args(&["--auth-failures-per-minute", "1"]);
    let secret = "tnt_guess_that_must_never_reach_a_log_file";
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = server.get("/v1/tenants", secret).await;
        statuses.push(r.0.as_u16());
        if r.0 == StatusCode::TOO_MANY_REQUESTS {
            assert_problem(&r, 429, "TooManyFailedAuthentications");
            break;
        }
    }
    assert!(
        statuses.len() > 5 && statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "a few 401s, then 429: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let limited = server
        .http
        .get(format!("{}/v1/tenants", server.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    // Even the right token waits: a limited address learns nothing about the tokens it tries.
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("guess_that"), "the token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_at_once() {
    let server = Server::start();
    let tenant = server.tenant("Revoke").await;
    let created = server
        .ok(
            Method::POST,
            &format!("/v1/tenants/{tenant}/tokens"),
            OPERATOR,
            Some(json!({"role": "GlobalReader"})),
        )
        .await;
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let own = format!("/v1/tenants/{tenant}");
    assert_eq!(server.get(&own, token).await.0, StatusCode::OK);
    // A reader may not revoke; the operator may.
    let path = format!("/v1/tenants/{tenant}/tokens/{id}");
    assert_eq!(
        server.call(Method::DELETE, &path, token, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.call(Method::DELETE, &path, OPERATOR, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_problem(&server.get(&own, token).await, 401, "Unauthorized");
    assert_problem(
        &server.call(Method::DELETE, &path, OPERATOR, None).await,
        404,
        "NotFound",
    );
    let audit = server
        .ok(Method::GET, &format!("{own}/auditLogs"), OPERATOR, None)
        .await;
    assert!(audit["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "token.revoked" && r["targetId"] == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_but_well_formed_if_match_is_412_and_malformed_is_400() {
    let server = Server::start();
    let tenant = server.tenant("Etags").await;
    let user = server.user(&tenant, "ada").await;
    let path = format!("{}/v1/tenants/{tenant}/users/{user}", server.base);
    for (if_match, status, code) in [
        ("\"abc\"", 412, "PreconditionFailed"),
        ("W/\"abc\"", 412, "PreconditionFailed"),
        ("\"99\"", 412, "PreconditionFailed"),
        ("abc", 400, "MalformedIfMatch"),
        ("\"a\"b\"", 400, "MalformedIfMatch"),
    ] {
        let response = server
            .http
            .patch(&path)
            .bearer_auth(OPERATOR)
            .header("If-Match", if_match)
            .json(&json!({"displayName": "Ada"}))
            .send()
            .await
            .unwrap();
        let status_got = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            (status_got, body["code"].as_str()),
            (status, Some(code)),
            "If-Match: {if_match}"
        );
    }
}

#[cfg(unix)]
#[test]
fn database_and_key_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    for name in [
        "ledger.db",
        "ledger.db-wal",
        "ledger.db-shm",
        "tenantry.key",
    ] {
        let mode = std::fs::metadata(server.dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
}

fn serve_once(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mut cmd = std::process::Command::new(support::binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", &db])
        .args(args)
        .env_remove("TENANTRY_ADMIN_TOKEN")
        .env_remove("TENANTRY_ADMIN_TOKEN_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A refused token ends the process at once; an accepted one would keep serving.
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn a_weak_operator_token_is_refused_at_start() {
    let out = serve_once(&[], &[("TENANTRY_ADMIN_TOKEN", "a")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("operator token is too weak"), "{stderr}");
    assert!(!stderr.contains("listening"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_token_can_come_from_a_file_and_not_with_the_variable_too() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("operator-token");
    let token = "op_from_a_file_0123456789abcdefghijklmnop";
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let file_arg = file.to_str().unwrap();

    let both = serve_once(
        &["--admin-token-file", file_arg],
        &[(
            "TENANTRY_ADMIN_TOKEN",
            "op_other_0123456789abcdefghijklmnopqrst",
        )],
    );
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("not both"));

    let db = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mut child = std::process::Command::new(support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &db])
        .args(["--admin-token-file", file_arg])
        .env_remove("TENANTRY_ADMIN_TOKEN")
        .env_remove("TENANTRY_ADMIN_TOKEN_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(rest) = line.strip_prefix("tenantry listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let status = reqwest::Client::new()
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, StatusCode::OK);
}
