//! How far a running step is: the record a worker stores from its engine's counts, the rate
//! over a recent window and the estimated end — computed once here for the API, the admin
//! center and the CLI — and the text line both front-ends print.

use crate::Ledger;
use crate::Result;
use serde::{Deserialize, Serialize};
use tenantry_ledger::Timestamp;
use tenantry_store::moves::{StepProgress, StepState};
use uuid::Uuid;

/// The rate is measured over about this many seconds: long enough to smooth bursts (one big
/// message), short enough to follow a server that slows down.
pub const WINDOW_SECS: i64 = 30;

/// What an engine knows at one moment. A total is `None` until known and may grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub items_done: u64,
    pub items_total: Option<u64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
}

/// The record to store for `counts` at `now`, following `previous` (what this attempt stored
/// last; `None` for its first). The window starts when the attempt started, with nothing done;
/// once it is older than [`WINDOW_SECS`] its start moves up to `now - WINDOW_SECS`, at the counts
/// interpolated on the line from the old start to now — so the rate weighs recent seconds most.
pub fn advance(
    previous: Option<&StepProgress>,
    move_id: Uuid,
    key: &str,
    started_at: Timestamp,
    counts: Counts,
    now: Timestamp,
) -> StepProgress {
    let (mut at, mut items, mut bytes) = match previous {
        // Counts that went back (a failed transfer counted out) restart the measure here.
        Some(p) if counts.items_done < p.items_done || counts.bytes_done < p.bytes_done => {
            (now, counts.items_done, counts.bytes_done)
        }
        Some(p) => (p.window_at, p.window_items, p.window_bytes),
        None => (started_at, 0, 0),
    };
    let span = now.0 - at.0;
    if span > WINDOW_SECS {
        let moved = span - WINDOW_SECS;
        let part = |start: u64, end: u64| {
            start + ((end - start) as u128 * moved as u128 / span as u128) as u64
        };
        items = part(items, counts.items_done);
        bytes = part(bytes, counts.bytes_done);
        at = Timestamp(now.0 - WINDOW_SECS);
    }
    StepProgress {
        move_id,
        key: key.to_string(),
        items_done: counts.items_done,
        items_total: counts.items_total,
        bytes_done: counts.bytes_done,
        bytes_total: counts.bytes_total,
        started_at,
        updated_at: now,
        window_at: at,
        window_items: items,
        window_bytes: bytes,
    }
}

/// Bytes per second over the window; `None` before a second has passed in it.
pub fn bytes_rate(p: &StepProgress) -> Option<f64> {
    rate(p.window_bytes, p.bytes_done, p)
}

fn rate(from: u64, to: u64, p: &StepProgress) -> Option<f64> {
    let secs = p.updated_at.0 - p.window_at.0;
    (secs > 0).then(|| to.saturating_sub(from) as f64 / secs as f64)
}

/// When the step should end at the window's pace: the bytes left over the byte rate, or, when
/// the bytes total is unknown, the items left over the item rate. `None` when nothing is known
/// or nothing moves.
pub fn estimated_end(p: &StepProgress) -> Option<Timestamp> {
    let (left, rate) = match p.bytes_total {
        Some(total) => (total.saturating_sub(p.bytes_done), bytes_rate(p)?),
        None => (
            p.items_total?.saturating_sub(p.items_done),
            rate(p.window_items, p.items_done, p)?,
        ),
    };
    if left == 0 {
        return Some(p.updated_at);
    }
    (rate > 0.0).then(|| Timestamp(p.updated_at.0 + (left as f64 / rate).ceil() as i64))
}

/// A step's progress as every surface shows it (the API's JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    pub items_done: u64,
    pub items_total: Option<u64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// Bytes per second, weighted towards the last half minute; only while the step runs.
    pub rate_per_second: Option<f64>,
    /// Unix seconds (RFC 3339 in JSON); only while the step runs.
    #[serde(with = "rfc3339")]
    pub estimated_end: Option<i64>,
}

/// `Option<i64>` Unix seconds as an RFC 3339 string (or null), as the API writes every time.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        let text = t
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&Rfc3339).ok());
        match text {
            Some(text) => s.serialize_str(&text),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                OffsetDateTime::parse(&text, &Rfc3339)
                    .map(|t| t.unix_timestamp())
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// The view of a stored record; the rate and the end only for a step that still runs.
pub fn view(p: &StepProgress, state: StepState) -> ProgressView {
    let running = state == StepState::Running;
    ProgressView {
        items_done: p.items_done,
        items_total: p.items_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        rate_per_second: bytes_rate(p).filter(|_| running),
        estimated_end: estimated_end(p).filter(|_| running).map(|t| t.0),
    }
}

impl ProgressView {
    /// Done of the total as a fraction in 0..=1, by bytes when their total is known, else by
    /// items; `None` without a total.
    pub fn fraction(&self) -> Option<f64> {
        let (done, total) = match (self.bytes_total, self.items_total) {
            (Some(t), _) if t > 0 => (self.bytes_done, t),
            (_, Some(t)) if t > 0 => (self.items_done, t),
            (Some(_), _) | (_, Some(_)) => return Some(1.0),
            (None, None) => return None,
        };
        Some((done as f64 / total as f64).clamp(0.0, 1.0))
    }

    /// `[#####.....] 52% 1,204/2,300 messages 310 MB/590 MB 4.1 MB/s ETA 1m10s`; `now` (Unix
    /// seconds) turns the estimated end into time left.
    pub fn line(&self, unit: &str, now: i64) -> String {
        const WIDTH: usize = 20;
        let bar = match self.fraction() {
            Some(f) => {
                let filled = (f * WIDTH as f64).floor() as usize;
                format!(
                    "[{}{}] {:>3}%",
                    "#".repeat(filled),
                    ".".repeat(WIDTH - filled),
                    (f * 100.0).floor() as u64
                )
            }
            None => format!("[{}]    ?", "?".repeat(WIDTH)),
        };
        format!("{bar} {}", self.numbers(unit, now).join(" "))
    }

    /// The numbers beside a bar: `1,204/2,300 messages`, `310 MB/590 MB`, `4.1 MB/s`,
    /// `ETA 1m10s` (the last two only while known).
    pub fn numbers(&self, unit: &str, now: i64) -> Vec<String> {
        let of = |done: String, total: Option<String>| {
            format!("{done}/{}", total.unwrap_or_else(|| "?".into()))
        };
        let mut out = vec![
            format!(
                "{} {unit}",
                of(thousands(self.items_done), self.items_total.map(thousands))
            ),
            of(size(self.bytes_done), self.bytes_total.map(size)),
        ];
        if let Some(rate) = self.rate_per_second {
            out.push(format!("{}/s", size(rate as u64)));
        }
        if let Some(end) = self.estimated_end {
            out.push(format!("ETA {}", duration((end - now).max(0))));
        }
        out
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in decimal units, as the engines' own reports count them: `310 MB`, `31 MB`, `4.1 MB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `70` → `1m10s`; `3725` → `1h02m`.
pub fn duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Ledger {
    /// Stores a step's progress for the worker running it; `false` (nothing written) once the
    /// step is no longer that worker's, so a worker whose lease was taken over cannot overwrite
    /// what the new owner reports.
    pub async fn record_progress(&self, worker: String, progress: StepProgress) -> Result<bool> {
        self.write(move |tx| {
            let Some(step) = tx.load_step(progress.move_id, &progress.key)? else {
                return Ok(false);
            };
            if step.state != StepState::Running || step.lease_owner.as_deref() != Some(&worker) {
                return Ok(false);
            }
            tx.put_step_progress(&progress)?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(items: u64, items_total: u64, bytes: u64, bytes_total: u64) -> Counts {
        Counts {
            items_done: items,
            items_total: Some(items_total),
            bytes_done: bytes,
            bytes_total: Some(bytes_total),
        }
    }

    fn at(p: Option<&StepProgress>, c: Counts, now: i64) -> StepProgress {
        advance(
            p,
            Uuid::nil(),
            "mailbox:a",
            Timestamp(1000),
            c,
            Timestamp(now),
        )
    }

    #[test]
    fn the_rate_is_measured_from_the_start_until_the_window_is_full() {
        let p = at(None, counts(10, 100, 1_000_000, 10_000_000), 1010);
        assert_eq!((p.window_at, p.window_bytes), (Timestamp(1000), 0));
        assert_eq!(bytes_rate(&p), Some(100_000.0));
        // 9 MB left at 100 kB/s: 90 s after the last report.
        assert_eq!(estimated_end(&p), Some(Timestamp(1100)));
    }

    #[test]
    fn the_window_follows_a_rate_that_changes() {
        // 100 kB/s for 60 s, then 1 MB/s for 30 s: the rate over the window follows the new
        // pace; the average since the start would say 400 kB/s.
        let mut p = at(None, counts(0, 10, 0, 100_000_000), 1000);
        for now in 1001..=1060 {
            p = at(
                Some(&p),
                counts(0, 10, (now - 1000) as u64 * 100_000, 100_000_000),
                now,
            );
        }
        for now in 1061..=1090 {
            let bytes = 6_000_000 + (now - 1060) as u64 * 1_000_000;
            p = at(Some(&p), counts(0, 10, bytes, 100_000_000), now);
        }
        assert_eq!(p.window_at, Timestamp(1090 - WINDOW_SECS));
        let rate = bytes_rate(&p).unwrap();
        assert!((600_000.0..=1_000_000.0).contains(&rate), "{rate}");
        // A minute and a half later at the new pace, the old one is all but forgotten.
        for now in 1091..=1180 {
            let bytes = 6_000_000 + (now - 1060) as u64 * 1_000_000;
            p = at(Some(&p), counts(0, 10, bytes, 100_000_000), now);
        }
        let rate = bytes_rate(&p).unwrap();
        assert!((950_000.0..=1_000_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn counts_that_go_back_restart_the_window() {
        let p = at(None, counts(5, 10, 500, 1000), 1010);
        let p = at(Some(&p), counts(5, 10, 300, 1000), 1012);
        assert_eq!((p.window_at, p.window_bytes), (Timestamp(1012), 300));
        assert_eq!(bytes_rate(&p), None, "no time in the window yet");
        assert_eq!(estimated_end(&p), None);
    }

    #[test]
    fn without_totals_or_movement_there_is_no_end() {
        let unknown = Counts {
            items_done: 3,
            bytes_done: 300,
            ..Counts::default()
        };
        assert_eq!(estimated_end(&at(None, unknown, 1010)), None);
        let stalled = at(None, counts(0, 10, 0, 1000), 1010);
        assert_eq!(bytes_rate(&stalled), Some(0.0));
        assert_eq!(estimated_end(&stalled), None);
        // Items alone: 2 of 10 in 10 s, 8 left at 0.2/s.
        let items = Counts {
            items_done: 2,
            items_total: Some(10),
            bytes_done: 0,
            bytes_total: None,
        };
        assert_eq!(estimated_end(&at(None, items, 1010)), Some(Timestamp(1050)));
        let done = at(None, counts(10, 10, 1000, 1000), 1010);
        assert_eq!(estimated_end(&done), Some(Timestamp(1010)));
    }

    #[test]
    fn a_finished_step_shows_counts_but_no_rate() {
        let p = at(None, counts(10, 10, 1000, 1000), 1010);
        let running = view(&p, StepState::Running);
        assert_eq!(running.rate_per_second, Some(100.0));
        let done = view(&p, StepState::Done);
        assert_eq!((done.items_done, done.items_total), (10, Some(10)));
        assert_eq!((done.rate_per_second, done.estimated_end), (None, None));
    }

    #[test]
    fn the_line_reads_like_a_progress_bar() {
        let v = ProgressView {
            items_done: 1204,
            items_total: Some(2300),
            bytes_done: 310_000_000,
            bytes_total: Some(590_000_000),
            rate_per_second: Some(4_100_000.0),
            estimated_end: Some(1070),
        };
        assert_eq!(
            v.line("messages", 1000),
            "[##########..........]  52% 1,204/2,300 messages 310 MB/590 MB 4.1 MB/s ETA 1m10s"
        );
        let unknown = ProgressView {
            items_total: None,
            bytes_total: None,
            rate_per_second: None,
            estimated_end: None,
            ..v
        };
        assert!(unknown.line("files", 0).contains("1,204/? files 310 MB/?"));
        assert_eq!(thousands(1_234_567), "1,234,567");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["estimatedEnd"], "1970-01-01T00:17:50Z");
        assert_eq!(json["ratePerSecond"], 4_100_000.0);
        assert_eq!(serde_json::from_value::<ProgressView>(json).unwrap(), v);
        assert_eq!(
            (size(999), size(1_500), size(0)),
            ("999 B".into(), "1.5 kB".into(), "0 B".into())
        );
        assert_eq!(
            (duration(5), duration(3725)),
            ("5s".to_string(), "1h02m".to_string())
        );
    }
}
