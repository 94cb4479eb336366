//! Microsoft's documented write limit for the directory (identity and access service): 3,000
//! writes per 150 seconds per app and tenant. The Graph client already obeys 429s and their
//! Retry-After; this keeps the move under the limit so that it is not throttled in the first
//! place (a throttled tenant pauses every app of the customer, not only the move).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

pub const WRITES_PER_WINDOW: usize = 3_000;
pub const WINDOW: Duration = Duration::from_secs(150);

/// A sliding window of the writes sent; [`WriteLimit::acquire`] waits while it is full.
pub struct WriteLimit {
    limit: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl WriteLimit {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// The limit every mover of one app in one tenant shares (`key`: the Graph budget key).
    pub fn shared(key: &str) -> Arc<WriteLimit> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<WriteLimit>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry(key.to_string())
            .or_insert_with(|| Arc::new(WriteLimit::new(WRITES_PER_WINDOW, WINDOW)))
            .clone()
    }

    /// Waits until one more write fits in the window, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while sent.front().is_some_and(|t| now >= *t + self.window) {
                    sent.pop_front();
                }
                if sent.len() < self.limit {
                    sent.push_back(now);
                    return;
                }
                // The oldest write leaves the window first.
                sent.front().map(|t| *t + self.window - now)
            };
            if let Some(wait) = wait {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "directory write limit reached; waiting"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_beyond_the_limit_wait_for_the_window_to_move_on() {
        let limit = WriteLimit::new(3, Duration::from_secs(150));
        let start = Instant::now();
        for _ in 0..3 {
            limit.acquire().await;
        }
        assert_eq!(Instant::now() - start, Duration::ZERO);
        limit.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(150));
        // Three more fit in the next window only once the second window has passed too.
        limit.acquire().await;
        limit.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(150));
        limit.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(300));
    }

    #[test]
    fn the_default_is_microsofts_documented_limit() {
        let shared = WriteLimit::shared("authority|tenant|client");
        assert_eq!(shared.limit, 3_000);
        assert_eq!(shared.window, Duration::from_secs(150));
        assert!(Arc::ptr_eq(
            &shared,
            &WriteLimit::shared("authority|tenant|client")
        ));
    }
}
