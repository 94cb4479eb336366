//! Benchmark (not a test): generates a corpus into Dovecot A, then migrates it with tenantry
//! and with mbsync (isync) into two fresh Dovecot B instances, in the same run, and prints
//! wall time, throughput, peak RSS and whether each target's digest equals the source's.
//!
//! Run: `cargo run --release -p tenantry-mail-bench -- [--messages N] [--rounds R]`
//! (needs dovecot-imapd, openssl and isync; imapsync is not packaged in Debian, so it is not
//! compared here).
//!
//! Checked by hand with isync 1.4.4: mbsync's copies differ from the source because it inserts
//! an `X-TUID:` header into each message, and it does not copy keywords ($Label1, $Forwarded).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tenantry_mail::cli::MailCommand;
use tenantry_mail::folders;
use tenantry_mail::protocol::command::Command as Imap;
use tenantry_mail::protocol::utf7;
use tenantry_mail::session::Session;
use tenantry_mail::sync::Options;
use tenantry_mail::verify::{folder_digest, MessageDigest};
use tenantry_testkit::dovecot::{Config, Dovecot};
use tenantry_testkit::process::run_measured;

const FOLDERS: &[&str] = &[
    "INBOX",
    "INBOX",
    "INBOX",
    "Archive/2023",
    "Archive/2024/Q1",
    "Entwürfe",
    "日本語/サブ",
    "Sent",
    "Projects/Ärger & Co",
];

/// Deterministic pseudo-random numbers (xorshift), so every run has the same corpus.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn body(rng: &mut Rng, i: usize, size: usize, message_id: bool) -> Vec<u8> {
    let mut m = format!(
        "From: User {i} <u{i}@example.org>\r\nTo: Team <team@example.org>\r\nSubject: Report {i} – Übersicht\r\nDate: Tue, 5 Mar 2024 09:{:02}:00 +0100\r\n",
        i % 60
    );
    if message_id {
        m += &format!("Message-ID: <bench.{i}@example.org>\r\n");
    }
    m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
    let mut b = m.into_bytes();
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     ";
    while b.len() < size {
        for _ in 0..76 {
            b.push(ALPHA[rng.below(ALPHA.len() as u64) as usize]);
        }
        b.extend_from_slice(b"\r\n");
    }
    b
}

async fn seed(s: &mut Session, n: usize) -> Result<(usize, u64)> {
    for f in FOLDERS.iter().filter(|f| **f != "INBOX" && **f != "Sent") {
        let _ = s
            .run(Imap::new("CREATE ").string(utf7::encode(f).as_bytes()))
            .await;
        let _ = s
            .run(Imap::new("SUBSCRIBE ").string(utf7::encode(f).as_bytes()))
            .await;
    }
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut bytes = 0u64;
    let mut count = 0;
    let mut last: Option<(String, String, Vec<u8>)> = None;
    let mut tags = Vec::new();
    for i in 0..n {
        let folder = utf7::encode(FOLDERS[rng.below(FOLDERS.len() as u64) as usize]);
        // 90% between 1 KB and 40 KB, 10% between 200 KB and 2 MB.
        let size = if rng.below(10) == 0 {
            200_000 + rng.below(1_800_000) as usize
        } else {
            1_000 + rng.below(39_000) as usize
        };
        let flags = [
            "",
            "\\Seen",
            "\\Seen \\Answered",
            "\\Seen \\Flagged",
            "\\Seen $Label1",
            "$Forwarded \\Seen",
            "\\Draft",
        ][rng.below(7) as usize];
        let date = format!(
            "{:02}-Mar-2024 {:02}:{:02}:00 +0100",
            1 + i % 28,
            i % 24,
            i % 60
        );
        // 2% exact duplicates of the previous message (same bytes, flags, date, folder).
        // 5% without Message-ID.
        let message_id = rng.below(20) != 0;
        let (folder, flags, data) = match (&last, rng.below(50) == 0) {
            (Some((f, fl, d)), true) => (f.clone(), fl.clone(), d.clone()),
            _ => (
                folder,
                flags.to_string(),
                body(&mut rng, i, size, message_id),
            ),
        };
        bytes += data.len() as u64;
        let cmd = Imap::new("APPEND ")
            .string(folder.as_bytes())
            .text(&format!(" ({flags}) \"{date}\" "))
            .literal(data.clone());
        tags.push(s.send(cmd).await?);
        if tags.len() >= 40 {
            for r in s.complete_many(&tags).await? {
                if r.status != tenantry_mail::protocol::Status::Ok {
                    bail!("seeding failed: {}", r.describe());
                }
            }
            tags.clear();
        }
        last = Some((folder, flags, data));
        count += 1;
    }
    s.complete_many(&tags).await?;
    Ok((count, bytes))
}

/// Folder → sorted digests, with role folders named alike and empty folders left out.
async fn digest(s: &mut Session) -> Result<BTreeMap<String, Vec<MessageDigest>>> {
    let mut out = BTreeMap::new();
    for f in folders::list(s).await? {
        if !f.selectable {
            continue;
        }
        let (d, _) = folder_digest(s, &f.wire, None, true, &Options::default()).await?;
        if d.is_empty() {
            continue;
        }
        let name = match f.path.join("/").as_str() {
            "Sent Items" => "Sent".to_string(),
            "Deleted Items" => "Trash".to_string(),
            other => other.to_string(),
        };
        out.insert(name, d);
    }
    Ok(out)
}

fn compare(
    a: &BTreeMap<String, Vec<MessageDigest>>,
    b: &BTreeMap<String, Vec<MessageDigest>>,
) -> String {
    let strip = |m: &BTreeMap<String, Vec<MessageDigest>>, f: &dyn Fn(&MessageDigest) -> String| {
        m.iter()
            .map(|(k, v)| {
                let mut x: Vec<String> = v.iter().map(f).collect();
                x.sort();
                (k.clone(), x)
            })
            .collect::<BTreeMap<_, _>>()
    };
    if a == b {
        return "yes".into();
    }
    let bodies = strip(a, &|d| d.sha.clone()) == strip(b, &|d| d.sha.clone());
    let flags = strip(a, &|d| d.flags.clone()) == strip(b, &|d| d.flags.clone());
    let dates = strip(a, &|d| format!("{:?}", d.date)) == strip(b, &|d| format!("{:?}", d.date));
    let count = |m: &BTreeMap<String, Vec<MessageDigest>>| m.values().map(Vec::len).sum::<usize>();
    format!(
        "NO (bodies {}, flags {}, dates {}, folders {}/{}, messages {}/{})",
        if bodies { "equal" } else { "differ" },
        if flags { "equal" } else { "differ" },
        if dates { "equal" } else { "differ" },
        b.len(),
        a.len(),
        count(b),
        count(a)
    )
}

struct Measured {
    ok: bool,
    wall: Duration,
    max_rss_kb: i64,
}

fn measure(cmd: &mut Command) -> Result<Measured> {
    let (ok, peak_kb, wall) = run_measured(cmd);
    Ok(Measured {
        ok,
        wall,
        max_rss_kb: peak_kb as i64,
    })
}

fn tenantry_cmd(src: &Dovecot, tgt: &Dovecot, state: &std::path::Path) -> Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args([
        "__tenantry",
        "migrate",
        "--source",
        &src.url("alice"),
        "--target",
        &tgt.url("alice"),
    ])
    .arg("--state-dir")
    .arg(state)
    .arg("--quiet")
    .env("TENANTRY_SOURCE_PASSWORD", "alicepw")
    .env("TENANTRY_TARGET_PASSWORD", "alicepw2")
    .stdout(Stdio::null());
    Ok(c)
}

fn mbsync_cmd(src: &Dovecot, tgt: &Dovecot, dir: &std::path::Path) -> Result<Command> {
    let state = dir.join("mbsync-state");
    std::fs::create_dir_all(&state)?;
    let conf = format!(
        "IMAPAccount src\nHost 127.0.0.1\nPort {}\nUser alice\nPass alicepw\nSSLType None\nAuthMechs LOGIN\n\n\
         IMAPStore src\nAccount src\n\n\
         IMAPAccount tgt\nHost 127.0.0.1\nPort {}\nUser alice\nPass alicepw2\nSSLType None\nAuthMechs LOGIN\n\n\
         IMAPStore tgt\nAccount tgt\n\n\
         Channel mig\nFar :tgt:\nNear :src:\nPatterns * !\"Sent Items\" !\"Deleted Items\"\nCreate Far\nSync Push\nExpunge None\nRemove None\nCopyArrivalDate yes\nSyncState {}/\n",
        src.port,
        tgt.port,
        state.display()
    );
    let path = dir.join("mbsyncrc");
    std::fs::write(&path, conf)?;
    let mut c = Command::new("mbsync");
    c.arg("-q")
        .arg("-c")
        .arg(&path)
        .arg("mig")
        .stdout(Stdio::null());
    Ok(c)
}

fn row(name: &str, m: &Measured, msgs: usize, bytes: u64, digest: &str, noop: &Measured) {
    let secs = m.wall.as_secs_f64();
    println!(
        "{name:<9} {:>8.2} s {:>9.0} msg/s {:>7.1} MB/s {:>7.1} MB RSS  exit {:<3} digest equal: {digest}\n{:<9} no-op re-run {:.3} s (peak RSS {:.1} MB)",
        secs,
        msgs as f64 / secs,
        bytes as f64 / 1e6 / secs,
        m.max_rss_kb as f64 / 1024.0,
        if m.ok { "ok" } else { "ERR" },
        "",
        noop.wall.as_secs_f64(),
        noop.max_rss_kb as f64 / 1024.0,
    );
}

#[derive(Parser)]
struct EngineCli {
    #[command(subcommand)]
    cmd: MailCommand,
}

/// Runs `tenantry mail ...` in-process (the re-exec mode below); returns the exit code.
async fn engine_cli(args: &[&str]) -> u8 {
    let mut argv = vec!["tenantry-mail"];
    argv.extend_from_slice(args);
    let cli = EngineCli::try_parse_from(argv).unwrap();
    match tenantry_mail::cli::run(cli.cmd).await {
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Re-exec mode: this same binary runs the engine, so its RSS is the engine's alone.
    if args.get(1).map(String::as_str) == Some("__tenantry") {
        let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
        let code = rt.block_on(engine_cli(&rest));
        std::process::exit(i32::from(code));
    }
    let n: usize = match args.iter().position(|a| a == "--messages") {
        Some(i) => args.get(i + 1).context("--messages N")?.parse()?,
        None => 2200,
    };
    let rounds: usize = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args.get(i + 1).context("--rounds N")?.parse()?,
        None => 2,
    };
    rt.block_on(async move {
        let tmp = tempfile::tempdir()?;
        let a = Dovecot::start(Config::source());
        let t0 = Instant::now();
        let mut s = a.session("alice", "alicepw").await;
        let (msgs, bytes) = seed(&mut s, n).await?;
        let src_digest = digest(&mut s).await?;
        println!(
            "corpus: {msgs} messages, {:.1} MB, {} non-empty folders (generated in {:.1} s)\n",
            bytes as f64 / 1e6,
            src_digest.len(),
            t0.elapsed().as_secs_f64()
        );

        // Each round migrates into fresh targets; the order alternates so neither tool always
        // runs first (page cache, a busy machine).
        for round in 0..rounds {
            println!("round {}:", round + 1);
            let tenantry_first = round % 2 == 0;
            for tool in if tenantry_first {
                ["tenantry", "mbsync"]
            } else {
                ["mbsync", "tenantry"]
            } {
                let b = Dovecot::start(Config::target());
                let dir = tmp.path().join(format!("{tool}-{round}"));
                std::fs::create_dir_all(&dir)?;
                let (m, noop) = if tool == "tenantry" {
                    let state = dir.join("state");
                    (
                        measure(&mut tenantry_cmd(&a, &b, &state)?)?,
                        measure(&mut tenantry_cmd(&a, &b, &state)?)?,
                    )
                } else {
                    (
                        measure(&mut mbsync_cmd(&a, &b, &dir)?)?,
                        measure(&mut mbsync_cmd(&a, &b, &dir)?)?,
                    )
                };
                let d = compare(
                    &src_digest,
                    &digest(&mut b.session("alice", "alicepw2").await).await?,
                );
                row(tool, &m, msgs, bytes, &d, &noop);
            }
        }
        Ok(())
    })
}
