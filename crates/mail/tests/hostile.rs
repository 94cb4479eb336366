//! A hostile IMAP server must not be able to bring tenantry down: whatever it sends, the run
//! ends with an error message and a non-zero exit, never a crash.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantry_testkit::dovecot::{Config, Dovecot};
use tenantry_testkit::faults::{kind, record};
use tenantry_testkit::hostile::{ImapConn, ImapServer};

/// `tenantry-mail migrate` from `source` into a port where nothing listens (the source fails
/// first), with the given passwords in the environment.
fn migrate_from(source_port: u16) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args([
            "migrate",
            "--source",
            &format!("imap://alice@127.0.0.1:{source_port}"),
            "--target",
            &format!("imap://alice@127.0.0.1:{source_port}"),
            "--quiet",
        ])
        .arg("--state-dir")
        .arg(tmp.path())
        .env("TENANTRY_SOURCE_PASSWORD", "pw")
        .env("TENANTRY_TARGET_PASSWORD", "pw")
        .output()
        .unwrap()
}

fn nested(n: usize) -> Vec<u8> {
    let mut v = vec![b'('; n];
    v.extend(std::iter::repeat_n(b')', n));
    v
}

#[test]
fn nested_lists_in_the_greeting_are_an_error_not_a_crash() {
    // About 40 KB before any password is sent: this aborted the process with a stack overflow.
    let server = ImapServer::start(|c| {
        let mut greeting = b"* OK [".to_vec();
        greeting.extend(nested(20_000));
        greeting.extend_from_slice(b"] hello\r\n");
        c.send(&greeting)
    });
    let out = migrate_from(server.port());
    assert_eq!(
        out.status.signal(),
        None,
        "killed by a signal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("nested deeper"), "{said}");
    record(
        kind::BAD_INPUT,
        "mail: IMAP greeting with lists nested 20,000 deep (stack overflow before the fix)",
        "a clear error and exit 1, no crash",
        0,
    );
}

#[test]
fn nested_lists_after_login_are_an_error_not_a_crash() {
    let server = ImapServer::start(|c| {
        c.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")?;
        c.serve(|tag, _| {
            let mut answer = b"* LIST ".to_vec();
            answer.extend(nested(100_000));
            answer.extend_from_slice(b" \"/\" INBOX\r\n");
            answer.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            answer
        })
    });
    let out = migrate_from(server.port());
    assert_eq!(
        out.status.signal(),
        None,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(server.connections() >= 1);
}

/// How a watched `tenantry-mail` run ended.
struct Watched {
    success: bool,
    signal: Option<i32>,
    /// Peak resident memory of the child (VmHWM), KB.
    peak_kb: u64,
    said: String,
    elapsed: Duration,
}

/// Runs `tenantry-mail migrate` from `source_port` with `extra` flags, sampling its peak memory;
/// a run still going after two minutes is killed and reported as such (a hang fails the test
/// instead of stalling the suite).
fn migrate_watched(source_port: u16, extra: &[&str]) -> Watched {
    let target = format!("imap://alice@127.0.0.1:{source_port}");
    migrate_into(source_port, &target, "pw", extra)
}

/// As [`migrate_watched`], into `target` (a URL) with its password.
fn migrate_into(source_port: u16, target: &str, target_pw: &str, extra: &[&str]) -> Watched {
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args([
            "migrate",
            "--source",
            &format!("imap://alice@127.0.0.1:{source_port}"),
            "--target",
            target,
            "--quiet",
        ])
        .args(extra)
        .arg("--state-dir")
        .arg(tmp.path())
        .env("TENANTRY_SOURCE_PASSWORD", "pw")
        .env("TENANTRY_TARGET_PASSWORD", target_pw)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let status = loop {
        if let Ok(st) = std::fs::read_to_string(&status_path) {
            let hwm = st
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
            peak_kb = peak_kb.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Watched {
        success: status.success(),
        signal: status.signal(),
        peak_kb,
        said: format!("{}{}", out.join().unwrap(), err.join().unwrap()),
        elapsed: start.elapsed(),
    }
}

/// Writes `chunk` again and again until `limit` bytes went out or the client hung up; counts
/// what was written into `sent`.
fn flood(c: &mut ImapConn, chunk: &[u8], limit: u64, sent: &AtomicU64) -> std::io::Result<()> {
    while sent.load(Ordering::SeqCst) < limit {
        c.send(chunk)?;
        sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
    Ok(())
}

const MIB: u64 = 1 << 20;

#[test]
fn a_line_without_end_is_cut_off_at_the_line_limit() {
    // 1 GB without CRLF made the run hold it all (2.1 GB RSS). The server offers 512 MiB here;
    // the run must stop after the 1 MiB line limit, not read on.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let server = ImapServer::start(move |c| {
        c.send(b"* OK ")?;
        flood(c, &[b'x'; 64 * 1024], 512 * MIB, &counter)
    });
    let run = migrate_watched(server.port(), &[]);
    assert_eq!(run.signal, None, "{}", run.said);
    assert!(!run.success);
    assert!(
        run.said
            .contains("source: 127.0.0.1: server sent a line longer than 1048576 bytes"),
        "{}",
        run.said
    );
    let sent = sent.load(Ordering::SeqCst);
    eprintln!("peak RSS {} KB, server got {sent} bytes out", run.peak_kb);
    // What sits in socket buffers is all the server got out beyond the limit.
    assert!(sent < 64 * MIB, "server got {sent} bytes out");
    assert!(run.peak_kb < 100 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[test]
fn many_literals_are_cut_off_at_the_response_limit() {
    // Each literal is within the literal limit (1.25 MB for --max-message-size 1000000); together
    // they would have been held whole.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let server = ImapServer::start(move |c| {
        let mut chunk = b" {1000000}\r\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'a', 1_000_000));
        c.send(b"* OK [ALERT")?;
        flood(c, &chunk, 512 * MIB, &counter)
    });
    let run = migrate_watched(server.port(), &["--max-message-size", "1000000"]);
    assert_eq!(run.signal, None, "{}", run.said);
    assert!(!run.success);
    let limit = 1_250_000 + MIB;
    assert!(
        run.said
            .contains(&format!("response exceeded {limit} bytes")),
        "{}",
        run.said
    );
    let sent = sent.load(Ordering::SeqCst);
    eprintln!("peak RSS {} KB, server got {sent} bytes out", run.peak_kb);
    assert!(sent < 64 * MIB, "server got {sent} bytes out");
    assert!(run.peak_kb < 100 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[test]
fn a_literal_above_the_message_limit_is_refused_before_it_is_read() {
    let server = ImapServer::start(|c| {
        c.send(b"* OK [ALERT {400000000}\r\n")?;
        // Then nothing: the client must not wait for 400 MB it will not accept.
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    let run = migrate_watched(server.port(), &[]);
    assert!(!run.success);
    assert!(
        run.said.contains(
            "server announced a literal of 400000000 bytes, above the 335544320-byte limit"
        ),
        "{}",
        run.said
    );
    assert!(run.elapsed < Duration::from_secs(50), "{:?}", run.elapsed);
}

/// A run against `port` with a 2 s command deadline fails on it, well before the server stops.
fn assert_cut_off_by_the_deadline(port: u16) {
    let run = migrate_watched(port, &["--timeout", "5", "--command-timeout", "2"]);
    assert!(!run.success);
    assert!(
        run.said.contains("no complete response within 2 s"),
        "{}",
        run.said
    );
    assert!(run.elapsed < Duration::from_secs(60), "{:?}", run.elapsed);
}

#[test]
fn a_trickling_greeting_is_cut_off_by_the_deadline() {
    // One byte every 200 ms never trips the idle timeout; only the deadline ends it.
    let server = ImapServer::start(|c| {
        for _ in 0..600 {
            c.send(b"x")?;
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    });
    assert_cut_off_by_the_deadline(server.port());
}

#[test]
fn a_command_answered_only_with_chatter_is_cut_off_by_the_deadline() {
    // Every response arrives complete and in time, but the command never completes.
    let server = ImapServer::start(|c| {
        c.send(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")?;
        while let Some((_, rest)) = c.command() {
            if rest.starts_with("LOGIN") {
                c.send(b"t1 OK [CAPABILITY IMAP4rev1 UIDPLUS] done\r\n")?;
                continue;
            }
            for _ in 0..600 {
                c.send(b"* OK still working\r\n")?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    });
    assert_cut_off_by_the_deadline(server.port());
}

/// A source with one folder holding two messages (UIDs 1 and 2), scripted except for what
/// `answer` returns: it gets each command after login (verb upper-cased) and may answer it
/// (tagged completion included), or leave it to the default script.
fn scripted_source(
    folder: &'static [u8],
    answer: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> ImapServer {
    ImapServer::start(move |c| {
        c.send(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")?;
        c.serve(|tag, rest| {
            if let Some(a) = answer(tag, rest) {
                return a;
            }
            let upper = rest.to_ascii_uppercase();
            let mut out = Vec::new();
            if upper.starts_with("CAPABILITY") {
                out.extend_from_slice(b"* CAPABILITY IMAP4rev1\r\n");
            } else if upper.starts_with("LIST") {
                out.extend_from_slice(format!("* LIST () \"/\" {{{}}}\r\n", folder.len()).as_bytes());
                out.extend_from_slice(folder);
                out.extend_from_slice(b"\r\n");
            } else if upper.starts_with("EXAMINE") {
                out.extend_from_slice(
                    b"* 2 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 3] ok\r\n",
                );
            } else if upper.contains("RFC822.SIZE") {
                for uid in [1, 2] {
                    out.extend_from_slice(format!("* {uid} FETCH (UID {uid} FLAGS (\\Seen) INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {})\r\n", body(uid).len()).as_bytes());
                }
            } else if upper.contains("BODY.PEEK[]") || upper.contains("(UID)") {
                for uid in [1, 2] {
                    if upper.contains("BODY.PEEK[]") {
                        let b = body(uid);
                        out.extend_from_slice(format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", b.len()).as_bytes());
                        out.extend_from_slice(&b);
                        out.extend_from_slice(b")\r\n");
                    } else {
                        out.extend_from_slice(format!("* {uid} FETCH (UID {uid})\r\n").as_bytes());
                    }
                }
            }
            out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            out
        })
    })
}

fn body(uid: u32) -> Vec<u8> {
    format!("Subject: message {uid}\r\n\r\nbody {uid}\r\n").into_bytes()
}

/// Messages in the target's INBOX.
async fn target_count(d: &Dovecot) -> u32 {
    let mut s = d.session("alice", "alicepw2").await;
    s.select("INBOX", true).await.unwrap().exists
}

fn json(run: &Watched) -> serde_json::Value {
    let start = run.said.find('{').expect("a JSON report");
    let end = run.said.rfind('}').expect("a JSON report");
    serde_json::from_str(&run.said[start..=end]).unwrap()
}

#[tokio::test]
async fn a_message_answered_ok_without_body_is_reported_not_skipped() {
    // The FETCH answers OK but carries only UID 1's body; UID 2 is still in the folder.
    let server = scripted_source(b"INBOX", |tag, rest| {
        if !rest.contains("BODY.PEEK[]") {
            return None;
        }
        let b = body(1);
        let mut out = format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", b.len()).into_bytes();
        out.extend_from_slice(&b);
        out.extend_from_slice(format!(")\r\n* 2 FETCH (UID 2)\r\n{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &["--json"]);
    assert!(
        !run.success,
        "exit 0 although a message was not copied: {}",
        run.said
    );
    let failures = &json(&run)["mailboxes"][0]["folders"][0]["failures"];
    assert_eq!(failures.as_array().map(Vec::len), Some(1), "{}", run.said);
    assert_eq!(failures[0]["uid"], 2);
    assert_eq!(failures[0]["reason"], "source answered OK but sent no body");
    assert_eq!(target_count(&target).await, 1);
}

#[tokio::test]
async fn a_uid_that_overflows_is_an_error_not_a_skipped_message() {
    // UID 4294967298 does not fit 32 bits: it was read as "no UID" and the message skipped.
    let server = scripted_source(b"INBOX", |tag, rest| {
        if !rest.contains("RFC822.SIZE") {
            return None;
        }
        let mut out = Vec::new();
        for uid in ["1", "4294967298"] {
            out.extend_from_slice(format!("* 1 FETCH (UID {uid} FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE 30)\r\n").as_bytes());
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &[]);
    assert!(!run.success, "{}", run.said);
    assert!(
        run.said.contains(
            "source: malformed IMAP response: FETCH UID \"4294967298\" is not a number in range"
        ),
        "{}",
        run.said
    );
}

#[tokio::test]
async fn server_texts_reach_the_terminal_escaped_and_the_json_exact() {
    // A folder name (the target refuses it) and a refusal text (for INBOX) that would rewrite the
    // window title and clear the screen.
    const NAME: &str = "Evil\x1b]0;owned\x07\x1b[2J";
    let server = scripted_source(b"INBOX", |tag, rest| {
        let upper = rest.to_ascii_uppercase();
        if upper.starts_with("LIST") {
            let mut out = format!("* LIST () \"/\" {{{}}}\r\n{NAME}\r\n", NAME.len()).into_bytes();
            out.extend_from_slice(format!("* LIST () \"/\" INBOX\r\n{tag} OK done\r\n").as_bytes());
            return Some(out);
        }
        upper
            .starts_with("EXAMINE")
            .then(|| format!("{tag} NO [ALERT] \x1b[31mno access\x1b[0m\r\n").into_bytes())
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &[]);
    assert!(!run.success, "{}", run.said);
    assert!(
        !run.said.contains('\x1b') && !run.said.contains('\x07'),
        "{:?}",
        run.said
    );
    assert!(
        run.said.contains(r"Evil\u{1b}]0;owned\u{7}\u{1b}[2J"),
        "{}",
        run.said
    );
    assert!(
        run.said.contains(r"\u{1b}[31mno access\u{1b}[0m"),
        "{}",
        run.said
    );
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &["--json"]);
    let report = json(&run);
    let folders = report["mailboxes"][0]["folders"].as_array().unwrap();
    assert!(folders.iter().any(|f| f["source"] == NAME), "{report}");
    assert!(
        folders.iter().any(|f| f["error"]
            .as_str()
            .is_some_and(|e| e.contains("\x1b[31mno access\x1b[0m"))),
        "{report}"
    );
}
