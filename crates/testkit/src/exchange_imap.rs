//! Exchange Online's IMAP as it behaves, in front of a real Dovecot: a proxy that
//!
//! - takes `AUTHENTICATE XOAUTH2` with an app-only token (checked by the caller, e.g. against
//!   the fake Graph's token endpoint, so an expired token is refused) and logs in to Dovecot
//!   for the named user through its master user (SASL PLAIN with an authorization identity);
//! - answers some commands `NO Request is throttled. Suggested Backoff Time: N milliseconds`
//!   instead of forwarding them (the text Exchange sends: imapsync's FAQ.Office365 and
//!   imapsync/imapsync#198), and after M such answers on one connection says `BYE` and drops
//!   it, as Exchange does after throttling or errors;
//! - counts, per mailbox, commands that arrive while a suggested backoff is still running
//!   (a client that does not wait), after a grace for commands already in flight;
//! - can drop a connection once right after an APPEND was forwarded, before its answer reaches
//!   the client (the server stores it; the client does not learn so).
//!
//! Only what a client sends is parsed (command lines and their literals); Dovecot's answers are
//! forwarded whole, one response at a time, so an injected answer never splits one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

/// Decides whether an app-only token is valid now.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct ExchangeImapConfig {
    /// Dovecot's master user and password (the proxy logs in as it for the token's user).
    pub master: (String, String),
    pub check_token: TokenCheck,
    /// Commands (first word after the tag, `UID` skipped: `APPEND`, `FETCH`, `SELECT`, …)
    /// that may be throttled.
    pub throttle_commands: Vec<String>,
    /// Throttle every n-th such command of a mailbox (counted across its connections).
    pub throttle_every: u64,
    /// Stop throttling after this many throttled answers in all (so a run can end).
    pub throttle_at_most: u64,
    /// The suggested backoff sent.
    pub backoff: Duration,
    /// Send it as `BADRequest is throttled. …` (no space after the status, as seen from
    /// Exchange in the field) instead of `NO Request is throttled. …`.
    pub glued_bad: bool,
    /// Commands arriving this soon after a throttled answer are not counted as ignoring it
    /// (they were already on their way).
    pub grace: Duration,
    /// After this many throttled answers on one connection: `* BYE` and the connection drops.
    pub drop_after: u64,
    /// Drop a connection once, right after forwarding the n-th APPEND of the proxy's life,
    /// without forwarding its answer.
    pub cut_after_append: Option<u64>,
}

impl ExchangeImapConfig {
    pub fn new(master: (&str, &str), check_token: TokenCheck) -> Self {
        Self {
            master: (master.0.into(), master.1.into()),
            check_token,
            throttle_commands: vec!["APPEND".into()],
            throttle_every: 3,
            throttle_at_most: u64::MAX,
            backoff: Duration::from_millis(200),
            glued_bad: false,
            grace: Duration::from_millis(100),
            drop_after: 2,
            cut_after_append: None,
        }
    }
}

/// What the proxy saw.
#[derive(Clone, Debug, Default)]
pub struct ExchangeImapStats {
    pub connections: u64,
    pub logins: u64,
    /// XOAUTH2 logins refused (token unknown or expired), and logins of another kind.
    pub logins_refused: u64,
    /// Distinct tokens logins came with.
    pub tokens_seen: u64,
    pub throttled: u64,
    /// Connections dropped after `drop_after` throttled answers.
    pub dropped: u64,
    /// Commands that arrived while their mailbox's suggested backoff was running.
    pub ignored_backoff: u64,
    pub appends_forwarded: u64,
    /// APPENDs that set `\Flagged`, and STOREs that do (Exchange forgets a `\Flagged` set
    /// by APPEND outside IMAP, so a client should STORE it).
    pub appends_flagged: u64,
    pub stores_flagged: u64,
    pub cut_after_append: u64,
}

#[derive(Default)]
struct Shared {
    stats: ExchangeImapStats,
    tokens: std::collections::HashSet<String>,
    /// Per mailbox: matching commands seen, and the backoff window running.
    counted: HashMap<String, u64>,
    window: HashMap<String, (Instant, Instant)>,
    appends: u64,
}

pub struct ExchangeImapProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
}

impl ExchangeImapProxy {
    pub fn start(upstream: u16, cfg: ExchangeImapConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stopped, sh) = (stop.clone(), shared.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                sh.lock().unwrap().stats.connections += 1;
                let (cfg, sh) = (cfg.clone(), sh.clone());
                std::thread::spawn(move || {
                    let _ = Conn::run(client, server, cfg, sh);
                });
            }
        });
        Self { port, stop, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stats(&self) -> ExchangeImapStats {
        let s = self.shared.lock().unwrap();
        let mut st = s.stats.clone();
        st.tokens_seen = s.tokens.len() as u64;
        st
    }
}

impl Drop for ExchangeImapProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The literal a line announces at its end: `{n}` or `{n+}` → (n, synchronising).
fn literal_at_end(line: &[u8]) -> Option<(usize, bool)> {
    let l = line.strip_suffix(b"\r\n").or(line.strip_suffix(b"\n"))?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let inner = &l[open + 1..];
    let (digits, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

struct Conn {
    cfg: ExchangeImapConfig,
    shared: Arc<Mutex<Shared>>,
    /// The client's socket, written by both directions: one response at a time.
    to_client: Arc<Mutex<TcpStream>>,
    server: TcpStream,
    /// Set when answers from the server must no longer reach the client (cut after APPEND).
    mute: Arc<AtomicBool>,
    user: Option<String>,
    throttled_here: u64,
}

impl Conn {
    fn run(
        client: TcpStream,
        server: TcpStream,
        cfg: ExchangeImapConfig,
        shared: Arc<Mutex<Shared>>,
    ) -> std::io::Result<()> {
        let to_client = Arc::new(Mutex::new(client.try_clone()?));
        let mute = Arc::new(AtomicBool::new(false));
        // Server → client: whole responses (a line and the literals it announces).
        {
            let mut from = BufReader::new(server.try_clone()?);
            let (to, mute) = (to_client.clone(), mute.clone());
            std::thread::spawn(move || {
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if from.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let mut resp = line.clone();
                    let mut lit = literal_at_end(&line);
                    while let Some((n, _)) = lit {
                        let start = resp.len();
                        resp.resize(start + n, 0);
                        if from.read_exact(&mut resp[start..]).is_err() {
                            return;
                        }
                        line.clear();
                        if from.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        resp.extend_from_slice(&line);
                        lit = literal_at_end(&line);
                    }
                    if mute.load(Ordering::SeqCst) {
                        continue;
                    }
                    if to.lock().unwrap().write_all(&resp).is_err() {
                        break;
                    }
                }
                if let Ok(c) = to.lock() {
                    let _ = c.shutdown(Shutdown::Both);
                }
            });
        }
        let mut conn = Conn {
            cfg,
            shared,
            to_client,
            server,
            mute,
            user: None,
            throttled_here: 0,
        };
        let r = conn.client_loop(BufReader::new(client.try_clone()?));
        let _ = client.shutdown(Shutdown::Both);
        let _ = conn.server.shutdown(Shutdown::Both);
        r
    }

    fn reply(&self, text: &str) -> std::io::Result<()> {
        self.to_client.lock().unwrap().write_all(text.as_bytes())
    }

    fn client_loop(&mut self, mut from: BufReader<TcpStream>) -> std::io::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if from.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).to_string();
            let mut words = text.split_ascii_whitespace();
            let tag = words.next().unwrap_or("*").to_string();
            let mut verb = words.next().unwrap_or("").to_ascii_uppercase();
            if verb == "UID" {
                verb = words.next().unwrap_or("").to_ascii_uppercase();
            }
            if verb == "AUTHENTICATE" {
                self.login(&tag, &text)?;
                continue;
            }
            if verb == "LOGIN" {
                self.count(|s| s.logins_refused += 1);
                self.reply(&format!(
                    "{tag} NO LOGIN failed: basic authentication is disabled\r\n"
                ))?;
                continue;
            }
            self.note_arrival();
            if self.should_throttle(&verb) {
                self.throttle(&tag, &line, &mut from)?;
                if self.throttled_here >= self.cfg.drop_after {
                    self.count(|s| s.dropped += 1);
                    let _ = self.reply("* BYE Connection closed. 14\r\n");
                    self.close_gracefully(from);
                    return Ok(());
                }
                continue;
            }
            let flagged = text.contains("\\Flagged");
            match verb.as_str() {
                "APPEND" if flagged => self.count(|s| s.appends_flagged += 1),
                "STORE" if flagged => self.count(|s| s.stores_flagged += 1),
                _ => {}
            }
            self.forward_command(&line, &mut from)?;
            if verb == "APPEND" {
                let n = {
                    let mut s = self.shared.lock().unwrap();
                    s.stats.appends_forwarded += 1;
                    s.appends += 1;
                    s.appends
                };
                if self.cfg.cut_after_append == Some(n) {
                    // The server stores it; its answer never reaches the client.
                    self.mute.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    self.count(|s| s.cut_after_append += 1);
                    return Ok(());
                }
            }
        }
    }

    /// Ends the connection so that what was written reaches the client: closing a socket
    /// with unread input sends a reset, and the client's kernel may drop the answers before
    /// they are read. So: no more writes, then read (and drop) until the client closes.
    fn close_gracefully(&self, mut from: BufReader<TcpStream>) {
        let _ = self.to_client.lock().unwrap().shutdown(Shutdown::Write);
        let _ = from
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)));
        let _ = std::io::copy(&mut from, &mut std::io::sink());
    }

    fn count(&self, f: impl FnOnce(&mut ExchangeImapStats)) {
        f(&mut self.shared.lock().unwrap().stats)
    }

    /// A command arrived: inside its mailbox's backoff window (after the grace) it ignored it.
    fn note_arrival(&self) {
        let Some(user) = &self.user else { return };
        let mut s = self.shared.lock().unwrap();
        let now = Instant::now();
        if let Some((from, until)) = s.window.get(user).copied() {
            if now >= from + self.cfg.grace && now < until {
                s.stats.ignored_backoff += 1;
            }
        }
    }

    fn should_throttle(&self, verb: &str) -> bool {
        let Some(user) = &self.user else { return false };
        if !self.cfg.throttle_commands.iter().any(|c| c == verb) {
            return false;
        }
        let mut s = self.shared.lock().unwrap();
        if s.stats.throttled >= self.cfg.throttle_at_most {
            return false;
        }
        let n = s.counted.entry(user.clone()).or_default();
        *n += 1;
        n.is_multiple_of(self.cfg.throttle_every.max(1))
    }

    /// Answers the command as throttled; its literals (LITERAL+) are read and dropped, a
    /// synchronising one is never asked for.
    fn throttle(
        &mut self,
        tag: &str,
        first: &[u8],
        from: &mut BufReader<TcpStream>,
    ) -> std::io::Result<()> {
        let mut lit = literal_at_end(first);
        while let Some((n, sync)) = lit {
            if sync {
                break;
            }
            std::io::copy(&mut from.by_ref().take(n as u64), &mut std::io::sink())?;
            let mut line = Vec::new();
            from.read_until(b'\n', &mut line)?;
            lit = literal_at_end(&line);
        }
        let ms = self.cfg.backoff.as_millis();
        let status = if self.cfg.glued_bad { "BAD" } else { "NO " };
        self.reply(&format!(
            "{tag} {status}Request is throttled. Suggested Backoff Time: {ms} milliseconds\r\n"
        ))?;
        self.throttled_here += 1;
        let user = self.user.clone().unwrap_or_default();
        let now = Instant::now();
        let mut s = self.shared.lock().unwrap();
        s.stats.throttled += 1;
        s.window.insert(user, (now, now + self.cfg.backoff));
        Ok(())
    }

    /// Forwards one command with every literal it carries.
    fn forward_command(
        &mut self,
        first: &[u8],
        from: &mut BufReader<TcpStream>,
    ) -> std::io::Result<()> {
        self.server.write_all(first)?;
        let mut lit = literal_at_end(first);
        while let Some((n, _)) = lit {
            std::io::copy(&mut from.by_ref().take(n as u64), &mut self.server)?;
            let mut line = Vec::new();
            from.read_until(b'\n', &mut line)?;
            self.server.write_all(&line)?;
            lit = literal_at_end(&line);
        }
        Ok(())
    }

    /// `AUTHENTICATE XOAUTH2 <initial response>`: a valid token logs in as its user through
    /// the master user; anything else is refused as Exchange would.
    fn login(&mut self, tag: &str, line: &str) -> std::io::Result<()> {
        let initial = line.split_ascii_whitespace().nth(3);
        let mech = line
            .split_ascii_whitespace()
            .nth(2)
            .unwrap_or("")
            .to_ascii_uppercase();
        let decoded = initial
            .filter(|_| mech == "XOAUTH2")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).to_string());
        let parsed = decoded.as_deref().and_then(|d| {
            let mut user = None;
            let mut token = None;
            for part in d.split('\x01') {
                if let Some(u) = part.strip_prefix("user=") {
                    user = Some(u.to_string());
                } else if let Some(t) = part.strip_prefix("auth=Bearer ") {
                    token = Some(t.to_string());
                }
            }
            Some((user?, token?))
        });
        let Some((user, token)) = parsed.filter(|(_, t)| (self.cfg.check_token)(t)) else {
            self.count(|s| s.logins_refused += 1);
            return self.reply(&format!("{tag} NO AUTHENTICATE failed.\r\n"));
        };
        {
            let mut s = self.shared.lock().unwrap();
            s.stats.logins += 1;
            s.tokens.insert(token);
        }
        let (admin, pw) = &self.cfg.master;
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}\0{admin}\0{pw}"));
        self.user = Some(user);
        self.server
            .write_all(format!("{tag} AUTHENTICATE PLAIN {plain}\r\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_markers() {
        assert_eq!(
            literal_at_end(b"t1 APPEND INBOX {12+}\r\n"),
            Some((12, false))
        );
        assert_eq!(
            literal_at_end(b"t1 APPEND INBOX {12}\r\n"),
            Some((12, true))
        );
        assert_eq!(literal_at_end(b"t1 NOOP\r\n"), None);
    }
}
