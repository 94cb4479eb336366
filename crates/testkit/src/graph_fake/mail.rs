//! The Outlook mail part of the fake Graph: mail folders and messages of user mailboxes, as
//! `tenantry mail` uses them to bring IMAP mailboxes into Exchange Online. Each rule cites the
//! page it comes from; where the documentation is silent the fake is stricter and says so.
//!
//! Rules enforced:
//! - Well-known folder names (`inbox`, `sentitems`, `drafts`, `deleteditems`, `junkemail`,
//!   `archive`, `msgfolderroot`) address folders "regardless of the locale of the user's
//!   mailbox" (<https://learn.microsoft.com/graph/api/resources/mailfolder>); a mailbox can be
//!   made with German display names to prove nobody matches by name.
//! - A message created without PR_MESSAGE_FLAGS (`Integer 0x0E07`) is a draft, and the unsent
//!   bit (MSGFLAG_UNSENT 0x8) cannot change after the first save
//!   (<https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxcmsg>, PidTagMessageFlags:
//!   "mfUnsent … can be set only before the message is first saved"); a PATCH of the property
//!   keeps the draft state as it was.
//! - PR_MESSAGE_DELIVERY_TIME (`SystemTime 0x0E06`) is `receivedDateTime`, PR_CLIENT_SUBMIT_TIME
//!   (`SystemTime 0x0039`) `sentDateTime`; the read bit (0x1) of PR_MESSAGE_FLAGS is `isRead`
//!   (<https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties>
//!   creates a message with extended properties in the same POST).
//! - Outlook service limits (<https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>):
//!   per app and mailbox at most 4 concurrent requests and 150 MB uploaded per 5 minutes;
//!   beyond them 429 with `Retry-After` ("Application is over its MailboxConcurrency limit.").
//!   Both are options, so tests can scale them down. The fake's injected throttling
//!   (`throttle_every`: 429 + `Retry-After`, the tenant refused until it has passed) applies to
//!   mailbox requests too.
//! - A request body above 4 MB is refused (413): attachments of 3 MB or more need an upload
//!   session (<https://learn.microsoft.com/graph/outlook-large-attachments>), which the fake
//!   offers on existing messages (`mail_attachments`).
//! - Extended properties are returned only when expanded, and messages can be filtered on one
//!   (<https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get>:
//!   `$filter=singleValueExtendedProperties/any(ep: ep/id eq '…' and ep/value eq '…')`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{authorize, decode_path, error, iso, now, ok_json, query_param, Shared, World};

pub const PR_MESSAGE_FLAGS: &str = "Integer 0x0E07";
pub const PR_MESSAGE_DELIVERY_TIME: &str = "SystemTime 0x0E06";
pub const PR_CLIENT_SUBMIT_TIME: &str = "SystemTime 0x0039";
const MSGFLAG_READ: i64 = 0x1;
const MSGFLAG_UNSENT: i64 = 0x8;
/// Graph's request size limit for a POST with attachments.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Well-known names and their English and German display names.
const WELL_KNOWN: [(&str, &str, &str); 6] = [
    ("inbox", "Inbox", "Posteingang"),
    ("sentitems", "Sent Items", "Gesendete Elemente"),
    ("drafts", "Drafts", "Entwürfe"),
    ("deleteditems", "Deleted Items", "Gelöschte Elemente"),
    ("junkemail", "Junk Email", "Junk-E-Mail"),
    ("archive", "Archive", "Archiv"),
];

pub(super) struct Mailbox {
    folders: Vec<Folder>,
    pub(super) messages: Vec<FakeMessage>,
    in_flight: usize,
    uploads: VecDeque<(Instant, u64)>,
}

struct Folder {
    id: String,
    parent: Option<String>,
    name: String,
    well_known: Option<&'static str>,
}

/// A message as the fake stores it.
#[derive(Clone, Debug)]
pub struct FakeMessage {
    pub id: String,
    /// Display names from the top of the mailbox, `/`-joined.
    pub folder_path: String,
    /// The folder's well-known name, if it has one.
    pub folder_well_known: Option<String>,
    pub is_draft: bool,
    pub is_read: bool,
    /// The message as Graph returns it, extended properties included.
    pub json: Value,
}

impl FakeMessage {
    /// The value of an extended property by its id (`String 0x007D`, ...).
    pub fn property(&self, id: &str) -> Option<&str> {
        self.json["singleValueExtendedProperties"]
            .as_array()?
            .iter()
            .find(|p| p["id"].as_str().is_some_and(|i| same_id(i, id)))
            .and_then(|p| p["value"].as_str())
    }
}

/// Property ids compare without regard to case ("0x0E07" and "0x0e07").
fn same_id(a: &str, b: &str) -> bool {
    a.split_whitespace()
        .map(str::to_ascii_lowercase)
        .eq(b.split_whitespace().map(str::to_ascii_lowercase))
}

impl super::FakeGraph {
    /// A mailbox with the well-known folders, named in English or (`german`) in German.
    pub fn add_mailbox(&self, upn: &str, german: bool) {
        let mut w = self.world.lock().unwrap();
        let root = w.new_id();
        let mut folders = vec![Folder {
            id: root.clone(),
            parent: None,
            name: "Top of Information Store".into(),
            well_known: Some("msgfolderroot"),
        }];
        for (wk, en, de) in WELL_KNOWN {
            folders.push(Folder {
                id: w.new_id(),
                parent: Some(root.clone()),
                name: if german { de } else { en }.into(),
                well_known: Some(wk),
            });
        }
        w.mailboxes.insert(
            upn.to_lowercase(),
            Mailbox {
                folders,
                messages: Vec::new(),
                in_flight: 0,
                uploads: VecDeque::new(),
            },
        );
    }

    /// Every message of a mailbox, in creation order.
    pub fn mail_messages(&self, upn: &str) -> Vec<FakeMessage> {
        let w = self.world.lock().unwrap();
        w.mailboxes
            .get(&upn.to_lowercase())
            .map(|m| m.messages.clone())
            .unwrap_or_default()
    }

    /// Folder paths (display names) of a mailbox below its top, sorted.
    pub fn mail_folders(&self, upn: &str) -> Vec<String> {
        let w = self.world.lock().unwrap();
        let Some(m) = w.mailboxes.get(&upn.to_lowercase()) else {
            return Vec::new();
        };
        let mut out: Vec<String> = m
            .folders
            .iter()
            .filter(|f| f.parent.is_some())
            .map(|f| m.path_of(&f.id))
            .collect();
        out.sort();
        out
    }

    /// The next `n` message creations are stored, then their connection is dropped without an
    /// answer (as a network failure after the service acted would).
    pub fn drop_after_create(&self, n: u64) {
        self.world.lock().unwrap().mail_drop_after_create = n;
    }
}

impl Mailbox {
    fn path_of(&self, id: &str) -> String {
        folder_path(id, |k| {
            let f = self.folders.iter().find(|f| f.id == k)?;
            Some((f.name.as_str(), f.parent.as_deref()))
        })
    }

    /// A folder by id or well-known name.
    fn folder(&self, key: &str) -> Option<&Folder> {
        let k = key.to_ascii_lowercase();
        self.folders
            .iter()
            .find(|f| f.id == key || f.well_known == Some(k.as_str()))
    }

    fn folder_json(&self, f: &Folder) -> Value {
        json!({
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "childFolderCount": self.folders.iter().filter(|c| c.parent.as_ref() == Some(&f.id)).count(),
            "totalItemCount": self.messages.iter().filter(|m| m.json["parentFolderId"] == json!(f.id)).count(),
            "isHidden": false,
        })
    }
}

/// Display names from below the root of a folder tree down to `id`, `/`-joined; `node` gives a
/// folder's name and parent (the root has none).
pub(super) fn folder_path<'a>(
    id: &str,
    node: impl Fn(&str) -> Option<(&'a str, Option<&'a str>)>,
) -> String {
    let mut parts = Vec::new();
    let mut cur = node(id);
    while let Some((name, Some(parent))) = cur {
        parts.push(name);
        cur = node(parent);
    }
    parts.reverse();
    parts.join("/")
}

/// `/v1.0/users/{upn}/mailFolders…` or `/v1.0/users/{upn}/messages…`: the mailbox's key.
pub(super) fn mailbox_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1.0/users/")?;
    let (upn, tail) = rest.split_once('/')?;
    (tail.starts_with("mailFolders") || tail.starts_with("messages"))
        .then(|| decode_path(upn).to_lowercase())
}

/// Serves one mailbox request: token, concurrency slot, upload budget, then the operation.
pub(super) async fn handle(
    world: &Shared,
    upn: String,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let delay = {
        let mut w = world.lock().unwrap();
        w.stats.requests += 1;
        if let Some(r) = super::injected_throttling(&mut w) {
            return r;
        }
        if let Some(r) = authorize(&mut w, &headers) {
            return r;
        }
        let limit = w.opts.mailbox_concurrency;
        let Some(m) = w.mailboxes.get_mut(&upn) else {
            return error(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                "The requested user is invalid.",
            );
        };
        if m.in_flight >= limit {
            w.stats.throttled += 1;
            w.stats.mailbox_concurrency_refusals += 1;
            return throttled(
                1,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            );
        }
        m.in_flight += 1;
        let in_flight = m.in_flight;
        *w.stats.mailbox_requests.entry(upn.clone()).or_default() += 1;
        let peak = w
            .stats
            .mailbox_peak_in_flight
            .entry(upn.clone())
            .or_default();
        *peak = (*peak).max(in_flight);
        w.in_flight.taken(&upn, in_flight, &path);
        w.opts.mail_request_delay
    };
    let slot = Slot {
        world: world.clone(),
        upn: upn.clone(),
        taken: std::time::Instant::now(),
    };
    // A message's JSON is read while the request's delay runs, not under the world's lock.
    let parsed = (method == Method::POST && path.ends_with("/messages"))
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten();
    super::hold_until(slot.taken + delay).await;
    let resp = serve(
        &mut world.lock().unwrap(),
        &upn,
        (&method, &path, &query),
        &body,
        parsed,
    );
    drop(slot);
    match resp {
        Served::Answer(r) => r,
        // End the connection without an answer: the server task unwinds (no panic message),
        // hyper closes the socket; the lock and the slot are released first.
        Served::Drop => {
            std::panic::resume_unwind(Box::new("fake graph: connection dropped on purpose"))
        }
    }
}

/// A mailbox's concurrency slot, freed however its request ends: answered, or abandoned when
/// the client goes away mid-request (a killed process). The limit counts active requests, and
/// a vanished client's request ends too; a slot kept would refuse that mailbox for ever.
struct Slot {
    world: Shared,
    upn: String,
    taken: std::time::Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = w.mailboxes.get_mut(&self.upn) {
            m.in_flight = m.in_flight.saturating_sub(1);
            let now = m.in_flight;
            w.in_flight.given_back(&self.upn, now, self.taken);
        }
    }
}

enum Served {
    Answer(Response),
    Drop,
}

pub(super) fn throttled(secs: u64, code: &str, message: &str) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, code, message);
    r.headers_mut()
        .insert("Retry-After", secs.to_string().parse().unwrap());
    r
}

/// `parsed`: the body's JSON, when read already.
fn serve(
    w: &mut World,
    upn: &str,
    (method, path, query): (&Method, &str, &str),
    body: &[u8],
    parsed: Option<Value>,
) -> Served {
    let rest = path
        .strip_prefix("/v1.0/users/")
        .and_then(|r| r.split_once('/'))
        .map(|(_, t)| t)
        .unwrap_or("");
    let here = format!("{}{}", w.base, path);
    let segs: Vec<String> = rest.split('/').map(decode_path).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let answer = match (method.as_str(), segs.as_slice()) {
        ("GET", ["mailFolders"]) => child_folders(w, &here, upn, "msgfolderroot", query),
        ("GET", ["mailFolders", f]) => {
            let m = &w.mailboxes[upn];
            match m.folder(f) {
                Some(f) => ok_json(StatusCode::OK, m.folder_json(f)),
                None => not_found(),
            }
        }
        ("GET", ["mailFolders", f, "childFolders"]) => child_folders(w, &here, upn, f, query),
        ("POST", ["mailFolders", f, "childFolders"]) | ("POST", ["mailFolders", f @ ""]) => {
            create_folder(w, upn, if f.is_empty() { "msgfolderroot" } else { f }, body)
        }
        ("POST", ["mailFolders"]) => create_folder(w, upn, "msgfolderroot", body),
        ("POST", ["mailFolders", f, "messages"]) => return create_message(w, upn, f, body, parsed),
        ("GET", ["mailFolders", f, "messages"]) => list_messages(w, &here, upn, f, query),
        ("GET", ["messages", id]) => match w.mailboxes[upn].messages.iter().find(|m| m.id == *id) {
            Some(m) => ok_json(StatusCode::OK, shown(m, query)),
            None => not_found(),
        },
        ("GET", ["messages", id, "attachments"]) => {
            match w.mailboxes[upn].messages.iter().find(|m| m.id == *id) {
                Some(m) => ok_json(
                    StatusCode::OK,
                    json!({"value": selected(&m.json["attachments"], query)}),
                ),
                None => not_found(),
            }
        }
        ("POST", ["messages", id, "attachments"]) => super::mail_attachments::add(w, upn, id, body),
        ("POST", ["messages", id, "attachments", "createUploadSession"]) => {
            super::mail_attachments::create_session(w, upn, id, body)
        }
        ("PATCH", ["messages", id]) => patch_message(w, upn, id, body),
        _ => error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("the fake does not serve {method} {rest}"),
        ),
    };
    Served::Answer(answer)
}

/// A collection with only the `$select`ed properties (and `id`), as Graph returns it.
fn selected(list: &Value, query: &str) -> Value {
    let Some(sel) = query_param(query, "$select") else {
        return list.clone();
    };
    let keep: Vec<&str> = sel.split(',').map(str::trim).collect();
    let items = list.as_array().cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .map(|mut a| {
                if let Some(o) = a.as_object_mut() {
                    o.retain(|k, _| k == "id" || k.starts_with('@') || keep.contains(&k.as_str()));
                }
                a
            })
            .collect(),
    )
}

pub(super) fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn child_folders(w: &World, here: &str, upn: &str, parent: &str, query: &str) -> Response {
    let m = &w.mailboxes[upn];
    let Some(p) = m.folder(parent) else {
        return not_found();
    };
    let all: Vec<Value> = m
        .folders
        .iter()
        .filter(|f| f.parent.as_ref() == Some(&p.id))
        .map(|f| m.folder_json(f))
        .collect();
    page(here, all, query)
}

/// `$top` (default 10, as mailFolder and message lists page by 10) and `$skip`, with an
/// absolute `@odata.nextLink`.
fn page(here: &str, all: Vec<Value>, query: &str) -> Response {
    let top: usize = query_param(query, "$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(10)
        .clamp(1, 1000);
    let skip: usize = query_param(query, "$skip")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let value: Vec<Value> = all.iter().skip(skip).take(top).cloned().collect();
    let mut out = json!({"value": value});
    if skip + top < all.len() {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("%24skip=") && !kv.starts_with("$skip="))
            .filter(|kv| !kv.is_empty())
            .collect();
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        out["@odata.nextLink"] = json!(format!("{here}?{q}$skip={}", skip + top));
    }
    ok_json(StatusCode::OK, out)
}

fn create_folder(w: &mut World, upn: &str, parent: &str, body: &[u8]) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "RequestBodyRead", "invalid JSON");
    };
    let Some(name) = v["displayName"].as_str().filter(|n| !n.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "displayName is required",
        );
    };
    let id = w.new_id();
    let m = w.mailboxes.get_mut(upn).unwrap();
    let Some(p) = m.folder(parent).map(|p| p.id.clone()) else {
        return not_found();
    };
    // Folder names are unique among siblings, case-insensitively
    // (https://learn.microsoft.com/graph/api/mailfolder-post-childfolders: 409 ErrorFolderExists).
    if m.folders
        .iter()
        .any(|f| f.parent.as_ref() == Some(&p) && f.name.to_lowercase() == name.to_lowercase())
    {
        return error(
            StatusCode::CONFLICT,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        );
    }
    m.folders.push(Folder {
        id: id.clone(),
        parent: Some(p),
        name: name.to_string(),
        well_known: None,
    });
    let f = m.folders.last().unwrap();
    ok_json(StatusCode::CREATED, m.folder_json(f))
}

/// The upload budget: the bytes of the last window, this request's included; over it, 429 with
/// the time until the oldest upload leaves the window. Counted when accepted.
pub(super) fn charge_upload(w: &mut World, upn: &str, bytes: u64) -> Option<Response> {
    let limit = w.opts.mail_upload_budget;
    let m = w.mailboxes.get_mut(upn)?;
    charge(&mut m.uploads, limit, upn, bytes, &mut w.stats)
}

/// [`charge_upload`] on any mailbox's ledger of (when, bytes) uploads.
pub(super) fn charge(
    uploads: &mut VecDeque<(Instant, u64)>,
    (budget, window): (u64, Duration),
    upn: &str,
    bytes: u64,
    stats: &mut super::FakeStats,
) -> Option<Response> {
    let now_i = Instant::now();
    while uploads
        .front()
        .is_some_and(|(t, _)| now_i.duration_since(*t) >= window)
    {
        uploads.pop_front();
    }
    let used: u64 = uploads.iter().map(|(_, n)| n).sum();
    if used + bytes > budget {
        let wait = uploads
            .front()
            .map(|(t, _)| window.saturating_sub(now_i.duration_since(*t)))
            .unwrap_or(Duration::from_secs(1));
        stats.throttled += 1;
        stats.upload_budget_refusals += 1;
        return Some(throttled(
            wait.as_secs_f64().ceil().max(1.0) as u64,
            "ApplicationThrottled",
            "Application is over its MailboxUploadLimit.",
        ));
    }
    uploads.push_back((now_i, bytes));
    *stats
        .mailbox_upload_bytes
        .entry(upn.to_string())
        .or_default() += bytes;
    None
}

fn create_message(
    w: &mut World,
    upn: &str,
    folder: &str,
    body: &[u8],
    parsed: Option<Value>,
) -> Served {
    if body.len() > MAX_REQUEST_BYTES {
        return Served::Answer(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body exceeds the 4 MB limit; attach large files through an upload session.",
        ));
    }
    if let Some(r) = charge_upload(w, upn, body.len() as u64) {
        return Served::Answer(r);
    }
    let parsed = parsed.or_else(|| serde_json::from_slice::<Value>(body).ok());
    let Some(Value::Object(mut v)) = parsed else {
        return Served::Answer(error(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            "invalid JSON",
        ));
    };
    let id = w.new_id();
    let (fid, path, wk) = {
        let m = &w.mailboxes[upn];
        match m.folder(folder) {
            Some(f) => (f.id.clone(), m.path_of(&f.id), f.well_known),
            None => return Served::Answer(not_found()),
        }
    };
    let props: Vec<Value> = v
        .get("singleValueExtendedProperties")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let prop = |pid: &str| {
        props
            .iter()
            .find(|p| p["id"].as_str().is_some_and(|i| same_id(i, pid)))
            .and_then(|p| p["value"].as_str())
            .map(str::to_string)
    };
    let flags = prop(PR_MESSAGE_FLAGS).and_then(|f| f.trim().parse::<i64>().ok());
    // No PR_MESSAGE_FLAGS: the store saves a draft (mfUnsent set on first save).
    let is_draft = flags.is_none_or(|f| f & MSGFLAG_UNSENT != 0);
    let is_read = match flags {
        Some(f) => f & MSGFLAG_READ != 0,
        None => v.get("isRead").and_then(Value::as_bool).unwrap_or(true),
    };
    let t = iso(now());
    let received = prop(PR_MESSAGE_DELIVERY_TIME).unwrap_or_else(|| t.clone());
    let sent = prop(PR_CLIENT_SUBMIT_TIME);
    let mut atts = Vec::new();
    for a in v
        .get("attachments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let mut a = a;
        a["id"] = json!(format!("AAMk-att-{}", atts.len()));
        let size = a["contentBytes"].as_str().map_or(0, |b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_or(0, |d| d.len())
        });
        a["size"] = json!(size);
        atts.push(a);
    }
    v.insert("id".into(), json!(id));
    v.insert("parentFolderId".into(), json!(fid));
    v.insert("isDraft".into(), json!(is_draft));
    v.insert("isRead".into(), json!(is_read));
    v.insert("receivedDateTime".into(), json!(received));
    v.insert("sentDateTime".into(), json!(sent));
    v.insert("createdDateTime".into(), json!(t));
    v.insert("hasAttachments".into(), json!(!atts.is_empty()));
    v.insert("attachments".into(), Value::Array(atts));
    v.insert("changeKey".into(), json!(format!("CQ{id}")));
    let msg = FakeMessage {
        id: id.clone(),
        folder_path: path,
        folder_well_known: wk.map(str::to_string),
        is_draft,
        is_read,
        json: Value::Object(v),
    };
    let shown_msg = shown(&msg, "");
    let m = w.mailboxes.get_mut(upn).unwrap();
    m.messages.push(msg);
    w.stats.messages_created += 1;
    if w.mail_drop_after_create > 0 {
        w.mail_drop_after_create -= 1;
        return Served::Drop;
    }
    Served::Answer(ok_json(StatusCode::CREATED, shown_msg))
}

/// A message as returned: without its extended properties and attachments' bytes unless
/// asked (`$expand=singleValueExtendedProperties($filter=id eq '…' or …)`).
fn shown(m: &FakeMessage, query: &str) -> Value {
    let mut v = m.json.clone();
    let expand = query_param(query, "$expand").unwrap_or_default();
    let wanted: Vec<String> = expand
        .split("id eq '")
        .skip(1)
        .filter_map(|s| s.split('\'').next())
        .map(str::to_string)
        .collect();
    let obj = v.as_object_mut().unwrap();
    obj.remove("attachments");
    match obj.remove("singleValueExtendedProperties") {
        Some(Value::Array(props)) if expand.starts_with("singleValueExtendedProperties") => {
            let kept: Vec<Value> = props
                .into_iter()
                .filter(|p| {
                    wanted.is_empty()
                        || wanted
                            .iter()
                            .any(|w| p["id"].as_str().is_some_and(|i| same_id(i, w)))
                })
                .collect();
            obj.insert("singleValueExtendedProperties".into(), Value::Array(kept));
        }
        _ => {}
    }
    v
}

/// `$filter=singleValueExtendedProperties/any(ep: ep/id eq 'ID' and ep/value eq 'VALUE')` — the
/// one filter the fake understands; any other is refused rather than ignored.
fn property_filter(filter: &str) -> Option<(String, String)> {
    let f = filter.trim();
    let inner = f
        .strip_prefix("singleValueExtendedProperties/any(ep:")
        .or_else(|| f.strip_prefix("singleValueExtendedProperties/Any(ep:"))?
        .strip_suffix(')')?;
    let (id_part, value_part) = inner.split_once(" and ")?;
    let id = id_part
        .trim()
        .strip_prefix("ep/id eq '")?
        .strip_suffix('\'')?;
    let value = value_part
        .trim()
        .strip_prefix("ep/value eq '")?
        .strip_suffix('\'')?;
    Some((id.to_string(), value.replace("''", "'")))
}

fn list_messages(w: &World, here: &str, upn: &str, folder: &str, query: &str) -> Response {
    let m = &w.mailboxes[upn];
    let Some(f) = m.folder(folder) else {
        return not_found();
    };
    let filter = match query_param(query, "$filter") {
        None => None,
        Some(q) => match property_filter(&q) {
            Some(p) => Some(p),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidUrlQueryFilter",
                    "The fake only filters on one single-value extended property.",
                )
            }
        },
    };
    let all: Vec<Value> = m
        .messages
        .iter()
        .filter(|x| x.json["parentFolderId"] == json!(f.id))
        .filter(|x| match &filter {
            Some((id, value)) => x.property(id) == Some(value.as_str()),
            None => true,
        })
        .map(|x| shown(x, query))
        .collect();
    page(here, all, query)
}

fn patch_message(w: &mut World, upn: &str, id: &str, body: &[u8]) -> Response {
    let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "RequestBodyRead", "invalid JSON");
    };
    let m = w.mailboxes.get_mut(upn).unwrap();
    let Some(msg) = m.messages.iter_mut().find(|x| x.id == id) else {
        return not_found();
    };
    for (k, val) in patch {
        match k.as_str() {
            "isRead" => {
                msg.is_read = val.as_bool().unwrap_or(msg.is_read);
                msg.json["isRead"] = json!(msg.is_read);
            }
            "flag" | "categories" => {
                msg.json[k.as_str()] = val;
            }
            "singleValueExtendedProperties" => {
                // The read bit may change; the unsent bit stays as first saved (MS-OXCMSG).
                for p in val.as_array().cloned().unwrap_or_default() {
                    if p["id"]
                        .as_str()
                        .is_some_and(|i| same_id(i, PR_MESSAGE_FLAGS))
                    {
                        if let Some(f) = p["value"].as_str().and_then(|s| s.parse::<i64>().ok()) {
                            msg.is_read = f & MSGFLAG_READ != 0;
                            msg.json["isRead"] = json!(msg.is_read);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let shown_msg = shown(msg, "");
    ok_json(StatusCode::OK, shown_msg)
}
