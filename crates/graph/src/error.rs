//! What can go wrong talking to Graph, typed so callers can tell "wait" from "give up".
//!
//! Every error names the request ids Microsoft support asks for (`request-id`,
//! `client-request-id`) and, when Graph sent one, its `error.code`
//! (<https://learn.microsoft.com/graph/errors>). No error ever holds a token or a secret.

use std::fmt;
use std::time::Duration;

/// The ids of one request: ours (`client-request-id`, sent on every request) and the service's
/// (`request-id`, from the response headers or the error body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestIds {
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
}

impl fmt::Display for RequestIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request-id {}, client-request-id {}",
            self.request_id.as_deref().unwrap_or("-"),
            self.client_request_id.as_deref().unwrap_or("-")
        )
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum GraphError {
    /// 429, or 503/504 with a wait: the whole tenant's budget is paused for `retry_after`.
    #[error("throttled by Microsoft Graph (HTTP {status}), asked to wait {}s ({ids})", .retry_after.as_secs())]
    Throttled {
        status: u16,
        retry_after: Duration,
        ids: RequestIds,
    },
    /// Network trouble or a 5xx that may pass.
    #[error("transient failure: {message} ({ids})")]
    Transient { message: String, ids: RequestIds },
    /// The token endpoint refused the app, or Graph refused its token (401/403).
    #[error("authentication failed (HTTP {status}{}): {message} ({ids}); check --tenant-id, --client-id, the client secret or certificate and the app's admin-consented application permissions", .code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Auth {
        status: u16,
        code: Option<String>,
        message: String,
        ids: RequestIds,
    },
    /// Any other refusal that retrying will not change (`error.code` as Graph sent it).
    #[error("HTTP {status} {}: {message} ({ids})", .code.as_deref().unwrap_or("(no error code)"))]
    Permanent {
        status: u16,
        code: Option<String>,
        message: String,
        ids: RequestIds,
    },
}

impl GraphError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Throttled { status, .. }
            | Self::Auth { status, .. }
            | Self::Permanent { status, .. } => Some(*status),
            Self::Transient { .. } => None,
        }
    }

    /// Graph's `error.code` (`itemNotFound`, `nameAlreadyExists`, `quotaLimitReached`...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Auth { code, .. } | Self::Permanent { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The answer was over the size limit of its call (see `Call::max_body`).
    pub fn is_too_large(&self) -> bool {
        self.code() == Some(crate::client::RESPONSE_TOO_LARGE)
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn ids(&self) -> &RequestIds {
        match self {
            Self::Throttled { ids, .. }
            | Self::Transient { ids, .. }
            | Self::Auth { ids, .. }
            | Self::Permanent { ids, .. } => ids,
        }
    }
}

/// `{"error": {"code": "...", "message": "...", "innerError": {"request-id": "..."}}}`.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, String, Option<String>) {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            return (None, sanitize(&text), None);
        }
    };
    // The token endpoint's shape: {"error": "invalid_client", "error_description": "..."}.
    if let Some(code) = v["error"].as_str() {
        let desc = v["error_description"].as_str().unwrap_or("");
        return (Some(code.to_string()), sanitize(desc), None);
    }
    let e = &v["error"];
    let code = e["code"].as_str().map(str::to_string);
    let message = sanitize(e["message"].as_str().unwrap_or(""));
    let rid = e["innerError"]["request-id"].as_str().map(str::to_string);
    (code, message, rid)
}

/// Control characters would reach a terminal; long bodies would drown the report.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(300)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_and_token_error_shapes() {
        let (c, m, r) = parse_error_body(
            br#"{"error":{"code":"nameAlreadyExists","message":"exists","innerError":{"request-id":"r1"}}}"#,
        );
        assert_eq!(c.as_deref(), Some("nameAlreadyExists"));
        assert_eq!(m, "exists");
        assert_eq!(r.as_deref(), Some("r1"));
        let (c, m, _) = parse_error_body(
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret"}"#,
        );
        assert_eq!(c.as_deref(), Some("invalid_client"));
        assert!(m.starts_with("AADSTS7000215"));
        let (c, m, _) = parse_error_body(b"<html>\x1b[31mbad gateway</html>");
        assert_eq!(c, None);
        assert!(!m.contains('\x1b'));
    }

    #[test]
    fn errors_name_the_request_ids() {
        let e = GraphError::Permanent {
            status: 409,
            code: Some("nameAlreadyExists".into()),
            message: "x".into(),
            ids: RequestIds {
                request_id: Some("srv-1".into()),
                client_request_id: Some("cli-1".into()),
            },
        };
        let s = e.to_string();
        assert!(
            s.contains("nameAlreadyExists") && s.contains("srv-1") && s.contains("cli-1"),
            "{s}"
        );
    }
}
