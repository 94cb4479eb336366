//! Servers that misbehave on request: what a peer controlled by an attacker (or simply broken)
//! can send a migration. Each runs on a loopback port, one thread per connection, and stops
//! accepting when dropped. The test decides every byte that goes out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the hostile HTTP server read it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent (percent-encoded, query included).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler wants done with the connection after answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    KeepAlive,
    Close,
}

/// Writes a complete response with a `Content-Length` (the common case for a handler).
pub fn respond(
    w: &mut dyn Write,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Then> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()?;
    Ok(Then::KeepAlive)
}

/// Writes a status line and headers only, with `Connection: close`: the handler writes the
/// body itself (`trickle`, `repeat_body`), and a body without `Content-Length` ends when the
/// connection does.
pub fn respond_head(
    w: &mut dyn Write,
    status: u16,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// Writes `bytes` one byte every `every`, cycling, until the client hangs up: a server that
/// keeps a connection busy without ever finishing.
pub fn trickle(w: &mut dyn Write, bytes: &[u8], every: Duration) -> std::io::Result<Then> {
    for b in bytes.iter().cycle() {
        w.write_all(&[*b])?;
        w.flush()?;
        std::thread::sleep(every);
    }
    Ok(Then::Close)
}

/// Writes `chunk` `times` times (a large body from a small buffer), stopping early when the
/// client hangs up, then closes the connection.
pub fn repeat_body(w: &mut dyn Write, chunk: &[u8], times: u64) -> std::io::Result<Then> {
    for _ in 0..times {
        w.write_all(chunk)?;
    }
    w.flush()?;
    Ok(Then::Close)
}

/// A `207 Multi-Status` body listing `(href, is_collection, size)`.
pub fn multistatus(entries: &[(&str, bool, u64)]) -> String {
    let mut s =
        String::from(r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#);
    for (href, dir, size) in entries {
        let (rt, len) = if *dir {
            ("<D:collection/>".to_string(), String::new())
        } else {
            (
                String::new(),
                format!("<D:getcontentlength>{size}</D:getcontentlength>"),
            )
        };
        s.push_str(&format!(
            "<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype>{rt}</D:resourcetype>{len}\
             <D:getlastmodified>Wed, 21 Oct 2015 07:28:00 GMT</D:getlastmodified></D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        ));
    }
    s.push_str("</D:multistatus>");
    s
}

type HttpHandler = dyn Fn(&HttpRequest, &mut dyn Write) -> std::io::Result<Then> + Send + Sync;

/// An HTTP/1.1 server whose every answer is written by the test's handler.
pub struct HttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
}

impl HttpServer {
    pub fn start(
        handler: impl Fn(&HttpRequest, &mut dyn Write) -> std::io::Result<Then> + Send + Sync + 'static,
    ) -> Self {
        let handler: Arc<HttpHandler> = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let (port, stop) = accept_loop(move |sock| {
            let mut reader = BufReader::new(sock.try_clone().expect("clone socket"));
            let mut out = sock;
            while let Some(req) = read_request(&mut reader) {
                log.lock().expect("log").push(req.clone());
                match handler(&req, &mut out) {
                    Ok(Then::KeepAlive) => {}
                    Ok(Then::Close) | Err(_) => return,
                }
            }
        });
        Self {
            port,
            stop,
            requests,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().expect("log").clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        stop_accepting(self.port, &self.stop);
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        req.body = vec![0; n];
        r.read_exact(&mut req.body).ok()?;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(req)
}

type ImapHandler = dyn Fn(&mut ImapConn) -> std::io::Result<()> + Send + Sync;

/// An IMAP server whose whole conversation is the test's handler: it writes the greeting and
/// answers commands as it likes, through [`ImapConn`].
pub struct ImapServer {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

/// One client connection of an [`ImapServer`].
pub struct ImapConn {
    reader: BufReader<TcpStream>,
    out: TcpStream,
}

impl ImapConn {
    /// Sends bytes as they are (no CRLF added).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()
    }

    /// Reads the next command line: `(tag, rest)`, `None` when the client hung up.
    pub fn command(&mut self) -> Option<(String, String)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some((tag.to_string(), rest.to_string()))
    }

    /// Reads exactly `n` bytes the client sent (e.g. slowly, to play a slow link).
    pub fn read_bytes(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut data = vec![0; n];
        self.reader.read_exact(&mut data)?;
        Ok(data)
    }

    /// Reads one line the client sent, CRLF included.
    pub fn read_line_raw(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        Ok(line)
    }

    /// Answers commands with `ok` until the client hangs up: `LOGIN`/`AUTHENTICATE` and
    /// `LOGOUT` get what a server would say; every other command gets `respond(tag, rest)`.
    pub fn serve(&mut self, mut respond: impl FnMut(&str, &str) -> Vec<u8>) -> std::io::Result<()> {
        while let Some((tag, rest)) = self.command() {
            let verb = rest.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let answer = match verb.as_str() {
                "LOGOUT" => {
                    self.send(format!("* BYE\r\n{tag} OK LOGOUT\r\n").as_bytes())?;
                    return Ok(());
                }
                "LOGIN" => format!("{tag} OK LOGIN done\r\n").into_bytes(),
                _ => respond(&tag, &rest),
            };
            self.send(&answer)?;
        }
        Ok(())
    }
}

impl ImapServer {
    pub fn start(
        handler: impl Fn(&mut ImapConn) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        let handler: Arc<ImapHandler> = Arc::new(handler);
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let (port, stop) = accept_loop(move |sock| {
            count.fetch_add(1, Ordering::SeqCst);
            let mut conn = ImapConn {
                reader: BufReader::new(sock.try_clone().expect("clone socket")),
                out: sock,
            };
            let _ = handler(&mut conn);
        });
        Self {
            port,
            stop,
            connections,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ImapServer {
    fn drop(&mut self) {
        stop_accepting(self.port, &self.stop);
    }
}

/// Accepts on a fresh loopback port until stopped, one thread per connection.
fn accept_loop(on_conn: impl Fn(TcpStream) + Send + Sync + 'static) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let on_conn = Arc::new(on_conn);
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok(sock) = sock else { continue };
            let _ = sock.set_read_timeout(Some(Duration::from_secs(120)));
            let on_conn = on_conn.clone();
            std::thread::spawn(move || on_conn(sock));
        }
    });
    (port, stop)
}

fn stop_accepting(port: u16, stop: &AtomicBool) {
    stop.store(true, Ordering::SeqCst);
    // Wake the accept loop so it sees the flag.
    let _ = TcpStream::connect(("127.0.0.1", port));
}
