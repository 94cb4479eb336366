//! Ledger benchmark (not a test): N concurrent HTTP clients assign and remove licences against a
//! real server on a durable SQLite file, then the same workload as a raw loop of durable
//! single-row SQLite transactions. Prints throughput, latency percentiles and the ratio.
//!
//!     cargo run --release -p tenantry-bench-ledger -- --clients 32 --seconds 10

use anyhow::{ensure, Context};
use clap::Parser;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_api::clock::Clock;
use tenantry_api::{ensure_operator_token, router, AppState};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 32)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Users per client; each client assigns then removes licences of its own users.
    #[arg(long, default_value_t = 40)]
    users_per_client: usize,
    /// Seats bought: fewer than clients × users, so that clients compete for the last seats.
    #[arg(long, default_value_t = 1000)]
    seats: u32,
}

const TOKEN: &str = "bench-operator-token";
const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";

struct Totals {
    ok: AtomicU64,
    no_seat: AtomicU64,
    other: AtomicU64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");

    // The server runs on its own runtime, as `tenantry serve` would.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = server_rt.block_on(tenantry_store::open(&format!("sqlite://{}", db.display())))?;
    let app = AppState::new(store, Clock::system());
    let listener = server_rt.block_on(async {
        ensure_operator_token(&app, Some(TOKEN)).await?;
        anyhow::Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
    })?;
    let addr = listener.local_addr()?;
    server_rt.spawn(async move { axum::serve(listener, router(app)).await });
    let base = format!("http://{addr}");

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (ok, rate, p50, p99, no_seat, other, consumed, capacity) =
        client_rt.block_on(http_workload(&args, &base))?;

    let raw = raw_sqlite_loop(dir.path(), Duration::from_secs(args.seconds))?;

    println!();
    println!("tenantry ledger benchmark — {} clients, {} s, {} seats, SQLite WAL synchronous=FULL (every acknowledged commit is fsynced)", args.clients, args.seconds, args.seats);
    println!(
        "{:<44} {:>12} {:>10} {:>10}",
        "workload", "ops/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "HTTP assignLicense (add/remove), group commit", rate, p50, p99
    );
    println!(
        "{:<44} {:>12.0} {:>10.2} {:>10.2}",
        "raw SQLite, one durable tx per assignment", raw.0, raw.1, raw.2
    );
    println!("ratio HTTP / raw SQLite: {:.2}x", rate / raw.0.max(1.0));
    println!("requests: {ok} succeeded, {no_seat} refused NoFreeSeat (expected under contention), {other} other failures");
    println!(
        "oversell check: consumedUnits {consumed} ≤ seats {capacity}: {}",
        if consumed <= capacity {
            "OK, zero oversell"
        } else {
            "OVERSOLD"
        }
    );
    ensure!(consumed <= capacity && other == 0, "benchmark found errors");
    Ok(())
}

#[allow(clippy::type_complexity)]
async fn http_workload(
    args: &Args,
    base: &str,
) -> anyhow::Result<(u64, f64, f64, f64, u64, u64, u64, u64)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let post = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.post(url).bearer_auth(TOKEN).json(&body).send().await?;
            let status = r.status();
            let v: Value = r.json().await?;
            ensure!(status.is_success(), "setup failed: {status} {v}");
            anyhow::Ok(v)
        }
    };
    let tenant = post(
        "/v1/tenants".into(),
        json!({"displayName": "Bench", "defaultDomain": "bench.onmicrosoft.com"}),
    )
    .await?;
    let t = tenant["id"].as_str().context("tenant id")?.to_string();
    post(
        format!("/v1/tenants/{t}/subscriptions"),
        json!({"skuPartNumber": "ENTERPRISEPACK", "quantity": args.seats}),
    )
    .await?;
    let mut users = Vec::new();
    for c in 0..args.clients {
        let mut mine = Vec::new();
        for i in 0..args.users_per_client {
            let u = post(
                format!("/v1/tenants/{t}/users"),
                json!({"userPrincipalName": format!("c{c}u{i}@bench.example"), "displayName": "Bench", "usageLocation": "US"}),
            )
            .await?;
            mine.push(u["id"].as_str().context("user id")?.to_string());
        }
        users.push(mine);
    }

    let totals = Arc::new(Totals {
        ok: AtomicU64::new(0),
        no_seat: AtomicU64::new(0),
        other: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let add = bytes::Bytes::from(
        json!({"addLicenses": [{"skuId": E3, "disabledPlans": []}], "removeLicenses": []})
            .to_string(),
    );
    let remove = bytes::Bytes::from(json!({"addLicenses": [], "removeLicenses": [E3]}).to_string());
    for mine in users {
        let (totals, stop, t) = (totals.clone(), stop.clone(), t.clone());
        let (add, remove) = (add.clone(), remove.clone());
        let addr = base.trim_start_matches("http://").to_string();
        tasks.push(tokio::spawn(async move {
            // One keep-alive connection per client, driven by hyper directly: the client should
            // cost as little CPU as possible, since it shares the machine with the server.
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let paths: Vec<String> = mine
                .iter()
                .map(|u| format!("/v1/tenants/{t}/users/{u}/assignLicense"))
                .collect();
            let mut latencies = Vec::new();
            let mut holding = vec![false; mine.len()];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = i % mine.len();
                i += 1;
                let body = if holding[k] {
                    remove.clone()
                } else {
                    add.clone()
                };
                let request = hyper::Request::post(paths[k].as_str())
                    .header("host", addr.as_str())
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(body))?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                http_body_util::BodyExt::collect(response.into_body()).await?;
                latencies.push(sent.elapsed().as_micros() as u64);
                match status {
                    200 => {
                        holding[k] = !holding[k];
                        totals.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    409 => {
                        totals.no_seat.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        totals.other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ok = totals.ok.load(Ordering::Relaxed);
    let skus: Value = http
        .get(format!("{base}/v1/tenants/{t}/subscribedSkus"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let consumed = skus["value"][0]["consumedUnits"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let capacity = skus["value"][0]["prepaidUnits"]["enabled"]
        .as_u64()
        .unwrap_or(0);
    Ok((
        ok,
        (ok + totals.no_seat.load(Ordering::Relaxed)) as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        totals.no_seat.load(Ordering::Relaxed),
        totals.other.load(Ordering::Relaxed),
        consumed,
        capacity,
    ))
}

/// The same assign/remove workload as one durable SQLite transaction per operation, no HTTP.
fn raw_sqlite_loop(dir: &std::path::Path, duration: Duration) -> anyhow::Result<(f64, f64, f64)> {
    let conn = rusqlite::Connection::open(dir.join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE pool (id INTEGER PRIMARY KEY, capacity INTEGER, consumed INTEGER);
         CREATE TABLE assignments (user_id INTEGER PRIMARY KEY);
         INSERT INTO pool VALUES (1, 1000, 0);",
    )?;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut holding = vec![false; 1280];
    let mut i = 0;
    while started.elapsed() < duration {
        let k = i % holding.len();
        i += 1;
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        if holding[k] {
            conn.execute("DELETE FROM assignments WHERE user_id = ?1", [k as i64])?;
            conn.execute("UPDATE pool SET consumed = consumed - 1 WHERE id = 1", [])?;
            holding[k] = false;
        } else if conn.execute(
            "UPDATE pool SET consumed = consumed + 1 WHERE id = 1 AND consumed < capacity",
            [],
        )? == 1
        {
            conn.execute("INSERT INTO assignments VALUES (?1)", [k as i64])?;
            holding[k] = true;
        }
        conn.execute_batch("COMMIT")?;
        latencies.push(t.elapsed().as_micros() as u64);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((
        rate,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    ))
}
