//! The migration algorithm for one mailbox: folders in parallel, messages in pipelined batches.
//!
//! Per folder: compare UIDVALIDITY with the state, look up anything left pending by a crash,
//! copy the source UIDs not yet mapped, then push flag changes. See ARCHITECTURE.md for the
//! invariants this code keeps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex as AsyncMutex;

use crate::folders::{self, Mapping};
use crate::framer::Limits;
use crate::protocol::command::{flag_list, Command};
use crate::protocol::{self, parse_fetch, uid_set, FetchItem, Response, Status, StatusInfo};
use crate::report::{Failure, FolderReport, MailboxReport, Progress};
use crate::session::{Endpoint, ImapError, Selected, Session};
use crate::state::{FolderState, Pending, State};
use crate::throttle::Throttle;

#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    /// Connections per side for one mailbox (folders are synced in parallel).
    pub connections: usize,
    /// Source display name → target display name.
    pub folder_map: BTreeMap<String, String>,
    /// Source folders left out (`folders::excluded`).
    pub exclude: Vec<String>,
    /// Upper bound of message bytes held per batch (two batches are in flight: one being
    /// fetched, one being appended), so memory stays bounded whatever the mailbox size.
    pub batch_bytes: u64,
    pub batch_count: usize,
    /// Behave as if the target lacked UIDPLUS (exercises the content-lookup fallback).
    pub ignore_appenduid: bool,
    /// Use MULTIAPPEND when the target offers it.
    pub multiappend: bool,
    /// Messages above this size are reported, not sent (default
    /// `framer::DEFAULT_MAX_MESSAGE_SIZE`). Exchange Online refuses ~35 MB and may drop the
    /// connection instead of answering NO, which would stall the folder. It also bounds the
    /// literals a server may send (`Limits::for_message_size`).
    pub max_message_size: Option<u64>,
    /// Longest silence from a server while an answer is expected.
    pub idle_timeout: Duration,
    /// Longest wait for one command's completion (a trickling server is cut off by it).
    pub command_timeout: Duration,
    /// The state was put back from a snapshot that may be older than the target: messages
    /// appended after it are in neither `map` nor `pending`. Every folder the state knows is
    /// then marked unverified, and an unverified folder's unmapped messages are looked up on
    /// the target (as pending rows are) before anything is copied.
    pub restored_state: bool,
    /// The target is Exchange Online's IMAP (`--target-kind exchange-imap`): only the flags it
    /// keeps are sent (the rest listed as not carried), the folder names it refuses are
    /// renamed (`folders::exchange_names`), and messages above the append limit quarantined.
    pub exchange_target: bool,
}

impl Options {
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
            .unwrap_or(crate::framer::DEFAULT_MAX_MESSAGE_SIZE)
    }
    /// What every connection of this run accepts from its server.
    pub fn limits(&self) -> Limits {
        Limits {
            idle: self.idle_timeout,
            deadline: self.command_timeout,
            ..Limits::for_message_size(self.max_message_size())
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            connections: 4,
            folder_map: BTreeMap::new(),
            exclude: Vec::new(),
            batch_bytes: 4 << 20,
            batch_count: 500,
            ignore_appenduid: false,
            multiappend: true,
            max_message_size: None,
            idle_timeout: Limits::DEFAULT_IDLE,
            command_timeout: Limits::DEFAULT_DEADLINE,
            restored_state: false,
            exchange_target: false,
        }
    }
}

/// Throttled restarts of one folder before it is given up (each waits as long as the server
/// suggests, so this is a bound on a server that never lets up, not a pace).
const MAX_THROTTLED: u32 = 100;

/// How long to keep looking for an interrupted APPEND the server may still be saving.
const CRASH_GRACE: Duration = Duration::from_secs(3);

/// Exchange Online's PERMANENTFLAGS: the system flags and `$MDNSent`, no `\*`, so other
/// keywords are not kept (field reports: MailCore/mailcore2#780, svarshavchik/courier#26).
pub const EXCHANGE_PERMANENT_FLAGS: [&str; 6] = [
    "\\Seen",
    "\\Answered",
    "\\Flagged",
    "\\Deleted",
    "\\Draft",
    "$MDNSent",
];

/// Default append limit for an Exchange Online target: its default maximum message size is
/// 35 MB, and Microsoft's own IMAP migration says "the biggest email you can migrate is 35 MB".
/// Exchange announces no APPENDLIMIT and may drop the connection on a larger APPEND.
pub const EXCHANGE_APPEND_LIMIT: u64 = 35_000_000;

/// Why a message above the append limit is not sent.
fn too_large(opts: &Options, max: u64) -> String {
    if opts.exchange_target {
        format!("quarantined: above Exchange Online's append limit of {max} bytes (--max-message-size); not sent")
    } else {
        format!("larger than the {max}-byte limit (--max-message-size)")
    }
}

/// Message metadata from the first, cheap FETCH.
#[derive(Debug, Clone)]
pub struct Meta {
    pub uid: u32,
    pub flags: Vec<String>,
    pub date: Option<String>,
    pub size: u64,
}

pub fn sha_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Flags as stored/compared: no `\Recent`, only what the target keeps, sorted.
pub fn canonical_flags(flags: &[String], target: Option<&Selected>) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for f in flags {
        if f.eq_ignore_ascii_case("\\Recent") || !protocol::command::is_flag(f) {
            continue;
        }
        match target {
            Some(t) if !t.accepts(f) => refused.push(f.clone()),
            _ => kept.push(f.clone()),
        }
    }
    kept.sort();
    kept.dedup();
    (kept.join(" "), refused)
}

/// The messages a metadata FETCH listed, and those whose metadata was malformed.
#[derive(Debug, Default)]
pub struct Listing {
    pub metas: Vec<Meta>,
    /// UID and what was wrong with its metadata: the message cannot be batched or matched.
    pub malformed: Vec<(u32, String)>,
}

/// How many messages a listing of a folder with `exists` messages may hold: messages arrive
/// while it runs, but not without bound (the server could list made-up UIDs forever).
pub fn listing_cap(exists: u32) -> usize {
    (exists as usize).saturating_mul(2).saturating_add(10_000)
}

/// FETCHes metadata of `set` (UID set or `1:*`), optionally only what changed since a modseq,
/// for at most `cap` messages (`listing_cap`). A message whose size is missing or whose
/// numbers do not parse is listed as malformed: defaulted, it would be batched and matched
/// wrongly or skipped. An entry that brought none of the requested attributes (a flag change
/// another client caused, sent unsolicited) is no listing and left out.
pub async fn fetch_listing(
    s: &mut Session,
    set: &str,
    changed_since: Option<u64>,
    cap: usize,
) -> Result<Listing> {
    let mut cmd = format!("UID FETCH {set} (UID FLAGS INTERNALDATE RFC822.SIZE)");
    if let Some(m) = changed_since {
        cmd += &format!(" (CHANGEDSINCE {m})");
    }
    // Per UID, what came; a server may also send unsolicited FETCHes (flag changes by another
    // client) with only some attributes.
    let mut seen: BTreeMap<u32, FetchItem> = BTreeMap::new();
    let mut malformed: BTreeMap<u32, String> = BTreeMap::new();
    let mut bad = None;
    s.run_with(Command::new(&cmd), |r| {
        let Response::Numbered(_, name, v) = r else {
            return;
        };
        if name != "FETCH" || bad.is_some() {
            return;
        }
        let uid = protocol::fetch_uid(&v);
        match (parse_fetch(v), uid) {
            (Ok(FetchItem { uid: Some(uid), .. }), _) | (Err(_), Some(uid))
                if !seen.contains_key(&uid)
                    && !malformed.contains_key(&uid)
                    && seen.len() + malformed.len() >= cap =>
            {
                bad = Some(format!("server listed more than {cap} messages"));
            }
            (Ok(item), _) => {
                let Some(uid) = item.uid else { return };
                let e = seen.entry(uid).or_default();
                e.flags = e.flags.take().or(item.flags);
                e.internaldate = e.internaldate.take().or(item.internaldate);
                e.size = e.size.or(item.size);
            }
            (Err(e), Some(uid)) => {
                malformed.entry(uid).or_insert_with(|| e.to_string());
            }
            (Err(e), _) => bad = Some(e.to_string()),
        }
    })
    .await?;
    if let Some(e) = bad {
        anyhow::bail!("{}: {e}", s.side);
    }
    let mut out = Listing::default();
    for (uid, item) in seen {
        if malformed.contains_key(&uid) {
            continue;
        }
        let Some(size) = item.size else {
            if item.internaldate.is_some() {
                malformed.insert(uid, "no RFC822.SIZE".into());
            }
            continue;
        };
        out.metas.push(Meta {
            uid,
            flags: item.flags.unwrap_or_default(),
            date: item.internaldate,
            size,
        });
    }
    out.malformed = malformed.into_iter().collect();
    Ok(out)
}

/// As `fetch_listing`, for callers that need every message: a malformed one is an error.
pub async fn fetch_meta(
    s: &mut Session,
    set: &str,
    changed_since: Option<u64>,
    cap: usize,
) -> Result<Vec<Meta>> {
    let listing = fetch_listing(s, set, changed_since, cap).await?;
    if let Some((uid, why)) = listing.malformed.first() {
        anyhow::bail!("{}: UID {uid}: {why}", s.side);
    }
    Ok(listing.metas)
}

/// FETCHes the full bodies of some messages (BODY.PEEK so \Seen does not change on the
/// source). A message the server answers OK for but sends no body of is looked up again:
/// still there, it is `undelivered` (reported, not taken for expunged).
///
/// Only the UIDs asked for are kept, and only up to their sizes and a quarter more in all
/// (`body_budget`): whatever else a server sends is dropped as it comes, and a body that would
/// exceed the budget is dropped and reported for its message (`oversent`).
pub async fn fetch_bodies(s: &mut Session, wanted: &[Meta]) -> Result<Bodies> {
    let mut out = HashMap::new();
    let mut too_large = HashMap::new();
    let mut oversent = HashMap::new();
    if wanted.is_empty() {
        return Ok(Bodies::default());
    }
    let uids: Vec<u32> = wanted.iter().map(|m| m.uid).collect();
    let asked: HashSet<u32> = uids.iter().copied().collect();
    let budget = body_budget(wanted);
    let mut held = 0u64;
    let mut bad = None;
    let cmd = format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(&uids));
    s.expect_bytes(wanted.iter().map(|m| m.size).sum());
    let r = s
        .run_with(Command::new(&cmd), |r| {
            if let Response::Numbered(_, name, v) = r {
                if name == "FETCH" && bad.is_none() {
                    match parse_fetch(v) {
                        Ok(FetchItem {
                            uid: Some(uid),
                            body: Some(body),
                            ..
                        }) if asked.contains(&uid) => {
                            let len = body.len() as u64;
                            let old = out.remove(&uid).map_or(0, |b: Vec<u8>| b.len() as u64);
                            held -= old;
                            if held + len > budget {
                                oversent.insert(uid, len);
                                return;
                            }
                            held += len;
                            oversent.remove(&uid);
                            out.insert(uid, body);
                        }
                        Ok(FetchItem {
                            uid: Some(uid),
                            discarded_body: Some(len),
                            ..
                        }) if asked.contains(&uid) => {
                            too_large.insert(uid, len);
                        }
                        Ok(_) => {}
                        Err(e) => bad = Some(e.to_string()),
                    }
                }
            }
        })
        .await;
    if let Some(e) = bad {
        anyhow::bail!("{}: {e}", s.side);
    }
    match r {
        Ok(_) => {
            let missing: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| {
                    !out.contains_key(u) && !too_large.contains_key(u) && !oversent.contains_key(u)
                })
                .collect();
            let undelivered = if missing.is_empty() {
                HashSet::new()
            } else {
                existing_uids(s, &missing).await?
            };
            Ok(Bodies {
                map: out,
                refused: None,
                undelivered,
                too_large,
                oversent,
            })
        }
        // NO: some messages could not be read (Dovecot: "Some messages could not be FETCHed",
        // Exchange: unconvertible items). Keep what came; the rest is reported, not fatal.
        // (A throttled FETCH is no such refusal: it is retried after the backoff.)
        Err(ImapError::Refused { status, reason, .. })
            if status.status == Status::No && suggested_backoff(&reason).is_none() =>
        {
            Ok(Bodies {
                map: out,
                refused: Some(reason),
                undelivered: HashSet::new(),
                too_large,
                oversent,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Most body bytes one FETCH may deliver: the listed sizes and a quarter more (estimated
/// sizes, as Exchange reports them), and 4 MiB for a message whose estimate is far off.
fn body_budget(wanted: &[Meta]) -> u64 {
    let sizes: u64 = wanted.iter().map(|m| m.size).fold(0, u64::saturating_add);
    sizes.saturating_add(sizes / 4).saturating_add(4 << 20)
}

/// Which of `uids` the folder still holds.
async fn existing_uids(s: &mut Session, uids: &[u32]) -> Result<HashSet<u32>> {
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    let mut found = HashSet::new();
    let mut bad = None;
    let cmd = format!("UID FETCH {} (UID)", uid_set(uids));
    s.run_with(Command::new(&cmd), |r| {
        if let Response::Numbered(_, name, v) = r {
            if name == "FETCH" {
                match parse_fetch(v) {
                    Ok(FetchItem { uid: Some(u), .. }) if wanted.contains(&u) => {
                        found.insert(u);
                    }
                    Ok(_) => {}
                    Err(e) => bad = bad.take().or(Some(e)),
                }
            }
        }
    })
    .await?;
    if let Some(e) = bad {
        anyhow::bail!("{}: {e}", s.side);
    }
    Ok(found)
}

/// Bodies of one FETCH, and why some did not come.
#[derive(Debug, Default)]
pub struct Bodies {
    pub map: HashMap<u32, Vec<u8>>,
    /// The server's reason when it answered NO (some messages could not be read).
    pub refused: Option<String>,
    /// Answered OK without a body, yet still in the folder.
    pub undelivered: HashSet<u32>,
    /// Bodies announced larger than the literal limit: read and thrown away (announced size).
    pub too_large: HashMap<u32, u64>,
    /// Bodies beyond what the listed sizes allow the whole FETCH (`body_budget`): dropped.
    pub oversent: HashMap<u32, u64>,
}

/// Splits messages into batches bounded by bytes and count (a lone large message is its own batch).
pub fn batches<T>(
    items: &[T],
    size: impl Fn(&T) -> u64,
    max_bytes: u64,
    max_count: usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes: u64 = 0;
    for (i, it) in items.iter().enumerate() {
        let s = size(it);
        if i > start && (bytes.saturating_add(s) > max_bytes || i - start >= max_count) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(s);
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Hashes the bodies of `uids` batch by batch, so memory stays bounded.
pub async fn hash_bodies(
    s: &mut Session,
    metas: &[Meta],
    opts: &Options,
) -> Result<HashMap<u32, String>> {
    let mut out = HashMap::new();
    for b in batches(metas, |m| m.size, opts.batch_bytes, opts.batch_count) {
        for (uid, body) in fetch_bodies(s, b).await?.map {
            out.insert(uid, sha_hex(&body));
        }
    }
    Ok(out)
}

struct Ctx<'a> {
    state: &'a State,
    opts: &'a Options,
    progress: &'a Progress,
}

/// Migrates one mailbox. Never panics on server behaviour; every problem ends up in the report.
pub async fn migrate_mailbox(
    src: &Endpoint,
    tgt: &Endpoint,
    state_path: &Path,
    opts: &Options,
    progress: Arc<Progress>,
) -> MailboxReport {
    let started = Instant::now();
    let mut report = MailboxReport {
        source: src.describe(),
        target: tgt.describe(),
        ..Default::default()
    };
    let gates = [Throttle::of(src), Throttle::of(tgt)];
    let seen = || gates.iter().map(Throttle::throttled).sum::<u64>();
    let throttled_before = seen();
    let mut throttled = 0u32;
    loop {
        let seen_before = seen();
        let Err(e) = migrate_inner(src, tgt, state_path, opts, &progress, &mut report).await else {
            break;
        };
        // Only the setup (connect, list, create folders) fails the whole mailbox; the folders
        // retry on their own. Throttling there (or a drop right after it) starts the setup
        // again once the backoff has passed: it is idempotent (folders that exist are kept,
        // the state is exact). Other failures end the mailbox as before (an unreachable host
        // is reported at once; a re-run resumes).
        let transient = e
            .downcast_ref::<ImapError>()
            .is_some_and(ImapError::is_transient);
        let told =
            transient && (suggested_backoff(&format!("{e:#}")).is_some() || seen() > seen_before);
        throttled += 1;
        if !told || throttled > MAX_THROTTLED {
            report.error = Some(format!("{e:#}"));
            report.cause = Some(Arc::new(e));
            break;
        }
        tracing::warn!("{}: {e:#}; setting up again", report.source);
        report.folders.clear();
    }
    report.throttled = seen() - throttled_before;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report
}

async fn migrate_inner(
    src: &Endpoint,
    tgt: &Endpoint,
    state_path: &Path,
    opts: &Options,
    progress: &Progress,
    report: &mut MailboxReport,
) -> Result<()> {
    let state = State::open(state_path)?;
    if opts.restored_state {
        // Persisted before any work, so a run cut short still knows on the next attempt.
        state.mark_unverified()?;
    }
    let limits = opts.limits();
    let (mut s, mut t) = tokio::try_join!(
        Session::connect_with(src, &limits),
        Session::connect_with(tgt, &limits)
    )?;
    let (mut src_folders, tgt_folders) =
        (folders::list(&mut s).await?, folders::list(&mut t).await?);
    src_folders.retain(|f| !folders::excluded(f, &opts.exclude));
    let delim = match tgt_folders.iter().find_map(|f| f.delimiter) {
        Some(d) => Some(d),
        None => list_delimiter(&mut t).await?,
    };
    let mut plan = folders::plan(&src_folders, &tgt_folders, delim, &opts.folder_map);
    if opts.exchange_target {
        folders::exchange_names(&mut plan, &tgt_folders, delim);
    }
    let uncreatable = if opts.dry_run {
        HashSet::new()
    } else {
        create_folders(&mut t, &plan, &tgt_folders, delim, report).await?
    };
    let ctx = Ctx {
        state: &state,
        opts,
        progress,
    };
    let queue: AsyncMutex<Vec<Mapping>> = AsyncMutex::new(
        plan.into_iter()
            .filter(|m| m.source.selectable && !uncreatable.contains(&m.target))
            .rev()
            .collect(),
    );
    let results: AsyncMutex<Vec<FolderReport>> = AsyncMutex::new(Vec::new());
    let extra = opts.connections.max(1) - 1;
    let mut first = Some((s, t));
    let workers = (0..=extra).map(|i| {
        let (queue, results, ctx, limits) = (&queue, &results, &ctx, &limits);
        let first = if i == 0 { first.take() } else { None };
        async move {
            let pair = match first {
                Some(p) => Some(p),
                // More connections speed things up but are optional: a server that caps
                // connections just leaves us with fewer workers.
                None => match tokio::try_join!(
                    Session::connect_with(src, limits),
                    Session::connect_with(tgt, limits)
                ) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::info!("extra connection not opened: {e}");
                        None
                    }
                },
            };
            let Some(mut pair) = pair else { return };
            loop {
                let Some(m) = queue.lock().await.pop() else {
                    break;
                };
                let r = sync_with_retry(&mut pair, src, tgt, &m, ctx).await;
                ctx.progress.folder_done(&src.describe(), &r);
                results.lock().await.push(r);
            }
            pair.0.logout().await;
            pair.1.logout().await;
        }
    });
    futures_join_all(workers.collect()).await;
    let mut folders = results.into_inner();
    folders.sort_by(|a, b| a.source.cmp(&b.source));
    let pending: Vec<Mapping> = queue.into_inner();
    for m in pending {
        folders.push(FolderReport {
            source: m.source.display(),
            target: m.target.clone(),
            error: Some("not processed: no connection left".into()),
            ..Default::default()
        });
    }
    report.folders.extend(folders);
    Ok(())
}

pub(crate) async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    // Runs the workers concurrently on this task (no 'static bound needed).
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

async fn list_delimiter(t: &mut Session) -> Result<Option<char>> {
    let (untagged, _) = t.run(Command::new("LIST \"\" \"\"")).await?;
    Ok(untagged.into_iter().find_map(|r| match r {
        Response::Data(n, v) if n == "LIST" => v.get(1)?.as_str()?.chars().next(),
        _ => None,
    }))
}

/// Creates missing target folders and copies subscriptions. Returns the target names the
/// server refused to create (e.g. Exchange's reserved "Files"); their folders are reported
/// once, with the server's reason, and not synced.
///
/// A source folder that exists only as a `\Noselect` parent is not created: the child is, and
/// servers such as Dovecot then show the parent as a `\Noselect` hierarchy level too. Only if
/// the target refuses a child *for its missing parent* (`refused_for_parent`) are the missing
/// parents created (selectable: IMAP CREATE has no other kind) and the child tried again; if
/// it is still refused, the parents created for it are deleted again, so a refusal for another
/// reason (a reserved name, a quota) leaves no stray selectable folders behind.
async fn create_folders(
    t: &mut Session,
    plan: &[Mapping],
    existing: &[folders::Folder],
    delim: Option<char>,
    report: &mut MailboxReport,
) -> Result<HashSet<String>> {
    let mut refused = HashSet::new();
    let mut created_parents = HashSet::new();
    for m in plan {
        if !m.target_exists && m.source.selectable && !refused.contains(&m.target) {
            let mut answer = create_folder(t, &m.target).await?;
            let parents = missing_parents(plan, m, delim, &created_parents);
            if let Err(reason) = &answer {
                if refused_for_parent(reason, &m.target, &parents) {
                    let mut made = Vec::new();
                    for parent in parents {
                        match create_folder(t, parent).await? {
                            Ok(true) => made.push(parent),
                            Ok(false) => {
                                created_parents.insert(parent.to_string());
                            }
                            Err(_) => {}
                        }
                    }
                    answer = create_folder(t, &m.target).await?;
                    if answer.is_ok() {
                        created_parents.extend(made.into_iter().map(String::from));
                    } else {
                        // They did not help: remove what was created only for this child.
                        for parent in made.into_iter().rev() {
                            if let Err(e) = t
                                .run(Command::new("DELETE ").string(parent.as_bytes()))
                                .await
                            {
                                tracing::warn!("parent folder {parent} created for nothing and not deleted: {e}");
                            }
                        }
                    }
                }
            }
            if let Err(reason) = answer {
                report.folders.push(FolderReport {
                    source: m.source.display(),
                    target: crate::protocol::utf7::decode(&m.target),
                    error: Some(format!("target refused to create the folder: {reason}")),
                    ..Default::default()
                });
                refused.insert(m.target.clone());
                continue;
            }
        }
        let already = existing.iter().any(|f| f.wire == m.target && f.subscribed);
        if m.source.subscribed && !already {
            match t
                .run(Command::new("SUBSCRIBE ").string(m.target.as_bytes()))
                .await
            {
                Ok(_) => {}
                // Throttled or dropped: the whole setup is tried again (`migrate_mailbox`).
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => report.folders.push(FolderReport {
                    source: m.source.display(),
                    target: m.target.clone(),
                    error: Some(format!("subscription not copied: {e}")),
                    ..Default::default()
                }),
            }
        }
    }
    Ok(refused)
}

/// CREATE: Ok(true) when this CREATE made the folder, Ok(false) when it existed already, else
/// the server's reason.
async fn create_folder(t: &mut Session, name: &str) -> Result<std::result::Result<bool, String>> {
    match t.run(Command::new("CREATE ").string(name.as_bytes())).await {
        Ok(_) => Ok(Ok(true)),
        // Created meanwhile (another run), or a case-insensitive twin: SELECT will do.
        Err(ImapError::Refused { reason, .. })
            if reason.to_ascii_lowercase().contains("exists") =>
        {
            Ok(Ok(false))
        }
        // Throttled: not the name's fault; the setup is tried again after the backoff.
        Err(e @ ImapError::Refused { .. }) if e.is_transient() => Err(e.into()),
        Err(ImapError::Refused { reason, .. }) => Ok(Err(reason)),
        Err(e) => Err(e.into()),
    }
}

/// Whether a CREATE of `child` was refused because a parent in `parents` is missing: the
/// server says so (`[NONEXISTENT]`, "parent", "does not exist", "no such"), or names a parent
/// (apart from the child's own name, which contains it).
fn refused_for_parent(reason: &str, child: &str, parents: &[&str]) -> bool {
    if parents.is_empty() {
        return false;
    }
    let lower = reason.to_ascii_lowercase();
    let says = ["nonexistent", "parent", "not exist", "n't exist", "no such"]
        .iter()
        .any(|w| lower.contains(w));
    let rest = reason.replace(child, "");
    says || parents.iter().any(|p| rest.contains(p))
}

/// Target names of `\Noselect` source parents of `child` missing on the target, outermost first.
fn missing_parents<'a>(
    plan: &'a [Mapping],
    child: &Mapping,
    delim: Option<char>,
    created: &HashSet<String>,
) -> Vec<&'a str> {
    let Some(d) = delim else { return Vec::new() };
    let mut out: Vec<&str> = plan
        .iter()
        .filter(|p| !p.source.selectable && !p.target_exists && !created.contains(&p.target))
        .map(|p| p.target.as_str())
        .filter(|p| child.target.starts_with(&format!("{p}{d}")))
        .collect();
    out.sort_by_key(|p| p.len());
    out
}

pub use crate::throttle::suggested_backoff;

async fn sync_with_retry(
    pair: &mut (Session, Session),
    src: &Endpoint,
    tgt: &Endpoint,
    m: &Mapping,
    ctx: &Ctx<'_>,
) -> FolderReport {
    let mut attempt = 0u32;
    let mut throttled = 0u32;
    let mut rep_retries = 0u32;
    let gates = [Throttle::of(src), Throttle::of(tgt)];
    let seen = || gates.iter().map(Throttle::throttled).sum::<u64>();
    loop {
        let seen_before = seen();
        let mut rep = FolderReport {
            source: m.source.display(),
            target: crate::protocol::utf7::decode(&m.target),
            note: m.note.clone(),
            retries: rep_retries,
            ..Default::default()
        };
        ctx.progress.set_folder(&rep.source);
        match sync_folder(&mut pair.0, &mut pair.1, m, ctx, &mut rep).await {
            Ok(()) => return rep,
            Err(e) => {
                // The next attempt lists what is left again (and a last failure copies none).
                ctx.progress.retract_total(rep.in_total.0, rep.in_total.1);
                let transient = e
                    .downcast_ref::<ImapError>()
                    .is_some_and(ImapError::is_transient);
                // Throttled, or dropped after a throttled answer (Exchange does both).
                let told = transient
                    && (suggested_backoff(&format!("{e:#}")).is_some() || seen() > seen_before);
                // Throttling is the server pacing us, not a failure: it gets many more tries
                // (each waits as long as told) than other transient failures (dropped link).
                if told {
                    throttled += 1;
                } else {
                    attempt += 1;
                }
                // Non-transient ones get one more try (e.g. Dovecot races auto-creating
                // special folders on first login).
                if attempt > if transient { 5 } else { 1 } || throttled > MAX_THROTTLED {
                    rep.error = Some(format!("{e:#}"));
                    return rep;
                }
                // Reconnect with exponential backoff; the folder restarts from the state,
                // which the pending/reconcile protocol keeps exact. After throttling, the
                // mailbox's gate (`Throttle`) holds the next command for the time suggested.
                let wait = if told {
                    Duration::ZERO
                } else {
                    Duration::from_millis(250 << attempt.min(6))
                };
                rep_retries += 1;
                tracing::warn!("{}: {e:#}; reconnecting in {wait:?}", rep.source);
                tokio::time::sleep(wait).await;
                let limits = ctx.opts.limits();
                match tokio::try_join!(
                    Session::connect_with(src, &limits),
                    Session::connect_with(tgt, &limits)
                ) {
                    Ok(p) => *pair = p,
                    Err(e2) => tracing::warn!("reconnect failed: {e2}"),
                }
            }
        }
    }
}

async fn sync_folder(
    s: &mut Session,
    t: &mut Session,
    m: &Mapping,
    ctx: &Ctx<'_>,
    rep: &mut FolderReport,
) -> Result<()> {
    let key = m.source.wire.as_str();
    let ssel = s.select(key, true).await?;
    let prev = ctx.state.folder(key)?;
    let pending_rows = ctx.state.pending(key)?;
    // Fast path of a no-op re-run: the source says nothing changed since the last full pass.
    if let (Some(p), Some(ms)) = (&prev, ssel.highestmodseq) {
        if p.src_uidvalidity == ssel.uidvalidity
            && p.target == m.target
            && p.modseq == ms
            && p.uidnext == ssel.uidnext
            && pending_rows.is_empty()
        {
            rep.unchanged = true;
            return Ok(());
        }
    }
    if ctx.opts.dry_run {
        let maps = match &prev {
            Some(p) if p.src_uidvalidity == ssel.uidvalidity && p.target == m.target => {
                ctx.state.maps(key)?
            }
            _ => HashMap::new(),
        };
        if ssel.exists > 0 {
            let metas = fetch_meta(s, "1:*", None, listing_cap(ssel.exists)).await?;
            rep.would_copy = metas.iter().filter(|x| !maps.contains_key(&x.uid)).count() as u64;
        }
        return Ok(());
    }
    let mut tsel = t
        .select(&m.target, false)
        .await
        .with_context(|| format!("target folder {}", m.target))?;
    if ctx.opts.exchange_target {
        // Exchange keeps these only, whatever a server in between announces.
        tsel.permanent_flags = Some(
            EXCHANGE_PERMANENT_FLAGS
                .iter()
                .map(|f| f.to_string())
                .collect(),
        );
    }
    let fresh = match &prev {
        None => true,
        Some(p) => {
            p.src_uidvalidity != ssel.uidvalidity
                || p.tgt_uidvalidity != tsel.uidvalidity
                || p.target != m.target
        }
    };
    if fresh {
        ctx.state.reset_folder(
            key,
            &FolderState {
                target: m.target.clone(),
                src_uidvalidity: ssel.uidvalidity,
                tgt_uidvalidity: tsel.uidvalidity,
                modseq: 0,
                uidnext: 0,
            },
        )?;
    }
    let changed_since = match (&prev, ssel.highestmodseq) {
        (Some(p), Some(_)) if !fresh && p.modseq > 0 => Some(p.modseq),
        _ => None,
    };
    let listing = if ssel.exists > 0 {
        fetch_listing(s, "1:*", changed_since, listing_cap(ssel.exists)).await?
    } else {
        Listing::default()
    };
    // One message with bad metadata is that message's failure, not the folder's.
    for (uid, why) in &listing.malformed {
        rep.failures.push(Failure {
            folder: rep.source.clone(),
            uid: *uid,
            size: 0,
            reason: format!("source sent unusable metadata: {why}"),
        });
    }
    let metas = listing.metas;
    let mut maps = ctx.state.maps(key)?;
    if fresh {
        // The target may already hold these messages (an earlier run whose state was lost,
        // or a UIDVALIDITY reset): match by content before copying anything.
        rep.matched +=
            match_by_content(s, t, key, &m.target, &metas, &tsel, &mut maps, ctx).await?;
    } else if ctx.state.is_unverified(key)? {
        // A restored state: anything not mapped may already be on the target.
        let mut rows =
            unmapped_on_target(s, t, &m.target, &metas, &pending_rows, &maps, ctx).await?;
        let grace = if pending_rows.is_empty() {
            Duration::ZERO
        } else {
            CRASH_GRACE
        };
        rows.extend(pending_rows);
        let (target, exists, before) = (&m.target, tsel.exists, maps.len());
        reconcile(t, key, target, exists, rows, &mut maps, ctx, grace).await?;
        // Found on the target instead of copied.
        rep.matched += maps.len().saturating_sub(before) as u64;
        ctx.state.clear_unverified(key)?;
    } else if !pending_rows.is_empty() {
        let (target, exists) = (&m.target, tsel.exists);
        reconcile(
            t,
            key,
            target,
            exists,
            pending_rows,
            &mut maps,
            ctx,
            CRASH_GRACE,
        )
        .await?;
    }
    let mut refused: HashSet<String> = HashSet::new();
    let mut new: Vec<Meta> = metas
        .iter()
        .filter(|x| !maps.contains_key(&x.uid))
        .cloned()
        .collect();
    let max = ctx.opts.max_message_size();
    new.retain(|x| {
        if x.size > max {
            rep.failures.push(Failure {
                folder: rep.source.clone(),
                uid: x.uid,
                size: x.size,
                reason: too_large(ctx.opts, max),
            });
        }
        x.size <= max
    });
    let listed = (new.len() as u64, new.iter().map(|x| x.size).sum::<u64>());
    ctx.progress.add_total(listed.0, listed.1);
    rep.in_total = listed;
    copy_messages(s, t, key, &m.target, &new, &tsel, ctx, rep, &mut refused).await?;
    if ctx.opts.exchange_target && !new.is_empty() {
        // Messages just appended without \Flagged (`append_flags`) get it from the flag pass.
        maps = ctx.state.maps(key)?;
    }
    // Flag changes on messages copied earlier.
    let mut stores = Vec::new();
    for x in &metas {
        if let Some(mp) = maps.get(&x.uid) {
            let (flags, r) = canonical_flags(&x.flags, Some(&tsel));
            refused.extend(r);
            if flags != mp.flags {
                stores.push((x.uid, mp.tgt_uid, flags));
            }
        }
    }
    for chunk in stores.chunks(500) {
        let mut tags = Vec::new();
        for (_, tuid, flags) in chunk {
            let list: Vec<String> = flags
                .split(' ')
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect();
            tags.push(
                t.send(Command::new(&format!(
                    "UID STORE {tuid} FLAGS.SILENT {}",
                    flag_list(&list)
                )))
                .await?,
            );
        }
        let results = t.complete_many(&tags).await?;
        let mut ok = Vec::new();
        for ((suid, _, flags), info) in chunk.iter().zip(results) {
            if info.status == Status::Ok {
                ok.push((*suid, flags.clone()));
            } else {
                rep.failures.push(Failure {
                    folder: rep.source.clone(),
                    uid: *suid,
                    size: 0,
                    reason: format!("flags not updated: {}", info.describe()),
                });
            }
        }
        rep.flags_updated += ok.len() as u64;
        ctx.state.set_flags(key, &ok)?;
    }
    let mut refused: Vec<String> = refused.into_iter().collect();
    refused.sort();
    rep.refused_flags = refused;
    if rep.failures.is_empty() {
        ctx.state
            .set_progress(key, ssel.highestmodseq.unwrap_or(0), ssel.uidnext)?;
    }
    Ok(())
}

/// Maps source messages to target messages with identical bodies (a multiset match, so exact
/// duplicates each get their own target copy). Returns how many were matched.
#[allow(clippy::too_many_arguments)]
async fn match_by_content(
    s: &mut Session,
    t: &mut Session,
    key: &str,
    target: &str,
    metas: &[Meta],
    tsel: &Selected,
    maps: &mut HashMap<u32, crate::state::Mapped>,
    ctx: &Ctx<'_>,
) -> Result<u64> {
    if tsel.exists == 0 || metas.is_empty() {
        return Ok(0);
    }
    let claimed = ctx.state.claimed(target)?;
    // A target message with malformed metadata is just not matched (it may get a copy).
    let tmetas: Vec<Meta> = fetch_listing(t, "1:*", None, listing_cap(tsel.exists))
        .await?
        .metas
        .into_iter()
        .filter(|x| !claimed.contains(&x.uid))
        .collect();
    // Messages above the size limit are never fetched (they are reported when copying).
    let max = ctx.opts.max_message_size();
    let tsizes: HashSet<u64> = tmetas
        .iter()
        .map(|x| x.size)
        .filter(|&s| s <= max)
        .collect();
    let ssizes: HashSet<u64> = metas.iter().map(|x| x.size).filter(|&s| s <= max).collect();
    let scand: Vec<Meta> = metas
        .iter()
        .filter(|x| tsizes.contains(&x.size))
        .cloned()
        .collect();
    let tcand: Vec<Meta> = tmetas
        .iter()
        .filter(|x| ssizes.contains(&x.size))
        .cloned()
        .collect();
    let shash = hash_bodies(s, &scand, ctx.opts).await?;
    let thash = hash_bodies(t, &tcand, ctx.opts).await?;
    let mut by_hash: HashMap<&str, Vec<&Meta>> = HashMap::new();
    for x in tcand.iter().rev() {
        if let Some(h) = thash.get(&x.uid) {
            by_hash.entry(h.as_str()).or_default().push(x);
        }
    }
    let mut done = Vec::new();
    for x in &scand {
        let Some(h) = shash.get(&x.uid) else { continue };
        if let Some(tm) = by_hash.get_mut(h.as_str()).and_then(Vec::pop) {
            // Store the target's current flags, so the flag pass corrects any difference.
            let (flags, _) = canonical_flags(&tm.flags, None);
            done.push((x.uid, tm.uid, flags));
        }
    }
    ctx.state.resolve(key, &done, &[])?;
    for (s_uid, t_uid, flags) in &done {
        maps.insert(
            *s_uid,
            crate::state::Mapped {
                tgt_uid: *t_uid,
                flags: flags.clone(),
            },
        );
    }
    Ok(done.len() as u64)
}

/// For a restored state: the source's unmapped messages (neither mapped nor pending) that may
/// be on the target already, as pending rows for [`reconcile`]. Only those whose size one of
/// the target's unclaimed messages above the highest claimed UID has are hashed; their flags
/// are left empty so that the flag pass writes the source's flags on whatever is matched.
#[allow(clippy::too_many_arguments)]
async fn unmapped_on_target(
    s: &mut Session,
    t: &mut Session,
    target: &str,
    metas: &[Meta],
    pending: &[Pending],
    maps: &HashMap<u32, crate::state::Mapped>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Pending>> {
    let pending_uids: HashSet<u32> = pending.iter().map(|p| p.src_uid).collect();
    let unmapped: Vec<&Meta> = metas
        .iter()
        .filter(|x| !maps.contains_key(&x.uid) && !pending_uids.contains(&x.uid))
        .collect();
    if unmapped.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed: HashSet<u32> = maps.values().map(|m| m.tgt_uid).collect();
    claimed.extend(ctx.state.claimed(target)?);
    let Some(after) = claimed.iter().max().copied().unwrap_or(0).checked_add(1) else {
        return Ok(Vec::new());
    };
    let cap = listing_cap(u32::try_from(unmapped.len()).unwrap_or(u32::MAX));
    let sizes: HashSet<u64> = fetch_listing(t, &format!("{after}:*"), None, cap)
        .await?
        .metas
        .into_iter()
        .filter(|x| x.uid >= after && !claimed.contains(&x.uid))
        .map(|x| x.size)
        .collect();
    let max = ctx.opts.max_message_size();
    let candidates: Vec<Meta> = unmapped
        .into_iter()
        .filter(|x| x.size <= max && sizes.contains(&x.size))
        .cloned()
        .collect();
    let hashes = hash_bodies(s, &candidates, ctx.opts).await?;
    Ok(candidates
        .iter()
        .filter_map(|x| {
            Some(Pending {
                src_uid: x.uid,
                sha: hashes.get(&x.uid)?.clone(),
                size: x.size,
                flags: String::new(),
            })
        })
        .collect())
}

/// After a crash (or an APPEND without APPENDUID): finds pending messages on the target by
/// size and content hash among target messages no mapping claims yet.
///
/// `grace`: after a crash the server may still be saving an APPEND whose bytes it had already
/// received from the dead process; unmatched rows are looked for again until the grace period
/// ends before they are given up (and copied again).
#[allow(clippy::too_many_arguments)]
async fn reconcile(
    t: &mut Session,
    key: &str,
    target: &str,
    exists: u32,
    pending: Vec<Pending>,
    maps: &mut HashMap<u32, crate::state::Mapped>,
    ctx: &Ctx<'_>,
    grace: Duration,
) -> Result<()> {
    let mut claimed: HashSet<u32> = maps.values().map(|m| m.tgt_uid).collect();
    claimed.extend(ctx.state.claimed(target)?);
    // UIDs go up to 2^32-1: past the last one nothing new can have been appended.
    let Some(after) = claimed.iter().max().copied().unwrap_or(0).checked_add(1) else {
        return Ok(());
    };
    let deadline = Instant::now() + grace;
    let pending_count = u32::try_from(pending.len()).unwrap_or(u32::MAX);
    let mut left = pending;
    let mut done = Vec::new();
    loop {
        let sizes: HashSet<u64> = left.iter().map(|p| p.size).collect();
        let cap = listing_cap(exists.saturating_add(pending_count));
        let tmetas: Vec<Meta> = fetch_listing(t, &format!("{after}:*"), None, cap)
            .await?
            .metas
            .into_iter()
            .filter(|x| x.uid >= after && !claimed.contains(&x.uid) && sizes.contains(&x.size))
            .collect();
        let thash = hash_bodies(t, &tmetas, ctx.opts).await?;
        let mut by_hash: HashMap<&str, Vec<u32>> = HashMap::new();
        for x in tmetas.iter().rev() {
            if let Some(h) = thash.get(&x.uid) {
                by_hash.entry(h.as_str()).or_default().push(x.uid);
            }
        }
        let mut still = Vec::new();
        for p in left {
            match by_hash.get_mut(p.sha.as_str()).and_then(Vec::pop) {
                Some(tuid) => {
                    claimed.insert(tuid);
                    done.push((p.src_uid, tuid, p.flags.clone()));
                }
                None => still.push(p),
            }
        }
        left = still;
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        // NOOP lets the server announce messages saved meanwhile.
        t.run(Command::new("NOOP")).await?;
    }
    let dropped: Vec<u32> = left.iter().map(|p| p.src_uid).collect();
    tracing::info!(
        "{key}: reconciled {} pending, {} to copy again",
        done.len(),
        dropped.len()
    );
    ctx.state.resolve(key, &done, &dropped)?;
    for (s_uid, t_uid, flags) in done {
        maps.insert(
            s_uid,
            crate::state::Mapped {
                tgt_uid: t_uid,
                flags,
            },
        );
    }
    Ok(())
}

/// Copies messages: batch k+1 is fetched from the source while batch k is appended to the
/// target (pipelined APPENDs with LITERAL+).
#[allow(clippy::too_many_arguments)]
async fn copy_messages(
    s: &mut Session,
    t: &mut Session,
    key: &str,
    target: &str,
    new: &[Meta],
    tsel: &Selected,
    ctx: &Ctx<'_>,
    rep: &mut FolderReport,
    refused: &mut HashSet<String>,
) -> Result<()> {
    let parts = batches(new, |m| m.size, ctx.opts.batch_bytes, ctx.opts.batch_count);
    if parts.is_empty() {
        return Ok(());
    }
    let mut fetched = fetch_bodies(s, parts[0]).await?;
    for (i, part) in parts.iter().enumerate() {
        let next = parts.get(i + 1);
        let fetch_next = async {
            match next {
                Some(u) => fetch_bodies(s, u).await.map(Some),
                None => Ok(None),
            }
        };
        let append = append_batch(
            t,
            key,
            target,
            part,
            std::mem::take(&mut fetched),
            tsel,
            ctx,
            rep,
            refused,
        );
        let (n, a) = tokio::join!(fetch_next, append);
        a?;
        if let Some(n) = n? {
            fetched = n;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn append_batch(
    t: &mut Session,
    key: &str,
    target: &str,
    part: &[Meta],
    mut bodies: Bodies,
    tsel: &Selected,
    ctx: &Ctx<'_>,
    rep: &mut FolderReport,
    refused: &mut HashSet<String>,
) -> Result<()> {
    // Show the folder data is flowing for (several workers: the busiest one wins).
    ctx.progress.set_folder(&rep.source);
    // Intent first: durable before any byte of these APPENDs leaves.
    let mut items = Vec::new();
    let mut queued = Vec::new();
    for m in part {
        let Some(body) = bodies.map.remove(&m.uid) else {
            // Not delivered: reported with the reason, unless it was expunged on the source
            // since the listing (then there is nothing to copy; counted).
            let reason = if let Some(len) = bodies.too_large.get(&m.uid) {
                let max = ctx.opts.limits().max_literal;
                format!("source sent it as {len} bytes, above the {max}-byte limit (--max-message-size); not read")
            } else if let Some(len) = bodies.oversent.get(&m.uid) {
                format!(
                    "source sent it as {len} bytes, far more than its RFC822.SIZE {}; not kept",
                    m.size
                )
            } else if let Some(reason) = &bodies.refused {
                format!("source could not deliver it: {reason}")
            } else if bodies.undelivered.contains(&m.uid) {
                "source answered OK but sent no body".to_string()
            } else {
                rep.expunged += 1;
                ctx.progress.retract_total(1, m.size);
                counted_out(rep, m.size);
                continue;
            };
            rep.failures.push(Failure {
                folder: rep.source.clone(),
                uid: m.uid,
                size: m.size,
                reason,
            });
            continue;
        };
        let max = ctx.opts.max_message_size();
        if body.len() as u64 > max {
            // The listed size was an estimate (Exchange as a source): the body decides.
            rep.failures.push(Failure {
                folder: rep.source.clone(),
                uid: m.uid,
                size: body.len() as u64,
                reason: too_large(ctx.opts, max),
            });
            continue;
        }
        let (flags, r) = canonical_flags(&m.flags, Some(tsel));
        refused.extend(r);
        items.push(Pending {
            src_uid: m.uid,
            sha: sha_hex(&body),
            size: body.len() as u64,
            flags: append_flags(flags, ctx.opts),
        });
        queued.push((m, body));
    }
    // Progress counts the listed size, as the total does.
    let listed: Vec<u64> = queued.iter().map(|(m, _)| m.size).collect();
    ctx.state.add_pending(key, &items)?;
    let args: Vec<String> = items
        .iter()
        .zip(&queued)
        .map(|(p, (m, _))| append_args(p, m, rep))
        .collect();
    let bodies: Vec<Arc<Vec<u8>>> = queued.into_iter().map(|(_, b)| Arc::new(b)).collect();
    // The UIDs of `appended` messages; None (found by content instead) when the APPENDUID is
    // missing, for another UIDVALIDITY, or names more or fewer UIDs.
    let uid_of = |info: &StatusInfo, appended: usize| -> Option<Vec<u32>> {
        if ctx.opts.ignore_appenduid
            || !info.code_is("APPENDUID")
            || info.code.get(1).and_then(|v| v.as_u64()) != Some(u64::from(tsel.uidvalidity))
        {
            return None;
        }
        protocol::parse_uid_set(&info.code.get(2)?.as_str()?, appended)
            .filter(|u| u.len() == appended)
    };
    // Per message: Ok(Some(uid)), Ok(None) (stored, UID unknown) or Err(the server's answer).
    let mut outcome: Option<Vec<std::result::Result<Option<u32>, StatusInfo>>> = None;
    if ctx.opts.multiappend && items.len() > 1 && t.has_cap("MULTIAPPEND") {
        // One command, one transaction on the server (Dovecot: about twice as fast as
        // pipelined single APPENDs). It is atomic: on NO nothing was stored, and the batch
        // goes again message by message so one refused message does not sink the others.
        let mut cmd = Command::new("APPEND ").string(target.as_bytes());
        for (a, b) in args.iter().zip(&bodies) {
            cmd = cmd.text(a).text(" ").literal_shared(b.clone());
        }
        let tag = t.send(cmd).await?;
        let info = t.complete_many(&[tag]).await?.remove(0);
        if info.status == Status::Ok {
            let uids = uid_of(&info, items.len());
            outcome = Some(match uids {
                Some(u) => u.into_iter().map(|x| Ok(Some(x))).collect(),
                None => items.iter().map(|_| Ok(None)).collect(),
            });
        } else if info.text.to_ascii_lowercase().contains("throttl") {
            outcome = Some(items.iter().map(|_| Err(info.clone())).collect());
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => {
            let mut tags = Vec::with_capacity(items.len());
            for (a, b) in args.iter().zip(&bodies) {
                let cmd = Command::new("APPEND ")
                    .string(target.as_bytes())
                    .text(a)
                    .text(" ")
                    .literal_shared(b.clone());
                tags.push(t.send(cmd).await?);
            }
            t.complete_many(&tags)
                .await?
                .into_iter()
                .map(|info| match info.status {
                    Status::Ok => Ok(uid_of(&info, 1).and_then(|u| u.first().copied())),
                    _ => Err(info),
                })
                .collect()
        }
    };
    drop(bodies);
    let mut done = Vec::new();
    let mut dropped = Vec::new();
    let mut unknown = Vec::new();
    let mut throttled = None;
    for ((p, result), listed) in items.iter().zip(outcome).zip(listed) {
        match result {
            Err(info) if info.text.to_ascii_lowercase().contains("throttl") => {
                // Not the message's fault: retried after the server's suggested backoff.
                dropped.push(p.src_uid);
                throttled = Some(info);
                continue;
            }
            Err(info) => {
                dropped.push(p.src_uid);
                rep.failures.push(Failure {
                    folder: rep.source.clone(),
                    uid: p.src_uid,
                    size: p.size,
                    reason: format!("target refused: {}", info.describe()),
                });
                continue;
            }
            Ok(uid) => {
                rep.copied += 1;
                rep.bytes += p.size;
                ctx.progress.add(1, listed);
                counted_out(rep, listed);
                match uid {
                    Some(tuid) => done.push((p.src_uid, tuid, p.flags.clone())),
                    None => unknown.push(p.clone()),
                }
            }
        }
    }
    ctx.state.resolve(key, &done, &dropped)?;
    if let Some(info) = throttled {
        return Err(ImapError::Refused {
            side: t.side,
            cmd: "APPEND".into(),
            reason: info.describe(),
            status: info,
        }
        .into());
    }
    if !unknown.is_empty() {
        // No UIDPLUS: the pending rows stay and are found by content, like after a crash.
        let mut maps = ctx.state.maps(key)?;
        let exists = tsel.exists;
        reconcile(
            t,
            key,
            target,
            exists,
            unknown,
            &mut maps,
            ctx,
            Duration::ZERO,
        )
        .await?;
    }
    Ok(())
}

/// The flags an APPEND carries (and the state records as written). Exchange keeps a `\Flagged`
/// set by APPEND for IMAP only — "forgets it with other protocols" (imapsync's FAQ.Office365,
/// whose fix is the same: APPEND without it, then STORE it) — so for Exchange it is left out
/// here and the flag pass stores it right after.
fn append_flags(flags: String, opts: &Options) -> String {
    if !opts.exchange_target {
        return flags;
    }
    flags
        .split(' ')
        .filter(|f| !f.eq_ignore_ascii_case("\\Flagged"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One message of the progress total that this attempt no longer needs to take back.
fn counted_out(rep: &mut FolderReport, size: u64) {
    rep.in_total = (
        rep.in_total.0.saturating_sub(1),
        rep.in_total.1.saturating_sub(size),
    );
}

/// ` (flags) "date"` of one APPEND (or one message of a MULTIAPPEND).
fn append_args(p: &Pending, m: &Meta, rep: &mut FolderReport) -> String {
    let list: Vec<String> = p
        .flags
        .split(' ')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    let mut out = format!(" {}", flag_list(&list));
    match m.date.as_deref() {
        Some(d) if protocol::parse_internaldate(d).is_some() => out += &format!(" \"{d}\""),
        // Sent without a date, the target uses "now": say so rather than hide it.
        other => {
            let note = format!(
                "uid {}: source INTERNALDATE {other:?} unusable, target date is the copy time",
                m.uid
            );
            rep.note = Some(
                rep.note
                    .take()
                    .map_or(note.clone(), |n| format!("{n}; {note}")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_hint_is_honoured() {
        let e = "target: `APPEND` failed: Request is throttled. Suggested Backoff Time: 1500 milliseconds";
        assert_eq!(suggested_backoff(e), Some(Duration::from_millis(1500)));
        assert_eq!(suggested_backoff("NO other"), None);
    }

    #[test]
    fn flags_the_target_cannot_keep_are_dropped_and_reported() {
        // Exchange Online: system flags and $MDNSent only, no \* (no new keywords).
        let exo = Selected {
            permanent_flags: Some(
                [
                    "\\Seen",
                    "\\Answered",
                    "\\Flagged",
                    "\\Deleted",
                    "\\Draft",
                    "$MDNSent",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ..Default::default()
        };
        let flags = ["\\Seen", "\\Recent", "$Label1", "$MDNSent"].map(String::from);
        let (kept, refused) = canonical_flags(&flags, Some(&exo));
        assert_eq!(kept, "$MDNSent \\Seen");
        assert_eq!(refused, vec!["$Label1".to_string()]);
        let any = Selected {
            permanent_flags: Some(vec!["\\Seen".into(), "\\*".into()]),
            ..Default::default()
        };
        assert_eq!(
            canonical_flags(&flags, Some(&any)).0,
            "$Label1 $MDNSent \\Seen"
        );
    }

    #[test]
    fn parents_are_created_only_for_a_refusal_about_them() {
        let parents = ["Archive"];
        for why in [
            "[NONEXISTENT] Parent folder missing",
            "Mailbox doesn't exist: Archive",
            "no such parent",
        ] {
            assert!(refused_for_parent(why, "Archive/Files", &parents), "{why}");
        }
        for why in [
            "[CANNOT] Reserved name",
            "[OVERQUOTA] Folder quota exceeded",
            "Cannot create Archive/Files",
        ] {
            assert!(!refused_for_parent(why, "Archive/Files", &parents), "{why}");
        }
        assert!(!refused_for_parent("[NONEXISTENT]", "Archive/Files", &[]));
    }

    #[test]
    fn batches_are_bounded_by_bytes_and_count() {
        let sizes = [5u64, 5, 20, 1, 1, 1];
        let b = batches(&sizes, |s| *s, 10, 2);
        let lens: Vec<usize> = b.iter().map(|x| x.len()).collect();
        assert_eq!(lens, vec![2, 1, 2, 1]);
    }
}
