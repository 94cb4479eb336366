//! Attachments added to an existing message: one POST under 3 MB, or an upload session for
//! 3 MB to 150 MB. Rules, each from Microsoft's pages:
//!
//! - `POST /users/{id}/messages/{id}/attachments` adds an attachment "to an existing message";
//!   "This operation limits the size of the attachment you can add to under 3 MB"
//!   (<https://learn.microsoft.com/graph/api/message-post-attachments>). The page sets no draft
//!   condition, so the fake accepts it on received mail too.
//! - `POST /users/{id}/messages/{id}/attachments/createUploadSession` with
//!   `{"AttachmentItem": {"attachmentType": "file", "name", "size", "contentType", "isInline",
//!   "contentId"}}` → `201 Created` and an `uploadSession` (`uploadUrl`, `expirationDateTime`,
//!   `nextExpectedRanges: ["0-"]`); for files of 3 MB to 150 MB
//!   (<https://learn.microsoft.com/graph/api/attachment-createuploadsession>).
//! - `PUT uploadUrl` with `Content-Range: bytes {start}-{end}/{total}`, `Content-Type:
//!   application/octet-stream` and **no** `Authorization` header (the URL is pre-authenticated);
//!   ranges in order, "up to 4 MB each time"; `200 OK` with `nextExpectedRanges: ["{next}"]` until
//!   the last, which answers `201 Created` with a `Location` header naming the new attachment;
//!   the session's expiry does not move (<https://learn.microsoft.com/graph/outlook-large-attachments>).
//!   The fake is stricter where the page only advises: a range above 4 MB is refused (413), one
//!   not at the next expected byte too (416), an expired session is gone (404).
//! - Uploads count against the mailbox's upload budget ("150 MB upload (PATCH, POST, PUT)",
//!   <https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>).

use std::time::Instant;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use super::mail::{charge_upload, not_found};
use super::{error, iso, now, ok_json, World};

/// Largest attachment added by one POST, and smallest-to-largest by session.
pub const SMALL_ATTACHMENT_MAX: usize = 3 * 1024 * 1024;
pub const SESSION_ATTACHMENT_MAX: u64 = 150 * 1024 * 1024;
/// Largest range of one PUT to an attachment session.
pub const ATTACHMENT_CHUNK_MAX: usize = 4 * 1024 * 1024;

impl super::FakeGraph {
    /// The next `n` ranges PUT to attachment upload sessions fail with 500, nothing stored.
    pub fn fail_attachment_ranges(&self, n: u64) {
        self.world.lock().unwrap().fail_attachment_ranges = n;
    }

    /// The next `n` attachment uploads are completed and attached, but their last range is
    /// answered 500.
    pub fn lose_attachment_answers(&self, n: u64) {
        self.world.lock().unwrap().lose_attachment_answers = n;
    }
}

fn injected_failure() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ErrorInternalServerError",
        "An internal server error occurred (injected by the test).",
    )
}

pub(super) struct AttachmentSession {
    upn: String,
    message: String,
    item: Value,
    size: u64,
    received: Vec<u8>,
    expires: Instant,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Appends a file attachment to a stored message; its id.
fn attach(w: &mut World, upn: &str, message: &str, mut a: Value, bytes: &[u8]) -> Option<String> {
    let m = w.mailboxes.get_mut(upn)?;
    let msg = m.messages.iter_mut().find(|x| x.id == message)?;
    let list = msg.json["attachments"].as_array_mut()?;
    let id = format!("AAMk-att-{}", list.len());
    a["@odata.type"] = json!("#microsoft.graph.fileAttachment");
    a["id"] = json!(id);
    a["size"] = json!(bytes.len());
    a["contentBytes"] = json!(b64(bytes));
    list.push(a);
    msg.json["hasAttachments"] = json!(true);
    Some(id)
}

/// `POST messages/{id}/attachments`: a file attachment under 3 MB.
pub(super) fn add(w: &mut World, upn: &str, message: &str, body: &[u8]) -> Response {
    if let Some(r) = charge_upload(w, upn, body.len() as u64) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "RequestBodyRead", "invalid JSON");
    };
    let Some(bytes) = v["contentBytes"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "contentBytes is required (base64)",
        );
    };
    if bytes.len() >= SMALL_ATTACHMENT_MAX {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ErrorAttachmentSizeShouldNotBeLargerThanLimit",
            "Attachments of 3 MB or more need an upload session.",
        );
    }
    match attach(w, upn, message, v, &bytes) {
        Some(id) => {
            let m = &w.mailboxes[upn];
            let msg = m.messages.iter().find(|x| x.id == message).unwrap();
            let a = msg.json["attachments"]
                .as_array()
                .and_then(|l| l.iter().find(|a| a["id"] == json!(id)))
                .cloned()
                .unwrap_or_default();
            ok_json(StatusCode::CREATED, a)
        }
        None => not_found(),
    }
}

/// `POST messages/{id}/attachments/createUploadSession`.
pub(super) fn create_session(w: &mut World, upn: &str, message: &str, body: &[u8]) -> Response {
    if !w.mailboxes[upn].messages.iter().any(|m| m.id == message) {
        return not_found();
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let item = &v["AttachmentItem"];
    let (Some("file"), Some(name), Some(size)) = (
        item["attachmentType"].as_str(),
        item["name"].as_str().filter(|n| !n.is_empty()),
        item["size"].as_u64(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "AttachmentItem needs attachmentType \"file\", a name and a size",
        );
    };
    if size > SESSION_ATTACHMENT_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorAttachmentSizeShouldNotBeLargerThanLimit",
            "Attachments are limited to 150 MB.",
        );
    }
    let lifetime = w.opts.session_lifetime;
    let sid = {
        w.next_id += 1;
        w.next_id
    };
    let mut kept = json!({"name": name, "contentType": item["contentType"].as_str().unwrap_or("application/octet-stream"),
        "isInline": item["isInline"].as_bool().unwrap_or(false)});
    if let Some(cid) = item["contentId"].as_str() {
        kept["contentId"] = json!(cid);
    }
    w.attachment_sessions.insert(
        sid,
        AttachmentSession {
            upn: upn.to_string(),
            message: message.to_string(),
            item: kept,
            size,
            received: Vec::new(),
            expires: Instant::now() + lifetime,
        },
    );
    w.stats.attachment_sessions_created += 1;
    ok_json(
        StatusCode::CREATED,
        json!({
            "uploadUrl": format!("{}/mailup/{sid}?authtoken=fake-{sid}", w.base),
            "expirationDateTime": iso(now() + lifetime),
            "nextExpectedRanges": ["0-"],
        }),
    )
}

/// `PUT uploadUrl` (and `DELETE` to cancel).
pub(super) fn put_range(
    w: &mut World,
    sid: &str,
    method: &Method,
    h: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Some(r) = super::refuse_authorization(w, h, "InvalidAuthenticationToken") {
        return r;
    }
    let gone = || {
        error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The upload session was not found or has expired.",
        )
    };
    let Ok(sid) = sid.parse::<u64>() else {
        return gone();
    };
    if w.attachment_sessions
        .get(&sid)
        .is_none_or(|s| Instant::now() >= s.expires)
    {
        w.attachment_sessions.remove(&sid);
        return gone();
    }
    match *method {
        Method::DELETE => {
            w.attachment_sessions.remove(&sid);
            return (StatusCode::NO_CONTENT, "").into_response();
        }
        Method::PUT => {}
        _ => return error(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", "PUT only"),
    }
    if body.len() > ATTACHMENT_CHUNK_MAX {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ErrorRequestEntityTooLarge",
            "Upload at most 4 MB per request.",
        );
    }
    let range = h
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(super::parse_content_range);
    let s = &w.attachment_sessions[&sid];
    let Some((start, end, total)) = range
        .filter(|(a, b, t)| b >= a && b - a + 1 == body.len() as u64 && *t == s.size && *b < *t)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRange",
            "Content-Range bytes {start}-{end}/{total} must match the body and the declared size",
        );
    };
    if start != s.received.len() as u64 {
        w.stats.range_errors += 1;
        return error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "ErrorInvalidRange",
            "Upload the bytes in order, from the next expected one.",
        );
    }
    if w.fail_attachment_ranges > 0 {
        w.fail_attachment_ranges -= 1;
        return injected_failure();
    }
    let upn = s.upn.clone();
    if let Some(r) = charge_upload(w, &upn, body.len() as u64) {
        return r;
    }
    let lifetime_left = w.attachment_sessions[&sid]
        .expires
        .saturating_duration_since(Instant::now());
    let s = w.attachment_sessions.get_mut(&sid).unwrap();
    s.received.extend_from_slice(body);
    w.stats.attachment_ranges += 1;
    if end + 1 < total {
        return ok_json(
            StatusCode::OK,
            json!({"expirationDateTime": iso(now() + lifetime_left), "nextExpectedRanges": [format!("{}", end + 1)]}),
        );
    }
    let s = w.attachment_sessions.remove(&sid).unwrap();
    let Some(id) = attach(w, &s.upn, &s.message, s.item, &s.received) else {
        return not_found();
    };
    if w.lose_attachment_answers > 0 {
        // Attached, but the client hears of a failure (as after a lost answer).
        w.lose_attachment_answers -= 1;
        return injected_failure();
    }
    let location = format!(
        "{}/v1.0/users('{}')/messages('{}')/attachments('{id}')",
        w.base, s.upn, s.message
    );
    (
        StatusCode::CREATED,
        [("location", location), ("content-length", "0".into())],
    )
        .into_response()
}
