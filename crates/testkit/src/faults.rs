//! Faults on purpose: a TCP proxy that cuts connections in the middle of a transfer (and can
//! add latency to every round trip), and a record of the figures that the reliability table
//! (`scripts/reliability`) is made of.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which way the bytes that count towards a cut flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (cuts land in the middle of an upload, an IMAP APPEND, a PUT).
    ToServer,
    /// Server to client (cuts land in the middle of a download, a FETCH, a GET).
    ToClient,
}

/// How a [`Proxy`] treats each connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProxyConfig {
    /// Cut a connection (both directions, without warning) once this many bytes have gone
    /// that way on it. `None`: never cut.
    pub cut_after: Option<(Direction, u64)>,
    /// Connections after the first `cuts_at_most` cuts are passed through whole, so a client
    /// that re-runs gets to finish.
    pub cuts_at_most: Option<usize>,
    /// Added before every chunk forwarded in each direction: about one round trip's worth of
    /// latency per request/response exchange.
    pub delay: Duration,
}

/// A TCP proxy on a loopback port in front of `upstream`.
pub struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start(upstream: u16, config: ProxyConfig) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stopped, cut_count, conn_count) = (stop.clone(), cuts.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                conn_count.fetch_add(1, Ordering::SeqCst);
                let may_cut = config
                    .cuts_at_most
                    .is_none_or(|n| cut_count.load(Ordering::SeqCst) < n);
                let limit = config.cut_after.filter(|_| may_cut);
                splice(client, server, limit, config.delay, cut_count.clone());
            }
        });
        Proxy {
            port,
            stop,
            cuts,
            connections,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both directions on their own threads; past `limit` bytes in its direction, shuts
/// both sockets.
fn splice(
    client: TcpStream,
    server: TcpStream,
    limit: Option<(Direction, u64)>,
    delay: Duration,
    cuts: Arc<AtomicUsize>,
) {
    let sent = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let pairs = [
        (client.try_clone(), server.try_clone(), Direction::ToServer),
        (server.try_clone(), client.try_clone(), Direction::ToClient),
    ];
    for (from, to, direction) in pairs {
        let limit = limit.filter(|(d, _)| *d == direction).map(|(_, n)| n);
        let (Ok(mut from), Ok(mut to)) = (from, to) else {
            return;
        };
        let (sent, cut, cuts) = (sent.clone(), cut.clone(), cuts.clone());
        let (c, s) = (client.try_clone(), server.try_clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let mut n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                if let Some(limit) = limit {
                    let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                    if before + n as u64 >= limit {
                        // Forward up to the limit, then drop the line mid-transfer.
                        n = limit.saturating_sub(before) as usize;
                        let _ = to.write_all(&buf[..n]);
                        if !cut.swap(true, Ordering::SeqCst) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            // One side is done: close both, as a dropped line would.
            for s in [c, s].into_iter().flatten() {
                let _ = s.shutdown(Shutdown::Both);
            }
        });
    }
}

/// One line of the reliability table: what was tried, how much of it, and the data lost.
///
/// Written only when `TENANTRY_FIGURES` names a file (as `scripts/reliability` sets it), as
/// one tab-separated line per call, so tests in parallel processes can append safely.
pub fn record(kind: &str, what: &str, amount: &str, data_lost: u64) {
    let Some(path) = std::env::var_os("TENANTRY_FIGURES").map(PathBuf::from) else {
        return;
    };
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let line = format!(
        "{}\t{}\t{}\t{}\n",
        clean(kind),
        clean(what),
        clean(amount),
        data_lost
    );
    // O_APPEND writes of one short line are atomic between processes.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("TENANTRY_FIGURES: {e}"));
    f.write_all(line.as_bytes()).expect("write figure");
}

/// Kinds of figure, as the table groups them.
pub mod kind {
    pub const LOAD: &str = "load held";
    pub const FAULT: &str = "fault survived";
    pub const BAD_INPUT: &str = "bad input tried";
}
