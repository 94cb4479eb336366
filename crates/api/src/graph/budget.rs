//! A request budget per token on `/v1.0` (a token bucket), so that one script cannot take the
//! server from the others; past it the caller hears 429 with `Retry-After`, as Graph throttles.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Tokens remembered at most; above it, full buckets are forgotten first.
const MAX_KEYS: usize = 100_000;

pub struct RequestBudget {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Requests a token may make in one window.
    capacity: f64,
    window: Duration,
    buckets: HashMap<Uuid, (f64, Instant)>,
}

impl Default for RequestBudget {
    /// 2,000 requests per 10 s and token: above what Graph grants one app in a small tenant.
    fn default() -> Self {
        Self::new(2000, Duration::from_secs(10))
    }
}

impl RequestBudget {
    pub fn new(requests: u32, window: Duration) -> Self {
        RequestBudget {
            inner: Mutex::new(Inner {
                capacity: f64::from(requests.max(1)),
                window: window.max(Duration::from_millis(1)),
                buckets: HashMap::new(),
            }),
        }
    }

    /// Changes the budget (at start-up, from `serve`'s options).
    pub fn configure(&self, requests: u32, window: Duration) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Self::new(requests, window)
            .inner
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Takes one request from `key`'s budget, or tells how long until one is free.
    pub fn take(&self, key: Uuid) -> Result<(), Duration> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (capacity, window) = (inner.capacity, inner.window);
        let per_sec = capacity / window.as_secs_f64();
        let refill = |(tokens, at): &mut (f64, Instant)| {
            *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
            *at = now;
        };
        if inner.buckets.len() >= MAX_KEYS {
            inner.buckets.retain(|_, b| {
                refill(b);
                b.0 < capacity
            });
        }
        let bucket = inner.buckets.entry(key).or_insert((capacity, now));
        refill(bucket);
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.0) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_past_its_budget_waits_and_others_do_not() {
        let budget = RequestBudget::new(3, Duration::from_secs(60));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            budget.take(a).unwrap();
        }
        let wait = budget.take(a).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        budget.take(b).expect("another token has its own budget");
    }
}
