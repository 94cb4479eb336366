//! One IMAP connection: TCP, TLS or STARTTLS, login, and sending commands / reading responses.
//!
//! Framing within limits is `framer`'s job, parsing `protocol`'s; a session keeps the deadline
//! of what it waits for.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::framer::{self, FrameError, Limits};
use crate::throttle::Throttle;

use crate::protocol::command::{Command, Part};
use crate::protocol::{self, Response, Status, StatusInfo, Value};

/// Which end of the migration a session talks to; every error names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

#[derive(Debug, Error)]
pub enum ImapError {
    #[error("{side}: connection to {host} failed: {source}")]
    Io {
        side: Side,
        host: String,
        source: std::io::Error,
    },
    #[error("{side}: TLS error with {host}: {msg}")]
    Tls {
        side: Side,
        host: String,
        msg: String,
    },
    #[error("{side}: login refused for {user} at {host}: {reason}")]
    LoginRefused {
        side: Side,
        user: String,
        host: String,
        reason: String,
    },
    #[error("{side}: server closed the connection: {0}", side = .0)]
    Bye(Side, String),
    #[error("{side}: `{cmd}` failed: {reason}")]
    Refused {
        side: Side,
        cmd: String,
        reason: String,
        status: StatusInfo,
    },
    /// The server broke a limit (too long, too large, too slow, silent).
    #[error("{side}: {host}: {what}")]
    Limit {
        side: Side,
        host: String,
        what: FrameError,
    },
    #[error("{side}: protocol error: {msg}")]
    Protocol { side: Side, msg: String },
    #[error("{side}: {msg}")]
    Config { side: Side, msg: String },
}

impl ImapError {
    /// Whether a new connection may succeed where this one failed (dropped link, BYE, throttling).
    pub fn is_transient(&self) -> bool {
        match self {
            ImapError::Io { .. } | ImapError::Bye(..) | ImapError::Protocol { .. } => true,
            ImapError::Limit { what, .. } => what.is_transient(),
            ImapError::Refused { reason, .. } => reason.to_ascii_lowercase().contains("throttl"),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, ImapError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// imaps://: TLS from the first byte.
    Tls,
    /// imap:// upgraded with STARTTLS.
    StartTls,
    /// imap:// without TLS: only loopback, or with --insecure-plaintext.
    Plain,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// LOGIN, or AUTHENTICATE PLAIN when offered.
    Password(String),
    /// AUTHENTICATE PLAIN with authcid = admin and authzid = the mailbox user (master user).
    Admin {
        admin: String,
        password: String,
    },
    XOAuth2(String),
    OAuthBearer(String),
    /// XOAUTH2 with app-only tokens fetched (and renewed near expiry) at each login:
    /// Exchange Online's IMAP for an app registration (`IMAP.AccessAsApp`).
    XOAuth2App(AppToken),
}

/// The app's token source; equal only to itself.
#[derive(Clone, Debug)]
pub struct AppToken(pub Arc<tenantry_graph::token::AppTokens>);

impl PartialEq for AppToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for AppToken {}

// Secrets never reach logs or error messages, even through `{:?}`.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Password(_) => f.write_str("Password(<redacted>)"),
            Auth::Admin { admin, .. } => write!(f, "Admin({admin}, <redacted>)"),
            Auth::XOAuth2(_) => f.write_str("XOAuth2(<redacted>)"),
            Auth::OAuthBearer(_) => f.write_str("OAuthBearer(<redacted>)"),
            Auth::XOAuth2App(_) => f.write_str("XOAuth2App(<app token>)"),
        }
    }
}

/// Everything needed to open a session to one mailbox.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub side: Side,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub security: Security,
    pub auth: Auth,
    /// Extra trusted roots (PEM); the web PKI roots are always trusted too.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Endpoint {
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A valid app-only token (the cache renews it near expiry, so a reconnect late in a long run
/// logs in with a new one). An unreachable token endpoint is transient.
async fn app_token(ep: &Endpoint, app: &AppToken) -> Result<String> {
    app.0.get().await.map_err(|e| match e {
        tenantry_graph::GraphError::Transient { message, .. } => ImapError::Io {
            side: ep.side,
            host: ep.host.clone(),
            source: std::io::Error::other(message),
        },
        e => ImapError::Config {
            side: ep.side,
            msg: format!("no access token for XOAUTH2: {e}"),
        },
    })
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Session {
    pub side: Side,
    host: String,
    io: BufReader<Box<dyn Stream>>,
    next_tag: u64,
    pub caps: Vec<String>,
    /// Tagged completions read early (while waiting for a literal's `+`); handed out first.
    stash: std::collections::VecDeque<Response>,
    /// Tags sent whose completion was not read yet: only their completions are stashed.
    outstanding: std::collections::HashSet<String>,
    limits: Limits,
    /// When what is awaited now (greeting, login, a command's completion) must have come.
    wait_until: Instant,
    /// Bytes the next completion waits on (literals sent, bodies expected): they extend its
    /// deadline (`Limits::deadline_for`).
    pending_bytes: u64,
    /// Bytes of all responses read so far (to bound what `run` collects).
    received: u64,
    /// Throttled answers close it; every command waits for it (all connections of a mailbox).
    throttle: Throttle,
}

/// Most untagged responses `run` collects for one command: real commands it is used for
/// (LIST, SELECT, CAPABILITY, CREATE) get a few thousand at most. Streaming commands
/// (`run_with`) hold nothing and are not bounded by it.
pub const MAX_UNTAGGED: usize = 100_000;
/// Most bytes of untagged responses `run` collects for one command.
pub const MAX_UNTAGGED_BYTES: u64 = 64 << 20;

/// Literals are written in pieces of this size, each within the idle timeout.
const WRITE_CHUNK: usize = 64 * 1024;

fn tls_config(ep: &Endpoint) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &ep.ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| ImapError::Config {
                side: ep.side,
                msg: format!("cannot read CA file {}: {e}", path.display()),
            })?;
        for c in certs {
            roots.add(c).map_err(|e| ImapError::Config {
                side: ep.side,
                msg: format!("bad certificate in {}: {e}", path.display()),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Tls {
            side: ep.side,
            host: ep.host.clone(),
            msg: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS handshake, within `limit` (a server that never finishes it must not hold a run or
/// a probe).
async fn tls_wrap(ep: &Endpoint, tcp: Box<dyn Stream>, limit: Duration) -> Result<Box<dyn Stream>> {
    let config = tls_config(ep)?;
    let name = rustls::pki_types::ServerName::try_from(
        ep.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| ImapError::Tls {
        side: ep.side,
        host: ep.host.clone(),
        msg: e.to_string(),
    })?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = tokio::time::timeout(limit, handshake)
        .await
        .map_err(|_| ImapError::Tls {
            side: ep.side,
            host: ep.host.clone(),
            msg: format!("no TLS handshake within {} s", limit.as_secs()),
        })?
        .map_err(|e| ImapError::Tls {
            side: ep.side,
            host: ep.host.clone(),
            msg: e.to_string(),
        })?;
    Ok(Box::new(tls))
}

impl Session {
    /// Connects, secures and logs in, with the default limits.
    pub async fn connect(ep: &Endpoint) -> Result<Session> {
        Session::connect_with(ep, &Limits::default()).await
    }

    /// Connects, secures and logs in; every response is read within `limits`.
    pub async fn connect_with(ep: &Endpoint, limits: &Limits) -> Result<Session> {
        let io_err = |source| ImapError::Io {
            side: ep.side,
            host: ep.host.clone(),
            source,
        };
        let addr = format!(
            "{}:{}",
            ep.host.trim_start_matches('[').trim_end_matches(']'),
            ep.port
        );
        let tcp = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(&addr))
            .await
            .map_err(|_| io_err(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn Stream> = Box::new(tcp);
        if ep.security == Security::Tls {
            stream = tls_wrap(ep, stream, limits.deadline).await?;
        }
        let mut s = Session {
            side: ep.side,
            host: ep.host.clone(),
            io: BufReader::with_capacity(256 * 1024, stream),
            next_tag: 0,
            caps: Vec::new(),
            stash: std::collections::VecDeque::new(),
            outstanding: Default::default(),
            limits: *limits,
            wait_until: limits.deadline_for(0),
            pending_bytes: 0,
            received: 0,
            throttle: Throttle::of(ep),
        };
        let greeting = s.greeting().await?;
        if ep.security == Security::StartTls {
            s.refresh_caps_if_empty().await?;
            if !s.has_cap("STARTTLS") {
                return Err(ImapError::Config {
                    side: ep.side,
                    msg: format!("{} does not offer STARTTLS", ep.host),
                });
            }
            s.run(Command::new("STARTTLS")).await?;
            let inner = std::mem::replace(
                &mut s.io,
                BufReader::new(Box::new(empty::EmptyDuplex) as Box<dyn Stream>),
            );
            if !inner.buffer().is_empty() {
                return Err(s.protocol("data after STARTTLS (possible injection)"));
            }
            s.io = BufReader::with_capacity(
                256 * 1024,
                tls_wrap(ep, inner.into_inner(), limits.deadline).await?,
            );
            s.caps.clear();
        }
        if greeting != Status::PreAuth {
            s.refresh_caps_if_empty().await?;
            s.login(ep).await?;
        }
        // Capabilities change after login (Dovecot sends them in the tagged OK; others don't).
        if !s.caps.iter().any(|c| c == "UIDPLUS" || c == "CONDSTORE") {
            s.caps.clear();
            s.refresh_caps_if_empty().await?;
        }
        Ok(s)
    }

    fn protocol(&self, msg: &str) -> ImapError {
        ImapError::Protocol {
            side: self.side,
            msg: msg.to_string(),
        }
    }

    async fn greeting(&mut self) -> Result<Status> {
        loop {
            match self.read_response().await? {
                Response::UntaggedStatus(info) => {
                    // Dovecot may first say "Waiting for authentication process"; the real
                    // greeting carries the capabilities.
                    self.take_caps(&info);
                    if info.status == Status::Bye {
                        return Err(self.bye(&info));
                    }
                    if info.status == Status::PreAuth || !info.text.starts_with("Waiting") {
                        return Ok(info.status);
                    }
                }
                _ => return Err(self.protocol("unexpected greeting")),
            }
        }
    }

    fn take_caps(&mut self, info: &StatusInfo) {
        if info.code_is("CAPABILITY") {
            self.caps = info.code[1..]
                .iter()
                .filter_map(Value::as_str)
                .map(|c| c.to_ascii_uppercase())
                .collect();
        }
    }

    async fn refresh_caps_if_empty(&mut self) -> Result<()> {
        if self.caps.is_empty() {
            let (untagged, _) = self.run(Command::new("CAPABILITY")).await?;
            for r in untagged {
                if let Response::Data(name, vals) = r {
                    if name == "CAPABILITY" {
                        self.caps = vals
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|c| c.to_ascii_uppercase())
                            .collect();
                    }
                }
            }
        }
        Ok(())
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// Starts the deadline of the next wait (a greeting, a login, a command's completion),
    /// extended for the bytes it involves.
    fn expect_by_deadline(&mut self) {
        self.wait_until = self.limits.deadline_for(self.pending_bytes);
    }

    /// The next command's answer carries about `bytes` (bodies being fetched): its deadline
    /// allows for them on a slow link.
    pub fn expect_bytes(&mut self, bytes: u64) {
        self.pending_bytes = self.pending_bytes.saturating_add(bytes);
    }

    async fn login(&mut self, ep: &Endpoint) -> Result<()> {
        let Auth::XOAuth2App(app) = &ep.auth else {
            return self.login_with(ep, None).await;
        };
        // Wait out a throttled mailbox first: a token fetched before a long wait could lapse.
        self.throttle.wait().await;
        let token = app_token(ep, app).await?;
        match self.login_with(ep, Some(&token)).await {
            // Revoked or expired early: one more try with a token fetched now.
            Err(ImapError::LoginRefused { .. }) => {
                app.0.invalidate(&token).await;
                let fresh = app_token(ep, app).await?;
                self.login_with(ep, Some(&fresh)).await
            }
            r => r,
        }
    }

    async fn login_with(&mut self, ep: &Endpoint, app_token: Option<&str>) -> Result<()> {
        self.expect_by_deadline();
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let (mech, initial, display) = match &ep.auth {
            Auth::Password(pw) if !self.has_cap("AUTH=PLAIN") => {
                let cmd = Command::new("LOGIN ")
                    .string(ep.user.as_bytes())
                    .text(" ")
                    .string(pw.as_bytes());
                return self.finish_login(ep, cmd, "LOGIN").await;
            }
            Auth::Password(pw) => (
                "PLAIN",
                b64(format!("\0{}\0{pw}", ep.user).as_bytes()),
                "PLAIN",
            ),
            Auth::Admin { admin, password } => (
                "PLAIN",
                b64(format!("{}\0{admin}\0{password}", ep.user).as_bytes()),
                "PLAIN (admin)",
            ),
            Auth::XOAuth2App(_) => (
                "XOAUTH2",
                b64(format!(
                    "user={}\x01auth=Bearer {}\x01\x01",
                    ep.user,
                    app_token.unwrap_or_default()
                )
                .as_bytes()),
                "XOAUTH2 (app)",
            ),
            Auth::XOAuth2(token) => (
                "XOAUTH2",
                b64(format!("user={}\x01auth=Bearer {token}\x01\x01", ep.user).as_bytes()),
                "XOAUTH2",
            ),
            Auth::OAuthBearer(token) => (
                "OAUTHBEARER",
                b64(format!(
                    "n,a={},\x01host={}\x01port={}\x01auth=Bearer {token}\x01\x01",
                    ep.user, ep.host, ep.port
                )
                .as_bytes()),
                "OAUTHBEARER",
            ),
        };
        if self.has_cap("SASL-IR") {
            let cmd = Command::new(&format!("AUTHENTICATE {mech} {initial}"));
            return self.finish_login(ep, cmd, display).await;
        }
        let tag = self
            .send(Command::new(&format!("AUTHENTICATE {mech}")))
            .await?;
        loop {
            match self.read_response().await? {
                Response::Continuation(_) => break,
                Response::Tagged(t, info) if t == tag => {
                    self.outstanding.remove(&t);
                    return Err(self.refused_login(ep, display, &info));
                }
                _ => {}
            }
        }
        self.write_raw(format!("{initial}\r\n").as_bytes()).await?;
        self.finish_sasl(ep, &tag, display).await
    }

    async fn finish_login(&mut self, ep: &Endpoint, cmd: Command, display: &str) -> Result<()> {
        let tag = self.send(cmd).await?;
        self.finish_sasl(ep, &tag, display).await
    }

    async fn finish_sasl(&mut self, ep: &Endpoint, tag: &str, display: &str) -> Result<()> {
        loop {
            match self.read_response().await? {
                // A SASL error challenge (XOAUTH2's JSON): answer empty / \x01 to get the NO.
                Response::Continuation(_) => {
                    let reply: &[u8] = if matches!(ep.auth, Auth::OAuthBearer(_)) {
                        b"AQ==\r\n"
                    } else {
                        b"\r\n"
                    };
                    self.write_raw(reply).await?;
                }
                Response::Tagged(t, info) if t == tag => {
                    self.outstanding.remove(&t);
                    if info.status == Status::Ok {
                        self.caps.clear();
                        self.take_caps(&info);
                        return Ok(());
                    }
                    return Err(self.refused_login(ep, display, &info));
                }
                Response::UntaggedStatus(info) if info.status == Status::Bye => {
                    return Err(self.refused_login(ep, display, &info));
                }
                _ => {}
            }
        }
    }

    fn refused_login(&self, ep: &Endpoint, mech: &str, info: &StatusInfo) -> ImapError {
        ImapError::LoginRefused {
            side: ep.side,
            user: ep.user.clone(),
            host: ep.host.clone(),
            reason: format!("{} (method {mech})", info.describe()),
        }
    }

    async fn write_raw(&mut self, b: &[u8]) -> Result<()> {
        let r = tokio::time::timeout(self.limits.idle, async {
            self.io.get_mut().write_all(b).await?;
            self.io.get_mut().flush().await
        })
        .await;
        self.io_result(r)
    }

    fn io_result<T>(
        &self,
        r: std::result::Result<std::io::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ImapError::Io {
                side: self.side,
                host: self.host.clone(),
                source: e,
            }),
            Err(_) => Err(ImapError::Io {
                side: self.side,
                host: self.host.clone(),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    /// Sends a command without waiting for its completion (pipelining) and returns its tag.
    /// Literals go non-synchronising when the server offers LITERAL+ (or LITERAL- for small
    /// ones); otherwise each waits for the server's `+`.
    pub async fn send(&mut self, cmd: Command) -> Result<String> {
        // Throttled (on this or another connection of the mailbox): wait as told.
        self.throttle.wait().await;
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.outstanding.insert(tag.clone());
        let plus = self.has_cap("LITERAL+");
        let minus = self.has_cap("LITERAL-");
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b' ');
        for part in cmd.parts {
            match part {
                Part::Text(t) => buf.extend_from_slice(&t),
                Part::Literal(l) => {
                    let nonsync = plus || (minus && l.len() <= 4096);
                    buf.extend_from_slice(
                        format!("{{{}{}}}\r\n", l.len(), if nonsync { "+" } else { "" }).as_bytes(),
                    );
                    self.expect_bytes(l.len() as u64);
                    if nonsync {
                        self.write_raw(&buf).await?;
                        buf.clear();
                        self.write_literal(&l).await?;
                    } else {
                        self.write_raw(&buf).await?;
                        buf.clear();
                        self.expect_by_deadline();
                        loop {
                            // Straight from the wire: earlier pipelined commands may complete
                            // first; their completions wait in the stash.
                            match self.read_wire().await? {
                                Response::Continuation(_) => break,
                                // Only completions of commands still waited for: a server
                                // cannot fill the stash with made-up or repeated tags.
                                Response::Tagged(t, info) if self.outstanding.remove(&t) => {
                                    let mine = t == tag;
                                    self.stash.push_back(Response::Tagged(t, info));
                                    if mine {
                                        // Refused before the literal: the command ends here.
                                        return Ok(tag);
                                    }
                                }
                                Response::UntaggedStatus(info) if info.status == Status::Bye => {
                                    return Err(self.bye(&info));
                                }
                                _ => {}
                            }
                        }
                        self.write_literal(&l).await?;
                    }
                }
            }
        }
        buf.extend_from_slice(b"\r\n");
        self.write_raw(&buf).await?;
        Ok(tag)
    }

    /// Writes a literal (unflushed) piece by piece: the idle timeout applies to each piece, so
    /// a large body on a slow link is not cut off; the whole write ends by the deadline
    /// extended for its size, so a target that reads a trickle is.
    async fn write_literal(&mut self, b: &[u8]) -> Result<()> {
        let until = self.limits.deadline_for(b.len() as u64);
        for piece in b.chunks(WRITE_CHUNK) {
            let idle = tokio::time::timeout(self.limits.idle, self.io.get_mut().write_all(piece));
            let r = match tokio::time::timeout_at(until, idle).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(ImapError::Limit {
                        side: self.side,
                        host: self.host.clone(),
                        what: FrameError::Deadline(self.limits.deadline),
                    })
                }
            };
            self.io_result(r)?;
        }
        Ok(())
    }

    /// Reads one complete response: a line and every literal it announces.
    pub async fn read_response(&mut self) -> Result<Response> {
        if let Some(r) = self.stash.pop_front() {
            return Ok(r);
        }
        self.read_wire().await
    }

    /// Reads one response from the socket, ignoring the stash.
    async fn read_wire(&mut self) -> Result<Response> {
        let framed = framer::read_response(&mut self.io, &self.limits, self.wait_until).await;
        if let Ok(f) = &framed {
            let held = f.text.len() + f.literals.iter().map(Vec::len).sum::<usize>();
            self.received = self.received.saturating_add(held as u64);
        }
        let framed = framed.map_err(|what| match what {
            FrameError::Io(source) => ImapError::Io {
                side: self.side,
                host: self.host.clone(),
                source,
            },
            FrameError::Closed => ImapError::Io {
                side: self.side,
                host: self.host.clone(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            },
            what => ImapError::Limit {
                side: self.side,
                host: self.host.clone(),
                what,
            },
        })?;
        let r = protocol::parse_framed(framed).map_err(|e| self.protocol(&e.to_string()))?;
        if let Response::Tagged(_, info) | Response::UntaggedStatus(info) = &r {
            if info.status != Status::Ok {
                self.throttle.note(&info.text);
            }
        }
        Ok(r)
    }

    /// Reads until the completion of `tag`; untagged responses are handed to `on_untagged`.
    pub async fn complete(
        &mut self,
        tag: &str,
        cmd_desc: &str,
        mut on_untagged: impl FnMut(Response),
    ) -> Result<StatusInfo> {
        self.expect_by_deadline();
        loop {
            match self.read_response().await? {
                Response::Tagged(t, info) if t == tag => return self.completed(&t, info, cmd_desc),
                Response::UntaggedStatus(info) if info.status == Status::Bye => {
                    return Err(self.bye(&info));
                }
                other => on_untagged(other),
            }
        }
    }

    /// A command's tagged completion: OK, or the refusal as an error.
    fn completed(&mut self, tag: &str, info: StatusInfo, cmd_desc: &str) -> Result<StatusInfo> {
        self.outstanding.remove(tag);
        self.pending_bytes = 0;
        match info.status {
            Status::Ok => Ok(info),
            _ => Err(ImapError::Refused {
                side: self.side,
                cmd: cmd_desc.to_string(),
                reason: info.describe(),
                status: info,
            }),
        }
    }

    fn bye(&self, info: &StatusInfo) -> ImapError {
        ImapError::Bye(self.side, protocol::clip(&info.text))
    }

    /// Sends a command and hands each untagged response to `f` as it arrives (streaming).
    pub async fn run_with(&mut self, cmd: Command, f: impl FnMut(Response)) -> Result<StatusInfo> {
        let desc = cmd.redacted();
        let tag = self.send(cmd).await?;
        self.complete(&tag, &desc, f).await
    }

    /// Waits for several pipelined commands; returns each one's completion (OK or not), in
    /// `tags` order.
    pub async fn complete_many(&mut self, tags: &[String]) -> Result<Vec<StatusInfo>> {
        let wanted: std::collections::HashSet<&str> = tags.iter().map(String::as_str).collect();
        let mut done: std::collections::HashMap<String, StatusInfo> = Default::default();
        self.expect_by_deadline();
        while done.len() < wanted.len() {
            match self.read_response().await? {
                Response::Tagged(t, info) if wanted.contains(t.as_str()) => {
                    self.outstanding.remove(&t);
                    done.insert(t, info);
                }
                Response::UntaggedStatus(info) if info.status == Status::Bye => {
                    return Err(self.bye(&info));
                }
                _ => {}
            }
        }
        self.pending_bytes = 0;
        tags.iter()
            .map(|t| {
                done.get(t).cloned().ok_or_else(|| ImapError::Protocol {
                    side: self.side,
                    msg: format!("no completion for {t}"),
                })
            })
            .collect()
    }

    /// Sends a command and waits for it, collecting the untagged responses.
    pub async fn run(&mut self, cmd: Command) -> Result<(Vec<Response>, StatusInfo)> {
        let desc = cmd.redacted();
        let desc = if desc.starts_with("LOGIN") || desc.starts_with("AUTHENTICATE") {
            "LOGIN".to_string()
        } else {
            desc
        };
        let tag = self.send(cmd).await?;
        self.expect_by_deadline();
        let start = self.received;
        let mut out = Vec::new();
        loop {
            match self.read_response().await? {
                Response::Tagged(t, info) if t == tag => {
                    let info = self.completed(&t, info, &desc)?;
                    return Ok((out, info));
                }
                Response::UntaggedStatus(info) if info.status == Status::Bye => {
                    return Err(self.bye(&info));
                }
                // Another command's completion (or a made-up tag): not this command's answer.
                Response::Tagged(..) => {}
                other => out.push(other),
            }
            // Held until the command completes, so bounded: endless `* 1 EXISTS` would
            // otherwise grow it until the deadline.
            if out.len() > MAX_UNTAGGED || self.received - start > MAX_UNTAGGED_BYTES {
                return Err(ImapError::Limit {
                    side: self.side,
                    host: self.host.clone(),
                    what: FrameError::TooMuchChatter {
                        count: MAX_UNTAGGED,
                        bytes: MAX_UNTAGGED_BYTES,
                    },
                });
            }
        }
    }

    pub async fn logout(mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.run(Command::new("LOGOUT"))).await;
    }
}

/// What SELECT/EXAMINE tells about a folder.
#[derive(Debug, Default, Clone)]
pub struct Selected {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub exists: u32,
    pub highestmodseq: Option<u64>,
    /// None when the server sent no PERMANENTFLAGS (then FLAGS applies).
    pub permanent_flags: Option<Vec<String>>,
    pub flags: Vec<String>,
}

impl Selected {
    /// Whether the target keeps this flag: listed, or `\*` (any keyword) for keywords.
    pub fn accepts(&self, flag: &str) -> bool {
        let list = self.permanent_flags.as_ref().unwrap_or(&self.flags);
        list.iter().any(|f| f.eq_ignore_ascii_case(flag))
            || (!flag.starts_with('\\') && list.iter().any(|f| f == "\\*"))
    }
}

impl Session {
    pub async fn select(&mut self, mailbox: &str, read_only: bool) -> Result<Selected> {
        let verb = if read_only { "EXAMINE " } else { "SELECT " };
        let mut cmd = Command::new(verb).string(mailbox.as_bytes());
        if self.has_cap("CONDSTORE") {
            cmd = cmd.text(" (CONDSTORE)");
        }
        let (untagged, info) = self.run(cmd).await?;
        let mut sel = Selected::default();
        // A number that does not parse or overflows is refused: read as 0 it would reset the
        // folder's state or hide its messages.
        let mut apply = |code: &[Value]| -> std::result::Result<(), protocol::ParseError> {
            let Some(name) = code.first() else {
                return Ok(());
            };
            if name.is_atom("UIDVALIDITY") {
                sel.uidvalidity = protocol::number(code.get(1), "UIDVALIDITY")?;
            } else if name.is_atom("UIDNEXT") {
                sel.uidnext = protocol::number(code.get(1), "UIDNEXT")?;
            } else if name.is_atom("HIGHESTMODSEQ") {
                sel.highestmodseq = Some(protocol::number(code.get(1), "HIGHESTMODSEQ")?);
            } else if name.is_atom("PERMANENTFLAGS") {
                sel.permanent_flags = code
                    .get(1)
                    .and_then(Value::as_list)
                    .map(|l| l.iter().filter_map(Value::as_str).collect());
            }
            Ok(())
        };
        let mut exists = None;
        let mut flags = None;
        for r in &untagged {
            match r {
                Response::UntaggedStatus(i) => apply(&i.code).map_err(|e| self.protocol(&e.0))?,
                Response::Numbered(n, name, _) if name == "EXISTS" => exists = Some(*n),
                Response::Data(name, v) if name == "FLAGS" => {
                    flags = v
                        .first()
                        .and_then(Value::as_list)
                        .map(|l| l.iter().filter_map(Value::as_str).collect())
                }
                _ => {}
            }
        }
        apply(&info.code).map_err(|e| self.protocol(&e.0))?;
        if let Some(n) = exists {
            sel.exists = u32::try_from(n)
                .map_err(|_| self.protocol(&format!("EXISTS {n} is out of range")))?;
        }
        sel.flags = flags.unwrap_or_default();
        if sel.uidvalidity == 0 {
            return Err(self.protocol("SELECT without UIDVALIDITY"));
        }
        Ok(sel)
    }
}

/// tokio has no empty duplex stream; this placeholder is only held during the STARTTLS swap.
mod empty {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    pub struct EmptyDuplex;
    impl AsyncRead for EmptyDuplex {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    impl AsyncWrite for EmptyDuplex {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}
