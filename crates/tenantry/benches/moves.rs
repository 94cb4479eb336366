//! Move benchmark (not a test): one move of N mailboxes (about M messages each) on PostgreSQL,
//! both IMAP servers behind a proxy that adds a delay to every exchange (20 ms: a real Exchange
//! Online connection's round trip), run by 1 worker × 1 step at a time, 1 worker × 8, and
//! 2 workers × 8 — the same move each time, a fresh database and target server per run. Prints
//! the wall times and the scaling against one step at a time (issue 11's goal: ≥ 6× with 8).
//!
//!     cargo bench -p tenantry --bench moves -- [--mailboxes 40] [--messages 100] [--delay-ms 20]
//!
//! It lives beside the tests because it drives the real binaries through the whole-move harness
//! (`tests/support`); it needs Dovecot and PostgreSQL (`scripts/deps/*.apt`).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fleet::*;
use support::*;

struct Args {
    mailboxes: usize,
    messages: usize,
    delay_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        mailboxes: 40,
        messages: 100,
        delay_ms: 20,
    };
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|w| w != "--bench")
        .collect();
    for w in words.chunks(2) {
        let n = w.get(1).and_then(|v| v.parse().ok());
        match (w[0].as_str(), n) {
            ("--mailboxes", Some(n)) => a.mailboxes = n as usize,
            ("--messages", Some(n)) => a.messages = n as usize,
            ("--delay-ms", Some(n)) => a.delay_ms = n,
            _ => panic!("usage: moves [--mailboxes 40] [--messages 100] [--delay-ms 20]"),
        }
    }
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let a = args();
    if tenantry_testkit::postgres::bin_dir().is_none() {
        println!("skipped: PostgreSQL is not installed (Debian package postgresql)");
        return;
    }
    let source_mail = dovecot(
        "fabrikam.com",
        ("srcadmin", "srcadminpw"),
        false,
        a.mailboxes,
    );
    eprintln!("seeding {} mailboxes ...", a.mailboxes);
    let messages = seed_mail(&source_mail, a.mailboxes, |_| a.messages).await;
    let delayed = |port| {
        tenantry_testkit::faults::Proxy::start(
            port,
            tenantry_testkit::faults::ProxyConfig {
                delay: Duration::from_millis(a.delay_ms),
                ..Default::default()
            },
        )
    };
    let far_source = delayed(source_mail.port);
    let runs: [(usize, usize); 3] = [(1, 1), (1, 8), (2, 8)];
    let mut times = Vec::new();
    for (workers, concurrency) in runs {
        let db = Arc::new(tenantry_testkit::postgres::postgres_database().expect("PostgreSQL"));
        let target_mail = dovecot("contoso.com", ("admin", "adminpw"), true, a.mailboxes);
        let far_target = delayed(target_mail.port);
        let s = Server::start_on_with_args(db.clone(), &["--no-worker"]);
        let (id, _, _) = create_move(
            &s,
            a.mailboxes,
            &format!("imap://127.0.0.1:{}", far_source.port()),
            &format!("imap://127.0.0.1:{}", far_target.port()),
            Vec::new(),
        )
        .await;
        let work = tempfile::tempdir().unwrap();
        let per_worker = concurrency.to_string();
        // The per-server cap never binds here: the concurrency is what is measured.
        let _workers: Vec<Worker> = (0..workers)
            .map(|i| {
                Worker::start(
                    &db.url,
                    &s.key_file(),
                    &work.path().join(format!("w{i}")),
                    &["--concurrency", &per_worker, "--per-server", "64"],
                )
            })
            .collect();
        let started = Instant::now();
        let (status, body) = s
            .post(&format!("/v1/moves/{id}/run"), OPERATOR, json!({}))
            .await;
        assert_eq!(status, 202, "{body}");
        wait_for(&s, &id, "Completed", Duration::from_secs(3600)).await;
        let took = started.elapsed();
        eprintln!(
            "{workers} worker(s) × {concurrency}: {:.1} s",
            took.as_secs_f64()
        );
        times.push(((workers, concurrency), took));
    }
    let base = times[0].1.as_secs_f64();
    println!();
    println!(
        "tenantry move benchmark — {} mailboxes, {messages} messages, {} ms added to every IMAP exchange, PostgreSQL",
        a.mailboxes, a.delay_ms
    );
    println!(
        "{:<28} {:>10} {:>12} {:>10}",
        "run", "seconds", "messages/s", "speed-up"
    );
    for ((workers, concurrency), took) in &times {
        let secs = took.as_secs_f64();
        println!(
            "{:<28} {:>10.1} {:>12.0} {:>9.2}×",
            format!("{workers} worker × {concurrency} at once"),
            secs,
            messages as f64 / secs,
            base / secs
        );
    }
    let best = times[1..]
        .iter()
        .map(|(_, t)| base / t.as_secs_f64())
        .fold(0.0, f64::max);
    println!(
        "goal (issue 11): ≥ 6× faster than one step at a time: {} ({best:.2}×)",
        if best >= 6.0 { "met" } else { "NOT met" }
    );
    println!(
        "this machine: {} cores shared by the workers, serve, PostgreSQL, two Dovecots and the proxies",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
