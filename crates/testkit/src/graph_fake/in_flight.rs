//! Each mailbox's requests in flight over time, and how long its slots were held: what the
//! Exchange benchmark reads to tell where a run left slots idle (start-up, folder boundaries,
//! the tail) and whether the fake itself holds a slot longer than its latency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One mailbox's record.
#[derive(Clone, Debug, Default)]
pub struct InFlightRecord {
    /// (when, requests in flight from then on), one entry per slot taken or given back.
    pub changes: Vec<(Instant, usize)>,
    /// (when, the request's path) for each slot taken, in order: what the slots were for.
    pub requests: Vec<(Instant, String)>,
    /// Slots given back, and the time they were held in all (from taken to the answer built).
    pub answered: u64,
    pub held: Duration,
}

impl InFlightRecord {
    /// Time spent at each number of requests in flight (index = how many) between `from` and
    /// `to`, levels above `max` counted at `max`.
    pub fn time_at_levels(&self, from: Instant, to: Instant, max: usize) -> Vec<Duration> {
        let mut out = vec![Duration::ZERO; max + 1];
        let mut level = 0;
        let mut at = from;
        for &(t, n) in &self.changes {
            let t = t.clamp(from, to);
            out[level.min(max)] += t - at;
            at = t;
            level = n;
        }
        out[level.min(max)] += to.saturating_duration_since(at);
        out
    }

    /// Stretches of `to`-`from` with nothing in flight, longest first: (start, length).
    pub fn idle_stretches(&self, from: Instant, to: Instant) -> Vec<(Instant, Duration)> {
        let mut out = Vec::new();
        let mut idle_since = Some(from);
        for &(t, n) in &self.changes {
            let t = t.clamp(from, to);
            match (n, idle_since) {
                (0, None) => idle_since = Some(t),
                (n, Some(s)) if n > 0 => {
                    out.push((s, t - s));
                    idle_since = None;
                }
                _ => {}
            }
        }
        if let Some(s) = idle_since {
            out.push((s, to.saturating_duration_since(s)));
        }
        out.retain(|(_, d)| !d.is_zero());
        out.sort_by_key(|s| std::cmp::Reverse(s.1));
        out
    }
}

/// Every mailbox's record, by user principal name.
#[derive(Default)]
pub(super) struct InFlightLog(HashMap<String, InFlightRecord>);

impl InFlightLog {
    pub(super) fn taken(&mut self, upn: &str, now_in_flight: usize, path: &str) {
        let r = self.0.entry(upn.to_string()).or_default();
        let now = Instant::now();
        r.changes.push((now, now_in_flight));
        r.requests.push((now, path.to_string()));
    }

    pub(super) fn given_back(&mut self, upn: &str, now_in_flight: usize, taken: Instant) {
        let r = self.0.entry(upn.to_string()).or_default();
        let now = Instant::now();
        r.changes.push((now, now_in_flight));
        r.answered += 1;
        r.held += now - taken;
    }

    pub(super) fn record(&self, upn: &str) -> InFlightRecord {
        self.0.get(upn).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_idle_stretches_between_two_instants() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let r = InFlightRecord {
            changes: vec![
                (t0 + ms(10), 1),
                (t0 + ms(20), 2),
                (t0 + ms(30), 1),
                (t0 + ms(40), 0),
                (t0 + ms(70), 1),
                (t0 + ms(80), 0),
            ],
            requests: Vec::new(),
            answered: 3,
            held: ms(50),
        };
        let levels = r.time_at_levels(t0, t0 + ms(100), 4);
        assert_eq!(levels, vec![ms(60), ms(30), ms(10), ms(0), ms(0)]);
        let idle = r.idle_stretches(t0, t0 + ms(100));
        assert_eq!(
            idle,
            vec![(t0 + ms(40), ms(30)), (t0 + ms(80), ms(20)), (t0, ms(10))]
        );
    }
}
