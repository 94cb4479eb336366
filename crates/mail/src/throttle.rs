//! Exchange Online's throttling over IMAP: a refusal (tagged `NO` or `BAD`, or a `BYE`) that
//! says "Request is throttled. Suggested Backoff Time: N milliseconds", after which Exchange
//! often drops the connection. Exchange throttles per mailbox, so every connection of one
//! mailbox shares one [`Throttle`]: a throttled answer on any of them holds back the next
//! command of all of them until the suggested time has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// The longest suggested backoff obeyed at once (Exchange has been seen to suggest ~300 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait in "Request is throttled. Suggested Backoff Time: N milliseconds" (capped at
/// [`MAX_BACKOFF`]); `None` when the text says nothing of the kind.
pub fn suggested_backoff(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let rest = &lower[lower.find("suggested backoff time:")? + "suggested backoff time:".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let ms: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(ms).min(MAX_BACKOFF))
}

/// One mailbox's throttling gate, shared by its connections (cloning shares it).
#[derive(Clone, Default)]
pub struct Throttle(Arc<Mutex<Gate>>);

#[derive(Default)]
struct Gate {
    until: Option<Instant>,
    /// Throttled answers seen (each one a wait honoured).
    throttled: u64,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Throttle({} throttled)", self.throttled())
    }
}

impl Throttle {
    /// The gate of `ep`'s mailbox (user, host and port), shared by every connection to it in
    /// this process, whichever job opened it.
    pub fn of(ep: &crate::session::Endpoint) -> Throttle {
        static GATES: OnceLock<Mutex<HashMap<String, Throttle>>> = OnceLock::new();
        let mut gates = GATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        gates.entry(ep.describe()).or_default().clone()
    }

    /// Reads a server's refusal: a suggested backoff closes the gate until it has passed.
    pub fn note(&self, text: &str) {
        let Some(wait) = suggested_backoff(text) else {
            return;
        };
        let until = Instant::now() + wait;
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.throttled += 1;
        g.until = Some(g.until.map_or(until, |u| u.max(until)));
    }

    /// Waits until the mailbox may be sent a command again.
    pub async fn wait(&self) {
        loop {
            let until = self.0.lock().unwrap_or_else(|p| p.into_inner()).until;
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => return,
            }
        }
    }

    /// How many throttled answers this mailbox got.
    pub fn throttled(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).throttled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exchange_text() {
        let e = "target: `APPEND` failed: Request is throttled. Suggested Backoff Time: 1500 milliseconds";
        assert_eq!(suggested_backoff(e), Some(Duration::from_millis(1500)));
        // As a BAD without a space (seen in the field): "BADRequest is throttled. …"
        assert_eq!(
            suggested_backoff(
                "AV3 BADRequest is throttled. Suggested Backoff Time: 201317 milliseconds"
            ),
            Some(Duration::from_millis(201_317))
        );
        assert_eq!(suggested_backoff("NO other"), None);
        assert_eq!(
            suggested_backoff("Suggested Backoff Time: 99999999999 milliseconds"),
            Some(MAX_BACKOFF)
        );
    }

    #[tokio::test]
    async fn one_refusal_holds_every_connection_of_the_mailbox() {
        let gate = Throttle::default();
        let other = gate.clone();
        // Read before the note: the backoff counts from the note, never before it.
        let t0 = Instant::now();
        gate.note("NO Request is throttled. Suggested Backoff Time: 200 milliseconds");
        other.wait().await;
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert_eq!(other.throttled(), 1);
        gate.note("NO quota exceeded");
        assert_eq!(gate.throttled(), 1);
    }
}
