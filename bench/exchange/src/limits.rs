//! What the fake's per-mailbox limits allow: the shortest time in which any client could have
//! made the requests a run made and uploaded the bytes it uploaded, on one mailbox.

use std::time::Duration;

/// The fake's enforced per-mailbox limits.
#[derive(Clone, Copy)]
pub struct Limits {
    pub concurrency: usize,
    pub latency: Duration,
    pub budget: u64,
    pub window: Duration,
}

/// One mailbox's share of a run: requests that took a slot, bytes counted as uploads.
#[derive(Clone, Copy, Default, Debug)]
pub struct Load {
    pub requests: u64,
    pub bytes: u64,
}

impl Limits {
    /// `requests` each holding a slot for `latency`, `concurrency` at a time.
    pub fn request_bound(&self, l: Load) -> Duration {
        self.latency
            .mul_f64(l.requests as f64 / self.concurrency as f64)
    }

    /// The budget counts the bytes of the last `window`: the first `budget` bytes go at once,
    /// each further `budget` one window later.
    pub fn budget_bound(&self, l: Load) -> Duration {
        if l.bytes <= self.budget {
            return Duration::ZERO;
        }
        self.window * ((l.bytes - 1) / self.budget) as u32
    }

    /// The ideal time of one mailbox: whichever limit binds.
    pub fn ideal(&self, l: Load) -> Duration {
        self.request_bound(l).max(self.budget_bound(l))
    }
}
