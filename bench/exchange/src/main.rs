//! Benchmark (not a test) of tenantry's Exchange paths against the test kit's fake Graph with
//! Microsoft's per-mailbox limits enforced (4 requests in flight, a round trip per request,
//! 150 MB per 5 minutes of uploads): a corpus seeded into Dovecot is migrated into the fake
//! through Graph message creation, the same corpus is copied Exchange → Exchange through
//! mailbox export/import, each for one mailbox and for 8 at once, then re-run (nothing to do).
//! Each figure is set against what the limits allow (see `limits`). README.md has the results.
//!
//! Run: `cargo run --release -p tenantry-exchange-bench -- [--messages 2000] [--mailboxes 8]
//! [--latency-ms 20]` (needs dovecot-imapd and openssl, as the mail tests do).

mod corpus;
mod limits;
mod slots;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use limits::{Limits, Load};
use tenantry_mail::cli::MailCommand;
use tenantry_mail::protocol::command::Command as Imap;
use tenantry_mail::protocol::utf7;
use tenantry_testkit::dovecot::{Config, Dovecot};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Mailboxes migrated at once in the second part (at most 8: the Dovecot users).
    #[arg(long, default_value_t = 8)]
    mailboxes: usize,
    /// Time the fake takes for each mailbox request (a real Exchange Online round trip).
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
}

const USERS: [(&str, &str); 8] = [
    ("u1", "pw1"),
    ("u2", "pw2"),
    ("u3", "pw3"),
    ("u4", "pw4"),
    ("u5", "pw5"),
    ("u6", "pw6"),
    ("u7", "pw7"),
    ("u8", "pw8"),
];

#[derive(Parser)]
struct EngineCli {
    #[command(subcommand)]
    cmd: MailCommand,
}

/// Re-exec mode: this binary runs `tenantry mail …` in a process of its own.
fn engine_main(args: &[String]) -> i32 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let argv = std::iter::once("tenantry-mail").chain(args.iter().map(String::as_str));
    let cli = match EngineCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match rt.block_on(tenantry_mail::cli::run(cli.cmd)) {
        Ok(code) if code == std::process::ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

/// One engine run: `tenantry mail migrate --source … --target …` with app-only credentials.
struct Job {
    source: String,
    target: String,
    state: PathBuf,
    password_file: Option<PathBuf>,
}

fn command(job: &Job, fake: &FakeGraph, secret: &Path) -> Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["__tenantry", "migrate", "--source", &job.source])
        .args(["--target", &job.target])
        .args(["--tenant-id", TENANT, "--client-id", CLIENT_ID])
        .arg("--client-secret-file")
        .arg(secret)
        .arg("--state-dir")
        .arg(&job.state)
        .arg("--quiet")
        .env("TENANTRY_GRAPH_URL", fake.url())
        .env("TENANTRY_AUTHORITY", fake.url())
        .stdout(Stdio::null());
    if let Some(p) = &job.password_file {
        c.arg("--source-password-file").arg(p);
    }
    Ok(c)
}

/// Runs the jobs at once; when they started and when the slowest ended.
fn run_all(jobs: &[Job], fake: &FakeGraph, secret: &Path) -> Result<(Instant, Instant)> {
    let start = Instant::now();
    let children: Vec<_> = jobs
        .iter()
        .map(|j| {
            command(j, fake, secret)?
                .spawn()
                .context("spawn the engine")
        })
        .collect::<Result<_>>()?;
    for (mut c, j) in children.into_iter().zip(jobs) {
        let status = c.wait()?;
        ensure!(status.success(), "{} → {}: {status}", j.source, j.target);
    }
    Ok((start, Instant::now()))
}

/// Each mailbox's requests and upload bytes between two snapshots of the fake's counters.
fn loads(before: &Snapshot, after: &Snapshot) -> HashMap<String, Load> {
    after
        .0
        .iter()
        .map(|(k, a)| {
            let b = before.0.get(k).copied().unwrap_or_default();
            let load = Load {
                requests: a.requests - b.requests,
                bytes: a.bytes - b.bytes,
            };
            (k.clone(), load)
        })
        .collect()
}

struct Snapshot(HashMap<String, Load>);

fn snapshot(fake: &FakeGraph) -> Snapshot {
    let s = fake.stats();
    let mut out: HashMap<String, Load> = HashMap::new();
    for (k, n) in s.mailbox_requests {
        out.entry(k).or_default().requests = n;
    }
    for (k, n) in s.mailbox_upload_bytes {
        out.entry(k).or_default().bytes = n;
    }
    Snapshot(out)
}

/// One scenario's figures.
struct Row {
    name: String,
    messages: usize,
    wall: Duration,
    /// The slowest mailbox's ideal time (mailboxes have limits each, so they overlap).
    ideal: Duration,
    requests: u64,
    /// MIME bytes of the messages copied.
    mime_bytes: usize,
    bound: &'static str,
    noop: Duration,
    arrived: String,
    /// How the mailboxes used their slots (the slowest one's only, for many mailboxes).
    slots: Vec<slots::SlotUse>,
}

fn row(
    name: String,
    jobs: &[Job],
    fake: &FakeGraph,
    secret: &Path,
    limits: &Limits,
    (messages, mime_bytes): (usize, usize),
    arrived: impl Fn() -> String,
) -> Result<Row> {
    let before = snapshot(fake);
    let records_before: HashMap<String, _> = before
        .0
        .keys()
        .map(|u| (u.clone(), fake.in_flight(u)))
        .collect();
    let span = run_all(jobs, fake, secret)?;
    let wall = span.1 - span.0;
    let load = loads(&before, &snapshot(fake));
    let mut upns: Vec<&String> = load.keys().filter(|u| load[*u].requests > 0).collect();
    upns.sort_by_key(|u| std::cmp::Reverse(limits.ideal(load[*u])));
    if upns.len() > 2 {
        upns.truncate(1);
    }
    let slots = upns
        .iter()
        .map(|u| {
            let before = records_before.get(*u).cloned().unwrap_or_default();
            slots::slot_use(u, &fake.in_flight(u), &before, span, limits.concurrency)
        })
        .collect();
    let noop = {
        let (a, b) = run_all(jobs, fake, secret)?;
        b - a
    };
    let worst = load
        .values()
        .max_by_key(|l| limits.ideal(**l))
        .copied()
        .unwrap_or_default();
    Ok(Row {
        slots,
        name,
        messages,
        wall,
        ideal: limits.ideal(worst),
        requests: load.values().map(|l| l.requests).sum(),
        mime_bytes,
        bound: if limits.budget_bound(worst) > limits.request_bound(worst) {
            "upload budget"
        } else {
            "4 in flight × latency"
        },
        noop,
        arrived: arrived(),
    })
}

async fn seed_dovecot(dove: &Dovecot, corpus: &[corpus::Message], users: usize) -> Result<()> {
    for (user, pw) in USERS.iter().take(users) {
        let mut s = dove.session(user, pw).await;
        for (imap, _) in corpus::FOLDERS.iter().filter(|(f, _)| f.contains('/')) {
            let name = utf7::encode(imap);
            s.run(Imap::new("CREATE ").string(name.as_bytes())).await?;
        }
        for chunk in corpus.chunks(40) {
            let mut tags = Vec::new();
            for m in chunk {
                let folder = utf7::encode(corpus::FOLDERS[m.folder].0);
                let cmd = Imap::new("APPEND ")
                    .string(folder.as_bytes())
                    .text(&format!(" ({}) \"{}\" ", m.flags, m.date))
                    .literal(m.data.clone());
                tags.push(s.send(cmd).await?);
            }
            for r in s.complete_many(&tags).await? {
                if r.status != tenantry_mail::protocol::Status::Ok {
                    bail!("seeding {user}: {}", r.describe());
                }
            }
        }
    }
    Ok(())
}

fn seed_export(fake: &FakeGraph, upn: &str, corpus: &[corpus::Message]) {
    fake.add_export_mailbox(upn, true);
    let mut ids: HashMap<&str, String> = HashMap::new();
    for (_, x) in corpus::FOLDERS {
        if !x.contains(' ') {
            ids.insert(x, x.to_string());
        } else if !ids.contains_key(x) {
            ids.insert(
                x,
                fake.add_export_folder(upn, "msgfolderroot", x, "IPF.Note"),
            );
        }
    }
    for m in corpus {
        fake.add_export_item(upn, &ids[corpus::FOLDERS[m.folder].1], "IPM.Note", &m.data);
    }
}

fn print(rows: &[Row], single: Option<&Row>, mailboxes: usize) {
    println!(
        "\n{:<34} {:>8} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9}  {:<22} {:>8}  arrived",
        "scenario",
        "wall s",
        "msg/s",
        "MB/s",
        "requests",
        "ideal s",
        "ideal/s",
        "fraction",
        "binding limit",
        "no-op s"
    );
    for r in rows {
        let secs = r.wall.as_secs_f64();
        println!(
            "{:<34} {:>8.2} {:>9.1} {:>8.2} {:>9} {:>8.2} {:>9.1} {:>9.2}  {:<22} {:>8.2}  {}",
            r.name,
            secs,
            r.messages as f64 / secs,
            r.mime_bytes as f64 / 1e6 / secs,
            r.requests,
            r.ideal.as_secs_f64(),
            r.messages as f64 / r.ideal.as_secs_f64(),
            r.ideal.as_secs_f64() / secs,
            r.bound,
            r.noop.as_secs_f64(),
            r.arrived
        );
        for u in &r.slots {
            println!("{u}");
        }
    }
    if let Some(s) = single {
        let ideal_one = s.messages as f64 / s.ideal.as_secs_f64();
        for r in rows.iter().filter(|r| r.name.contains("mailboxes")) {
            let agg = r.messages as f64 / r.wall.as_secs_f64();
            println!(
                "{}: aggregate {agg:.1} msg/s against {mailboxes} × the single-mailbox ideal {:.1} msg/s = {:.2}",
                r.name,
                mailboxes as f64 * ideal_one,
                agg / (mailboxes as f64 * ideal_one)
            );
        }
    }
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__tenantry") {
        std::process::exit(engine_main(&argv[2..]));
    }
    let args = Args::parse();
    ensure!(
        (1..=USERS.len()).contains(&args.mailboxes),
        "--mailboxes must be 1 to {}",
        USERS.len()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> Result<()> {
    let opts = FakeGraphOptions {
        mail_request_delay: Duration::from_millis(args.latency_ms),
        export_request_delay: Duration::from_millis(args.latency_ms),
        ..Default::default()
    };
    let limits = Limits {
        concurrency: opts.mailbox_concurrency,
        latency: opts.mail_request_delay,
        budget: opts.mail_upload_budget.0,
        window: opts.mail_upload_budget.1,
    };
    let fake = FakeGraph::start(opts);
    let tmp = tempfile::tempdir()?;
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, CLIENT_SECRET)?;
    let corpus = corpus::generate(args.messages);
    let corpus_bytes: usize = corpus.iter().map(|m| m.data.len()).sum();
    let n = args.mailboxes;

    let t = Instant::now();
    let dove = Dovecot::start(Config {
        users: USERS.to_vec(),
        ..Config::source()
    });
    seed_dovecot(&dove, &corpus, n).await?;
    for i in 1..=n {
        seed_export(&fake, &format!("src{i}@fabrikam.com"), &corpus);
    }
    println!(
        "corpus: {} messages, {:.1} MB of MIME, in {n} Dovecot mailboxes and {n} Exchange mailboxes (seeded in {:.1} s)",
        corpus.len(),
        corpus_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    println!(
        "limits per mailbox: {} requests in flight, {} ms per request, {:.0} MB per {} s of uploads",
        limits.concurrency,
        limits.latency.as_millis(),
        limits.budget as f64 / 1e6,
        limits.window.as_secs()
    );

    let imap_job = |i: usize, upn: &str| -> Result<Job> {
        let pw = tmp.path().join(format!("pw{i}"));
        std::fs::write(&pw, USERS[i - 1].1)?;
        Ok(Job {
            source: dove.url(USERS[i - 1].0),
            target: format!("exchange://{upn}"),
            state: tmp.path().join(format!("state-{upn}")),
            password_file: Some(pw),
        })
    };
    let export_job = |src: String, dst: &str| Job {
        source: format!("exchange://{src}"),
        target: format!("exchange://{dst}"),
        state: tmp.path().join(format!("state-{dst}")),
        password_file: None,
    };
    let received = |upns: Vec<String>| {
        let fake = &fake;
        move || {
            let msgs: Vec<_> = upns.iter().flat_map(|u| fake.mail_messages(u)).collect();
            let drafts = msgs.iter().filter(|m| m.is_draft).count();
            format!("{} messages, {drafts} drafts", msgs.len())
        }
    };
    let imported = |upns: Vec<String>| {
        let fake = &fake;
        move || {
            let items: usize = upns.iter().map(|u| fake.export_items(u).len()).sum();
            format!("{items} items")
        }
    };

    let mut rows = Vec::new();
    fake.add_mailbox("one@contoso.com", false);
    rows.push(row(
        "Dovecot → Exchange, 1 mailbox".into(),
        &[imap_job(1, "one@contoso.com")?],
        &fake,
        &secret,
        &limits,
        (corpus.len(), corpus_bytes),
        received(vec!["one@contoso.com".into()]),
    )?);
    let upns: Vec<String> = (1..=n).map(|i| format!("m{i}@contoso.com")).collect();
    for u in &upns {
        fake.add_mailbox(u, false);
    }
    let jobs = (1..=n)
        .map(|i| imap_job(i, &upns[i - 1]))
        .collect::<Result<Vec<_>>>()?;
    rows.push(row(
        format!("Dovecot → Exchange, {n} mailboxes"),
        &jobs,
        &fake,
        &secret,
        &limits,
        (n * corpus.len(), n * corpus_bytes),
        received(upns.clone()),
    )?);

    fake.add_export_mailbox("one@contoso.net", false);
    rows.push(row(
        "Exchange → Exchange, 1 mailbox".into(),
        &[export_job("src1@fabrikam.com".into(), "one@contoso.net")],
        &fake,
        &secret,
        &limits,
        (corpus.len(), corpus_bytes),
        imported(vec!["one@contoso.net".into()]),
    )?);
    let dsts: Vec<String> = (1..=n).map(|i| format!("x{i}@contoso.net")).collect();
    for d in &dsts {
        fake.add_export_mailbox(d, false);
    }
    let jobs: Vec<Job> = (1..=n)
        .map(|i| export_job(format!("src{i}@fabrikam.com"), &dsts[i - 1]))
        .collect();
    rows.push(row(
        format!("Exchange → Exchange, {n} mailboxes"),
        &jobs,
        &fake,
        &secret,
        &limits,
        (n * corpus.len(), n * corpus_bytes),
        imported(dsts.clone()),
    )?);

    print(&rows[..2], Some(&rows[0]), n);
    print(&rows[2..], Some(&rows[2]), n);
    let s = fake.stats();
    println!(
        "\nfake: {} requests refused for a fifth in flight, {} for the upload budget, {} other 429s",
        s.mailbox_concurrency_refusals,
        s.upload_budget_refusals,
        s.throttled - s.mailbox_concurrency_refusals - s.upload_budget_refusals
    );
    Ok(())
}
