//! Progress on stderr: a redrawn line on a terminal, plain lines every few seconds otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Progress {
    /// Known once the run has compared both listings (zero before).
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub start: Instant,
}

impl Progress {
    pub fn new(files_total: u64, bytes_total: u64) -> Arc<Self> {
        Arc::new(Self {
            files_total: AtomicU64::new(files_total),
            bytes_total: AtomicU64::new(bytes_total),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    pub fn line(&self) -> String {
        let files = self.files_done.load(Ordering::Relaxed);
        let bytes = self.bytes_done.load(Ordering::Relaxed);
        let (files_total, bytes_total) = (
            self.files_total.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        );
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = bytes as f64 / secs;
        let eta = if rate > 0.0 && bytes_total > bytes {
            format!("{:.0}s", (bytes_total - bytes) as f64 / rate)
        } else {
            "-".into()
        };
        format!(
            "{files}/{files_total} files, {:.1}/{:.1} MB, {:.1} MB/s, ETA {eta}",
            bytes as f64 / 1e6,
            bytes_total as f64 / 1e6,
            rate / 1e6
        )
    }

    /// Starts printing; the returned guard stops it (and ends the line) when dropped.
    pub fn spawn(self: &Arc<Self>) -> ProgressGuard {
        let p = self.clone();
        print_progress(move || p.line())
    }
}

/// Prints `line()` on stderr until the returned guard is dropped: redrawn four times a second
/// on a terminal, else a `progress: ` line every 10 s (a log file must not fill with redraws).
/// Every engine's CLI shows its progress this way.
pub fn print_progress(line: impl Fn() -> String + Send + 'static) -> ProgressGuard {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let mut e = std::io::stderr().lock();
            if tty {
                let _ = write!(e, "\r\x1b[2K{}", line());
            } else {
                let _ = writeln!(e, "progress: {}", line());
            }
            let _ = e.flush();
        }
    });
    ProgressGuard { task, tty }
}

/// Stops [`print_progress`] when dropped, clearing a terminal's line.
pub struct ProgressGuard {
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.task.abort();
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}
