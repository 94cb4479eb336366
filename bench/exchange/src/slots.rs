//! Where a run's slot time went, from the fake's record of a mailbox's requests in flight:
//! how long it had all its slots busy, how long it waited before its first request and after
//! its last full stretch, the longest idle stretches, and how long the fake held each slot
//! against its latency (the fake's own overhead, which no client can win back).

use std::time::{Duration, Instant};

use tenantry_testkit::graph_fake::InFlightRecord;

/// One mailbox's use of its slots during one run (`start`..`end`: the engine processes).
pub struct SlotUse {
    pub upn: String,
    pub wall: Duration,
    /// Time at 0, 1, …, `concurrency` requests in flight.
    pub levels: Vec<Duration>,
    /// From the run's start to the first slot taken.
    pub first_request: Duration,
    /// From the last moment all slots were busy to the run's end.
    pub tail: Duration,
    /// Stretches with nothing in flight after the first request, longest first.
    pub idle: Vec<(Duration, Duration)>,
    /// The mean time a slot was held, per request answered in the run.
    pub mean_hold: Duration,
}

pub fn slot_use(
    upn: &str,
    rec: &InFlightRecord,
    before: &InFlightRecord,
    (start, end): (Instant, Instant),
    concurrency: usize,
) -> SlotUse {
    let levels = rec.time_at_levels(start, end, concurrency);
    let in_run: Vec<(Instant, usize)> = rec
        .changes
        .iter()
        .copied()
        .filter(|(t, _)| (start..=end).contains(t))
        .collect();
    let first = in_run.first().map_or(end, |c| c.0);
    let last_full_ends = in_run
        .windows(2)
        .rfind(|w| w[0].1 >= concurrency)
        .map(|w| w[1].0)
        .unwrap_or(start);
    let idle = rec
        .idle_stretches(first, end)
        .into_iter()
        .map(|(s, d)| (s - start, d))
        .collect();
    let answered = rec.answered - before.answered;
    SlotUse {
        upn: upn.to_string(),
        wall: end - start,
        levels,
        first_request: first - start,
        tail: end.saturating_duration_since(last_full_ends),
        idle,
        mean_hold: (rec.held - before.held)
            .checked_div(answered.max(1) as u32)
            .unwrap_or_default(),
    }
}

impl std::fmt::Display for SlotUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / self.wall.as_secs_f64();
        let levels: Vec<String> = self
            .levels
            .iter()
            .enumerate()
            .map(|(n, d)| format!("{n}: {:.0}%", pct(*d)))
            .collect();
        let idle_total: Duration = self.idle.iter().map(|i| i.1).sum();
        let longest: Vec<String> = self
            .idle
            .iter()
            .take(5)
            .map(|(at, d)| {
                format!(
                    "{:.0} ms at {:.2} s",
                    d.as_secs_f64() * 1e3,
                    at.as_secs_f64()
                )
            })
            .collect();
        write!(
            f,
            "  {}: in flight {} of {:.2} s; first request after {:.0} ms; last full stretch ends {:.0} ms before the end; \
             idle {:.0} ms after the first request in {} stretches (longest: {}); a slot held {:.2} ms on average",
            self.upn,
            levels.join(", "),
            self.wall.as_secs_f64(),
            self.first_request.as_secs_f64() * 1e3,
            self.tail.as_secs_f64() * 1e3,
            idle_total.as_secs_f64() * 1e3,
            self.idle.len(),
            longest.join(", "),
            self.mean_hold.as_secs_f64() * 1e3,
        )
    }
}
