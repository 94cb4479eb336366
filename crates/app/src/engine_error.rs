//! Why a move step failed, as a kind the step queue acts on: the retry decision and the wait
//! come from the kind, never from the wording of a message.

use std::fmt;
use std::time::Duration;

/// A failed step (a data engine's error, or a ledger step's), typed at the `DataEngines`
/// boundary by the binary that wires the engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// A dropped connection, a server error that may pass: retried with back-off.
    Transient(String),
    /// The server asked to slow down: retried, but not before `retry_after`.
    Throttled {
        retry_after: Duration,
        message: String,
    },
    /// The server refused the credentials of a connection profile: retrying cannot help (and
    /// may lock the account), so the step and the move fail at once.
    Authentication(String),
    /// Anything else retrying will not change: the step and the move fail at once.
    Permanent(String),
}

impl EngineError {
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Authentication(m) | Self::Permanent(m) => m,
            Self::Throttled { message, .. } => message,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Throttled { .. })
    }

    /// What the step records: the engine's message, and for an authentication failure what
    /// the operator must do.
    pub fn describe(&self) -> String {
        match self {
            Self::Authentication(m) => format!(
                "{m} — authentication failed, so this step is not retried: fix the connection \
                 profile's credentials, then resume the move"
            ),
            other => other.message().to_string(),
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for EngineError {}

/// A failure given as plain text is transient: what every step failure was before failures had
/// kinds (retried with back-off up to the attempt limit).
impl From<String> for EngineError {
    fn from(message: String) -> Self {
        Self::Transient(message)
    }
}

impl From<&str> for EngineError {
    fn from(message: &str) -> Self {
        Self::Transient(message.to_string())
    }
}
