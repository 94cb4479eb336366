//! One throttling budget per tenant (per app in a tenant), shared by every request of the process.
//!
//! Microsoft counts an app's requests per tenant, and asks every caller that is over the limit to
//! wait (`Retry-After`) — retrying a throttled request early counts against the limit again
//! (<https://learn.microsoft.com/graph/throttling>,
//! <https://learn.microsoft.com/sharepoint/dev/general-development/how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online>).
//! So a 429 seen by one worker pauses *all* of them until the wait is over, and afterwards the
//! number of requests in flight starts again from one and grows by one per success (slow start),
//! so there is no burst right after the wait. The window is never above `max_in_flight`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Requests allowed in flight now (1..=max).
    window: usize,
    paused_until: Option<Instant>,
    throttled_total: Duration,
    throttle_events: u64,
}

#[derive(Debug)]
pub struct Budget {
    max: usize,
    state: Mutex<State>,
    freed: Notify,
}

/// Held while a request is in flight; dropping it frees the slot.
pub struct Permit {
    budget: Arc<Budget>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.budget.state.lock().expect("budget lock");
        s.in_flight -= 1;
        drop(s);
        self.budget.freed.notify_waiters();
    }
}

impl Budget {
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        let max = max_in_flight.max(1);
        Arc::new(Self {
            max,
            state: Mutex::new(State {
                in_flight: 0,
                window: max,
                paused_until: None,
                throttled_total: Duration::ZERO,
                throttle_events: 0,
            }),
            freed: Notify::new(),
        })
    }

    /// The budget of `key` (one app in one tenant), shared by every client of this process.
    pub fn shared(key: &str, max_in_flight: usize) -> Arc<Self> {
        static ALL: OnceLock<Mutex<HashMap<String, Weak<Budget>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .expect("budgets lock");
        if let Some(b) = all.get(key).and_then(Weak::upgrade) {
            return b;
        }
        let b = Self::new(max_in_flight);
        all.retain(|_, w| w.strong_count() > 0);
        all.insert(key.to_string(), Arc::downgrade(&b));
        b
    }

    /// Waits for the tenant's pause to end and for a free slot in the window.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.freed.notified();
            let wait = {
                let mut s = self.state.lock().expect("budget lock");
                match s.paused_until {
                    Some(t) if t > Instant::now() => Some(t - Instant::now()),
                    _ => {
                        s.paused_until = None;
                        if s.in_flight < s.window {
                            s.in_flight += 1;
                            return Permit {
                                budget: self.clone(),
                            };
                        }
                        None
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => notified.await,
            }
        }
    }

    /// A response came back without throttling: widen the window by one.
    pub fn success(&self) {
        let mut s = self.state.lock().expect("budget lock");
        if s.window < self.max {
            s.window += 1;
            drop(s);
            self.freed.notify_waiters();
        }
    }

    /// The service asked this tenant to wait `wait`: pause everyone, restart from one in flight.
    pub fn throttled(&self, wait: Duration) {
        let mut s = self.state.lock().expect("budget lock");
        let until = Instant::now() + wait;
        let extends = match s.paused_until {
            Some(t) if t >= until => Duration::ZERO,
            Some(t) if t > Instant::now() => until - t,
            _ => wait,
        };
        s.throttled_total += extends;
        s.throttle_events += 1;
        s.paused_until = Some(s.paused_until.map_or(until, |t| t.max(until)));
        s.window = 1;
    }

    /// `RateLimit-Remaining` is low: halve the window before the service has to say no.
    pub fn nearly_exhausted(&self) {
        let mut s = self.state.lock().expect("budget lock");
        s.window = (s.window / 2).max(1);
    }

    /// Total time the tenant was paused by the service, and how many times it was told to wait.
    pub fn throttled_stats(&self) -> (Duration, u64) {
        let s = self.state.lock().expect("budget lock");
        (s.throttled_total, s.throttle_events)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_in_flight_than_the_window() {
        let b = Budget::new(4);
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (b, now, peak) = (b.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    let _p = b.acquire().await;
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    b.success();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_throttle_pauses_everyone_and_restarts_from_one() {
        let b = Budget::new(8);
        // Read before the throttle: the pause counts from it, never before.
        let started = Instant::now();
        b.throttled(Duration::from_millis(300));
        let p1 = b.acquire().await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        // The window is one until a success widens it: a second request waits.
        let b2 = b.clone();
        let second = tokio::spawn(async move {
            let _p = b2.acquire().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "no burst right after the wait");
        b.success();
        drop(p1);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        let (total, events) = b.throttled_stats();
        assert_eq!(events, 1);
        assert!(total >= Duration::from_millis(300));
    }

    #[test]
    fn one_budget_per_key() {
        let a = Budget::shared("k1", 4);
        let b = Budget::shared("k1", 4);
        let c = Budget::shared("k2", 4);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
