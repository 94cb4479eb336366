//! Time as the rules see it: whole seconds since the Unix epoch, passed in by the caller.

use serde::{Deserialize, Serialize};

/// Seconds in a day; the ledger prorates and counts windows in whole days.
pub const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn plus_days(self, days: i64) -> Timestamp {
        Timestamp(self.0 + days * DAY)
    }

    /// Whole days from `self` until `later`, rounded up (a started day counts), never negative.
    pub fn days_until(self, later: Timestamp) -> i64 {
        let secs = later.0 - self.0;
        if secs <= 0 {
            0
        } else {
            (secs + DAY - 1) / DAY
        }
    }
}
