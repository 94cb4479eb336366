//! A stateful fake of the parts of Microsoft Graph and Entra ID tenantry uses: the token
//! endpoint, sites, drives, items by id and by path, folders, uploads (simple and by session),
//! delta and downloads (files engine); JSON batching (`batch`: each inner request routed and
//! counted as a direct one, the envelope in `FakeStats::batches`); mail folders, messages and
//! attachments (`mail`, `mail_attachments`) and mailbox import/export (`mailbox_export`, its
//! folder and item delta in `mailbox_delta`) for the mail engine. Microsoft's services cannot run
//! here, so this server is written from Microsoft's documentation, each rule beside the page it
//! comes from; where the documentation says nothing, the fake picks the stricter behaviour and
//! says so.
//!
//! It runs in-process on a loopback port (its own thread and runtime, so it outlives the test's
//! runtime and serves child processes too), counts every request, logs every accepted upload
//! chunk, and can inject 429s at a fixed rate. Not for production use.
//!
//! Mailbox requests hold one of their mailbox's slots for the request's delay, waited out on a
//! blocking thread to the deadline (the runtime's timer fires on the next millisecond tick at
//! best), plus the fake's own work; bodies are parsed and exported items encoded outside the
//! one lock on the world, so one mailbox's large request does not hold the others' slots. Each
//! mailbox's requests in flight over time are recorded (`FakeGraph::in_flight`): the Exchange
//! benchmark reads where slot time went, the pipeline tests what was in flight when.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

mod assertion;
mod batch;
mod in_flight;
mod mail;
mod mail_attachments;
mod mailbox_delta;
mod mailbox_export;
pub use in_flight::InFlightRecord;
pub use mail::{
    FakeMessage, MAX_REQUEST_BYTES as MAIL_MAX_REQUEST_BYTES, PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME, PR_MESSAGE_FLAGS,
};
pub use mailbox_export::{MailboxItem, EXPORT_MAX_ITEMS};

/// The app the token endpoint accepts.
pub const TENANT: &str = "contoso-tenant";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "fake-client-secret~value";

/// Upload rules (<https://learn.microsoft.com/graph/api/driveitem-createuploadsession>): every
/// fragment but the last a multiple of 320 KiB, each under 60 MiB.
pub const FRAGMENT_MULTIPLE: usize = 320 * 1024;
pub const FRAGMENT_MAX: usize = 60 * 1024 * 1024;
/// Simple upload: "This method only supports files up to 4MB in size"
/// (<https://learn.microsoft.com/onedrive/developer/rest-api/api/driveitem_put_content>; the
/// Graph page now says 250 MB — the fake keeps the stricter, older limit).
pub const SIMPLE_UPLOAD_MAX: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct FakeGraphOptions {
    /// `expires_in` of issued tokens (Entra ID issues 60–90 minute tokens; tests use seconds).
    pub token_lifetime: Duration,
    /// Answer one in `n` Graph and upload requests with 429 + Retry-After, and every request in
    /// the `retry_after_secs` that follow.
    pub throttle_every: Option<u64>,
    pub retry_after_secs: u64,
    /// Upload sessions expire this long after their last fragment.
    pub session_lifetime: Duration,
    /// Items per page of children and delta.
    pub page_size: usize,
    /// Write "metadata" into .docx and .pdf files after upload, as SharePoint does.
    pub rewrite_office_files: bool,
    /// Time taken by each upload fragment (to stop a run mid-file in tests).
    pub fragment_delay: Duration,
    /// Outlook: requests in flight per mailbox (4, throttling-limits#outlook-service-limits).
    pub mailbox_concurrency: usize,
    /// Outlook: bytes uploaded per mailbox within a window (150 MB per 5 minutes).
    pub mail_upload_budget: (u64, Duration),
    /// Time each mailbox request takes (so that concurrency is observable).
    pub mail_request_delay: Duration,
    /// Time each mailbox import/export request takes (an import through its `importUrl`
    /// included); zero by default, a real round trip (20 ms) in the Exchange benchmark.
    pub export_request_delay: Duration,
    /// The mailbox folder delta returns the top of the tree only (the root and its children),
    /// as a `childFolders`-shaped collection would: Microsoft's mailboxFolder delta page does not
    /// say that nested folders are part of it (`mailbox_delta`).
    pub folder_delta_top_level: bool,
    /// A folder renamed since the token comes back from the folder delta as its id and new
    /// `displayName` only: "updated instances are represented by their id with at least the
    /// properties that have been updated" (delta-query-overview).
    pub sparse_folder_updates: bool,
}

impl Default for FakeGraphOptions {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(3600),
            throttle_every: None,
            retry_after_secs: 1,
            session_lifetime: Duration::from_secs(15 * 60),
            page_size: 50,
            rewrite_office_files: true,
            fragment_delay: Duration::ZERO,
            mailbox_concurrency: 4,
            mail_upload_budget: (150 * 1024 * 1024, Duration::from_secs(300)),
            mail_request_delay: Duration::from_millis(5),
            export_request_delay: Duration::ZERO,
            folder_delta_top_level: false,
            sparse_folder_updates: false,
        }
    }
}

/// What the fake saw (for "no retry storm" and protocol assertions).
#[derive(Clone, Debug, Default)]
pub struct FakeStats {
    /// Every request but the token endpoint's; a request inside a `$batch` counts once, as if
    /// it had come alone, and the batch's envelope does not (see `batches`).
    pub requests: u64,
    /// `$batch` envelopes received (<https://learn.microsoft.com/graph/json-batching>), and the
    /// requests they carried (each also in `requests`): HTTP round trips are
    /// `requests - batched_requests + batches`.
    pub batches: u64,
    pub batched_requests: u64,
    /// Requests answered 429 (injected ones and those arriving while the tenant is throttled).
    pub throttled: u64,
    /// Injected throttling episodes (each refuses the tenant for `retry_after_secs`).
    pub throttle_windows: u64,
    /// Requests that arrived well after a 429 was sent and before its Retry-After had passed:
    /// a client retrying hard instead of waiting.
    pub ignored_retry_after: u64,
    pub tokens_issued: u64,
    /// Of those, tokens issued for a certificate's signed assertion (not a secret).
    pub tokens_for_assertions: u64,
    /// The scopes tokens were issued for (`{resource}/.default`), each once.
    pub token_scopes: Vec<String>,
    /// Requests refused for a missing, unknown or expired token.
    pub unauthorized: u64,
    pub simple_uploads: u64,
    pub sessions_created: u64,
    pub fragments_accepted: u64,
    /// Fragments refused with 416 (not at the next expected offset).
    pub range_errors: u64,
    /// Requests to an uploadUrl that carried an Authorization header (refused).
    pub authorization_on_upload_url: u64,
    pub downloads: u64,
    pub delta_requests: u64,
    /// Mailbox requests refused for a fifth concurrent one.
    pub mailbox_concurrency_refusals: u64,
    /// Message creations refused by the upload budget.
    pub upload_budget_refusals: u64,
    pub messages_created: u64,
    /// Attachment upload sessions created, and ranges they accepted.
    pub attachment_sessions_created: u64,
    pub attachment_ranges: u64,
    /// Mailbox import sessions created, and items they imported.
    pub import_sessions_created: u64,
    pub items_imported: u64,
    /// Requests that took one of a mailbox's concurrency slots, by user principal name (mail
    /// and import/export alike): what the per-mailbox limits govern.
    pub mailbox_requests: HashMap<String, u64>,
    /// Bytes counted against each mailbox's upload budget, by user principal name.
    pub mailbox_upload_bytes: HashMap<String, u64>,
    /// The most requests a mailbox had in flight at once (mail and import/export alike), by user
    /// principal name.
    pub mailbox_peak_in_flight: HashMap<String, usize>,
    /// Full listings of a mailbox's folders or a folder's items (import/export API: `folders`,
    /// `childFolders`, `items`), which incremental runs avoid through delta.
    pub mailbox_listings: u64,
    /// Folder and item delta requests of the import/export API (every page counts).
    pub mailbox_delta_requests: u64,
}

/// One accepted upload fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub session: u64,
    pub path: String,
    pub start: u64,
    pub len: u64,
    pub total: u64,
}

/// A file as the fake stores it.
#[derive(Clone, Debug)]
pub struct FakeFile {
    pub content: Vec<u8>,
    /// `fileSystemInfo.lastModifiedDateTime`: the time a client set (or the upload time).
    pub modified: OffsetDateTime,
    /// `fileSystemInfo.createdDateTime`.
    pub created: OffsetDateTime,
    pub quick_xor_hash: String,
}

/// An item's times: those a client set (`fileSystemInfo`) and the service's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeTimes {
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
    pub service_created: OffsetDateTime,
    pub service_modified: OffsetDateTime,
}

#[derive(Clone, Debug)]
struct Item {
    id: String,
    name: String,
    parent: Option<String>,
    folder: bool,
    content: Vec<u8>,
    /// The service's times: when the item was created and last changed in the drive.
    created: OffsetDateTime,
    modified: OffsetDateTime,
    /// `fileSystemInfo`: "provided by the client"; without one, the upload time
    /// (https://learn.microsoft.com/graph/api/resources/filesysteminfo).
    fs_created: OffsetDateTime,
    fs_modified: OffsetDateTime,
    version: u64,
    /// quickXorHash of `content`, computed when it is stored.
    qxh: String,
    /// Change number for delta.
    seq: u64,
    deleted: bool,
}

struct Drive {
    id: String,
    name: String,
    web_url: String,
    drive_type: &'static str,
    root: String,
    items: HashMap<String, Item>,
    /// The live children of each folder, by lower-cased name: path addressing resolves a
    /// segment in one look-up instead of a scan of the whole drive (a scan per segment made every
    /// request's cost grow with the library, unlike the service's, and dominated benchmarks).
    children: HashMap<String, HashMap<String, String>>,
}

struct Session {
    drive: String,
    parent: String,
    name: String,
    conflict: String,
    total: Option<u64>,
    received: Vec<u8>,
    created: Option<OffsetDateTime>,
    modified: Option<OffsetDateTime>,
    expires: Instant,
}

struct Site {
    id: String,
    host: String,
    path: String,
    drives: Vec<String>,
}

struct World {
    opts: FakeGraphOptions,
    base: String,
    tokens: HashMap<String, Instant>,
    sites: Vec<Site>,
    users: HashMap<String, String>,
    drives: HashMap<String, Drive>,
    sessions: HashMap<u64, Session>,
    next_id: u64,
    seq: u64,
    stats: FakeStats,
    fragments: Vec<Fragment>,
    /// (when the last injected 429 was sent, until when every request is refused).
    throttled_window: Option<(Instant, Instant)>,
    mailboxes: HashMap<String, mail::Mailbox>,
    mail_drop_after_create: u64,
    attachment_sessions: HashMap<u64, mail_attachments::AttachmentSession>,
    export_users: HashMap<String, String>,
    export_mailboxes: HashMap<String, mailbox_export::ExportMailbox>,
    import_sessions: HashMap<String, mailbox_export::ImportSession>,
    drop_after_import: u64,
    expire_import_after: Option<u64>,
    fail_attachment_ranges: u64,
    lose_attachment_answers: u64,
    /// Certificates registered on the app (certificate credentials), and used assertion ids.
    certificates: assertion::Registered,
    /// Seconds the token endpoint's clock runs ahead of the machine's (to age assertions).
    token_clock_ahead: i64,
    /// Each mailbox's requests in flight over time.
    in_flight: in_flight::InFlightLog,
}

/// The running fake. Stopped on drop.
pub struct FakeGraph {
    base: String,
    world: Arc<Mutex<World>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGraph {
    pub fn start(opts: FakeGraphOptions) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        let world = Arc::new(Mutex::new(World {
            opts,
            base: base.clone(),
            tokens: HashMap::new(),
            sites: Vec::new(),
            users: HashMap::new(),
            drives: HashMap::new(),
            sessions: HashMap::new(),
            next_id: 1,
            seq: 0,
            stats: FakeStats::default(),
            fragments: Vec::new(),
            throttled_window: None,
            mailboxes: HashMap::new(),
            mail_drop_after_create: 0,
            attachment_sessions: HashMap::new(),
            export_users: HashMap::new(),
            export_mailboxes: HashMap::new(),
            import_sessions: HashMap::new(),
            drop_after_import: 0,
            expire_import_after: None,
            fail_attachment_ranges: 0,
            lose_attachment_answers: 0,
            certificates: assertion::Registered::default(),
            token_clock_ahead: 0,
            in_flight: Default::default(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let w = world.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fake graph runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(w);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("fake graph server");
            });
        });
        Self {
            base,
            world,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Base URL of both the token endpoint (`TENANTRY_AUTHORITY`) and Graph (`TENANTRY_GRAPH_URL`).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `Bearer {token}` for the test app, issued as its token endpoint issues one for client
    /// credentials: for tests that call Graph by hand.
    pub fn bearer(&self) -> String {
        let mut w = self.world.lock().unwrap();
        let (token, _) = issue_token(&mut w, "https://graph.microsoft.com/.default");
        format!("Bearer {token}")
    }

    /// A site `https://{host}/sites/{name}` with its default library: title `Documents`, URL
    /// name `Shared Documents`. Returns the library's drive id.
    pub fn add_site(&self, host: &str, name: &str) -> String {
        let mut w = self.world.lock().unwrap();
        let site_id = format!("{host},{},{}", w.new_id(), w.new_id());
        let web = format!("https://{host}/sites/{name}/Shared%20Documents");
        let drive = w.add_drive("Documents", &web, "documentLibrary");
        w.sites.push(Site {
            id: site_id,
            host: host.to_string(),
            path: format!("sites/{name}"),
            drives: vec![drive.clone()],
        });
        drive
    }

    /// A user's OneDrive. Returns its drive id.
    pub fn add_user(&self, upn: &str) -> String {
        let mut w = self.world.lock().unwrap();
        let web = format!(
            "https://contoso-my.sharepoint.com/personal/{}/Documents",
            upn.replace(['@', '.'], "_")
        );
        let drive = w.add_drive("OneDrive", &web, "business");
        w.users.insert(upn.to_lowercase(), drive.clone());
        drive
    }

    /// A file (and its folders) placed directly, as if a user had uploaded it.
    pub fn put_file(&self, drive: &str, path: &str, content: &[u8], modified: OffsetDateTime) {
        let mut w = self.world.lock().unwrap();
        let mut parent = w.drives[drive].root.clone();
        let segs: Vec<&str> = path.split('/').collect();
        for s in &segs[..segs.len() - 1] {
            parent = match w.child(drive, &parent, s) {
                Some(id) => id,
                None => w.create(
                    drive,
                    &parent,
                    s,
                    true,
                    Vec::new(),
                    Some(modified),
                    Some(modified),
                ),
            };
        }
        let name = segs[segs.len() - 1];
        match w.child(drive, &parent, name) {
            Some(id) => {
                w.replace_content(drive, &id, content.to_vec(), Some(modified), Some(modified))
            }
            None => {
                w.create(
                    drive,
                    &parent,
                    name,
                    false,
                    content.to_vec(),
                    Some(modified),
                    Some(modified),
                );
            }
        }
    }

    /// A file by path (case-insensitive, as SharePoint names are).
    pub fn file(&self, drive: &str, path: &str) -> Option<FakeFile> {
        let w = self.world.lock().unwrap();
        let id = w.resolve(drive, path)?;
        let it = &w.drives[drive].items[&id];
        (!it.folder).then(|| FakeFile {
            content: it.content.clone(),
            modified: it.fs_modified,
            created: it.fs_created,
            quick_xor_hash: it.qxh.clone(),
        })
    }

    /// The times of a file or folder by path.
    pub fn times(&self, drive: &str, path: &str) -> Option<FakeTimes> {
        let w = self.world.lock().unwrap();
        let id = w.resolve(drive, path)?;
        let it = &w.drives[drive].items[&id];
        Some(FakeTimes {
            created: it.fs_created,
            modified: it.fs_modified,
            service_created: it.created,
            service_modified: it.modified,
        })
    }

    /// Sets an item's `fileSystemInfo` times, as a user's sync client would.
    pub fn set_times(
        &self,
        drive: &str,
        path: &str,
        created: OffsetDateTime,
        modified: OffsetDateTime,
    ) {
        let mut w = self.world.lock().unwrap();
        let id = w.resolve(drive, path).expect("no such item");
        w.seq += 1;
        let seq = w.seq;
        let it = w.drives.get_mut(drive).unwrap().items.get_mut(&id).unwrap();
        it.fs_created = created;
        it.fs_modified = modified;
        it.modified = now();
        it.version += 1;
        it.seq = seq;
    }

    /// Changes a stored file's bytes behind every client's back (a corruption in storage):
    /// the service's quickXorHash follows the bytes, while size, eTag, version and times stay,
    /// so nothing in a listing but the hash shows it.
    pub fn corrupt(&self, drive: &str, path: &str, content: &[u8]) {
        let mut w = self.world.lock().unwrap();
        let id = w.resolve(drive, path).expect("no such file");
        let it = w.drives.get_mut(drive).unwrap().items.get_mut(&id).unwrap();
        assert_eq!(
            it.content.len(),
            content.len(),
            "a corruption keeps the size"
        );
        it.content = content.to_vec();
        it.qxh = quick_xor_hash(content);
    }

    /// Every live path below the drive's root, folders included (`/`-separated).
    pub fn paths(&self, drive: &str) -> Vec<String> {
        let w = self.world.lock().unwrap();
        let d = &w.drives[drive];
        let mut out: Vec<String> = d
            .items
            .values()
            .filter(|i| !i.deleted && i.parent.is_some())
            .filter_map(|i| w.path_of(drive, &i.id))
            .collect();
        out.sort();
        out
    }

    pub fn stats(&self) -> FakeStats {
        self.world.lock().unwrap().stats.clone()
    }

    /// A mailbox's requests in flight over time (mail and import/export alike), by user
    /// principal name.
    pub fn in_flight(&self, upn: &str) -> InFlightRecord {
        self.world
            .lock()
            .unwrap()
            .in_flight
            .record(&upn.to_lowercase())
    }

    pub fn fragments(&self) -> Vec<Fragment> {
        self.world.lock().unwrap().fragments.clone()
    }

    pub fn set_throttle_every(&self, n: Option<u64>) {
        self.world.lock().unwrap().opts.throttle_every = n;
    }

    /// Whether tokens are issued by this fake and valid now: for a server that stands behind
    /// the same token authority (the Exchange IMAP proxy, `exchange_imap`).
    pub fn token_check(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let world = self.world.clone();
        move |t: &str| {
            world
                .lock()
                .unwrap()
                .tokens
                .get(t)
                .is_some_and(|exp| Instant::now() < *exp)
        }
    }

    /// Registers a certificate (the first CERTIFICATE block of `pem`) on the app, as uploading it
    /// to the app registration does: assertions signed with its key are accepted from now on.
    /// Returns its `x5t#S256` thumbprint.
    pub fn register_certificate(&self, pem: &[u8]) -> String {
        self.world.lock().unwrap().certificates.add_pem(pem)
    }

    /// Runs the token endpoint's clock `ahead` of this machine's: an assertion made now looks
    /// that much older to it (expired once `ahead` passes its lifetime).
    pub fn set_token_clock_ahead(&self, ahead: Duration) {
        self.world.lock().unwrap().token_clock_ahead = ahead.as_secs() as i64;
    }

    /// Invalidates every issued token now (as a revocation or a clock skew would).
    pub fn revoke_tokens(&self) {
        self.world.lock().unwrap().tokens.clear();
    }

    /// Ends every open upload session now (as the service does after `expirationDateTime`).
    pub fn expire_sessions(&self) {
        let mut w = self.world.lock().unwrap();
        for s in w.sessions.values_mut() {
            s.expires = Instant::now();
        }
    }

    /// Bytes received so far by each open upload session, by path.
    pub fn open_sessions(&self) -> Vec<(String, u64)> {
        let w = self.world.lock().unwrap();
        w.sessions
            .values()
            .map(|s| {
                let p = w
                    .path_of(&s.drive, &s.parent)
                    .map(|p| {
                        if p.is_empty() {
                            s.name.clone()
                        } else {
                            format!("{p}/{}", s.name)
                        }
                    })
                    .unwrap_or_default();
                (p, s.received.len() as u64)
            })
            .collect()
    }
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// quickXorHash, written straight from the documented algorithm, independently of the client's
/// (<https://learn.microsoft.com/onedrive/developer/code-snippets/quickxorhash>): byte i is
/// XORed into a 160-bit register rotated by 11·i bits; the length is XORed into the last 8 bytes.
pub fn quick_xor_hash(data: &[u8]) -> String {
    use base64::Engine;
    // XOR is linear and 11·i mod 160 repeats every 160 bytes, so bytes 160 apart land on the
    // same bits: fold them first, then place the 160 folded bytes bit by bit.
    let mut folded = [0u8; 160];
    for (i, &b) in data.iter().enumerate() {
        folded[i % 160] ^= b;
    }
    let mut reg = [0u8; 20];
    for (i, &b) in folded.iter().enumerate() {
        let bit = (i * 11) % 160;
        for k in 0..8 {
            if b & (1 << k) != 0 {
                let pos = (bit + k) % 160;
                reg[pos / 8] ^= 1 << (pos % 8);
            }
        }
    }
    for (r, l) in reg[12..].iter_mut().zip((data.len() as u64).to_le_bytes()) {
        *r ^= l;
    }
    base64::engine::general_purpose::STANDARD.encode(reg)
}

fn iso(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

impl World {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("01FAKE{:010}", self.next_id)
    }

    fn add_drive(&mut self, name: &str, web: &str, drive_type: &'static str) -> String {
        let id = format!("b!{}", self.new_id());
        let root = self.new_id();
        self.seq += 1;
        let t = now();
        let mut items = HashMap::new();
        items.insert(
            root.clone(),
            Item {
                id: root.clone(),
                name: "root".into(),
                parent: None,
                folder: true,
                content: Vec::new(),
                created: t,
                modified: t,
                fs_created: t,
                fs_modified: t,
                version: 1,
                qxh: quick_xor_hash(&[]),
                seq: self.seq,
                deleted: false,
            },
        );
        self.drives.insert(
            id.clone(),
            Drive {
                id: id.clone(),
                name: name.into(),
                web_url: web.into(),
                drive_type,
                root,
                items,
                children: HashMap::new(),
            },
        );
        id
    }

    /// Names are case-insensitive in SharePoint and OneDrive.
    fn child(&self, drive: &str, parent: &str, name: &str) -> Option<String> {
        self.drives[drive]
            .children
            .get(parent)?
            .get(&name.to_lowercase())
            .cloned()
    }

    /// The ids of a folder's live children.
    fn children_of(&self, drive: &str, id: &str) -> Vec<String> {
        self.drives[drive]
            .children
            .get(id)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    fn resolve(&self, drive: &str, path: &str) -> Option<String> {
        let mut cur = self.drives.get(drive)?.root.clone();
        for s in path.split('/').filter(|s| !s.is_empty()) {
            cur = self.child(drive, &cur, s)?;
        }
        Some(cur)
    }

    fn path_of(&self, drive: &str, id: &str) -> Option<String> {
        let d = self.drives.get(drive)?;
        let mut parts = Vec::new();
        let mut cur = d.items.get(id)?;
        while let Some(p) = &cur.parent {
            parts.push(cur.name.clone());
            cur = d.items.get(p)?;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        drive: &str,
        parent: &str,
        name: &str,
        folder: bool,
        content: Vec<u8>,
        fs_created: Option<OffsetDateTime>,
        fs_modified: Option<OffsetDateTime>,
    ) -> String {
        let t = now();
        let id = self.new_id();
        self.seq += 1;
        let seq = self.seq;
        let content = self.rewrite(name, &id, content);
        let d = self.drives.get_mut(drive).unwrap();
        d.children
            .entry(parent.to_string())
            .or_default()
            .insert(name.to_lowercase(), id.clone());
        d.items.insert(
            id.clone(),
            Item {
                id: id.clone(),
                name: name.into(),
                parent: Some(parent.into()),
                folder,
                qxh: quick_xor_hash(&content),
                content,
                created: t,
                modified: t,
                fs_created: fs_created.unwrap_or(t),
                fs_modified: fs_modified.unwrap_or(t),
                version: 1,
                seq,
                deleted: false,
            },
        );
        self.touch_parent(drive, &id);
        id
    }

    /// A child created, rewritten or deleted changes its folder's times. The pages do not say
    /// so for `fileSystemInfo`; the fake takes the reading a client must be ready for (OneDrive
    /// clients show a folder's time moving when its content changes), so a client that wants a
    /// folder's time kept has to set it after writing the folder's content.
    fn touch_parent(&mut self, drive: &str, id: &str) {
        let t = now();
        let d = self.drives.get_mut(drive).unwrap();
        let Some(parent) = d.items[id].parent.clone() else {
            return;
        };
        if let Some(p) = d.items.get_mut(&parent) {
            p.modified = t;
            p.fs_modified = t;
        }
    }

    fn replace_content(
        &mut self,
        drive: &str,
        id: &str,
        content: Vec<u8>,
        fs_created: Option<OffsetDateTime>,
        fs_modified: Option<OffsetDateTime>,
    ) {
        self.seq += 1;
        let seq = self.seq;
        let name = self.drives[drive].items[id].name.clone();
        let content = self.rewrite(&name, id, content);
        let it = self
            .drives
            .get_mut(drive)
            .unwrap()
            .items
            .get_mut(id)
            .unwrap();
        it.qxh = quick_xor_hash(&content);
        it.content = content;
        let t = now();
        it.modified = t;
        // "If the file content is updated and these properties are not provided,
        // lastModifiedDateTime will be automatically reset to the current time" (filesysteminfo).
        it.fs_modified = fs_modified.unwrap_or(t);
        if let Some(c) = fs_created {
            it.fs_created = c;
        }
        it.version += 1;
        it.seq = seq;
        self.touch_parent(drive, id);
    }

    /// SharePoint writes its own metadata into Office documents and PDFs after upload, so their
    /// size and hash differ from what was sent (the fake appends a marker to .docx and .pdf).
    fn rewrite(&self, name: &str, id: &str, mut content: Vec<u8>) -> Vec<u8> {
        let lname = name.to_lowercase();
        if self.opts.rewrite_office_files && (lname.ends_with(".docx") || lname.ends_with(".pdf")) {
            content.extend_from_slice(format!("\n%sharepoint-metadata item={id}\n").as_bytes());
        }
        content
    }

    fn mark_deleted(&mut self, drive: &str, id: &str) {
        for c in self.children_of(drive, id) {
            self.mark_deleted(drive, &c);
        }
        self.seq += 1;
        let seq = self.seq;
        let d = self.drives.get_mut(drive).unwrap();
        let it = d.items.get_mut(id).unwrap();
        it.deleted = true;
        it.seq = seq;
        if let Some(p) = &it.parent {
            let name = it.name.to_lowercase();
            if let Some(siblings) = d.children.get_mut(p) {
                // Only if the name still points here (a later item may have taken it).
                if siblings.get(&name).map(String::as_str) == Some(id) {
                    siblings.remove(&name);
                }
            }
        }
        self.touch_parent(drive, id);
    }

    fn item_json(&self, drive: &str, id: &str, with_path: bool) -> Value {
        let d = &self.drives[drive];
        let it = &d.items[id];
        let mut v = json!({
            "id": it.id,
            "name": it.name,
            "eTag": format!("\"{{{}}},{}\"", it.id, it.version),
            // The service's times, and apart from them the client's
            // (https://learn.microsoft.com/graph/api/resources/filesysteminfo, Notes).
            "createdDateTime": iso(it.created),
            "lastModifiedDateTime": iso(it.modified),
            "fileSystemInfo": {
                "createdDateTime": iso(it.fs_created),
                "lastModifiedDateTime": iso(it.fs_modified),
            },
        });
        if it.deleted {
            // Deleted items come back from delta with the `deleted` facet
            // (https://learn.microsoft.com/graph/api/driveitem-delta).
            v["deleted"] = json!({"state": "deleted"});
            v["parentReference"] = json!({"driveId": d.id, "id": it.parent});
            return v;
        }
        if it.parent.is_none() {
            v["root"] = json!({});
        } else {
            let mut pr = json!({"driveId": d.id, "driveType": d.drive_type, "id": it.parent});
            // "parentReference.path is not returned in delta responses"; track items by id
            // (https://learn.microsoft.com/graph/api/driveitem-delta, Remarks).
            if with_path {
                let pp = self
                    .path_of(drive, it.parent.as_deref().unwrap())
                    .unwrap_or_default();
                pr["path"] = json!(format!(
                    "/drives/{}/root:{}{}",
                    d.id,
                    if pp.is_empty() { "" } else { "/" },
                    pp
                ));
            }
            v["parentReference"] = pr;
        }
        if it.folder {
            let n = d.children.get(id).map_or(0, HashMap::len);
            v["folder"] = json!({"childCount": n});
            v["size"] = json!(0);
        } else {
            v["size"] = json!(it.content.len());
            v["cTag"] = json!(format!("\"c:{{{}}},{}\"", it.id, it.version));
            v["file"] = json!({
                "mimeType": "application/octet-stream",
                // https://learn.microsoft.com/graph/api/resources/hashes: OneDrive for Business
                // and SharePoint report quickXorHash.
                "hashes": {"quickXorHash": it.qxh},
            });
            // A short-lived, pre-authenticated URL: no Authorization header needed
            // (https://learn.microsoft.com/graph/api/driveitem-get-content).
            v["@microsoft.graph.downloadUrl"] = json!(format!(
                "{}/dl/{}/{}/{}",
                self.base, d.id, it.id, it.version
            ));
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

type Shared = Arc<Mutex<World>>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    // https://learn.microsoft.com/graph/errors: {"error": {"code", "message", "innerError"}}.
    let rid = format!("fake-{:x}", rand_u64());
    (
        status,
        [
            ("request-id", rid.clone()),
            ("content-type", "application/json".into()),
        ],
        json!({"error": {"code": code, "message": message, "innerError": {"request-id": rid}}})
            .to_string(),
    )
        .into_response()
}

/// Waits until `deadline` on a blocking thread: the runtime's timer fires on the next
/// millisecond tick at best, which held each 20 ms slot ~0.5–1 ms too long (the benchmark
/// measured 21.4 ms), a cost no client could win back.
async fn hold_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
}

/// Requests arriving this soon after a 429 was sent were in flight already.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(500);

fn throttled(retry_after: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "activityLimitReached",
        "The request has been throttled",
    );
    r.headers_mut()
        .insert("Retry-After", retry_after.to_string().parse().unwrap());
    r
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

fn ok_json(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn handle(State(world): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, FRAGMENT_MAX + 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "requestTooLarge",
                "body too large",
            )
        }
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    if batch::is_batch(&parts.method, &path) {
        return batch::serve(&world, &parts.headers, &body).await;
    }
    dispatch(&world, parts.method, path, query, parts.headers, body).await
}

/// Serves one request, made directly or carried inside a `$batch` ([`batch`]): every rule
/// (token, throttling, counters, mailbox slots) applies alike.
async fn dispatch(
    world: &Shared,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(upn) = mail::mailbox_of(&path) {
        return mail::handle(world, upn, method, path, query, headers, body).await;
    }
    // Import/export requests hold one of their mailbox's slots until answered (released
    // after the lock below, by drop order).
    let slot = match mailbox_export::enter(world, &path) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    // An import's body is read while its delay runs, not under the world's lock.
    let import = path
        .starts_with("/import/")
        .then(|| mailbox_export::ImportBody::parse(&body));
    if let Some(s) = &slot {
        s.hold().await;
    }
    if path.starts_with("/up/") && method == Method::PUT {
        let delay = world.lock().unwrap().opts.fragment_delay;
        tokio::time::sleep(delay).await;
    }
    let mut w = world.lock().unwrap();
    if path.ends_with("/oauth2/v2.0/token") {
        return token(&mut w, &path, &method, &body);
    }
    w.stats.requests += 1;
    if path.starts_with("/dl/") {
        return download(&mut w, &path, &headers);
    }
    // Uploads are throttled too
    // (https://learn.microsoft.com/sharepoint/dev/general-development/how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online:
    // throttled requests count against the limit too).
    if let Some(r) = injected_throttling(&mut w) {
        return r;
    }
    if let (Some(sid), Some(import)) = (path.strip_prefix("/import/"), import) {
        let (r, drop_it) = mailbox_export::import(&mut w, sid, &headers, import);
        if drop_it {
            drop(w);
            // No answer: the item is stored, the client never hears so.
            std::panic::resume_unwind(Box::new("fake graph: connection dropped on purpose"));
        }
        return r;
    }
    if let Some(sid) = path.strip_prefix("/mailup/") {
        return mail_attachments::put_range(&mut w, sid, &method, &headers, &body);
    }
    if let Some(sid) = path.strip_prefix("/up/") {
        return upload_fragment(&mut w, sid, &method, &headers, &body);
    }
    let Some(api) = path.strip_prefix("/v1.0") else {
        return error(StatusCode::BAD_REQUEST, "invalidRequest", "unknown version");
    };
    if let Some(r) = authorize(&mut w, &headers) {
        return r;
    }
    if let Some(exported) = mailbox_export::exported(&w, &method, api, &body) {
        drop(w);
        return exported.map_or_else(|refused| *refused, mailbox_export::Exported::answer);
    }
    if let Some(r) = mailbox_export::serve(&mut w, &method, api, &query, &body) {
        return r;
    }
    route(&mut w, &method, api, &query, &body)
}

/// Throttling (https://learn.microsoft.com/graph/throttling): once over the limit, "further
/// requests from that client app" are refused for some time — 429 with a Retry-After in
/// seconds. Injected every `throttle_every` requests (drives, uploads and mailboxes alike); the
/// answer to send, if this request is refused.
fn injected_throttling(w: &mut World) -> Option<Response> {
    let now = Instant::now();
    if let Some((started, until)) = w.throttled_window.filter(|(_, until)| now < *until) {
        w.stats.throttled += 1;
        // Sent before the 429 reached the client, or sent despite it?
        if now.duration_since(started) > IN_FLIGHT_GRACE {
            w.stats.ignored_retry_after += 1;
        }
        let left = until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64;
        return Some(throttled(left));
    }
    let n = w.opts.throttle_every.filter(|n| *n > 0)?;
    if !w.stats.requests.is_multiple_of(n) {
        return None;
    }
    w.stats.throttled += 1;
    w.stats.throttle_windows += 1;
    let secs = w.opts.retry_after_secs;
    w.throttled_window = Some((now, now + Duration::from_secs(secs)));
    Some(throttled(secs))
}

/// Client credentials (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-credentials-flow):
/// POST form `grant_type=client_credentials`, `client_id`, `scope={resource}/.default` and the
/// credential: `client_secret`, or `client_assertion_type` (jwt-bearer) + `client_assertion`
/// signed with a registered certificate ([`assertion`]); the answer has `token_type`,
/// `expires_in`, `access_token`.
fn token(w: &mut World, path: &str, method: &Method, body: &[u8]) -> Response {
    let tenant = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "").into_response();
    }
    let form: HashMap<String, String> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode_form(k), decode_form(v)))
        .collect();
    let oauth_err = |status: StatusCode, code: &str, desc: &str| {
        (
            status,
            [("content-type", "application/json")],
            json!({"error": code, "error_description": desc}).to_string(),
        )
            .into_response()
    };
    if tenant != TENANT {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS90002: Tenant not found.",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003",
        );
    }
    if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: the scope must end in /.default",
        );
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found",
        );
    }
    match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(_), Some(_)) => {
            return oauth_err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a request carries either client_secret or client_assertion, not both",
            )
        }
        (None, Some(jwt)) => {
            if form.get("client_assertion_type").map(String::as_str)
                != Some(assertion::ASSERTION_TYPE)
            {
                return oauth_err(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "AADSTS50027: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
            }
            let audience = format!("{}{}", w.base, path);
            let now = OffsetDateTime::now_utc().unix_timestamp() + w.token_clock_ahead;
            if let Err((code, desc)) = w.certificates.verify(jwt, CLIENT_ID, &audience, now) {
                return oauth_err(StatusCode::UNAUTHORIZED, code, &desc);
            }
            w.stats.tokens_for_assertions += 1;
        }
        (secret, None) => {
            if secret.map(String::as_str) != Some(CLIENT_SECRET) {
                return oauth_err(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                );
            }
        }
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let (t, life) = issue_token(w, &scope);
    ok_json(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": life.as_secs(), "ext_expires_in": life.as_secs(), "access_token": t}),
    )
}

/// A new access token for `scope`, valid for the configured lifetime, counted in the stats.
fn issue_token(w: &mut World, scope: &str) -> (String, Duration) {
    w.stats.tokens_issued += 1;
    if !w.stats.token_scopes.iter().any(|s| s == scope) {
        w.stats.token_scopes.push(scope.to_string());
    }
    let t = format!("fake-token-{}-{:x}", w.stats.tokens_issued, rand_u64());
    let life = w.opts.token_lifetime;
    w.tokens.insert(t.clone(), Instant::now() + life);
    (t, life)
}

fn decode_form(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `None` when the bearer token is valid, else the 401 to answer.
fn authorize(w: &mut World, h: &HeaderMap) -> Option<Response> {
    let tok = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = tok
        .and_then(|t| w.tokens.get(t))
        .is_some_and(|exp| Instant::now() < *exp);
    if valid {
        return None;
    }
    w.stats.unauthorized += 1;
    Some(error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        "Access token has expired or is not yet valid.",
    ))
}

fn decode_path(s: &str) -> String {
    decode_form(&s.replace('+', "%2B"))
}

fn query_param(q: &str, name: &str) -> Option<String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| decode_form(k) == name)
        .map(|(_, v)| decode_form(v))
}

/// The address forms of https://learn.microsoft.com/onedrive/developer/rest-api/concepts/addressing-driveitems:
/// `root`, `root:/path/to/item:` (path addressing), `items/{id}`, `items/{parent-id}:/{name}:`,
/// followed by an optional action (`/children`, `/content`, `/createUploadSession`, `/delta`).
fn parse_item_address(rest: &str) -> Option<(Base, Option<String>, String)> {
    let (base, after) = if let Some(r) = rest.strip_prefix("root") {
        (Base::Root, r)
    } else if let Some(r) = rest.strip_prefix("items/") {
        let end = r.find([':', '/']).unwrap_or(r.len());
        (Base::Id(decode_path(&r[..end])), &r[end..])
    } else {
        return None;
    };
    if let Some(p) = after.strip_prefix(":") {
        // A path, closed by ':' (optional when nothing follows).
        let (p, action) = match p.find(':') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, ""),
        };
        let p = p.trim_start_matches('/');
        let decoded: Vec<String> = p.split('/').map(decode_path).collect();
        return Some((
            base,
            Some(decoded.join("/")),
            action.trim_start_matches('/').to_string(),
        ));
    }
    Some((base, None, after.trim_start_matches('/').to_string()))
}

enum Base {
    Root,
    Id(String),
}

fn route(w: &mut World, method: &Method, api: &str, query: &str, body: &[u8]) -> Response {
    let segs: Vec<&str> = api.trim_start_matches('/').splitn(3, '/').collect();
    match segs.as_slice() {
        // https://learn.microsoft.com/graph/api/site-getbypath: GET /sites/{hostname}:/{relative-path}
        ["sites", rest @ ..] if api.contains(':') => {
            let joined = rest.join("/");
            let (host, rel) = joined.split_once(':').unwrap_or((&joined, ""));
            let rel = decode_path(rel.trim_start_matches('/').trim_end_matches(':'));
            match w
                .sites
                .iter()
                .find(|s| s.host.eq_ignore_ascii_case(host) && s.path.eq_ignore_ascii_case(&rel))
            {
                Some(s) => ok_json(
                    StatusCode::OK,
                    json!({"id": s.id, "name": s.path.rsplit('/').next(), "displayName": s.path.rsplit('/').next(), "webUrl": format!("https://{}/{}", s.host, s.path)}),
                ),
                None => error(
                    StatusCode::NOT_FOUND,
                    "itemNotFound",
                    "Requested site could not be found",
                ),
            }
        }
        // https://learn.microsoft.com/graph/api/drive-list: GET /sites/{siteId}/drives
        ["sites", id, "drives"] => match w.sites.iter().find(|s| s.id == decode_path(id)) {
            Some(s) => {
                let v: Vec<Value> = s.drives.iter().map(|d| drive_json(&w.drives[d])).collect();
                ok_json(StatusCode::OK, json!({"value": v}))
            }
            None => error(StatusCode::NOT_FOUND, "itemNotFound", "site not found"),
        },
        // https://learn.microsoft.com/graph/api/drive-get: GET /users/{idOrUserPrincipalName}/drive
        ["users", upn, "drive"] => match w.users.get(&decode_path(upn).to_lowercase()) {
            Some(d) => ok_json(StatusCode::OK, drive_json(&w.drives[d])),
            None => error(
                StatusCode::NOT_FOUND,
                "itemNotFound",
                "user or drive not found",
            ),
        },
        ["drives", drive, rest] => {
            let drive = decode_path(drive);
            if !w.drives.contains_key(&drive) {
                return error(StatusCode::NOT_FOUND, "itemNotFound", "drive not found");
            }
            match parse_item_address(rest) {
                Some((base, path, action)) => {
                    item_request(w, method, &drive, base, path, &action, query, body)
                }
                None => error(
                    StatusCode::BAD_REQUEST,
                    "invalidRequest",
                    "unsupported address",
                ),
            }
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "unsupported request",
        ),
    }
}

fn drive_json(d: &Drive) -> Value {
    json!({"id": d.id, "name": d.name, "driveType": d.drive_type, "webUrl": d.web_url})
}

#[allow(clippy::too_many_arguments)]
fn item_request(
    w: &mut World,
    method: &Method,
    drive: &str,
    base: Base,
    path: Option<String>,
    action: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let base_id = match &base {
        Base::Root => w.drives[drive].root.clone(),
        Base::Id(id) => match w.drives[drive].items.get(id) {
            Some(i) if !i.deleted => id.clone(),
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    "itemNotFound",
                    "The resource could not be found.",
                )
            }
        },
    };
    // For uploads and folder creation the path may name an item that does not exist yet.
    let (parent_of_new, new_name) = match &path {
        Some(p) => {
            let (pp, name) = p.rsplit_once('/').unwrap_or(("", p));
            let base_path = w.path_of(drive, &base_id).unwrap_or_default();
            let full = [base_path.as_str(), pp]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("/");
            (w.resolve(drive, &full), name.to_string())
        }
        None => (None, String::new()),
    };
    let target = match &path {
        Some(_) => parent_of_new
            .as_ref()
            .and_then(|p| w.child(drive, p, &new_name)),
        None => Some(base_id.clone()),
    };
    match (method.clone(), action) {
        (Method::GET, "delta") => delta(w, drive, query),
        (Method::GET, "") => match target {
            Some(id) => ok_json(StatusCode::OK, w.item_json(drive, &id, true)),
            None => error(
                StatusCode::NOT_FOUND,
                "itemNotFound",
                "The resource could not be found.",
            ),
        },
        // https://learn.microsoft.com/graph/api/driveitem-list-children (paged with @odata.nextLink)
        (Method::GET, "children") => {
            let Some(id) = target else {
                return error(
                    StatusCode::NOT_FOUND,
                    "itemNotFound",
                    "The resource could not be found.",
                );
            };
            let mut kids: Vec<&Item> = w.drives[drive]
                .items
                .values()
                .filter(|i| !i.deleted && i.parent.as_deref() == Some(id.as_str()))
                .collect();
            kids.sort_by(|a, b| a.name.cmp(&b.name));
            let skip: usize = query_param(query, "skip")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let page = w.opts.page_size;
            let v: Vec<Value> = kids
                .iter()
                .skip(skip)
                .take(page)
                .map(|i| w.item_json(drive, &i.id, true))
                .collect();
            let mut out = json!({"value": v});
            if skip + page < kids.len() {
                out["@odata.nextLink"] = json!(format!(
                    "{}/v1.0/drives/{drive}/items/{id}/children?skip={}",
                    w.base,
                    skip + page
                ));
            }
            ok_json(StatusCode::OK, out)
        }
        // https://learn.microsoft.com/graph/api/driveitem-post-children: {name, folder: {},
        // "@microsoft.graph.conflictBehavior": fail | replace | rename}; 409 nameAlreadyExists.
        (Method::POST, "children") => {
            let Some(parent) = target else {
                return error(StatusCode::NOT_FOUND, "itemNotFound", "parent not found");
            };
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(name) = v["name"].as_str() else {
                return error(StatusCode::BAD_REQUEST, "invalidRequest", "name missing");
            };
            if v.get("folder").is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalidRequest",
                    "only folders are created here",
                );
            }
            if let Some(e) = refuse_name(name) {
                return e;
            }
            let cb = v["@microsoft.graph.conflictBehavior"]
                .as_str()
                .unwrap_or("fail");
            if let Some(existing) = w.child(drive, &parent, name) {
                match cb {
                    "replace" => {
                        return ok_json(StatusCode::OK, w.item_json(drive, &existing, true))
                    }
                    "rename" => {}
                    _ => {
                        return error(
                            StatusCode::CONFLICT,
                            "nameAlreadyExists",
                            "The specified item name already exists.",
                        )
                    }
                }
            }
            let mut final_name = name.to_string();
            let mut n = 1;
            while w.child(drive, &parent, &final_name).is_some() {
                final_name = format!("{name} {n}");
                n += 1;
            }
            let id = w.create(drive, &parent, &final_name, true, Vec::new(), None, None);
            ok_json(StatusCode::CREATED, w.item_json(drive, &id, true))
        }
        // https://learn.microsoft.com/graph/api/driveitem-put-content: the whole file in one PUT;
        // conflict behaviour from the query string, default replace.
        (Method::PUT, "content") => {
            if body.len() > SIMPLE_UPLOAD_MAX {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "requestTooLarge",
                    "simple upload is limited to 4 MB: use an upload session",
                );
            }
            w.stats.simple_uploads += 1;
            let id = match (target, path.is_some()) {
                (Some(id), _) => {
                    if query_param(query, "@microsoft.graph.conflictBehavior").as_deref()
                        == Some("fail")
                    {
                        return error(
                            StatusCode::CONFLICT,
                            "nameAlreadyExists",
                            "The specified item name already exists.",
                        );
                    }
                    // Without fileSystemInfo the modification time becomes the upload time
                    // (https://learn.microsoft.com/graph/api/resources/filesysteminfo).
                    w.replace_content(drive, &id, body.to_vec(), None, None);
                    id
                }
                (None, true) => {
                    // Stricter than documented: the parent folder must exist, so the engine's
                    // "folders first, in order" is checked.
                    let Some(parent) = parent_of_new else {
                        return error(
                            StatusCode::NOT_FOUND,
                            "itemNotFound",
                            "parent folder not found",
                        );
                    };
                    if let Some(e) = refuse_name(&new_name) {
                        return e;
                    }
                    w.create(drive, &parent, &new_name, false, body.to_vec(), None, None)
                }
                (None, false) => return error(StatusCode::NOT_FOUND, "itemNotFound", "not found"),
            };
            ok_json(StatusCode::CREATED, w.item_json(drive, &id, true))
        }
        // https://learn.microsoft.com/graph/api/driveitem-get-content: 302 to the downloadUrl.
        (Method::GET, "content") => match target {
            Some(id) if !w.drives[drive].items[&id].folder => {
                let url = w.item_json(drive, &id, false)["@microsoft.graph.downloadUrl"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (StatusCode::FOUND, [("location", url)]).into_response()
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "itemNotFound",
                "The resource could not be found.",
            ),
        },
        // https://learn.microsoft.com/graph/api/driveitem-createuploadsession
        (Method::POST, "createUploadSession") => {
            let Some(parent) = parent_of_new.filter(|_| path.is_some()) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "itemNotFound",
                    "parent folder not found",
                );
            };
            if let Some(e) = refuse_name(&new_name) {
                return e;
            }
            let v: Value = serde_json::from_slice(body).unwrap_or(json!({}));
            let item = &v["item"];
            // Default conflict behaviour of an upload session is fail.
            let conflict = item["@microsoft.graph.conflictBehavior"]
                .as_str()
                .unwrap_or("fail")
                .to_string();
            if conflict == "fail" && target.is_some() {
                return error(
                    StatusCode::CONFLICT,
                    "nameAlreadyExists",
                    "The specified item name already exists.",
                );
            }
            let parse = |k: &str| {
                item["fileSystemInfo"][k]
                    .as_str()
                    .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            };
            let sid = {
                w.next_id += 1;
                w.next_id
            };
            let expires = Instant::now() + w.opts.session_lifetime;
            w.sessions.insert(
                sid,
                Session {
                    drive: drive.to_string(),
                    parent,
                    name: new_name,
                    conflict,
                    total: item["fileSize"].as_u64(),
                    received: Vec::new(),
                    created: parse("createdDateTime"),
                    modified: parse("lastModifiedDateTime"),
                    expires,
                },
            );
            w.stats.sessions_created += 1;
            ok_json(
                StatusCode::OK,
                json!({
                    "uploadUrl": format!("{}/up/{sid}", w.base),
                    "expirationDateTime": iso(now() + w.opts.session_lifetime),
                    "nextExpectedRanges": ["0-"],
                }),
            )
        }
        // https://learn.microsoft.com/graph/api/driveitem-update: fileSystemInfo is read-write
        // (https://learn.microsoft.com/graph/api/resources/filesysteminfo); a change is a new version.
        (Method::PATCH, "") => {
            let Some(id) = target else {
                return error(
                    StatusCode::NOT_FOUND,
                    "itemNotFound",
                    "The resource could not be found.",
                );
            };
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let parse = |k: &str| {
                v["fileSystemInfo"][k]
                    .as_str()
                    .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            };
            let (c, m) = (parse("createdDateTime"), parse("lastModifiedDateTime"));
            w.seq += 1;
            let seq = w.seq;
            let it = w.drives.get_mut(drive).unwrap().items.get_mut(&id).unwrap();
            // The client's times change; the service's lastModifiedDateTime is now.
            if let Some(c) = c {
                it.fs_created = c;
            }
            if let Some(m) = m {
                it.fs_modified = m;
            }
            it.modified = now();
            it.version += 1;
            it.seq = seq;
            ok_json(StatusCode::OK, w.item_json(drive, &id, true))
        }
        // https://learn.microsoft.com/graph/api/driveitem-delete: 204.
        (Method::DELETE, "") => match target {
            Some(id) if w.drives[drive].items[&id].parent.is_some() => {
                w.mark_deleted(drive, &id);
                (StatusCode::NO_CONTENT, "").into_response()
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "itemNotFound",
                "The resource could not be found.",
            ),
        },
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "unsupported request",
        ),
    }
}

/// Names SharePoint refuses (https://support.microsoft.com/office/64883a5d-228e-48f5-b3d2-eb39e07630fa).
fn refuse_name(name: &str) -> Option<Response> {
    let bad = name.is_empty()
        || name.chars().any(|c| "\"*:<>?/\\|".contains(c))
        || name.ends_with('.')
        || name.ends_with(' ')
        || name.to_lowercase().contains("_vti_");
    bad.then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "The provided name contains invalid characters",
        )
    })
}

/// https://learn.microsoft.com/graph/api/driveitem-delta: pages linked by `@odata.nextLink`,
/// the last one with `@odata.deltaLink`; a later call with that link returns only what changed,
/// deleted items with the `deleted` facet.
fn delta(w: &mut World, drive: &str, query: &str) -> Response {
    w.stats.delta_requests += 1;
    let since: u64 = match query_param(query, "token") {
        Some(t) => match t.parse() {
            Ok(n) => n,
            // An unknown or expired token: 410 Gone, enumerate again.
            Err(_) => {
                return error(
                    StatusCode::GONE,
                    "resyncRequired",
                    "The delta token is no longer valid",
                )
            }
        },
        None => 0,
    };
    let upto: u64 = query_param(query, "upto")
        .and_then(|s| s.parse().ok())
        .unwrap_or(w.seq);
    let skip: usize = query_param(query, "skip")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut changed: Vec<&Item> = w.drives[drive]
        .items
        .values()
        .filter(|i| i.seq > since && i.seq <= upto && (since > 0 || !i.deleted))
        .collect();
    changed.sort_by_key(|i| i.seq);
    let page = w.opts.page_size;
    let v: Vec<Value> = changed
        .iter()
        .skip(skip)
        .take(page)
        .map(|i| w.item_json(drive, &i.id, false))
        .collect();
    let mut out = json!({"value": v});
    if skip + page < changed.len() {
        out["@odata.nextLink"] = json!(format!(
            "{}/v1.0/drives/{drive}/root/delta?token={since}&upto={upto}&skip={}",
            w.base,
            skip + page
        ));
    } else {
        out["@odata.deltaLink"] = json!(format!(
            "{}/v1.0/drives/{drive}/root/delta?token={upto}",
            w.base
        ));
    }
    ok_json(StatusCode::OK, out)
}

/// Fragments of an upload session (https://learn.microsoft.com/graph/api/driveitem-createuploadsession):
/// `Content-Range: bytes {start}-{end}/{total}`, in order; each fragment a multiple of 320 KiB
/// except the last, under 60 MiB; 202 with `nextExpectedRanges` until the last, then 200/201
/// with the item; a range that is not the next expected one gets 416; the uploadUrl needs no
/// Authorization header and including one can cause a 401 (the fake always refuses it);
/// `GET uploadUrl` reports the status for resuming, `DELETE` cancels; each fragment extends
/// the expiry, and an expired session is gone (404).
fn upload_fragment(
    w: &mut World,
    sid: &str,
    method: &Method,
    h: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Some(r) = refuse_authorization(w, h, "unauthenticated") {
        return r;
    }
    let Ok(sid) = sid.parse::<u64>() else {
        return error(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "upload session not found",
        );
    };
    let lifetime = w.opts.session_lifetime;
    let expired = w
        .sessions
        .get(&sid)
        .is_none_or(|s| Instant::now() >= s.expires);
    if expired {
        w.sessions.remove(&sid);
        return error(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The upload session was not found or has expired",
        );
    }
    let status_json = |s: &Session| json!({"expirationDateTime": iso(now() + lifetime), "nextExpectedRanges": [format!("{}-", s.received.len())]});
    match *method {
        Method::GET => return ok_json(StatusCode::OK, status_json(&w.sessions[&sid])),
        Method::DELETE => {
            w.sessions.remove(&sid);
            return (StatusCode::NO_CONTENT, "").into_response();
        }
        Method::PUT => {}
        _ => return error(StatusCode::BAD_REQUEST, "invalidRequest", "unsupported"),
    }
    let range = h
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range);
    let Some((start, end, total)) = range else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "Content-Range bytes {start}-{end}/{total} is required",
        );
    };
    let len = body.len() as u64;
    let s = w.sessions.get_mut(&sid).unwrap();
    let total_mismatch = s.total.is_some_and(|t| t != total);
    if end < start || end - start + 1 != len || total_mismatch || end >= total {
        return error(
            StatusCode::BAD_REQUEST,
            "invalidRange",
            "Content-Range does not match the body or the file size",
        );
    }
    if start != s.received.len() as u64 {
        w.stats.range_errors += 1;
        return error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "The uploaded fragment overlaps or skips bytes",
        );
    }
    let last = end + 1 == total;
    if body.len() >= FRAGMENT_MAX || (!last && !body.len().is_multiple_of(FRAGMENT_MULTIPLE)) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "fragments must be a multiple of 320 KiB and under 60 MiB",
        );
    }
    s.total = Some(total);
    s.received.extend_from_slice(body);
    s.expires = Instant::now() + lifetime;
    let path = s.name.clone();
    w.stats.fragments_accepted += 1;
    w.fragments.push(Fragment {
        session: sid,
        path,
        start,
        len,
        total,
    });
    if !last {
        return ok_json(StatusCode::ACCEPTED, status_json(&w.sessions[&sid]));
    }
    let s = w.sessions.remove(&sid).unwrap();
    let (created, modified) = (s.created, s.modified);
    let id = match w.child(&s.drive, &s.parent, &s.name) {
        Some(_) if s.conflict == "fail" => {
            return error(
                StatusCode::CONFLICT,
                "nameAlreadyExists",
                "The specified item name already exists.",
            )
        }
        Some(id) => {
            w.replace_content(&s.drive, &id, s.received, created, modified);
            id
        }
        None => w.create(
            &s.drive, &s.parent, &s.name, false, s.received, created, modified,
        ),
    };
    ok_json(StatusCode::CREATED, w.item_json(&s.drive, &id, true))
}

/// A pre-authenticated upload URL refuses an Authorization header (401), and counts it.
fn refuse_authorization(w: &mut World, h: &HeaderMap, code: &str) -> Option<Response> {
    if !h.contains_key("authorization") {
        return None;
    }
    w.stats.authorization_on_upload_url += 1;
    Some(error(
        StatusCode::UNAUTHORIZED,
        code,
        "Do not send an Authorization header to the pre-authenticated uploadUrl",
    ))
}

fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let r = v.trim().strip_prefix("bytes ")?;
    let (range, total) = r.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// The pre-authenticated download URL, with `Range` (206) support.
fn download(w: &mut World, path: &str, h: &HeaderMap) -> Response {
    let parts: Vec<&str> = path.trim_start_matches("/dl/").split('/').collect();
    let [drive, id, version] = parts.as_slice() else {
        return error(StatusCode::NOT_FOUND, "itemNotFound", "no such download");
    };
    let Some(it) = w
        .drives
        .get(*drive)
        .and_then(|d| d.items.get(*id))
        .filter(|i| !i.deleted && !i.folder)
    else {
        return error(StatusCode::NOT_FOUND, "itemNotFound", "no such download");
    };
    if it.version.to_string() != *version {
        return error(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "the download URL has expired",
        );
    }
    let content = it.content.clone();
    w.stats.downloads += 1;
    let n = content.len() as u64;
    let range = h
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| {
            Some((
                a.parse::<u64>().ok()?,
                b.parse::<u64>().ok().unwrap_or(n.saturating_sub(1)),
            ))
        });
    match range {
        Some((a, b)) if a < n && b >= a => {
            let b = b.min(n - 1);
            (
                StatusCode::PARTIAL_CONTENT,
                [("content-range", format!("bytes {a}-{b}/{n}"))],
                Body::from(content[a as usize..=b as usize].to_vec()),
            )
                .into_response()
        }
        Some(_) if n > 0 => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [("content-range", format!("bytes */{n}"))],
        )
            .into_response(),
        _ => (StatusCode::OK, Body::from(content)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_xor_hash_matches_published_vectors() {
        use base64::Engine;
        // 333 bytes (more than one 160-byte fold): a vector of rclone's quickxorhash tests.
        let input = base64::engine::general_purpose::STANDARD.decode("w0LGhqU1WXFbdavqDE4kAjEzWLGGzmTNikzqnsiXHx2KRReKVTxkv27u3UcEz9+lbMvYl4xFf2Z4aE1xRBBNd1Ke5C0zToSaYw5o4B/7X99nKK2/XaUX1byLow2aju2XJl2OpKpJg+tSJ2fmjIJTkfuYUz574dFX6/VXxSxwGH/xQEAKS5TCsBK3CwnuG1p5SAsQq3gGVozDWyjEBcWDMdy8/AIFrj/y03Lfc/RNRCQTAfZbnf2QwV7sluw4fH3XJr07UoD0YqN+7XZzidtrwqMY26fpLZnyZjnBEt1FAZWO7RnKG5asg8xRk9YaDdedXdQSJAOy6bWEWlABj+tVAigBxavaluUH8LOj+yfCFldJjNLdi90fVHkUD/m4Mr5OtmupNMXPwuG3EQlqWUVpQoYpUYKLsk7a5Mvg6UFkiH596y5IbJEVCI1Kb3D1").unwrap();
        assert_eq!(quick_xor_hash(&input), "e3+wo77iKcILiZegnzyUNcjCdoQ=");
        assert_eq!(
            quick_xor_hash(b"hello world"),
            "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
        );
    }

    /// One HTTP/1.1 request over a plain socket; `None` when `abandon_after` cuts it short.
    fn raw_request(
        base: &str,
        head: &str,
        body: &str,
        abandon_after: Option<Duration>,
    ) -> Option<String> {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        write!(
            socket,
            "{head}\r\nHost: fake\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        if let Some(after) = abandon_after {
            std::thread::sleep(after);
            return None; // the socket closes: the client went away mid-request
        }
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        Some(answer)
    }

    #[test]
    fn a_request_abandoned_by_its_client_frees_its_mailbox_slot() {
        let fake = FakeGraph::start(FakeGraphOptions {
            mailbox_concurrency: 1,
            mail_request_delay: Duration::from_millis(500),
            ..Default::default()
        });
        fake.add_mailbox("adele@contoso.com", false);
        let form = format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            CLIENT_SECRET.replace('~', "%7E")
        );
        let answer = raw_request(
            fake.url(),
            &format!("POST /{TENANT}/oauth2/v2.0/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"),
            &form,
            None,
        )
        .unwrap();
        let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let token: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{answer}"));
        let get = format!(
            "GET /v1.0/users/adele@contoso.com/mailFolders/inbox HTTP/1.1\r\nAuthorization: Bearer {}",
            token["access_token"].as_str().unwrap()
        );
        // A client killed while its request waits in the mailbox (holding the one slot).
        raw_request(fake.url(), &get, "", Some(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(300));
        let answer = raw_request(fake.url(), &get, "", None).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(fake.stats().mailbox_concurrency_refusals, 0);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-25/128"), Some((0, 25, 128)));
        assert_eq!(parse_content_range("bytes 0-25/*"), None);
    }
}
