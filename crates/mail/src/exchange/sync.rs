//! IMAP → Exchange Online: per folder, list the source, copy what the state does not map, bring
//! the flags of mapped messages up to date. Folders go one after another; inside a folder up to
//! `MAILBOX_CONCURRENCY` messages are created at once (the mailbox's slots bound them anyway).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use futures_util::stream::StreamExt;
use tenantry_graph::GraphError;

use super::mailbox::{Mailbox, MAILBOX_CONCURRENCY, MAX_CREATE_BYTES};
use base64::Engine;

use super::message::{flags_patch, prepare, split_attachments, Prepared, LARGE_ATTACHMENT};
use super::state::ExchangeState;
use crate::folders::{self, Folder};
use crate::protocol::parse_internaldate;
use crate::report::{Failure, FolderReport, MailboxReport, Progress};
use crate::session::{Endpoint, Session};
use crate::sync::{
    batches, canonical_flags, fetch_bodies, fetch_listing, listing_cap, sha_hex, Meta, Options,
};

/// How often a create whose answer was lost is looked up and sent again.
const CREATE_ATTEMPTS: u32 = 4;

/// Messages in a folder's first FETCH batch (then `Options::batch_count` / `batch_bytes`).
const FIRST_BATCH: usize = 2 * MAILBOX_CONCURRENCY;

/// The well-known folder of an IMAP special-use role
/// (<https://learn.microsoft.com/graph/api/resources/mailfolder>, "Well-known folder names").
pub fn well_known_for(f: &Folder) -> Option<&'static str> {
    if f.is_inbox() {
        return Some("inbox");
    }
    match f.role.as_deref()?.to_ascii_lowercase().as_str() {
        "\\sent" => Some("sentitems"),
        "\\drafts" => Some("drafts"),
        "\\trash" => Some("deleteditems"),
        "\\junk" => Some("junkemail"),
        "\\archive" => Some("archive"),
        _ => None,
    }
}

/// Resolves source folder paths to Exchange folder ids: roles by well-known name, others by
/// display name below their parent (created when `create`), from the top of the mailbox.
pub struct FolderResolver<'a> {
    mbx: &'a Mailbox,
    roles: HashMap<Vec<String>, &'static str>,
    cache: HashMap<Vec<String>, Option<String>>,
    create: bool,
}

impl<'a> FolderResolver<'a> {
    pub fn new(mbx: &'a Mailbox, source: &[Folder], create: bool) -> Self {
        let roles = source
            .iter()
            .filter_map(|f| Some((f.path.clone(), well_known_for(f)?)))
            .collect();
        Self {
            mbx,
            roles,
            cache: HashMap::new(),
            create,
        }
    }

    /// The id of the folder for `path`; `None` when it does not exist and may not be created.
    pub async fn resolve(&mut self, path: &[String]) -> Result<Option<String>> {
        if let Some(id) = self.cache.get(path) {
            return Ok(id.clone());
        }
        let id = if let Some(wk) = self.roles.get(path) {
            self.mbx.well_known(wk).await?
        } else {
            let parent = match path.split_last() {
                Some((_, [])) | None => self.mbx.well_known("msgfolderroot").await?,
                Some((_, up)) => Box::pin(self.resolve(up)).await?,
            };
            match (parent, path.last()) {
                (Some(p), Some(name)) if self.create => {
                    Some(self.mbx.ensure_child(&p, name).await?)
                }
                (Some(p), Some(name)) => self
                    .mbx
                    .children(&p)
                    .await?
                    .into_iter()
                    .find(|c| c.name.to_lowercase() == name.to_lowercase())
                    .map(|c| c.id),
                _ => None,
            }
        };
        self.cache.insert(path.to_vec(), id.clone());
        Ok(id)
    }
}

pub async fn migrate_mailbox(
    src: &Endpoint,
    mbx: &Mailbox,
    state_path: &Path,
    opts: &Options,
    progress: Arc<Progress>,
) -> MailboxReport {
    let started = Instant::now();
    let mut report = MailboxReport {
        source: src.describe(),
        target: mbx.describe(),
        ..Default::default()
    };
    if let Err(e) = migrate_inner(src, mbx, state_path, opts, &progress, &mut report).await {
        report.error = Some(format!("{e:#}"));
        report.cause = Some(Arc::new(e));
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report
}

async fn migrate_inner(
    src: &Endpoint,
    mbx: &Mailbox,
    state_path: &Path,
    opts: &Options,
    progress: &Progress,
    report: &mut MailboxReport,
) -> Result<()> {
    let state = if opts.dry_run {
        ExchangeState::for_dry_run(state_path)?
    } else {
        ExchangeState::open(state_path)?
    };
    let mut s = Session::connect_with(src, &opts.limits()).await?;
    let mut list = folders::list(&mut s).await?;
    list.retain(|f| !folders::excluded(f, &opts.exclude));
    let mut resolver = FolderResolver::new(mbx, &list, !opts.dry_run);
    for f in list.iter().filter(|f| f.selectable) {
        progress.set_folder(&f.display());
        let target_path = target_path(f, opts);
        let mut rep = FolderReport {
            source: f.display(),
            target: target_path.join("/"),
            ..Default::default()
        };
        match resolver.resolve(&target_path).await {
            Ok(Some(id)) => {
                if let Err(e) =
                    sync_folder(&mut s, f, &id, mbx, &state, opts, progress, &mut rep).await
                {
                    rep.error = Some(format!("{e:#}"));
                }
            }
            Ok(None) if opts.dry_run => {
                rep.note = Some("would be created".into());
                let sel = s.select(&f.wire, true).await?;
                rep.would_copy = sel.exists as u64;
            }
            Ok(None) => {
                rep.error = Some("the Exchange folder could not be found or created".into())
            }
            Err(e) => rep.error = Some(format!("folder: {e:#}")),
        }
        progress.folder_done(&report.source, &rep);
        report.folders.push(rep);
    }
    s.logout().await;
    Ok(())
}

/// `--folder-map` (a `/`-separated Exchange path) else the source path.
fn target_path(f: &Folder, opts: &Options) -> Vec<String> {
    match opts.folder_map.get(&f.display()) {
        Some(t) => t
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => f.path.clone(),
    }
}

/// What one folder's copy shares between its concurrent messages.
struct FolderCtx<'a> {
    source: String,
    uidvalidity: u32,
    target: String,
    mbx: &'a Mailbox,
    state: &'a ExchangeState,
    /// Exchange ids mapped to some source message: a lookup never takes one twice.
    claimed: Mutex<HashSet<String>>,
    /// Serialises look-up-and-claim, so two equal messages never claim the same id.
    lookup: tokio::sync::Mutex<()>,
    /// Look up every message before creating it (after a UIDVALIDITY change).
    lookup_all: bool,
    /// One lock per content (SHA-256): equal messages are copied one after another.
    same_content: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pending: HashSet<u32>,
}

#[allow(clippy::too_many_arguments)]
async fn sync_folder(
    s: &mut Session,
    f: &Folder,
    target: &str,
    mbx: &Mailbox,
    state: &ExchangeState,
    opts: &Options,
    progress: &Progress,
    rep: &mut FolderReport,
) -> Result<()> {
    let sel = s.select(&f.wire, true).await?;
    let source = f.wire.clone();
    let previous = state.uidvalidity(&source)?;
    // A state put back from a snapshot (or lost) may be older than the target: a message
    // created after it has no row at all, so every unmapped one is looked up before it is
    // created — in a folder that holds anything (a new user's empty folder needs none).
    let lookup_all = previous.is_some_and(|v| v != sel.uidvalidity)
        || (opts.restored_state && !opts.dry_run && mbx.holds_messages(target).await?);
    if !opts.dry_run {
        state.set_folder(&source, sel.uidvalidity, target)?;
    }
    let copied = state.copied(&source, sel.uidvalidity)?;
    let listing = fetch_listing(s, "1:*", None, listing_cap(sel.exists)).await?;
    for (uid, why) in &listing.malformed {
        rep.failures
            .push(failure(f, *uid, 0, format!("metadata: {why}")));
    }
    let mut todo = Vec::new();
    for m in listing.metas {
        match copied.get(&m.uid) {
            None => todo.push(m),
            Some(c) => {
                let (flags, _) = canonical_flags(&m.flags, None);
                if flags != c.flags && !opts.dry_run {
                    let parts: Vec<String> = m.flags.clone();
                    mbx.patch(&c.id, &flags_patch(&parts))
                        .await
                        .context("flag update")?;
                    state.set_flags(&source, sel.uidvalidity, m.uid, &flags)?;
                    rep.flags_updated += 1;
                }
            }
        }
    }
    let max = opts.max_message_size();
    todo.retain(|m| {
        if m.size > max {
            rep.failures.push(failure(
                f,
                m.uid,
                m.size,
                format!("larger than --max-message-size ({max} bytes)"),
            ));
            return false;
        }
        true
    });
    if opts.dry_run {
        rep.would_copy = todo.len() as u64;
        return Ok(());
    }
    if todo.is_empty() && copied.len() as u32 == sel.exists {
        rep.unchanged = true;
    }
    let ctx = FolderCtx {
        source: source.clone(),
        uidvalidity: sel.uidvalidity,
        target: target.to_string(),
        mbx,
        state,
        claimed: Mutex::new(state.claimed(&source)?),
        lookup: tokio::sync::Mutex::new(()),
        lookup_all,
        same_content: Mutex::new(HashMap::new()),
        pending: state.pending(&source, sel.uidvalidity)?,
    };
    // The next batch is fetched while this one is created, and the creates never wait for a
    // batch to end: one batch after another, each FETCH and each batch's last creates left
    // the mailbox's request slots idle (the Exchange benchmark saw a gap at every batch).
    // At most two batches' bodies are held: the queue holds one, the FETCH the next.
    let (tx, rx) = tokio::sync::mpsc::channel(opts.batch_count.max(1));
    let plan = fetch_plan(&todo, opts.batch_bytes, opts.batch_count);
    let fetches = async move {
        for batch in plan {
            let mut bodies = fetch_bodies(s, batch).await?;
            for m in batch {
                let item = match bodies.map.remove(&m.uid) {
                    Some(b) => Fetched::Body(m.clone(), b),
                    None if bodies.undelivered.contains(&m.uid) || bodies.refused.is_some() => {
                        let why = bodies
                            .refused
                            .clone()
                            .unwrap_or_else(|| "the source sent no body".into());
                        Fetched::Failed(failure(f, m.uid, m.size, format!("source: {why}")))
                    }
                    None if bodies.too_large.contains_key(&m.uid)
                        || bodies.oversent.contains_key(&m.uid) =>
                    {
                        Fetched::Failed(failure(
                            f,
                            m.uid,
                            m.size,
                            "source sent a body beyond its size".into(),
                        ))
                    }
                    None => Fetched::Expunged,
                };
                // The creates stopped: nothing more to fetch.
                if tx.send(item).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let creates = async {
        let mut rx = rx;
        let queued = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let ctx = &ctx;
        // The next messages' requests are built while the creates in flight run, so a slot
        // given back is taken again at once: built by the copy that was to send it, each
        // message's encoding left its slot idle (the benchmark saw 1–3 creates in flight for
        // a fifth of the run).
        let done = queued
            .map(|item| async move {
                match item {
                    Fetched::Body(m, body) => {
                        let built = build(&m, &body).await;
                        Ok((m, built))
                    }
                    Fetched::Failed(why) => Err(Done::Failed(why)),
                    Fetched::Expunged => Err(Done::Expunged),
                }
            })
            .buffered(MAILBOX_CONCURRENCY)
            .map(|item| async move {
                match item {
                    Ok((m, built)) => {
                        let outcome = copy_one(ctx, &m, built).await;
                        Done::Copied(m.uid, m.size, outcome)
                    }
                    Err(done) => done,
                }
            })
            .buffer_unordered(MAILBOX_CONCURRENCY);
        let mut done = std::pin::pin!(done);
        while let Some(next) = done.next().await {
            let (uid, size, outcome) = match next {
                Done::Copied(uid, size, outcome) => (uid, size, outcome),
                Done::Failed(why) => {
                    rep.failures.push(why);
                    continue;
                }
                Done::Expunged => {
                    rep.expunged += 1;
                    continue;
                }
            };
            match outcome {
                Outcome::Created { not_carried } => {
                    rep.copied += 1;
                    rep.bytes += size;
                    progress.add(1, size);
                    for n in not_carried {
                        if !rep.refused_flags.contains(&n) {
                            rep.refused_flags.push(n);
                        }
                    }
                }
                Outcome::Found => rep.matched += 1,
                Outcome::Failed(why) => rep.failures.push(failure(f, uid, size, why)),
            }
        }
    };
    // A FETCH that fails ends the folder once what was fetched before it is created.
    let (fetched, ()) = tokio::join!(fetches, creates);
    fetched?;
    Ok(())
}

/// The FETCH batches of a folder's messages, a small one first: the creates start after a
/// FETCH of a few messages, not of megabytes, and the full-size batches that follow are
/// fetched while those are created.
fn fetch_plan(todo: &[Meta], max_bytes: u64, max_count: usize) -> Vec<&[Meta]> {
    let first = todo.len().min(FIRST_BATCH);
    let mut plan = batches(&todo[..first], |m| m.size, max_bytes, max_count);
    plan.extend(batches(&todo[first..], |m| m.size, max_bytes, max_count));
    plan
}

fn failure(f: &Folder, uid: u32, size: u64, reason: String) -> Failure {
    Failure {
        folder: f.display(),
        uid,
        size,
        reason,
    }
}

/// A message as the FETCH left it, on its way to the creates.
enum Fetched {
    Body(Meta, Vec<u8>),
    Failed(Failure),
    Expunged,
}

/// What became of a queued message.
enum Done {
    Copied(u32, u64, Outcome),
    Failed(Failure),
    Expunged,
}

enum Outcome {
    Created { not_carried: Vec<String> },
    Found,
    Failed(String),
}

/// Looks for a message created earlier (a crash or a lost answer) and claims its id.
async fn find_existing(ctx: &FolderCtx<'_>, sha: &str) -> Result<Option<String>, GraphError> {
    let _one = ctx.lookup.lock().await;
    let found = ctx.mbx.find_by_sha(&ctx.target, sha).await?;
    let mut claimed = ctx.claimed.lock().unwrap();
    let Some(id) = found.into_iter().find(|id| !claimed.contains(id)) else {
        return Ok(None);
    };
    claimed.insert(id.clone());
    Ok(Some(id))
}

/// A message's create request, built off the copy's task.
struct Built {
    sha: String,
    json: serde_json::Result<Vec<u8>>,
    later: Vec<serde_json::Value>,
    not_carried: Vec<String>,
}

/// Hashes, parses and encodes a message on a blocking thread: on the copy's own task, a
/// large message's encoding held back every create in flight (the Exchange benchmark saw the
/// mailbox's request slots idle meanwhile).
async fn build(m: &Meta, body: &[u8]) -> Result<Built, String> {
    let (body, flags) = (body.to_vec(), m.flags.clone());
    let date = m.date.as_deref().and_then(parse_internaldate);
    tokio::task::spawn_blocking(move || {
        let sha = sha_hex(&body);
        let Prepared {
            json: mut message,
            not_carried,
        } = prepare(&body, &flags, date, &sha);
        // Large attachments are added once the message exists (upload sessions), so that the
        // message is still created with its MAPI properties in its first save.
        let later = split_attachments(&mut message, MAX_CREATE_BYTES);
        Built {
            sha,
            json: serde_json::to_vec(&message),
            later,
            not_carried,
        }
    })
    .await
    .map_err(|e| format!("cannot encode: {e}"))
}

async fn copy_one(ctx: &FolderCtx<'_>, m: &Meta, built: Result<Built, String>) -> Outcome {
    let (flags, _) = canonical_flags(&m.flags, None);
    let Built {
        sha,
        json,
        later,
        not_carried,
    } = match built {
        Ok(b) => b,
        Err(why) => return Outcome::Failed(why),
    };
    let json = match json {
        Ok(j) => j,
        Err(e) => return Outcome::Failed(format!("cannot encode: {e}")),
    };
    if json.len() > MAX_CREATE_BYTES {
        return Outcome::Failed(format!(
            "too large for one Graph request ({} bytes encoded without its attachments; the \
             limit is {MAX_CREATE_BYTES})",
            json.len()
        ));
    }
    let done = |recovered: bool, id: String| Finish {
        uid: m.uid,
        sha: &sha,
        flags: &flags,
        later: &later,
        recovered,
        id,
    };
    // Equal messages (a duplicate pair) one after another: a look-up must not find the copy an
    // equal message is creating, stored but not yet claimed, and take it (the pair would
    // become one message).
    let same = ctx
        .same_content
        .lock()
        .unwrap()
        .entry(sha.clone())
        .or_default()
        .clone();
    let _one_at_a_time = same.lock().await;
    let mut look_first = ctx.lookup_all || ctx.pending.contains(&m.uid);
    let json = bytes::Bytes::from(json);
    for _ in 0..CREATE_ATTEMPTS {
        if look_first {
            match find_existing(ctx, &sha).await {
                Ok(Some(id)) => return finish(ctx, done(true, id), Outcome::Found).await,
                Ok(None) => {}
                Err(e) => return Outcome::Failed(format!("looking for an earlier copy: {e}")),
            }
        }
        // Intent before effect.
        if let Err(e) = ctx
            .state
            .add_pending(&ctx.source, ctx.uidvalidity, m.uid, &sha)
        {
            return Outcome::Failed(format!("state: {e:#}"));
        }
        match ctx.mbx.create_message(&ctx.target, json.clone()).await {
            Ok(id) => {
                ctx.claimed.lock().unwrap().insert(id.clone());
                let created = Outcome::Created { not_carried };
                return finish(ctx, done(false, id), created).await;
            }
            // The service may have created it: look before sending again.
            Err(GraphError::Transient { .. }) => look_first = true,
            Err(e) => {
                let _ = ctx.state.drop_pending(&ctx.source, ctx.uidvalidity, m.uid);
                return Outcome::Failed(format!("Exchange refused it: {e}"));
            }
        }
    }
    Outcome::Failed(format!(
        "no answer from Exchange after {CREATE_ATTEMPTS} attempts; the next run looks it up"
    ))
}

/// A message that exists in Exchange, and what it still needs.
struct Finish<'a> {
    uid: u32,
    sha: &'a str,
    flags: &'a str,
    later: &'a [serde_json::Value],
    /// Found by lookup (after a crash or a lost answer): some attachments may be there.
    recovered: bool,
    id: String,
}

/// Adds the attachments kept for later, then maps the message. Until both are done its
/// pending row stays, so the next run finds the message and completes it.
async fn finish(ctx: &FolderCtx<'_>, f: Finish<'_>, outcome: Outcome) -> Outcome {
    if let Err(e) = add_later(ctx.mbx, &f.id, f.later, f.recovered).await {
        return Outcome::Failed(format!(
            "attachment: {e} (the message exists; the next run completes it)"
        ));
    }
    match ctx
        .state
        .map(&ctx.source, ctx.uidvalidity, f.uid, &f.id, f.sha, f.flags)
    {
        Ok(()) => outcome,
        Err(e) => Outcome::Failed(format!("state: {e:#}")),
    }
}

/// Attachments added to an existing message: 3 MB or more through an upload session, others
/// by one POST. For a recovered message, those already there (same name and size) are skipped.
async fn add_later(
    mbx: &Mailbox,
    id: &str,
    later: &[serde_json::Value],
    recovered: bool,
) -> Result<(), GraphError> {
    if later.is_empty() {
        return Ok(());
    }
    let mut present = if recovered {
        mbx.attachment_keys(id).await?
    } else {
        Vec::new()
    };
    for a in later {
        let name = a["name"].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a["contentBytes"].as_str().unwrap_or_default())
            .unwrap_or_default();
        if let Some(i) = present
            .iter()
            .position(|(n, s)| n == name && *s == bytes.len() as u64)
        {
            present.swap_remove(i);
            continue;
        }
        if bytes.len() >= LARGE_ATTACHMENT {
            mbx.upload_attachment(id, a, &bytes).await?;
        } else {
            mbx.add_attachment(id, a).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metas(n: u32, size: u64) -> Vec<Meta> {
        (1..=n)
            .map(|uid| Meta {
                uid,
                flags: Vec::new(),
                date: None,
                size,
            })
            .collect()
    }

    #[test]
    fn a_folder_starts_with_a_small_fetch_then_full_batches() {
        let todo = metas(1000, 10_000);
        let plan = fetch_plan(&todo, 4 << 20, 500);
        let sizes: Vec<usize> = plan.iter().map(|b| b.len()).collect();
        assert_eq!(sizes[0], FIRST_BATCH);
        assert!(sizes[1..].iter().all(|n| *n > FIRST_BATCH), "{sizes:?}");
        let uids: Vec<u32> = plan.iter().flat_map(|b| b.iter().map(|m| m.uid)).collect();
        assert_eq!(
            uids,
            (1..=1000).collect::<Vec<_>>(),
            "each message once, in order"
        );
        // Fewer messages than a first batch: one batch.
        assert_eq!(fetch_plan(&metas(3, 10), 4 << 20, 500).len(), 1);
        assert!(fetch_plan(&[], 4 << 20, 500).is_empty());
    }
}
