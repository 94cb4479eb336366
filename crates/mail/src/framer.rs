//! Reads one response off the wire — its lines and every literal they announce — within limits,
//! so a server can neither make tenantry hold unbounded bytes nor keep it waiting forever.
//!
//! What a response may be is bounded four ways: one line's length, one literal's length (tied to
//! the largest message copied), the total bytes of the response, and time (the longest silence
//! between reads and a deadline for the whole response). Each refusal says what the server did.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::time::Instant;

use crate::protocol::{literal_len, Framed};

/// The largest message copied when `--max-message-size` is not given: above what any hosted
/// service accepts (Exchange Online 150 MB, Gmail 50 MB), and what one body may cost in memory.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 256 << 20;

/// Longest line (text between CRLFs, without literals) accepted from a server. The longest real
/// lines are FETCH/FLAGS answers with long keyword lists or UID sets: a few KB, rarely a few
/// hundred; tenantry sends no SEARCH, whose answers could grow larger.
pub const MAX_LINE: usize = 1 << 20;

/// The lines of one response together may be this many times `max_line` (4 MiB by default):
/// only literals may be large. A response's text is what parses into `Value`s (see
/// `protocol::MAX_VALUES` for their count), so this bounds its parsed memory too.
pub const TEXT_LINES: usize = 4;

/// Most literals in one response. Real ones carry one or two (a body, a folder name); each
/// costs a buffer even when empty.
pub const MAX_LITERALS: usize = 1024;

/// Literal bytes per second expected from the slowest link the deadline allows for when a
/// body too large to keep is read and thrown away (see `Limits::deadline_for`).
pub const SLOW_LINK_BYTES_PER_SEC: u64 = 64 * 1024;

/// What one connection accepts from its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_line: usize,
    /// One literal: a message body, or a folder name sent as a literal.
    pub max_literal: u64,
    /// All lines and literals of one response together.
    pub max_response: u64,
    /// Longest silence from the server while a response is expected.
    pub idle: Duration,
    /// Longest wait for one complete response, and for a command's completion.
    pub deadline: Duration,
}

impl Limits {
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1800);

    /// Limits for a run that copies messages up to `max_message` bytes. A literal may exceed
    /// that by a quarter (servers such as Exchange report estimated RFC822.SIZEs, and messages
    /// above the limit are never fetched), and is never held under 1 MiB (folder names); a
    /// response is one such literal plus its lines.
    pub fn for_message_size(max_message: u64) -> Limits {
        let max_literal = max_message
            .saturating_add(max_message / 4)
            .max(MAX_LINE as u64);
        Limits {
            max_line: MAX_LINE,
            max_literal,
            max_response: max_literal.saturating_add(MAX_LINE as u64),
            idle: Self::DEFAULT_IDLE,
            deadline: Self::DEFAULT_DEADLINE,
        }
    }
}

impl Limits {
    /// Longest the lines of one response may be together.
    pub fn max_text(&self) -> usize {
        self.max_line.saturating_mul(TEXT_LINES)
    }

    /// When something started now that moves `bytes` must be done: the deadline, plus the time
    /// those bytes take at `SLOW_LINK_BYTES_PER_SEC`, so a large body on a slow link is not cut
    /// off (a trickling server still is, by this later point).
    pub fn deadline_for(&self, bytes: u64) -> Instant {
        let extra = Duration::from_secs(bytes / SLOW_LINK_BYTES_PER_SEC);
        let now = Instant::now();
        now.checked_add(self.deadline.saturating_add(extra))
            // Far beyond any run, yet an Instant (a huge --command-timeout must not panic).
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86400))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_message_size(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("connection closed by the server")]
    Closed,
    #[error("server silent for {} s (--timeout)", .0.as_secs())]
    Idle(Duration),
    #[error("no complete response within {} s (--command-timeout)", .0.as_secs())]
    Deadline(Duration),
    #[error("server sent a line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("server announced a literal of {len} bytes, above the {max}-byte limit (--max-message-size)")]
    LiteralTooLarge { len: u64, max: u64 },
    #[error("response exceeded {0} bytes")]
    ResponseTooLarge(u64),
    #[error("the lines of one response exceeded {0} bytes")]
    TextTooLarge(usize),
    #[error("response carried more than {0} literals")]
    TooManyLiterals(usize),
    #[error("server sent more than {count} responses or {bytes} bytes for one command")]
    TooMuchChatter { count: usize, bytes: u64 },
}

impl FrameError {
    /// Whether a new connection may get further: a dropped or silent link may recover; a
    /// server that sends too much or too slowly would do the same again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FrameError::Io(_) | FrameError::Closed | FrameError::Idle(_)
        )
    }
}

/// Reads one complete response; fails by `deadline` at the latest.
///
/// A literal above `max_literal` is refused before it is read — except a message body in a
/// `FETCH` response: that one is read and thrown away (never held; bounded by `deadline`), so
/// one oversized message is reported and the rest of its folder still copied. It stands in the
/// result as an empty literal listed in `Framed::discarded`.
pub async fn read_response<R: AsyncBufRead + Unpin>(
    io: &mut R,
    limits: &Limits,
    deadline: Instant,
) -> Result<Framed, FrameError> {
    let total = limits.deadline;
    match tokio::time::timeout_at(deadline, read_sized(io, limits)).await {
        Ok(r) => r,
        Err(_) => Err(FrameError::Deadline(total)),
    }
}

async fn read_sized<R: AsyncBufRead + Unpin>(
    io: &mut R,
    limits: &Limits,
) -> Result<Framed, FrameError> {
    let mut f = Framed::default();
    let mut literal_bytes = 0u64;
    loop {
        let start = f.text.len();
        read_line(io, &mut f.text, literal_bytes, limits).await?;
        let line = &f.text[start..];
        let line = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let Some(len) = literal_len(line) else {
            return Ok(f);
        };
        if f.literals.len() >= MAX_LITERALS {
            return Err(FrameError::TooManyLiterals(MAX_LITERALS));
        }
        if len > limits.max_literal {
            if !is_fetch(&f.text) {
                return Err(FrameError::LiteralTooLarge {
                    len,
                    max: limits.max_literal,
                });
            }
            discard(io, len, limits.idle).await?;
            f.discarded.push((f.literals.len(), len));
            f.literals.push(Vec::new());
            continue;
        }
        literal_bytes += len;
        if f.text.len() as u64 + literal_bytes > limits.max_response {
            return Err(FrameError::ResponseTooLarge(limits.max_response));
        }
        // A sized buffer filled in place: growing one would copy the body and, while probing,
        // reserve up to twice its size.
        let mut data = vec![0u8; len as usize];
        let mut filled = 0;
        while filled < data.len() {
            let n = idle_bounded(limits.idle, io.read(&mut data[filled..])).await?;
            if n == 0 {
                return Err(FrameError::Closed);
            }
            filled += n;
        }
        f.literals.push(data);
    }
}

/// Appends one line (up to and including `\n`) to `out`, refusing lines over the limit before
/// they are held, and a response that outgrows its limit (`literal_bytes` already count).
async fn read_line<R: AsyncBufRead + Unpin>(
    io: &mut R,
    out: &mut Vec<u8>,
    literal_bytes: u64,
    limits: &Limits,
) -> Result<(), FrameError> {
    let start = out.len();
    loop {
        let buf = idle_bounded(limits.idle, io.fill_buf()).await?;
        if buf.is_empty() {
            return Err(FrameError::Closed);
        }
        let (take, done) = match buf.iter().position(|&c| c == b'\n') {
            Some(p) => (p + 1, true),
            None => (buf.len(), false),
        };
        if out.len() - start + take > limits.max_line {
            return Err(FrameError::LineTooLong(limits.max_line));
        }
        if out.len() + take > limits.max_text() {
            return Err(FrameError::TextTooLarge(limits.max_text()));
        }
        if (out.len() + take) as u64 + literal_bytes > limits.max_response {
            return Err(FrameError::ResponseTooLarge(limits.max_response));
        }
        out.extend_from_slice(&buf[..take]);
        io.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Whether a response's text starts as `* <number> FETCH`: the only responses whose oversized
/// literals (message bodies) are skipped rather than refused.
fn is_fetch(text: &[u8]) -> bool {
    let Some(rest) = text.strip_prefix(b"* ") else {
        return false;
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0
        && rest[digits..]
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b" FETCH "))
}

/// Reads `len` bytes and drops them, a buffer at a time.
async fn discard<R: AsyncBufRead + Unpin>(
    io: &mut R,
    mut len: u64,
    idle: Duration,
) -> Result<(), FrameError> {
    while len > 0 {
        let buf = idle_bounded(idle, io.fill_buf()).await?;
        if buf.is_empty() {
            return Err(FrameError::Closed);
        }
        let take = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        io.consume(take);
        len -= take as u64;
    }
    Ok(())
}

async fn idle_bounded<T>(
    idle: Duration,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, FrameError> {
    match tokio::time::timeout(idle, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FrameError::Io(e)),
        Err(_) => Err(FrameError::Idle(idle)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            max_line: 64,
            max_literal: 100,
            max_response: 250,
            idle: Duration::from_secs(5),
            deadline: Duration::from_secs(5),
        }
    }

    async fn read(bytes: &[u8], limits: &Limits) -> Result<Framed, FrameError> {
        let mut io = tokio::io::BufReader::with_capacity(16, bytes);
        read_response(&mut io, limits, Instant::now() + limits.deadline).await
    }

    #[tokio::test]
    async fn frames_lines_and_literals_within_limits() {
        let f = read(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\nrest", &small())
            .await
            .unwrap();
        assert_eq!(f.text, b"* 1 FETCH (BODY[] {5}\r\n)\r\n");
        assert_eq!(f.literals, vec![b"hello".to_vec()]);
    }

    #[tokio::test]
    async fn refuses_what_exceeds_a_limit() {
        let long = [b'x'; 65];
        let e = read(&long, &small()).await.unwrap_err();
        assert!(matches!(e, FrameError::LineTooLong(64)), "{e}");
        let e = read(b"* LIST () \"/\" {101}\r\n", &small())
            .await
            .unwrap_err();
        assert!(
            matches!(e, FrameError::LiteralTooLarge { len: 101, max: 100 }),
            "{e}"
        );
        let mut many = Vec::new();
        for _ in 0..3 {
            many.extend_from_slice(b"* LIST () \"/\" {100}\r\n");
            many.extend_from_slice(&[b'a'; 100]);
        }
        let e = read(&many, &small()).await.unwrap_err();
        assert!(matches!(e, FrameError::ResponseTooLarge(250)), "{e}");
        let e = read(b"* OK no end", &small()).await.unwrap_err();
        assert!(matches!(e, FrameError::Closed), "{e}");
    }

    #[tokio::test]
    async fn the_lines_of_one_response_are_bounded_together() {
        // Each line is short and each literal empty, but the text goes on: it is what parses
        // into values, so it is bounded apart from the literals.
        let mut many = Vec::new();
        for _ in 0..10 {
            many.extend_from_slice(b"* OK [ALERT a a a a a a a a a a {0}\r\n");
        }
        many.extend_from_slice(b"]\r\n");
        let limits = Limits {
            max_response: 100_000,
            ..small()
        };
        let e = read(&many, &limits).await.unwrap_err();
        assert!(matches!(e, FrameError::TextTooLarge(256)), "{e}");
        let mut empties = b"* OK [ALERT".to_vec();
        for _ in 0..=MAX_LITERALS {
            empties.extend_from_slice(b" {0}\r\n");
        }
        let limits = Limits {
            max_line: 1 << 20,
            max_response: 1 << 30,
            ..small()
        };
        let e = read(&empties, &limits).await.unwrap_err();
        assert!(
            matches!(e, FrameError::TooManyLiterals(MAX_LITERALS)),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_oversized_body_is_skipped_not_held_and_the_stream_goes_on() {
        let mut wire = b"* 1 FETCH (UID 9 BODY[] {300}\r\n".to_vec();
        wire.extend([b'x'; 300]);
        wire.extend_from_slice(b")\r\n* 2 FETCH (UID 10 BODY[] {2}\r\nok)\r\n");
        let mut io = tokio::io::BufReader::with_capacity(16, &wire[..]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let f = read_response(&mut io, &small(), deadline).await.unwrap();
        assert_eq!(f.literals, vec![Vec::<u8>::new()]);
        assert_eq!(f.discarded, vec![(0, 300)]);
        let crate::protocol::Response::Numbered(_, _, v) =
            crate::protocol::parse_framed(f).unwrap()
        else {
            panic!()
        };
        let item = crate::protocol::parse_fetch(v).unwrap();
        assert_eq!(
            (item.uid, item.body, item.discarded_body),
            (Some(9), None, Some(300))
        );
        let f = read_response(&mut io, &small(), deadline).await.unwrap();
        assert_eq!(f.literals, vec![b"ok".to_vec()]);
        // Outside a FETCH an oversized literal is still refused before it is read.
        let e = read(b"* LIST () \"/\" {300}\r\n", &small())
            .await
            .unwrap_err();
        assert!(
            matches!(e, FrameError::LiteralTooLarge { len: 300, .. }),
            "{e}"
        );
    }
}
