//! The mailbox import/export part of the fake Graph: Exchange mailboxes as folders of opaque
//! items, exported and imported whole. Rules, each from Microsoft's pages (beta pages when
//! this was written; served here under /v1.0 as issue 14 describes the 2026 API):
//!
//! - `GET /users/{id}/settings/exchange` → `primaryMailboxId`
//!   (<https://learn.microsoft.com/graph/api/resources/exchangesettings>).
//! - `GET /admin/exchange/mailboxes/{id}/folders` → `mailboxFolder`s with `id`, `displayName`,
//!   `parentFolderId`, `type` (the folder class: `IPF.Note`, `IPF.Appointment`, …) and
//!   `wellKnownName` — "locale-independent", `null` for user-created folders
//!   (<https://learn.microsoft.com/graph/api/resources/mailboxfolder>). The fake lists every folder
//!   of the mailbox; `childFolders` lists one folder's children, and a POST there creates one
//!   with its `displayName` and `type`.
//! - `GET …/folders/{id}/items` → `mailboxItem`s (`id`, `type`, `size`, `changeKey`).
//!   Both listings are counted (`FakeStats::mailbox_listings`); their delta forms are served by
//!   `mailbox_delta`, from the change number every folder and item change takes here.
//! - `POST …/exportItems` with `itemIds` — "up to 20 items in a single export request" (more:
//!   400) — answers each item's `itemId`, `changeKey` and `data` (base64 FastTransfer stream)
//!   (<https://learn.microsoft.com/graph/api/mailbox-exportitems>).
//! - `POST …/createImportSession` → `201` with `importUrl` and `expirationDateTime`; the URL is
//!   pre-authenticated (no `Authorization` header), and "after this time, the importUrl expires
//!   and is deleted" (the fake answers 404 then). A POST to it with `FolderId`, `Mode`
//!   (`create`: a new item, and `ItemId`/`ChangeKey` are an error; `update`: both required and
//!   must match the item) and `Data` answers `200` with `itemId` and `changeKey`
//!   (<https://learn.microsoft.com/graph/import-exchange-mailbox-item>). A `create` of the same
//!   data twice makes two items: a naive re-run duplicates.
//! - The Outlook per-mailbox limits apply to these requests as to any mailbox request
//!   (<https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>): at most
//!   `mailbox_concurrency` in flight per mailbox (more: 429 "MailboxConcurrency"), each taking
//!   `export_request_delay`, and imports count against the upload budget (429
//!   "MailboxUploadLimit" beyond it).

use std::collections::VecDeque;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use super::{error, iso, now, ok_json, World};

/// The most ids one exportItems call takes.
pub const EXPORT_MAX_ITEMS: usize = 20;

/// Well-known folders: (wellKnownName, class, English, German).
const WELL_KNOWN: [(&str, &str, &str, &str); 6] = [
    ("inbox", "IPF.Note", "Inbox", "Posteingang"),
    ("sentitems", "IPF.Note", "Sent Items", "Gesendete Elemente"),
    (
        "deleteditems",
        "IPF.Note",
        "Deleted Items",
        "Gelöschte Elemente",
    ),
    ("calendar", "IPF.Appointment", "Calendar", "Kalender"),
    ("contacts", "IPF.Contact", "Contacts", "Kontakte"),
    ("tasks", "IPF.Task", "Tasks", "Aufgaben"),
];

pub(super) struct ExportMailbox {
    pub(super) id: String,
    upn: String,
    pub(super) folders: Vec<XFolder>,
    pub(super) items: Vec<XItem>,
    in_flight: usize,
    uploads: VecDeque<(Instant, u64)>,
    /// The mailbox's change number: every folder or item change takes the next one, which is
    /// what delta tokens count (`mailbox_delta`).
    pub(super) changes: u64,
    /// Delta tokens of an older generation are no longer known (`expire_delta_tokens`).
    pub(super) token_generation: u64,
    /// Deleted items: (folder, item id, change number), for delta's `@removed`.
    pub(super) removed_items: Vec<(String, String, u64)>,
    /// Deleted folders: (folder id, change number, whether it was at the top of the tree).
    pub(super) removed_folders: Vec<(String, u64, bool)>,
}

pub(super) struct XFolder {
    pub(super) id: String,
    pub(super) parent: Option<String>,
    pub(super) name: String,
    class: String,
    well_known: Option<&'static str>,
    /// Change number of its creation or last change.
    pub(super) changed: u64,
    /// Change number of its creation.
    pub(super) created: u64,
}

/// An item as the fake keeps it.
#[derive(Clone, Debug)]
pub struct MailboxItem {
    pub id: String,
    pub folder: String,
    pub class: String,
    pub data: Vec<u8>,
    pub change_key: String,
}

/// An item and the change number of its creation or last change.
pub(super) struct XItem(pub(super) MailboxItem, pub(super) u64);

pub(super) struct ImportSession {
    mailbox: String,
    expires: Instant,
}

impl super::FakeGraph {
    /// An Exchange mailbox for import/export with its well-known folders (English or German
    /// display names). Returns its mailbox id.
    pub fn add_export_mailbox(&self, upn: &str, german: bool) -> String {
        let mut w = self.world.lock().unwrap();
        let id = format!("MBX:{}", w.new_id());
        let root = w.new_id();
        let mut folders = vec![XFolder {
            id: root.clone(),
            parent: None,
            name: "Top of Information Store".into(),
            class: "IPF.Note".into(),
            well_known: Some("msgfolderroot"),
            changed: 1,
            created: 1,
        }];
        for (wk, class, en, de) in WELL_KNOWN {
            folders.push(XFolder {
                id: w.new_id(),
                parent: Some(root.clone()),
                name: if german { de } else { en }.into(),
                class: class.into(),
                well_known: Some(wk),
                changed: 1,
                created: 1,
            });
        }
        w.export_users.insert(upn.to_lowercase(), id.clone());
        w.export_mailboxes.insert(
            id.clone(),
            ExportMailbox {
                id: id.clone(),
                upn: upn.to_lowercase(),
                folders,
                items: Vec::new(),
                in_flight: 0,
                uploads: VecDeque::new(),
                changes: 1,
                token_generation: 1,
                removed_items: Vec::new(),
                removed_folders: Vec::new(),
            },
        );
        id
    }

    /// A folder below `parent` (a well-known name or a folder id); its id.
    pub fn add_export_folder(&self, upn: &str, parent: &str, name: &str, class: &str) -> String {
        let mut w = self.world.lock().unwrap();
        let fid = w.new_id();
        let m = mailbox_of_user(&mut w, upn);
        let p = m.folder(parent).expect("parent folder").id.clone();
        let changed = m.change();
        m.touch(&p, changed);
        m.folders.push(XFolder {
            id: fid.clone(),
            parent: Some(p),
            name: name.into(),
            class: class.into(),
            well_known: None,
            changed,
            created: changed,
        });
        fid
    }

    /// A user renames a folder: the folder delta reports it changed.
    pub fn rename_export_folder(&self, upn: &str, id: &str, name: &str) {
        let mut w = self.world.lock().unwrap();
        let m = mailbox_of_user(&mut w, upn);
        let changed = m.change();
        let f = m.folders.iter_mut().find(|f| f.id == id).expect("folder");
        f.name = name.into();
        f.changed = changed;
    }

    /// An item in a folder (a well-known name or an id); its id.
    pub fn add_export_item(&self, upn: &str, folder: &str, class: &str, data: &[u8]) -> String {
        let mut w = self.world.lock().unwrap();
        let id = w.new_id();
        let m = mailbox_of_user(&mut w, upn);
        let f = m.folder(folder).expect("folder").id.clone();
        let changed = m.change();
        m.items.push(XItem(
            MailboxItem {
                id: id.clone(),
                folder: f,
                class: class.into(),
                data: data.to_vec(),
                change_key: format!("CK1-{id}"),
            },
            changed,
        ));
        id
    }

    /// A user edits an item: new data, a new change key.
    pub fn change_export_item(&self, upn: &str, id: &str, data: &[u8]) {
        let mut w = self.world.lock().unwrap();
        let m = mailbox_of_user(&mut w, upn);
        let changed = m.change();
        let i = m.items.iter_mut().find(|i| i.0.id == id).expect("item");
        i.0.data = data.to_vec();
        i.0.change_key = format!("CK{changed}-{id}");
        i.1 = changed;
    }

    /// A user deletes an item (for good): the folder's item delta reports it `@removed`.
    pub fn delete_export_item(&self, upn: &str, id: &str) {
        let mut w = self.world.lock().unwrap();
        let m = mailbox_of_user(&mut w, upn);
        let changed = m.change();
        let at = m.items.iter().position(|i| i.0.id == id).expect("item");
        let gone = m.items.remove(at);
        m.removed_items.push((gone.0.folder, gone.0.id, changed));
    }

    /// A user deletes a folder with no subfolders, and its items: the folder delta reports it
    /// `@removed`, and its parent changed (one child fewer).
    pub fn delete_export_folder(&self, upn: &str, id: &str) {
        let mut w = self.world.lock().unwrap();
        let m = mailbox_of_user(&mut w, upn);
        let changed = m.change();
        let top = m.at_top(id);
        if let Some(parent) = m
            .folders
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| f.parent.clone())
        {
            m.touch(&parent, changed);
        }
        m.folders.retain(|f| f.id != id);
        m.items.retain(|i| i.0.folder != id);
        m.removed_folders.push((id.to_string(), changed, top));
    }

    /// Forgets every delta token of the mailbox (the service's token cache overflowed): the
    /// next delta call with one answers 410 Gone `syncStateNotFound`.
    pub fn expire_delta_tokens(&self, upn: &str) {
        let mut w = self.world.lock().unwrap();
        mailbox_of_user(&mut w, upn).token_generation += 1;
    }

    /// Every item of a mailbox with the display path of its folder, in creation order.
    pub fn export_items(&self, upn: &str) -> Vec<(String, MailboxItem)> {
        let mut w = self.world.lock().unwrap();
        let m = mailbox_of_user(&mut w, upn);
        m.items
            .iter()
            .map(|i| (m.path_of(&i.0.folder), i.0.clone()))
            .collect()
    }

    /// Folders of a mailbox: (path of display names, class, wellKnownName).
    pub fn export_folders(&self, upn: &str) -> Vec<(String, String, Option<String>)> {
        let mut w = self.world.lock().unwrap();
        let m = mailbox_of_user(&mut w, upn);
        m.folders
            .iter()
            .filter(|f| f.parent.is_some())
            .map(|f| {
                (
                    m.path_of(&f.id),
                    f.class.clone(),
                    f.well_known.map(str::to_string),
                )
            })
            .collect()
    }

    /// The next `n` imports are stored, then their connection is dropped without an answer.
    pub fn drop_after_import(&self, n: u64) {
        self.world.lock().unwrap().drop_after_import = n;
    }

    /// The import session in use expires after `n` more imports (its clock run out mid-run).
    pub fn expire_import_session_after(&self, n: u64) {
        self.world.lock().unwrap().expire_import_after = Some(n);
    }

    /// Ends every import session now (as the service does at `expirationDateTime`).
    pub fn expire_import_sessions(&self) {
        let mut w = self.world.lock().unwrap();
        for s in w.import_sessions.values_mut() {
            s.expires = Instant::now();
        }
    }
}

/// One of a mailbox's concurrency slots, given back when the request is answered.
pub(super) struct Slot {
    world: super::Shared,
    mailbox: String,
    taken: Instant,
    delay: std::time::Duration,
}

impl Slot {
    /// Until the request's delay has passed since the slot was taken.
    pub(super) async fn hold(&self) {
        super::hold_until(self.taken + self.delay).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let w = &mut *w;
        if let Some(m) = w.export_mailboxes.get_mut(&self.mailbox) {
            m.in_flight -= 1;
            w.in_flight.given_back(&m.upn, m.in_flight, self.taken);
        }
    }
}

/// Takes a slot of the mailbox an import/export request is for (`/import/{session}` or
/// `/v1.0/admin/exchange/mailboxes/{id}/…`), with the request's delay (the caller waits it
/// out: `Slot::hold`); a 429 when the mailbox already has its limit in flight. `None` for
/// other requests.
pub(super) fn enter(world: &super::Shared, path: &str) -> Result<Option<Slot>, Box<Response>> {
    {
        let mut w = world.lock().unwrap();
        let mailbox = if let Some(sid) = path.strip_prefix("/import/") {
            w.import_sessions.get(sid).map(|s| s.mailbox.clone())
        } else {
            path.strip_prefix("/v1.0/admin/exchange/mailboxes/")
                .map(|r| super::decode_path(r.split('/').next().unwrap_or_default()))
        };
        let limit = w.opts.mailbox_concurrency;
        let w = &mut *w;
        let Some((mailbox, m)) = mailbox.and_then(|id| {
            let m = w.export_mailboxes.get_mut(&id)?;
            Some((id, m))
        }) else {
            return Ok(None);
        };
        if m.in_flight >= limit {
            w.stats.requests += 1;
            w.stats.throttled += 1;
            w.stats.mailbox_concurrency_refusals += 1;
            return Err(Box::new(super::mail::throttled(
                1,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
            )));
        }
        m.in_flight += 1;
        *w.stats.mailbox_requests.entry(m.upn.clone()).or_default() += 1;
        let peak = w
            .stats
            .mailbox_peak_in_flight
            .entry(m.upn.clone())
            .or_default();
        *peak = (*peak).max(m.in_flight);
        w.in_flight.taken(&m.upn, m.in_flight, path);
        Ok(Some(Slot {
            world: world.clone(),
            mailbox,
            taken: Instant::now(),
            delay: w.opts.export_request_delay,
        }))
    }
}

fn mailbox_of_user<'a>(w: &'a mut World, upn: &str) -> &'a mut ExportMailbox {
    let id = w.export_users[&upn.to_lowercase()].clone();
    w.export_mailboxes.get_mut(&id).unwrap()
}

impl ExportMailbox {
    /// The next change number.
    pub(super) fn change(&mut self) -> u64 {
        self.changes += 1;
        self.changes
    }

    /// A folder gained or lost a child: its `childFolderCount` changed, so the folder delta
    /// reports it changed too.
    pub(super) fn touch(&mut self, folder: &str, changed: u64) {
        if let Some(f) = self.folders.iter_mut().find(|f| f.id == folder) {
            f.changed = changed;
        }
    }

    /// The root, or one of its children.
    pub(super) fn at_top(&self, id: &str) -> bool {
        let parent_of = |id: &str| {
            self.folders
                .iter()
                .find(|f| f.id == id)
                .and_then(|f| f.parent.clone())
        };
        parent_of(id).is_none_or(|p| parent_of(&p).is_none())
    }

    fn folder(&self, key: &str) -> Option<&XFolder> {
        self.folders
            .iter()
            .find(|f| f.id == key || f.well_known == Some(key))
    }

    fn path_of(&self, id: &str) -> String {
        super::mail::folder_path(id, |k| {
            let f = self.folders.iter().find(|f| f.id == k)?;
            Some((f.name.as_str(), f.parent.as_deref()))
        })
    }

    pub(super) fn folder_json(&self, f: &XFolder) -> Value {
        json!({
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "type": f.class,
            "wellKnownName": f.well_known,
            "childFolderCount": self.folders.iter().filter(|c| c.parent.as_ref() == Some(&f.id)).count(),
            "totalItemCount": self.items.iter().filter(|i| i.0.folder == f.id).count(),
        })
    }
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message)
}

/// `/users/{upn}/settings/exchange` and `/admin/exchange/mailboxes/…`; `None` for other paths.
pub(super) fn serve(
    w: &mut World,
    method: &axum::http::Method,
    api: &str,
    query: &str,
    body: &[u8],
) -> Option<Response> {
    if let Some(upn) = api
        .strip_prefix("/users/")
        .and_then(|r| r.strip_suffix("/settings/exchange"))
    {
        let upn = super::decode_path(upn).to_lowercase();
        return Some(match w.export_users.get(&upn) {
            Some(id) => ok_json(
                StatusCode::OK,
                json!({"primaryMailboxId": id, "archiveMailboxId": null}),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                "The requested user is invalid.",
            ),
        });
    }
    let rest = api.strip_prefix("/admin/exchange/mailboxes/")?;
    let segs: Vec<String> = rest.split('/').map(super::decode_path).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if !w.export_mailboxes.contains_key(segs[0]) {
        return Some(not_found());
    }
    if method == axum::http::Method::GET {
        match &segs[1..] {
            ["folders", "delta"] => {
                let mbx = segs[0].to_string();
                return Some(super::mailbox_delta::folders(w, &mbx, query));
            }
            ["folders", f, "items", "delta"] => {
                let (mbx, f) = (segs[0].to_string(), f.to_string());
                return Some(super::mailbox_delta::items(w, &mbx, &f, query));
            }
            ["folders"] | ["folders", _, "childFolders" | "items"] => {
                w.stats.mailbox_listings += 1;
            }
            _ => {}
        }
    }
    let m = &w.export_mailboxes[segs[0]];
    let list = |v: Vec<Value>| ok_json(StatusCode::OK, json!({ "value": v }));
    Some(match (method.as_str(), &segs[1..]) {
        ("GET", ["folders"]) => list(m.folders.iter().map(|f| m.folder_json(f)).collect()),
        // https://learn.microsoft.com/graph/api/mailboxfolder-get
        ("GET", ["folders", f]) => match m.folder(f) {
            Some(x) => ok_json(StatusCode::OK, m.folder_json(x)),
            None => not_found(),
        },
        ("GET", ["folders", f, "childFolders"]) => match m.folder(f) {
            Some(p) => list(
                m.folders
                    .iter()
                    .filter(|c| c.parent.as_ref() == Some(&p.id))
                    .map(|c| m.folder_json(c))
                    .collect(),
            ),
            None => not_found(),
        },
        ("GET", ["folders", f, "items"]) => match m.folder(f) {
            Some(p) => list(
                m.items
                    .iter()
                    .filter(|i| i.0.folder == p.id)
                    .map(|i| {
                        json!({"id": i.0.id, "type": i.0.class, "size": i.0.data.len(), "changeKey": i.0.change_key})
                    })
                    .collect(),
            ),
            None => not_found(),
        },
        ("POST", ["folders", f, "childFolders"]) => {
            let f = f.to_string();
            create_folder(w, segs[0], &f, body)
        }
        ("POST", ["exportItems"]) => export_snapshot(m, body).map_or_else(|r| *r, Exported::answer),
        ("POST", ["createImportSession"]) => {
            let mid = m.id.clone();
            let sid = w.new_id();
            let lifetime = w.opts.session_lifetime;
            w.import_sessions.insert(
                sid.clone(),
                ImportSession {
                    mailbox: mid,
                    expires: Instant::now() + lifetime,
                },
            );
            w.stats.import_sessions_created += 1;
            ok_json(
                StatusCode::CREATED,
                json!({
                    "importUrl": format!("{}/import/{sid}?authtoken=fake-{sid}", w.base),
                    "expirationDateTime": iso(now() + lifetime),
                }),
            )
        }
        _ => bad("the fake does not serve this mailbox request"),
    })
}

fn create_folder(w: &mut World, mbx: &str, parent: &str, body: &[u8]) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(name) = v["displayName"].as_str().filter(|n| !n.trim().is_empty()) else {
        return bad("displayName is required");
    };
    let class = v["type"].as_str().unwrap_or("IPF.Note").to_string();
    let id = w.new_id();
    let m = w.export_mailboxes.get_mut(mbx).unwrap();
    let Some(p) = m.folder(parent).map(|p| p.id.clone()) else {
        return not_found();
    };
    if m.folders
        .iter()
        .any(|f| f.parent.as_ref() == Some(&p) && f.name.eq_ignore_ascii_case(name))
    {
        return error(
            StatusCode::CONFLICT,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        );
    }
    let changed = m.change();
    m.touch(&p, changed);
    m.folders.push(XFolder {
        id,
        parent: Some(p),
        name: name.into(),
        class,
        well_known: None,
        changed,
        created: changed,
    });
    let f = m.folders.last().unwrap();
    ok_json(StatusCode::CREATED, m.folder_json(f))
}

/// The items an `exportItems` call asks for, copied out of the world: (id, changeKey and data,
/// or `None` when not found).
pub(super) struct Exported(Vec<ExportedItem>);

/// An id asked for, and its changeKey and data when found.
type ExportedItem = (Value, Option<(String, Vec<u8>)>);

fn export_snapshot(m: &ExportMailbox, body: &[u8]) -> Result<Exported, Box<Response>> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(ids) = v["itemIds"].as_array() else {
        return Err(Box::new(bad("itemIds is required")));
    };
    if ids.len() > EXPORT_MAX_ITEMS {
        return Err(Box::new(bad("The maximum size of itemIds is 20.")));
    }
    Ok(Exported(
        ids.iter()
            .map(|id| {
                let found = m
                    .items
                    .iter()
                    .find(|i| Some(i.0.id.as_str()) == id.as_str());
                let found = found.map(|i| (i.0.change_key.clone(), i.0.data.clone()));
                (id.clone(), found)
            })
            .collect(),
    ))
}

impl Exported {
    /// The answer; built without the world's lock (the base64 of 20 items held it for
    /// milliseconds, every mailbox's requests waiting).
    pub(super) fn answer(self) -> Response {
        let out: Vec<Value> = self
            .0
            .into_iter()
            .map(|(id, found)| match found {
                Some((change_key, data)) => json!({
                    "itemId": id,
                    "changeKey": change_key,
                    "data": base64::engine::general_purpose::STANDARD.encode(&data),
                }),
                None => json!({"itemId": id, "error": {"code": "ErrorItemNotFound", "message": "not found"}}),
            })
            .collect();
        ok_json(StatusCode::OK, json!({ "value": out }))
    }
}

/// `POST …/mailboxes/{id}/exportItems`: the items copied out under the lock, the answer to
/// build after it (`Exported::answer`). `None` for other requests.
pub(super) fn exported(
    w: &World,
    method: &axum::http::Method,
    api: &str,
    body: &[u8],
) -> Option<Result<Exported, Box<Response>>> {
    let rest = api.strip_prefix("/admin/exchange/mailboxes/")?;
    let (id, tail) = rest.split_once('/')?;
    if method != axum::http::Method::POST || tail != "exportItems" {
        return None;
    }
    let m = w.export_mailboxes.get(&super::decode_path(id))?;
    Some(export_snapshot(m, body))
}

/// An import's body, read (JSON, base64) before the world's lock is taken.
pub(super) struct ImportBody {
    len: u64,
    v: Value,
    data: Option<Vec<u8>>,
}

impl ImportBody {
    pub(super) fn parse(body: &[u8]) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let data = v["Data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
        Self {
            len: body.len() as u64,
            v,
            data,
        }
    }
}

/// A POST to an importUrl; `true` when its answer is to be dropped.
pub(super) fn import(
    w: &mut World,
    sid: &str,
    h: &HeaderMap,
    body: ImportBody,
) -> (Response, bool) {
    if let Some(r) = super::refuse_authorization(w, h, "InvalidAuthenticationToken") {
        return (r, false);
    }
    let Some(s) = w
        .import_sessions
        .get(sid)
        .filter(|s| Instant::now() < s.expires)
    else {
        w.import_sessions.remove(sid);
        return (
            error(
                StatusCode::NOT_FOUND,
                "ErrorItemNotFound",
                "The import session has expired.",
            ),
            false,
        );
    };
    let mbx = s.mailbox.clone();
    let limit = w.opts.mail_upload_budget;
    let m = w.export_mailboxes.get_mut(&mbx).unwrap();
    if let Some(r) = super::mail::charge(&mut m.uploads, limit, &m.upn, body.len, &mut w.stats) {
        return (r, false);
    }
    let ImportBody { v, data, .. } = body;
    let (Some(folder), Some(mode), Some(data)) = (v["FolderId"].as_str(), v["Mode"].as_str(), data)
    else {
        return (bad("FolderId, Mode and Data (base64) are required"), false);
    };
    let new_id = w.new_id();
    let m = w.export_mailboxes.get_mut(&mbx).unwrap();
    let Some(fid) = m.folder(folder).map(|f| f.id.clone()) else {
        return (not_found(), false);
    };
    let class = m.folder(&fid).map(|f| f.class.clone()).unwrap_or_default();
    let (item_id, ck) = (v["ItemId"].as_str(), v["ChangeKey"].as_str());
    let answer = match mode {
        "create" if item_id.is_some() || ck.is_some() => {
            return (
                bad("ItemId and ChangeKey are an error in create mode"),
                false,
            )
        }
        "create" => {
            let item = MailboxItem {
                id: new_id.clone(),
                folder: fid,
                class,
                data,
                change_key: format!("CK1-{new_id}"),
            };
            let a = json!({"itemId": item.id, "changeKey": item.change_key});
            let changed = m.change();
            m.items.push(XItem(item, changed));
            a
        }
        "update" => {
            let changed = m.change();
            let Some(i) = m
                .items
                .iter_mut()
                .find(|i| Some(i.0.id.as_str()) == item_id && i.0.folder == fid)
                .filter(|i| Some(i.0.change_key.as_str()) == ck)
            else {
                return (
                    bad("ItemId and ChangeKey do not match an item in the folder"),
                    false,
                );
            };
            i.0.data = data;
            i.0.change_key = format!("CK{changed}-{}", i.0.id);
            i.1 = changed;
            json!({"itemId": i.0.id, "changeKey": i.0.change_key})
        }
        _ => return (bad("Mode is create or update"), false),
    };
    w.stats.items_imported += 1;
    if let Some(n) = w.expire_import_after {
        if n <= 1 {
            w.expire_import_after = None;
            if let Some(s) = w.import_sessions.get_mut(sid) {
                s.expires = Instant::now();
            }
        } else {
            w.expire_import_after = Some(n - 1);
        }
    }
    if w.drop_after_import > 0 {
        w.drop_after_import -= 1;
        return (ok_json(StatusCode::OK, answer), true);
    }
    (ok_json(StatusCode::OK, answer), false)
}
