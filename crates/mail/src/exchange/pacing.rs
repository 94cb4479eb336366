//! Client-side pacing for Outlook's per-mailbox upload budget: "150 megabytes (MB) upload
//! (PATCH, POST, PUT) in a 5 minute period" per app and mailbox
//! (<https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>). Beyond it the
//! service answers 429, and every 429 pauses the tenant's requests; a large mailbox paced here
//! never meets that 429 at all.
//!
//! Why a sliding window and not a classic token bucket: a bucket that starts full (B bytes) and
//! refills at B per window lets 2·B through in one window — exactly what a service counting the
//! bytes of the last 5 minutes refuses. So the pacer keeps the ledger the service keeps: the
//! bytes sent within the last window, each stamped when its request *finished* (never earlier
//! than the service saw it), requests still in flight counted in full. A request waits until
//! its bytes fit. A single request larger than the whole budget goes alone, when nothing else
//! is in the window (it could never fit otherwise).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Microsoft's figure, in decimal megabytes (the smaller reading of "150 MB").
pub const DEFAULT_UPLOAD_BUDGET: u64 = 150_000_000;
pub const DEFAULT_UPLOAD_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Entry {
    key: u64,
    bytes: u64,
    /// `None` while the request is in flight.
    finished: Option<Instant>,
}

#[derive(Debug, Default)]
struct Ledger {
    entries: VecDeque<Entry>,
    next_key: u64,
}

/// The upload ledger of one mailbox. Cheap to clone; clones share the ledger.
#[derive(Debug, Clone)]
pub struct UploadPacer {
    budget: u64,
    window: Duration,
    ledger: Arc<Mutex<Ledger>>,
    changed: Arc<Notify>,
}

/// Bytes counted against the budget; stamped when dropped (the request's end).
pub struct Reservation {
    pacer: UploadPacer,
    key: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut l = self.pacer.lock();
        if let Some(e) = l.entries.iter_mut().find(|e| e.key == self.key) {
            e.finished = Some(Instant::now());
        }
        drop(l);
        self.pacer.changed.notify_waiters();
    }
}

impl Default for UploadPacer {
    fn default() -> Self {
        Self::new(DEFAULT_UPLOAD_BUDGET, DEFAULT_UPLOAD_WINDOW)
    }
}

impl UploadPacer {
    pub fn new(budget: u64, window: Duration) -> Self {
        Self {
            budget: budget.max(1),
            window,
            ledger: Arc::default(),
            changed: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `bytes` fit in the window, then counts them.
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        loop {
            // Registered before the ledger is read, so a release in between is not missed.
            let changed = self.changed.notified();
            let wait = {
                let mut l = self.lock();
                let now = Instant::now();
                l.entries.retain(|e| {
                    e.finished
                        .is_none_or(|t| now.duration_since(t) < self.window)
                });
                let used: u64 = l.entries.iter().map(|e| e.bytes).sum();
                if used + bytes <= self.budget || l.entries.is_empty() {
                    let key = l.next_key;
                    l.next_key += 1;
                    l.entries.push_back(Entry {
                        key,
                        bytes,
                        finished: None,
                    });
                    return Reservation {
                        pacer: self.clone(),
                        key,
                    };
                }
                // The earliest finished entry leaves the window first; in-flight ones wake us.
                l.entries
                    .iter()
                    .filter_map(|e| e.finished)
                    .min()
                    .map(|t| self.window.saturating_sub(now.duration_since(t)))
            };
            match wait {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d + Duration::from_millis(5)) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_the_budget_within_one_window() {
        let p = UploadPacer::new(1000, Duration::from_millis(300));
        let start = Instant::now();
        let mut done = Vec::new();
        for _ in 0..5 {
            let r = p.reserve(400).await;
            done.push(Instant::now());
            drop(r);
        }
        // 400 + 400 fit, the third waits for the first to leave the window, and so on.
        assert!(done[2].duration_since(start) >= Duration::from_millis(300));
        assert!(done[4].duration_since(start) >= Duration::from_millis(600));
        for w in done.windows(3) {
            assert!(w[2].duration_since(w[0]) >= Duration::from_millis(300));
        }
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_goes_alone() {
        let p = UploadPacer::new(100, Duration::from_millis(50));
        drop(p.reserve(500).await);
        let r = p.reserve(10).await;
        drop(r);
    }
}
