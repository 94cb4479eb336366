//! Rate limit for failed authentications, per client address (a token bucket): guessing tokens
//! or the operator token costs time, and a flood of bad tokens cannot load the database.
//!
//! Only failures take from the bucket, so a client that authenticates correctly never uses it up;
//! once an address has, every credential from it waits (429), so the wait reveals nothing about
//! the token tried. An IPv6 client is keyed by its /64, which one host usually holds whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may make in a burst.
const BURST: f64 = 10.0;
/// Failures given back per minute unless configured (`serve --auth-failures-per-minute`).
pub const DEFAULT_REFILL_PER_MINUTE: u32 = 60;
/// Addresses remembered at most; above it, buckets that have refilled are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

pub struct FailureLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// Failures given back per second, as `f64` bits (set once at start-up).
    refill_per_sec: AtomicU64,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        let limiter = FailureLimiter {
            buckets: Mutex::new(HashMap::new()),
            refill_per_sec: AtomicU64::new(0),
        };
        limiter.configure(DEFAULT_REFILL_PER_MINUTE);
        limiter
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, per_sec: f64) {
        let earned = now.duration_since(self.at).as_secs_f64() * per_sec;
        self.tokens = (self.tokens + earned).min(BURST);
        self.at = now;
    }
}

fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl FailureLimiter {
    /// Sets how many failures an address gets back per minute once its burst is spent.
    pub fn configure(&self, refill_per_minute: u32) {
        let per_sec = f64::from(refill_per_minute.max(1)) / 60.0;
        self.refill_per_sec
            .store(per_sec.to_bits(), Ordering::Relaxed);
    }

    fn per_sec(&self) -> f64 {
        f64::from_bits(self.refill_per_sec.load(Ordering::Relaxed))
    }

    /// How long `ip` must wait before its next attempt, if it has used up its failures.
    pub fn wait(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.get_mut(&key(ip))?;
        let per_sec = self.per_sec();
        bucket.refill(now, per_sec);
        (bucket.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
    }

    /// Takes one failure from `ip`'s bucket.
    pub fn failed(&self, ip: IpAddr) {
        let (now, per_sec) = (Instant::now(), self.per_sec());
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ADDRESSES {
            buckets.retain(|_, b| {
                b.refill(now, per_sec);
                b.tokens < BURST
            });
        }
        let bucket = buckets.entry(key(ip)).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        bucket.refill(now, per_sec);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_then_a_wait() {
        let limiter = FailureLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..BURST as usize {
            assert!(limiter.wait(ip).is_none());
            limiter.failed(ip);
        }
        let wait = limiter.wait(ip).expect("the burst is used up");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(
            limiter.wait(other).is_none(),
            "another address is not affected"
        );
    }

    #[test]
    fn one_ipv6_host_is_one_bucket() {
        let limiter = FailureLimiter::default();
        for i in 0..BURST as u16 {
            limiter.failed(IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001, 0xdb8, 0, 1, 0, 0, 0, i,
            )));
        }
        assert!(limiter
            .wait("2001:db8:0:1::ffff".parse().unwrap())
            .is_some());
    }
}
