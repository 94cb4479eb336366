//! Bounded retries with exponential backoff and full jitter, honouring Retry-After.
//!
//! One policy serves every HTTP call and every whole-file copy (a copy is retried by re-reading
//! its source, because a half-sent body cannot be replayed).

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::endpoint::EndpointError;

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Longest Retry-After we obey; a server asking for more gets this, then we ask again.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1) after `err`.
    pub fn delay(&self, attempt: u32, err: &EndpointError) -> Duration {
        if let Some(ra) = err.retry_after() {
            return ra.min(self.max_retry_after);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        // Full jitter: spread concurrent workers so they do not retry in lock-step.
        let ms = exp.as_millis() as u64;
        Duration::from_millis(ms / 2 + rand::random::<u64>() % (ms / 2 + 1))
    }

    pub async fn run<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, EndpointError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EndpointError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.attempts => {
                    let d = self.delay(attempt, &e);
                    tracing::info!(what, attempt, wait_ms = d.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Parses a Retry-After value: delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// How long a throttled response asks us to wait: the greater of `Retry-After` and
/// `RateLimit-Reset` (seconds), as SharePoint's throttling guidance asks.
pub fn throttle_wait(retry_after: Option<&str>, ratelimit_reset: Option<&str>) -> Option<Duration> {
    let ra = retry_after.and_then(parse_retry_after);
    let rr = ratelimit_reset.and_then(|v| v.trim().parse::<u64>().ok().map(Duration::from_secs));
    ra.max(rr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_wait_takes_the_greater_hint() {
        assert_eq!(
            throttle_wait(Some("2"), Some("5")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(throttle_wait(Some("7"), None), Some(Duration::from_secs(7)));
        assert_eq!(throttle_wait(None, Some("x")), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped_and_obeys_retry_after() {
        let p = RetryPolicy::default();
        let t = EndpointError::Transient("x".into());
        assert!(p.delay(1, &t) <= Duration::from_millis(500));
        assert!(p.delay(20, &t) <= Duration::from_secs(30));
        assert!(p.delay(20, &t) >= Duration::from_secs(15));
        let th = EndpointError::Throttled {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(p.delay(1, &th), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn gives_up_after_bounded_attempts_and_not_on_permanent_errors() {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            ..Default::default()
        };
        let mut n = 0;
        let r: Result<(), _> = p
            .run("x", || {
                n += 1;
                async { Err(EndpointError::Transient("down".into())) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<(), _> = p
            .run("x", || {
                n += 1;
                async { Err(EndpointError::InsufficientStorage) }
            })
            .await;
        assert!(matches!(r, Err(EndpointError::InsufficientStorage)));
        assert_eq!(n, 1);
    }
}
