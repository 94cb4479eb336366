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
            // Source and target are both this server; either may fail first.
            .contains(": 127.0.0.1: server sent a line longer than 1048576 bytes"),
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

/// What a scripted target (`fake_target`) does beyond being a plain mailbox with an INBOX.
#[derive(Clone, Copy)]
struct TargetScript {
    /// The code of an APPEND's OK, given the UIDs assigned (default `APPENDUID 5 <uids>`).
    appenduid: fn(&[u32]) -> String,
    /// The answer to `CREATE name`: None creates it, Some(text) refuses it with `NO text`.
    create: fn(&str) -> Option<String>,
    /// APPEND literals are read at this many bytes per second (a slow link); 0: at once.
    read_rate: usize,
    /// Capabilities offered.
    caps: &'static str,
    /// Sent before the `+` that invites a synchronising literal (without LITERAL+).
    before_continuation: fn() -> Vec<u8>,
}

impl Default for TargetScript {
    fn default() -> Self {
        TargetScript {
            appenduid: |uids| {
                let set: Vec<String> = uids.iter().map(u32::to_string).collect();
                format!("APPENDUID 5 {}", set.join(","))
            },
            create: |_| None,
            read_rate: 0,
            caps: "IMAP4rev1 UIDPLUS LITERAL+ MULTIAPPEND",
            before_continuation: Vec::new,
        }
    }
}

/// A target served by the hostile server: it keeps what is appended (UID = position + 1) and
/// lists and delivers it like a real server; `commands` logs every command line after login.
struct FakeTarget {
    server: ImapServer,
    messages: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    commands: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeTarget {
    fn url(&self) -> String {
        format!("imap://alice@127.0.0.1:{}", self.server.port())
    }
    fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

/// Whether `uid` is in an IMAP UID set such as `1:3,7` or `4:*`.
fn in_set(set: &str, uid: u32) -> bool {
    set.split(',').any(|part| {
        let (lo, hi) = part.split_once(':').unwrap_or((part, part));
        let n = |s: &str| {
            if s == "*" {
                u32::MAX
            } else {
                s.parse().unwrap()
            }
        };
        let (lo, hi) = (n(lo), n(hi));
        (lo.min(hi)..=lo.max(hi)).contains(&uid)
    })
}

fn fake_target(script: TargetScript) -> FakeTarget {
    let messages: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
    let commands: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let (store, log) = (messages.clone(), commands.clone());
    let server = ImapServer::start(move |c| {
        let caps = script.caps;
        c.send(format!("* OK [CAPABILITY {caps}] ready\r\n").as_bytes())?;
        loop {
            // One command: its line, and every literal it announces (read at the script's pace).
            let mut line = String::new();
            let mut literals = Vec::new();
            loop {
                let piece = c.read_line_raw()?;
                if piece.is_empty() {
                    return Ok(());
                }
                let piece = String::from_utf8_lossy(&piece).trim_end().to_string();
                line.push_str(&piece);
                let Some((n, sync)) = piece
                    .strip_suffix('}')
                    .and_then(|p| p.rsplit_once('{'))
                    .and_then(|(_, n)| match n.strip_suffix('+') {
                        Some(n) => Some((n.parse::<usize>().ok()?, false)),
                        None => Some((n.parse::<usize>().ok()?, true)),
                    })
                else {
                    break;
                };
                if sync {
                    c.send(&(script.before_continuation)())?;
                    c.send(b"+ go\r\n")?;
                }
                let mut data = Vec::with_capacity(n);
                while data.len() < n {
                    let step = match script.read_rate {
                        0 => n - data.len(),
                        rate => (rate / 10).min(n - data.len()),
                    };
                    data.extend(c.read_bytes(step)?);
                    if script.read_rate > 0 {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                literals.push(data);
            }
            let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let upper = rest.to_ascii_uppercase();
            let verb = upper.split(' ').next().unwrap_or("").to_string();
            log.lock().unwrap().push(rest.to_string());
            let mut out = Vec::new();
            let mut done = format!("{tag} OK done\r\n");
            let all = store.lock().unwrap().clone();
            match verb.as_str() {
                "LOGIN" => done = format!("{tag} OK [CAPABILITY {caps}] logged in\r\n"),
                "LOGOUT" => {
                    c.send(format!("* BYE\r\n{tag} OK bye\r\n").as_bytes())?;
                    return Ok(());
                }
                "CAPABILITY" => {
                    out.extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes())
                }
                "LIST" if rest.ends_with("\"\" \"\"") => {
                    out.extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n")
                }
                "LIST" => out.extend_from_slice(b"* LIST () \"/\" INBOX\r\n"),
                "CREATE" => {
                    let name = rest[7..].trim_matches('"');
                    if let Some(text) = (script.create)(name) {
                        done = format!("{tag} NO {text}\r\n");
                    }
                }
                "SELECT" | "EXAMINE" => out.extend_from_slice(
                    format!(
                        "* {} EXISTS\r\n* OK [UIDVALIDITY 5] ok\r\n* OK [UIDNEXT {}] ok\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] ok\r\n",
                        all.len(),
                        all.len() + 1
                    )
                    .as_bytes(),
                ),
                "APPEND" => {
                    let mut store = store.lock().unwrap();
                    let mut uids = Vec::new();
                    for l in literals {
                        store.push(l);
                        uids.push(store.len() as u32);
                    }
                    done = format!("{tag} OK [{}] appended\r\n", (script.appenduid)(&uids));
                }
                "UID" if upper.starts_with("UID FETCH") => {
                    let set = rest.split(' ').nth(2).unwrap_or("");
                    for (i, m) in all.iter().enumerate() {
                        let uid = i as u32 + 1;
                        if !in_set(set, uid) {
                            continue;
                        }
                        if upper.contains("RFC822.SIZE") {
                            out.extend_from_slice(format!("* {uid} FETCH (UID {uid} FLAGS (\\Seen) INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {})\r\n", m.len()).as_bytes());
                        } else if upper.contains("BODY.PEEK[]") {
                            out.extend_from_slice(format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", m.len()).as_bytes());
                            out.extend_from_slice(m);
                            out.extend_from_slice(b")\r\n");
                        } else {
                            out.extend_from_slice(format!("* {uid} FETCH (UID {uid})\r\n").as_bytes());
                        }
                    }
                }
                _ => {}
            }
            out.extend_from_slice(done.as_bytes());
            c.send(&out)?;
        }
    });
    FakeTarget {
        server,
        messages,
        commands,
    }
}

/// The failures of the first folder of a JSON report.
fn failures(run: &Watched) -> Vec<serde_json::Value> {
    json(run)["mailboxes"][0]["folders"][0]["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_appenduid_naming_terabytes_of_uids_is_not_expanded() {
    // ~95,000 ranges of 10 million UIDs in one 1 MiB line: expanded, 4 TB; the process aborted.
    let source = scripted_source(b"INBOX", |_, _| None);
    let target = fake_target(TargetScript {
        appenduid: |_| {
            let ranges = vec!["1:10000000"; 95_000].join(",");
            format!("APPENDUID 5 {ranges}")
        },
        ..Default::default()
    });
    let run = migrate_into(source.port(), &target.url(), "pw", &["--json"]);
    eprintln!("peak RSS {} KB", run.peak_kb);
    assert_eq!(run.signal, None, "{}", run.said);
    // The APPENDUID is unusable, so the messages were found by content instead: all copied.
    assert!(run.success, "{}", run.said);
    assert_eq!(target.messages.lock().unwrap().len(), 2);
    assert_eq!(json(&run)["mailboxes"][0]["folders"][0]["copied"], 2);
    assert!(run.peak_kb < 100 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[test]
fn a_response_of_megabytes_of_tiny_atoms_is_refused_before_it_is_parsed() {
    // 320 lines of 1 MiB of `a ` each, joined by empty literals: within the response limit
    // (321 MiB) but about 10 GB once parsed into values.
    let server = ImapServer::start(|c| {
        let mut line = b"* OK [ALERT".to_vec();
        line.extend(std::iter::repeat_n(&b" a"[..], 520_000).flatten());
        line.extend_from_slice(b" {0}\r\n");
        c.send(b"* OK [ALERT")?;
        for _ in 0..320 {
            c.send(&line[11..])?;
        }
        c.send(b"]\r\n")
    });
    let run = migrate_watched(server.port(), &[]);
    eprintln!("peak RSS {} KB", run.peak_kb);
    assert_eq!(run.signal, None, "{}", run.said);
    assert!(!run.success);
    assert!(
        run.said
            .contains("the lines of one response exceeded 4194304 bytes"),
        "{}",
        run.said
    );
    assert!(run.peak_kb < 100 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[test]
fn endless_untagged_answers_to_one_command_are_cut_off() {
    // EXAMINE answered with `* 1 EXISTS` forever: every response was kept until the deadline.
    let server = scripted_source(b"INBOX", |_, rest| {
        if !rest.to_ascii_uppercase().starts_with("EXAMINE") {
            return None;
        }
        // The serve loop sends one answer; a big one is as good as an endless one here.
        Some(b"* 1 EXISTS\r\n".repeat(2_000_000))
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &[]);
    eprintln!("peak RSS {} KB, {:?}", run.peak_kb, run.elapsed);
    assert_eq!(run.signal, None, "{}", run.said);
    assert!(!run.success);
    assert!(
        run.said
            .contains("server sent more than 100000 responses or 67108864 bytes for one command"),
        "{}",
        run.said
    );
    assert!(run.peak_kb < 150 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[tokio::test]
async fn bodies_of_messages_not_asked_for_are_not_kept() {
    // `UID FETCH 1:2` answered first with 40 bodies of 20 MB for UIDs never asked for: each
    // was kept (800 MB) before the real ones came.
    let server = scripted_source(b"INBOX", |tag, rest| {
        if !rest.contains("BODY.PEEK[]") {
            return None;
        }
        let junk = vec![b'j'; 20_000_000];
        let mut out = Vec::new();
        for uid in 3..43 {
            out.extend_from_slice(
                format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", junk.len()).as_bytes(),
            );
            out.extend_from_slice(&junk);
            out.extend_from_slice(b")\r\n");
        }
        for uid in [1, 2] {
            let b = body(uid);
            out.extend_from_slice(
                format!("* {uid} FETCH (UID {uid} BODY[] {{{}}}\r\n", b.len()).as_bytes(),
            );
            out.extend_from_slice(&b);
            out.extend_from_slice(b")\r\n");
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(
        server.port(),
        &target.url("alice"),
        "alicepw2",
        &["--max-message-size", "20000000"],
    );
    eprintln!("peak RSS {} KB", run.peak_kb);
    assert!(run.success, "{}", run.said);
    assert_eq!(target_count(&target).await, 2);
    assert!(run.peak_kb < 150 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[tokio::test]
async fn a_body_above_the_limit_fails_that_message_and_the_folder_goes_on() {
    // RFC822.SIZE says 34 MB (under --max-message-size 35000000), the body comes as 44 MB
    // (above the 43.75 MB literal limit). It failed the whole folder, on every run.
    const BIG: usize = 44_000_000;
    let server = scripted_source(b"INBOX", |tag, rest| {
        let mut out = Vec::new();
        if rest.contains("RFC822.SIZE") {
            out.extend_from_slice(b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE 34000000)\r\n");
            out.extend_from_slice(format!("* 2 FETCH (UID 2 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {})\r\n", body(2).len()).as_bytes());
        } else if rest.contains("BODY.PEEK[]") {
            if rest.contains(" 1 ") || rest.contains(" 1:") {
                out.extend_from_slice(format!("* 1 FETCH (UID 1 BODY[] {{{BIG}}}\r\n").as_bytes());
                out.extend(std::iter::repeat_n(b'x', BIG));
                out.extend_from_slice(b")\r\n");
            }
            if rest.contains(" 2 ") || rest.contains(":2 ") {
                let b = body(2);
                out.extend_from_slice(
                    format!("* 2 FETCH (UID 2 BODY[] {{{}}}\r\n", b.len()).as_bytes(),
                );
                out.extend_from_slice(&b);
                out.extend_from_slice(b")\r\n");
            }
        } else {
            return None;
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(
        server.port(),
        &target.url("alice"),
        "alicepw2",
        &["--json", "--max-message-size", "35000000"],
    );
    eprintln!("peak RSS {} KB", run.peak_kb);
    assert!(!run.success, "{}", run.said);
    let failures = failures(&run);
    assert_eq!(failures.len(), 1, "{}", run.said);
    assert_eq!(failures[0]["uid"], 1);
    assert_eq!(
        failures[0]["reason"],
        "source sent it as 44000000 bytes, above the 43750000-byte limit (--max-message-size); not read"
    );
    assert_eq!(target_count(&target).await, 1);
    // Read and thrown away, never held.
    assert!(run.peak_kb < 40 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[tokio::test]
async fn one_message_with_bad_metadata_fails_alone() {
    // UID 1's size does not parse, and a flags-only FETCH for UID 40 (another client's flag
    // change) comes unasked: both failed the whole folder.
    let server = scripted_source(b"INBOX", |tag, rest| {
        if !rest.contains("RFC822.SIZE") {
            return None;
        }
        let mut out = b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE 12k)\r\n".to_vec();
        out.extend_from_slice(format!("* 2 FETCH (UID 2 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {})\r\n", body(2).len()).as_bytes());
        out.extend_from_slice(b"* 3 FETCH (UID 40 FLAGS (\\Seen))\r\n");
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &["--json"]);
    assert!(!run.success, "{}", run.said);
    let failures = failures(&run);
    assert_eq!(failures.len(), 1, "{}", run.said);
    assert_eq!(failures[0]["uid"], 1);
    assert!(
        failures[0]["reason"].as_str().unwrap().starts_with(
            "source sent unusable metadata: malformed IMAP response: FETCH RFC822.SIZE \"12k\""
        ),
        "{}",
        run.said
    );
    assert_eq!(
        json(&run)["mailboxes"][0]["folders"][0]["error"],
        serde_json::Value::Null
    );
    assert_eq!(target_count(&target).await, 1);
}

#[tokio::test]
async fn server_text_in_errors_is_cut_short() {
    // A 1 MB UID and a 1 MB refusal text: both were copied whole into the report (the NO text
    // into every failure of the batch).
    let uid = ImapServer::start(|c| {
        c.send(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")?;
        c.serve(|tag, rest| {
            let upper = rest.to_ascii_uppercase();
            let mut out = Vec::new();
            if upper.starts_with("LIST") {
                out.extend_from_slice(b"* LIST () \"/\" INBOX\r\n");
            } else if upper.starts_with("EXAMINE") {
                out.extend_from_slice(
                    b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 3] ok\r\n",
                );
            } else if upper.contains("RFC822.SIZE") {
                out.extend_from_slice(b"* 1 FETCH (UID {1000000}\r\n");
                out.extend(std::iter::repeat_n(b'9', 1_000_000));
                out.extend_from_slice(b")\r\n");
            }
            out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            out
        })
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(uid.port(), &target.url("alice"), "alicepw2", &["--json"]);
    assert!(!run.success);
    let error = json(&run)["mailboxes"][0]["folders"][0]["error"].clone();
    let error = error.as_str().unwrap_or_else(|| panic!("{}", run.said));
    assert!(error.contains("FETCH UID \"999"), "{error}");
    assert!(error.len() < 500, "{} bytes", error.len());

    let refusal = scripted_source(b"INBOX", |tag, rest| {
        rest.contains("BODY.PEEK[]")
            .then(|| format!("{tag} NO [ALERT] {}\r\n", "z".repeat(1_000_000)).into_bytes())
    });
    let run = migrate_into(
        refusal.port(),
        &target.url("alice"),
        "alicepw2",
        &["--json"],
    );
    let failures = failures(&run);
    assert_eq!(failures.len(), 2, "{}", run.said);
    for f in failures {
        let reason = f["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("source could not deliver it: [ALERT] zzz"),
            "{reason}"
        );
        assert!(
            reason.ends_with("z…") && reason.len() < 300,
            "{} bytes",
            reason.len()
        );
    }
}

#[test]
fn a_slow_target_gets_a_large_message_within_the_timeouts() {
    // The target reads 1 MB/s; a 12 MB APPEND needs 12 s. With --timeout 3 the whole write
    // was bounded by 3 s, and with --command-timeout 3 so was waiting for its completion.
    const SIZE: usize = 12_000_000;
    let server = scripted_source(b"INBOX", |tag, rest| {
        let mut out = Vec::new();
        if rest.contains("RFC822.SIZE") {
            out.extend_from_slice(format!("* 1 FETCH (UID 1 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {SIZE})\r\n").as_bytes());
        } else if rest.contains("BODY.PEEK[]") {
            out.extend_from_slice(format!("* 1 FETCH (UID 1 BODY[] {{{SIZE}}}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'x', SIZE));
            out.extend_from_slice(b")\r\n");
        } else {
            return None;
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = fake_target(TargetScript {
        read_rate: 1_000_000,
        ..Default::default()
    });
    let run = migrate_into(
        server.port(),
        &target.url(),
        "pw",
        &["--json", "--timeout", "3", "--command-timeout", "3"],
    );
    eprintln!("{:?}", run.elapsed);
    assert!(run.success, "{}", run.said);
    assert_eq!(target.messages.lock().unwrap()[0].len(), SIZE);
}

#[test]
fn a_timeout_too_large_for_the_clock_is_refused_not_a_panic() {
    let server = scripted_source(b"INBOX", |_, _| None);
    for flag in ["--command-timeout", "--timeout"] {
        let run = migrate_watched(server.port(), &[flag, "18446744073709551615"]);
        assert!(!run.success);
        assert!(!run.said.contains("panicked"), "{}", run.said);
        assert!(run.said.contains("18446744073709551615"), "{}", run.said);
        assert!(run.said.contains("1..=604800"), "{}", run.said);
    }
}

#[test]
fn a_child_refused_for_another_reason_leaves_no_parent_behind() {
    // Source: `Archive` only as the \Noselect parent of `Archive/Files`. The target refuses
    // `Archive/Files` as a reserved name (as Exchange does "Files"): `Archive` was then created
    // as a selectable folder for nothing.
    let source = ImapServer::start(|c| {
        c.send(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")?;
        c.serve(|tag, rest| {
            let mut out = Vec::new();
            if rest.to_ascii_uppercase().starts_with("LIST") {
                out.extend_from_slice(
                    b"* LIST (\\Noselect) \"/\" Archive\r\n* LIST () \"/\" Archive/Files\r\n",
                );
            }
            out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            out
        })
    });
    let reserved = fake_target(TargetScript {
        create: |name| (name == "Archive/Files").then(|| "[CANNOT] Reserved folder name".into()),
        ..Default::default()
    });
    let run = migrate_into(source.port(), &reserved.url(), "pw", &[]);
    assert!(!run.success);
    assert!(run.said.contains("Reserved folder name"), "{}", run.said);
    let creates: Vec<String> = reserved
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("CREATE") || c.starts_with("DELETE"))
        .collect();
    assert_eq!(creates, vec!["CREATE \"Archive/Files\""]);

    // A refusal that blames the parent gets it created; if the child still fails, it is
    // deleted again.
    let stubborn = fake_target(TargetScript {
        create: |name| (name == "Archive/Files").then(|| "[NONEXISTENT] Parent missing".into()),
        ..Default::default()
    });
    let run = migrate_into(source.port(), &stubborn.url(), "pw", &[]);
    assert!(!run.success);
    let creates: Vec<String> = stubborn
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("CREATE") || c.starts_with("DELETE"))
        .collect();
    assert_eq!(
        creates,
        vec![
            "CREATE \"Archive/Files\"",
            "CREATE \"Archive\"",
            "CREATE \"Archive/Files\"",
            "DELETE \"Archive\""
        ]
    );
}

#[test]
fn completions_of_commands_never_sent_are_not_kept() {
    // Without LITERAL+ each APPEND waits for `+`; completions arriving meanwhile are kept for
    // later. A target answering with a million completions of made-up tags had them all kept.
    let source = scripted_source(b"INBOX", |_, _| None);
    let target = fake_target(TargetScript {
        caps: "IMAP4rev1 UIDPLUS",
        before_continuation: || b"t999999 OK [ALERT] not yours\r\n".repeat(1_000_000),
        ..Default::default()
    });
    let run = migrate_into(source.port(), &target.url(), "pw", &[]);
    eprintln!("peak RSS {} KB", run.peak_kb);
    assert!(run.success, "{}", run.said);
    assert_eq!(target.messages.lock().unwrap().len(), 2);
    assert!(run.peak_kb < 60 * 1024, "peak RSS {} KB", run.peak_kb);
}

#[tokio::test]
async fn a_listing_of_endless_made_up_uids_is_cut_off() {
    // Two messages exist, but the listing goes on with flags-only entries for ever new UIDs:
    // each was kept until the command completed.
    let server = scripted_source(b"INBOX", |tag, rest| {
        if !rest.contains("RFC822.SIZE") {
            return None;
        }
        let mut out = Vec::new();
        for uid in [1, 2] {
            out.extend_from_slice(format!("* {uid} FETCH (UID {uid} FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {})\r\n", body(uid).len()).as_bytes());
        }
        for uid in 3..50_000 {
            out.extend_from_slice(format!("* 2 FETCH (UID {uid} FLAGS (\\Seen))\r\n").as_bytes());
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &[]);
    assert!(!run.success, "{}", run.said);
    assert!(
        run.said
            .contains("source: server listed more than 10004 messages"),
        "{}",
        run.said
    );
}

#[test]
fn a_tls_handshake_that_never_ends_is_cut_off_by_the_deadline() {
    // The server takes the connection and says nothing: the handshake had no bound at all.
    let silent = ImapServer::start(|_| {
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
    let source = scripted_source(b"INBOX", |_, _| None);
    let target = format!("imaps://alice@127.0.0.1:{}", silent.port());
    let run = migrate_into(source.port(), &target, "pw", &["--command-timeout", "2"]);
    assert!(!run.success);
    assert!(
        run.said
            .contains("TLS error with 127.0.0.1: no TLS handshake within 2 s"),
        "{}",
        run.said
    );
    assert!(run.elapsed < Duration::from_secs(50), "{:?}", run.elapsed);
}

#[tokio::test]
async fn a_body_far_beyond_its_listed_size_fails_that_message_alone() {
    // UID 1 is listed as 100 bytes but comes as 10 MB: what a FETCH delivers is bounded by the
    // sizes asked for, and the message that breaks the bound is the one reported.
    const BIG: usize = 10_000_000;
    let server = scripted_source(b"INBOX", |tag, rest| {
        let mut out = Vec::new();
        if rest.contains("RFC822.SIZE") {
            out.extend_from_slice(b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE 100)\r\n");
            out.extend_from_slice(format!("* 2 FETCH (UID 2 FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {})\r\n", body(2).len()).as_bytes());
        } else if rest.contains("BODY.PEEK[]") {
            out.extend_from_slice(format!("* 1 FETCH (UID 1 BODY[] {{{BIG}}}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'x', BIG));
            out.extend_from_slice(b")\r\n");
            let b = body(2);
            out.extend_from_slice(
                format!("* 2 FETCH (UID 2 BODY[] {{{}}}\r\n", b.len()).as_bytes(),
            );
            out.extend_from_slice(&b);
            out.extend_from_slice(b")\r\n");
        } else {
            return None;
        }
        out.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
        Some(out)
    });
    let target = Dovecot::start(Config::target());
    let run = migrate_into(server.port(), &target.url("alice"), "alicepw2", &["--json"]);
    assert!(!run.success, "{}", run.said);
    let failures = failures(&run);
    assert_eq!(failures.len(), 1, "{}", run.said);
    assert_eq!(failures[0]["uid"], 1);
    assert_eq!(
        failures[0]["reason"],
        "source sent it as 10000000 bytes, far more than its RFC822.SIZE 100; not kept"
    );
    assert_eq!(target_count(&target).await, 1);
}
