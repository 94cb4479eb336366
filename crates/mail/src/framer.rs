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
        if len > limits.max_literal {
            return Err(FrameError::LiteralTooLarge {
                len,
                max: limits.max_literal,
            });
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
        let e = read(b"* 1 FETCH (BODY[] {101}\r\n", &small())
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
}
