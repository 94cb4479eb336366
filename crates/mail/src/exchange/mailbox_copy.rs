//! Exchange → Exchange through the mailbox import/export API: every item (mail, calendar,
//! contacts, tasks) exported whole from the source mailbox and imported into the target's
//! (<https://learn.microsoft.com/graph/import-exchange-mailbox-item>).
//!
//! - The mailbox id of each side: `GET /users/{upn}/settings/exchange` → `primaryMailboxId`.
//! - Folders: well-known ones matched by `wellKnownName` (a German "Posteingang" is the English
//!   "Inbox"), never by name; others found by name below their mapped parent, or created with
//!   their class (`type`), so a calendar folder stays a calendar folder.
//! - Items: `exportItems` at most 20 ids a call; each imported through the session's
//!   `importUrl` (pre-authenticated: no token), a new session when one expires. The state maps
//!   source item id → target item id and both change keys: a re-run imports nothing twice, and
//!   a source item whose change key moved is imported again in `update` mode.
//! - Incremental: the source's folders and each folder's items are read through the folder and
//!   item delta (`delta`), from the links the last run saved, so a re-run reads only what
//!   changed; an item deleted on the source is reported and its copy kept.
//! - Intent before effect: the source id is pending before its import leaves. After a lost
//!   answer (or a crash), the target folder's items not mapped to anything, of the same size,
//!   are exported and compared byte for byte with the source item's data; equal → mapped, not
//!   imported again. (Microsoft does not promise that an imported item exports to the same
//!   bytes; where it does not, a lost answer costs one duplicate, which `verify` would show.)

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures_util::{stream, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_graph::client::{encode_path, Call};
use tenantry_graph::{GraphClient, GraphError};

use super::delta;
use super::pacing::UploadPacer;
use super::state::{ExchangeState, ItemCopy};
use crate::report::{Failure, FolderReport, MailboxReport, Progress};
use crate::verify::{FolderCheck, VerifyReport};

/// "You can export up to 20 items in a single export request."
pub const EXPORT_BATCH: usize = 20;
/// The most one export answer of several items may weigh before the batch is split.
const EXPORT_BATCH_BYTES: usize = 64 << 20;
/// The most one item's export may weigh: Exchange Online's largest message is 150 MB, whose
/// base64 is 200 MB.
const EXPORT_ITEM_BYTES: usize = 256 << 20;

/// Imports in flight on the target mailbox: Outlook's per-mailbox limit of 4 concurrent requests
/// (<https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>).
const IMPORTS_IN_FLIGHT: usize = 4;

/// One side: a Graph client and a user's primary mailbox.
pub struct ExportMailbox {
    client: GraphClient,
    upn: String,
    id: String,
    /// The current import session's URL (target side).
    import_url: tokio::sync::Mutex<Option<String>>,
    /// Imports count against the mailbox's upload budget (150 MB per 5 minutes).
    uploads: UploadPacer,
}

/// A folder of a mailbox as listed.
#[derive(Debug, Clone)]
struct MFolder {
    id: String,
    parent: Option<String>,
    name: String,
    class: String,
    well_known: Option<String>,
}

impl MFolder {
    fn from_json(f: &Value) -> Option<Self> {
        Some(MFolder {
            id: f["id"].as_str()?.to_string(),
            parent: f["parentFolderId"].as_str().map(str::to_string),
            name: f["displayName"].as_str().unwrap_or_default().to_string(),
            class: f["type"].as_str().unwrap_or("IPF.Note").to_string(),
            well_known: f["wellKnownName"].as_str().map(str::to_string),
        })
    }
}

/// The source's folders after a folder delta round.
struct FolderRound {
    /// Every folder (Graph's JSON), as the state will keep it.
    folders: Vec<Value>,
    /// Anything differs from what the last run saw (or nothing was saved): map again.
    changed: bool,
    /// Folders the last run knew that are gone from the source.
    removed: Vec<MFolder>,
    /// Where the next round starts.
    link: String,
}

/// The state's key of a source folder's item delta (the folder delta's is
/// `state::FOLDERS_KEY`).
fn items_key(folder: &str) -> String {
    format!("items:{folder}")
}

impl ExportMailbox {
    pub async fn open(client: GraphClient, upn: &str) -> Result<Self> {
        let v = client
            .get_json(&format!("/users/{}/settings/exchange", encode_path(upn)))
            .await
            .with_context(|| format!("exchange://{upn}: the mailbox settings"))?;
        let Some(id) = v["primaryMailboxId"].as_str() else {
            bail!("exchange://{upn}: no primaryMailboxId in the mailbox settings");
        };
        Ok(Self {
            client,
            upn: upn.to_string(),
            id: id.to_string(),
            import_url: Default::default(),
            uploads: UploadPacer::default(),
        })
    }

    /// Paces imports to `budget` bytes per `window`.
    pub fn with_upload_budget(mut self, budget: u64, window: std::time::Duration) -> Self {
        self.uploads = UploadPacer::new(budget, window);
        self
    }

    pub fn describe(&self) -> String {
        format!("exchange://{}", self.upn)
    }

    pub fn upn(&self) -> &str {
        &self.upn
    }

    fn path(&self, rest: &str) -> String {
        format!("/admin/exchange/mailboxes/{}/{rest}", encode_path(&self.id))
    }

    /// Every folder: the listing, and the children of any folder whose children it left out.
    async fn folders(&self) -> Result<Vec<MFolder>, GraphError> {
        let mut all = self.client.get_all(&self.path("folders")).await?;
        self.add_unlisted_children(&mut all).await?;
        Ok(all.iter().filter_map(MFolder::from_json).collect())
    }

    /// Lists the `childFolders` of every folder of `all` whose `childFolderCount` differs from
    /// the children `all` holds of it, and of those it finds, in turn; adds the folders not in
    /// `all` yet, drops known children the listing no longer has (with what was below them: a
    /// delta that leaves nested folders out never reports them removed), and answers how many
    /// folders were added or dropped. A listed folder's count is set to what was listed, so that
    /// a stale count in a saved list does not list it again every run.
    async fn add_unlisted_children(&self, all: &mut Vec<Value>) -> Result<usize, GraphError> {
        let mut seen: HashSet<String> = all
            .iter()
            .filter_map(|f| f["id"].as_str().map(str::to_string))
            .collect();
        let mut added = 0;
        let mut i = 0;
        while i < all.len() {
            let known = all
                .iter()
                .filter(|c| c["parentFolderId"] == all[i]["id"])
                .count();
            let count = all[i]["childFolderCount"].as_u64();
            if count.is_some_and(|n| n as usize != known) {
                let id = all[i]["id"].clone();
                let url = self.path(&format!(
                    "folders/{}/childFolders",
                    encode_path(id.as_str().unwrap_or_default())
                ));
                let children = self.client.get_all(&url).await?;
                all[i]["childFolderCount"] = json!(children.len());
                // Only a count below the children known drops any: a listing that shows more
                // than the count (hidden folders, say) must not lose what it shows.
                let fewer = count.is_some_and(|n| (n as usize) < known);
                let gone: Vec<Value> = all
                    .iter()
                    .filter(|c| fewer && c["parentFolderId"] == id)
                    .filter(|c| !children.iter().any(|l| l["id"] == c["id"]))
                    .map(|c| c["id"].clone())
                    .collect();
                if !gone.is_empty() {
                    let before = all.len();
                    drop_with_descendants(all, &gone);
                    added += before - all.len();
                    i = all.iter().position(|f| f["id"] == id).unwrap_or(0);
                }
                for c in children {
                    if seen.insert(c["id"].as_str().unwrap_or_default().to_string()) {
                        all.push(c);
                        added += 1;
                    }
                }
            }
            i += 1;
        }
        Ok(added)
    }

    /// The folders through the folder delta: the list the last complete round left in the
    /// state, with this round's changes applied (or every folder, on a first run or when the
    /// saved link had expired).
    ///
    /// Microsoft's page (<https://learn.microsoft.com/graph/api/mailboxfolder-delta>) does not
    /// say that the delta of `…/folders` includes nested folders, and it documents a
    /// `…/folders/{id}/childFolders/delta` besides; so, as for the full listing, a folder whose
    /// `childFolderCount` is more than the children known gets its `childFolders` listed (a
    /// delta that leaves nested folders out is then complete on a first run or a reset; a nested
    /// folder added later is found when its parent is reported changed with its new count).
    /// A changed folder's properties are merged into what was known: "updated instances are
    /// represented by their id with at least the properties that have been updated"
    /// (<https://learn.microsoft.com/graph/delta-query-overview#resource-representation-in-the-delta-query-response>).
    async fn folder_round(&self, state: &ExchangeState) -> Result<FolderRound> {
        let saved = state.delta_link(super::state::FOLDERS_KEY)?;
        let before = match saved {
            Some(_) => state.source_folders()?,
            None => Vec::new(),
        };
        let round = delta::round(&self.client, &self.path("folders/delta"), saved.as_deref())
            .await
            .with_context(|| format!("{}: the folder delta", self.describe()))?;
        let mut folders = if round.reset {
            Vec::new()
        } else {
            before.clone()
        };
        for f in &round.changed {
            match folders.iter_mut().find(|k| k["id"] == f["id"]) {
                Some(k) => merge_properties(k, f),
                None => folders.push(f.clone()),
            }
        }
        let removed_ids: Vec<Value> = round.removed.iter().map(|id| json!(id)).collect();
        drop_with_descendants(&mut folders, &removed_ids);
        let unlisted = self
            .add_unlisted_children(&mut folders)
            .await
            .with_context(|| format!("{}: the child folders", self.describe()))?;
        // What the last run knew and is gone now (after a reset too: the full list tells).
        let removed = before
            .iter()
            .filter(|b| !folders.iter().any(|f| f["id"] == b["id"]))
            .filter_map(MFolder::from_json)
            .collect();
        Ok(FolderRound {
            changed: saved.is_none()
                || round.reset
                || !round.changed.is_empty()
                || !round.removed.is_empty()
                || unlisted > 0,
            folders,
            removed,
            link: round.link,
        })
    }

    /// A folder's items through its item delta, from the link its last complete copy saved.
    async fn item_round(&self, state: &ExchangeState, folder: &str) -> Result<delta::Round> {
        self.item_round_each(state, folder, |_| {}).await
    }

    /// [`Self::item_round`], each page's entries shown to `seen` as they arrive.
    async fn item_round_each(
        &self,
        state: &ExchangeState,
        folder: &str,
        seen: impl FnMut(&[Value]),
    ) -> Result<delta::Round> {
        let start = self.path(&format!("folders/{}/items/delta", encode_path(folder)));
        let saved = state.delta_link(&items_key(folder))?;
        Ok(delta::round_each(&self.client, &start, saved.as_deref(), seen).await?)
    }

    async fn create_folder(&self, parent: &str, name: &str, class: &str) -> Result<String> {
        let call = Call::new(
            Method::POST,
            self.path(&format!("folders/{}/childFolders", encode_path(parent))),
        )
        .json(&json!({"displayName": name, "type": class}));
        let v = self.client.json(&call).await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .context("folder created without an id")
    }

    /// Whether `error`, met copying the source folder `folder`, is that folder's absence: a 404
    /// somewhere in the copy, and the source answering 404 for the folder itself (a 404 of the
    /// target's is not the source's folder gone).
    async fn folder_is_gone(&self, error: &anyhow::Error, folder: &str) -> bool {
        let not_found = error.chain().any(|c| {
            c.downcast_ref::<GraphError>()
                .is_some_and(GraphError::is_not_found)
        });
        if !not_found {
            return false;
        }
        let url = self.path(&format!("folders/{}", encode_path(folder)));
        matches!(self.client.json(&Call::new(Method::GET, url)).await, Err(e) if e.is_not_found())
    }

    /// Whether a folder holds any item: its first page only (a restored state needs
    /// look-ups only where something may already have been copied).
    async fn holds_items(&self, folder: &str) -> Result<bool, GraphError> {
        let url = self.path(&format!("folders/{}/items", encode_path(folder)));
        let page = self.client.json(&Call::new(Method::GET, url)).await?;
        Ok(page["value"].as_array().is_some_and(|v| !v.is_empty()))
    }

    /// (id, changeKey, size) of each item of a folder.
    async fn items(&self, folder: &str) -> Result<Vec<(String, String, u64)>, GraphError> {
        let url = self.path(&format!("folders/{}/items", encode_path(folder)));
        Ok(self
            .client
            .get_all(&url)
            .await?
            .iter()
            .filter_map(|i| {
                Some((
                    i["id"].as_str()?.to_string(),
                    i["changeKey"].as_str().unwrap_or_default().to_string(),
                    i["size"].as_u64().unwrap_or(0),
                ))
            })
            .collect())
    }

    /// Exports up to 20 items: id → (changeKey, data as base64). A batch whose answer is over
    /// `EXPORT_BATCH_BYTES` is split in halves, down to one item, which may weigh up to
    /// `EXPORT_ITEM_BYTES` (Exchange's largest message, base64-encoded, with room to spare).
    async fn export(&self, ids: &[String]) -> Result<HashMap<String, (String, String)>> {
        debug_assert!(ids.len() <= EXPORT_BATCH);
        let mut out = HashMap::new();
        let mut pending = vec![ids.to_vec()];
        while let Some(batch) = pending.pop() {
            let limit = if batch.len() == 1 {
                EXPORT_ITEM_BYTES
            } else {
                EXPORT_BATCH_BYTES
            };
            let call = Call::new(Method::POST, self.path("exportItems"))
                .json(&json!({ "itemIds": batch }))
                .max_body(limit);
            let v = match self.client.json(&call).await {
                Ok(v) => v,
                Err(e) if e.is_too_large() && batch.len() > 1 => {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    pending.push(b.to_vec());
                    pending.push(a.to_vec());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            out.extend(
                v["value"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r["itemId"].as_str()?.to_string(),
                            (
                                r["changeKey"].as_str().unwrap_or_default().to_string(),
                                r["data"].as_str()?.to_string(),
                            ),
                        ))
                    }),
            );
        }
        Ok(out)
    }

    /// The import session's URL; a new session when there is none or the current one is
    /// `stale` (a concurrent import that met the expiry first has replaced it already).
    async fn session(&self, stale: Option<&str>) -> Result<String> {
        let mut url = self.import_url.lock().await;
        if url.is_none() || url.as_deref() == stale {
            let v = self
                .client
                .json(&Call::new(Method::POST, self.path("createImportSession")))
                .await?;
            *url = Some(
                v["importUrl"]
                    .as_str()
                    .context("createImportSession answered without an importUrl")?
                    .to_string(),
            );
        }
        Ok(url.clone().unwrap_or_default())
    }

    /// Imports one item; (target id, target changeKey). An expired session is replaced once.
    /// Not re-sent after a lost answer: the caller looks first.
    async fn import(&self, body: &Value) -> Result<(String, String), GraphError> {
        // Encoded once: for the budget and for every send (an item's data is kilobytes to
        // megabytes of base64, encoded on the task that drives the imports in flight).
        let json = bytes::Bytes::from(body.to_string());
        let _counted = self.uploads.reserve(json.len() as u64).await;
        let mut stale: Option<String> = None;
        loop {
            let url = self
                .session(stale.as_deref())
                .await
                .map_err(|e| GraphError::Permanent {
                    status: 0,
                    code: None,
                    message: format!("{e:#}"),
                    ids: Default::default(),
                })?;
            let mut call = Call::new(Method::POST, url.clone())
                .unauthenticated()
                .not_idempotent();
            call.body = Some((json.clone(), "application/json"));
            match self.client.json(&call).await {
                Ok(v) => {
                    return Ok((
                        v["itemId"].as_str().unwrap_or_default().to_string(),
                        v["changeKey"].as_str().unwrap_or_default().to_string(),
                    ))
                }
                // "After this time, the importUrl expires and is deleted."
                Err(e) if stale.is_none() && matches!(e.status(), Some(401 | 404)) => {
                    stale = Some(url)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Source folder id → target folder id: well-known by `wellKnownName`, others by name below
/// the mapped parent, created with their class when missing (in a dry run: not created, the
/// target id left empty). Parents before children.
async fn map_folders(
    src: &[MFolder],
    dst: &mut Vec<MFolder>,
    target: &ExportMailbox,
    dry_run: bool,
) -> Result<Vec<(MFolder, String)>> {
    let depth = |f: &MFolder| {
        let mut d = 0;
        let mut cur = f.parent.clone();
        while let Some(p) = cur {
            d += 1;
            cur = src
                .iter()
                .find(|x| x.id == p)
                .and_then(|x| x.parent.clone());
            if d > 64 {
                break;
            }
        }
        d
    };
    let mut ordered: Vec<&MFolder> = src.iter().collect();
    ordered.sort_by_key(|f| depth(f));
    let mut map: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for f in ordered {
        let id = if let Some(wk) = &f.well_known {
            match dst
                .iter()
                .find(|d| d.well_known.as_deref() == Some(wk.as_str()))
            {
                Some(d) => d.id.clone(),
                None => continue,
            }
        } else {
            let Some(parent) = f.parent.as_ref().and_then(|p| map.get(p)).cloned() else {
                continue;
            };
            let found = dst.iter().find(|d| {
                d.parent.as_deref() == Some(parent.as_str()) && d.name.eq_ignore_ascii_case(&f.name)
            });
            match found {
                Some(d) => d.id.clone(),
                None => {
                    let id = if dry_run {
                        String::new()
                    } else {
                        target.create_folder(&parent, &f.name, &f.class).await?
                    };
                    dst.push(MFolder {
                        id: id.clone(),
                        parent: Some(parent),
                        ..f.clone()
                    });
                    id
                }
            }
        };
        map.insert(f.id.clone(), id.clone());
        if f.parent.is_some() {
            out.push((f.clone(), id));
        }
    }
    Ok(out)
}

/// How a copy runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyMode {
    /// The state was put back from a snapshot, which may be older than the target (an item
    /// imported after it has no row): every unmapped item is then looked for on the target
    /// before it is imported, as after a lost answer.
    pub restored: bool,
    /// Count what would be imported (created or updated) and which folders created; write
    /// nothing — neither to the target nor to the state (no delta link is kept either).
    pub dry_run: bool,
}

/// `restored`: see [`CopyMode::restored`].
pub async fn migrate_mailbox(
    src: &ExportMailbox,
    dst: &ExportMailbox,
    state_path: &Path,
    progress: &Progress,
    restored: bool,
) -> MailboxReport {
    let mode = CopyMode {
        restored,
        dry_run: false,
    };
    migrate_mailbox_with(src, dst, state_path, progress, mode).await
}

pub async fn migrate_mailbox_with(
    src: &ExportMailbox,
    dst: &ExportMailbox,
    state_path: &Path,
    progress: &Progress,
    mode: CopyMode,
) -> MailboxReport {
    let started = Instant::now();
    let mut report = MailboxReport {
        source: src.describe(),
        target: dst.describe(),
        ..Default::default()
    };
    if let Err(e) = migrate_inner(src, dst, state_path, progress, mode, &mut report).await {
        report.error = Some(format!("{e:#}"));
        report.cause = Some(std::sync::Arc::new(e));
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report
}

/// Folders through the folder delta: when nothing changed since the last run, the folder pairs
/// it saved are used as they are (neither side's folders listed); otherwise the target's
/// folders are listed and the source's mapped onto them again. Items through each folder's
/// item delta (`FolderCopy::run`).
async fn migrate_inner(
    src: &ExportMailbox,
    dst: &ExportMailbox,
    state_path: &Path,
    progress: &Progress,
    mode: CopyMode,
    report: &mut MailboxReport,
) -> Result<()> {
    let state = if mode.dry_run {
        ExchangeState::for_dry_run(state_path)?
    } else {
        ExchangeState::open(state_path)?
    };
    let round = src.folder_round(&state).await?;
    let source_folders: Vec<MFolder> = round
        .folders
        .iter()
        .filter_map(MFolder::from_json)
        .collect();
    let saved = state.folder_pairs()?;
    let unchanged = !round.changed
        && source_folders
            .iter()
            .all(|f| f.parent.is_none() || saved.contains_key(&f.id));
    let pairs = if unchanged {
        source_folders
            .iter()
            .filter(|f| f.parent.is_some())
            .map(|f| (f.clone(), saved[&f.id].clone()))
            .collect()
    } else {
        let mut target_folders = dst.folders().await?;
        map_folders(&source_folders, &mut target_folders, dst, mode.dry_run).await?
    };
    for gone in &round.removed {
        report.folders.push(FolderReport {
            source: gone.name.clone(),
            target: gone.well_known.clone().unwrap_or_else(|| gone.name.clone()),
            unchanged: true,
            note: Some(format!(
                "folder {} was deleted on the source; its copy in the target is kept",
                gone.name
            )),
            ..Default::default()
        });
    }
    if !mode.dry_run {
        let ids: Vec<(String, String)> = pairs
            .iter()
            .map(|(f, t)| (f.id.clone(), t.clone()))
            .collect();
        state.save_folders(&round.folders, &ids, &round.link)?;
    }
    let mut map = state.items()?;
    let pending = state.items_pending()?;
    let mut claimed: HashSet<String> = map.values().map(|c| c.target_id.clone()).collect();
    // The item deltas are read ahead, while the folder before is copied: read in turn, their
    // pages (one request each, one after another) left the target's import slots idle. Ahead
    // up to the next folder with changes, so an empty folder in between hides no wait.
    let pairs: Vec<(MFolder, String)> = pairs;
    let mut ahead: std::collections::VecDeque<Result<delta::Round>> = Default::default();
    let read_ahead = |from: usize, queued: usize| {
        let (src, state, pairs) = (src, &state, &pairs);
        async move {
            let mut out = Vec::new();
            for (f, _) in pairs.iter().skip(from + queued) {
                let round = src.item_round(state, &f.id).await;
                let busy = has_changes(&round);
                out.push(round);
                if busy {
                    break;
                }
            }
            out
        }
    };
    // Nothing read ahead (the first folder): its pages are copied as they arrive, where its
    // imports may run 4 at once (no look-ups first).
    let live = !mode.dry_run && !mode.restored && pending.is_empty();
    let mut gone_on_source: Vec<Value> = Vec::new();
    for (i, (f, target)) in pairs.iter().enumerate() {
        let this_round = match ahead.pop_front() {
            Some(round) => ItemRound::Read(round),
            None if live => ItemRound::Live,
            None => {
                ahead.extend(read_ahead(i, 0).await);
                ItemRound::Read(
                    ahead
                        .pop_front()
                        .context("no item delta read for the folder")?,
                )
            }
        };
        let busy_ahead = ahead.iter().any(has_changes);
        let queued = ahead.len();
        let prefetch = async {
            if busy_ahead {
                Vec::new()
            } else {
                read_ahead(i + 1, queued).await
            }
        };
        progress.set_folder(&f.name);
        let mut rep = FolderReport {
            source: f.name.clone(),
            target: f.well_known.clone().unwrap_or_else(|| f.name.clone()),
            ..Default::default()
        };
        if target.is_empty() {
            rep.note = Some(format!("folder {} would be created", f.name));
        }
        let ctx = FolderCopy {
            src,
            dst,
            state: &state,
            target,
            pending: &pending,
            mode,
        };
        let copy = ctx.run(f, this_round, &mut map, &mut claimed, progress, &mut rep);
        let (copied, read) = tokio::join!(copy, prefetch);
        ahead.extend(read);
        if let Err(e) = copied {
            if src.folder_is_gone(&e, &f.id).await {
                // Deleted on the source since the folder list was read, or below a folder
                // delta that leaves nested folders out (which never reports it removed).
                rep.unchanged = true;
                rep.note = Some(format!(
                    "folder {} was deleted on the source; its copy in the target is kept",
                    f.name
                ));
                gone_on_source.push(json!(f.id));
                progress.folder_done(&report.source, &rep);
                report.folders.push(rep);
                continue;
            }
            rep.error = Some(format!("{e:#}"));
        }
        // Its target folder may be gone (deleted in the target meanwhile): the next run lists
        // the target's folders and maps them again rather than trust the saved pairs.
        if !mode.dry_run && (rep.error.is_some() || !rep.failures.is_empty()) {
            state.forget_folder_pairs()?;
        }
        progress.folder_done(&report.source, &rep);
        report.folders.push(rep);
    }
    if !gone_on_source.is_empty() && !mode.dry_run {
        let mut folders = round.folders.clone();
        drop_with_descendants(&mut folders, &gone_on_source);
        let ids: Vec<(String, String)> = pairs
            .iter()
            .filter(|(f, _)| folders.iter().any(|k| k["id"] == f.id.as_str()))
            .map(|(f, t)| (f.id.clone(), t.clone()))
            .collect();
        state.save_folders(&folders, &ids, &round.link)?;
    }
    Ok(())
}

/// Removes the folders `ids` from `all` and every folder below them (a folder delta may report
/// only the top of a removed subtree, or, leaving nested folders out, nothing below it).
fn drop_with_descendants(all: &mut Vec<Value>, ids: &[Value]) {
    let mut gone: HashSet<String> = ids
        .iter()
        .filter_map(|id| id.as_str().map(str::to_string))
        .collect();
    loop {
        let below: Vec<String> = all
            .iter()
            .filter(|f| {
                f["parentFolderId"]
                    .as_str()
                    .is_some_and(|p| gone.contains(p))
            })
            .filter_map(|f| f["id"].as_str().map(str::to_string))
            .filter(|id| !gone.contains(id))
            .collect();
        if below.is_empty() {
            break;
        }
        gone.extend(below);
    }
    all.retain(|f| !f["id"].as_str().is_some_and(|id| gone.contains(id)));
}

/// Sets the properties `update` carries on `known`, keeping those it leaves out.
fn merge_properties(known: &mut Value, update: &Value) {
    match (known.as_object_mut(), update.as_object()) {
        (Some(k), Some(u)) => k.extend(u.iter().map(|(key, v)| (key.clone(), v.clone()))),
        _ => *known = update.clone(),
    }
}

/// A round with something to copy or report (or an error to report): worth waiting for.
fn has_changes(round: &Result<delta::Round>) -> bool {
    round
        .as_ref()
        .map_or(true, |r| !r.changed.is_empty() || !r.removed.is_empty())
}

/// What a round tells beyond its items: what the source deleted (a migration deletes nothing
/// in the target: reported) and a note after an expired token.
fn note_round(
    f: &MFolder,
    round: &delta::Round,
    map: &HashMap<String, ItemCopy>,
    rep: &mut FolderReport,
) {
    if round.reset {
        rep.note = Some(format!(
            "folder {}: the source's change token had expired; its items were listed again in full (items deleted meanwhile cannot be told)",
            f.name
        ));
    }
    rep.deleted_on_source = round
        .removed
        .iter()
        .filter(|id| map.contains_key(*id))
        .count() as u64;
}

/// A folder's item delta: read already (ahead, while the folder before was copied), or to be
/// read while its items are copied.
enum ItemRound {
    Read(Result<delta::Round>),
    Live,
}

/// How a folder's imports run: how many at once, each looked for on the target first or not.
#[derive(Clone, Copy)]
struct Lanes {
    width: usize,
    look_first: bool,
}

struct FolderCopy<'a> {
    src: &'a ExportMailbox,
    dst: &'a ExportMailbox,
    state: &'a ExchangeState,
    target: &'a str,
    pending: &'a HashSet<String>,
    mode: CopyMode,
}

/// The id map and the claimed target items, shared by a folder's concurrent imports (one
/// task: borrowed only between awaits).
struct Books<'m> {
    map: &'m mut HashMap<String, ItemCopy>,
    claimed: &'m mut HashSet<String>,
}

impl FolderCopy<'_> {
    async fn run(
        &self,
        f: &MFolder,
        round: ItemRound,
        map: &mut HashMap<String, ItemCopy>,
        claimed: &mut HashSet<String>,
        progress: &Progress,
        rep: &mut FolderReport,
    ) -> Result<()> {
        let round = match round {
            ItemRound::Read(round) => round?,
            ItemRound::Live => return self.run_live(f, map, claimed, progress, rep).await,
        };
        let todo: Vec<String> = round
            .changed
            .iter()
            .filter_map(|i| {
                let id = i["id"].as_str()?;
                let ck = i["changeKey"].as_str().unwrap_or_default();
                map.get(id)
                    .is_none_or(|c| c.source_change_key != ck)
                    .then(|| id.to_string())
            })
            .collect();
        if self.mode.dry_run {
            note_round(f, &round, map, rep);
            for id in &todo {
                if map.contains_key(id) {
                    rep.would_update += 1;
                } else {
                    rep.would_copy += 1;
                }
            }
            return Ok(());
        }
        if todo.is_empty() {
            self.round_done(f, &round, map, rep)?;
            rep.unchanged = true;
            return Ok(());
        }
        // A restored state may be older than the target: look for every unmapped item there
        // first, unless the target folder is empty (a new user's).
        let look_first = self.mode.restored && self.dst.holds_items(self.target).await?;
        // A look-up could take the copy an equal item's concurrent import has just created and
        // not yet recorded: while items are looked up, one import at a time.
        let width = if look_first || todo.iter().any(|id| self.pending.contains(id)) {
            1
        } else {
            IMPORTS_IN_FLIGHT
        };
        let books = Mutex::new(Books { map, claimed });
        // Owned batches: a stream over borrowed chunks makes the future's Send-ness depend on
        // a higher-ranked lifetime the compiler cannot prove (the move runner needs Send).
        let batches: Vec<Vec<String>> = todo.chunks(EXPORT_BATCH).map(<[String]>::to_vec).collect();
        let lanes = Lanes { width, look_first };
        self.copy_batches(f, stream::iter(batches), lanes, &books, progress, rep)
            .await?;
        let Books { map, .. } = books.into_inner().expect("books");
        self.round_done(f, &round, map, rep)
    }

    /// The folder's item delta read now, its items exported and imported page by page as the
    /// pages arrive: read whole first, the first folder's pages (one request each, one after
    /// another) left the target's import slots idle at the start of every run. An id that
    /// comes again on a later page (changed while the round was read) waits for the round's
    /// end and is imported again only if its last state differs from the copy's. Only where
    /// imports run 4 at once (no look-ups: no pending intent, no restored state, no dry run).
    async fn run_live(
        &self,
        f: &MFolder,
        map: &mut HashMap<String, ItemCopy>,
        claimed: &mut HashSet<String>,
        progress: &Progress,
        rep: &mut FolderReport,
    ) -> Result<()> {
        let books = Mutex::new(Books { map, claimed });
        // Source id → change key when it was queued; ids seen twice in this round.
        let queued: Mutex<(HashMap<String, String>, HashSet<String>)> = Default::default();
        // New or changed ids of a page, each once in the round.
        let fresh = |page: &[Value]| -> Vec<String> {
            let b = books.lock().expect("books");
            let mut q = queued.lock().expect("queued");
            let (sent, again) = &mut *q;
            let mut out = Vec::new();
            for v in page.iter().filter(|v| v.get("@removed").is_none()) {
                let Some(id) = v["id"].as_str() else {
                    continue;
                };
                let ck = v["changeKey"].as_str().unwrap_or_default();
                if sent.contains_key(id) {
                    again.insert(id.to_string());
                } else if b.map.get(id).is_none_or(|c| c.source_change_key != ck) {
                    sent.insert(id.to_string(), ck.to_string());
                    out.push(id.to_string());
                }
            }
            out
        };
        // Batches for the exports, as the pages fill them (the last one when the round ends).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
        let read = async move {
            let mut ids: Vec<String> = Vec::new();
            let round = self
                .src
                .item_round_each(self.state, &f.id, |page| {
                    ids.extend(fresh(page));
                    while ids.len() >= EXPORT_BATCH {
                        let rest = ids.split_off(EXPORT_BATCH);
                        // The copy stopped (an error): the round is still read to its end.
                        let _ = tx.send(std::mem::replace(&mut ids, rest));
                    }
                })
                .await;
            if !ids.is_empty() {
                let _ = tx.send(ids);
            }
            round
        };
        let batches = stream::poll_fn(move |cx| rx.poll_recv(cx));
        let lanes = Lanes {
            width: IMPORTS_IN_FLIGHT,
            look_first: false,
        };
        let copy = self.copy_batches(f, batches, lanes, &books, progress, rep);
        let (round, copied) = tokio::join!(read, copy);
        copied?;
        let round = round?;
        let (sent, again) = queued.into_inner().expect("queued");
        // Changed again while the round was read: the last state, where the copy is older.
        let stale: Vec<String> = {
            let b = books.lock().expect("books");
            round
                .changed
                .iter()
                .filter_map(|i| {
                    let id = i["id"].as_str().filter(|id| again.contains(*id))?;
                    let ck = i["changeKey"].as_str().unwrap_or_default();
                    b.map
                        .get(id)
                        .is_some_and(|c| c.source_change_key != ck)
                        .then(|| id.to_string())
                })
                .collect()
        };
        if !stale.is_empty() {
            let batches: Vec<Vec<String>> =
                stale.chunks(EXPORT_BATCH).map(<[String]>::to_vec).collect();
            self.copy_batches(f, stream::iter(batches), lanes, &books, progress, rep)
                .await?;
        }
        let Books { map, .. } = books.into_inner().expect("books");
        rep.unchanged = sent.is_empty();
        self.round_done(f, &round, map, rep)
    }

    /// After a folder's items: its report, and the link the next round starts from — kept
    /// only when every change of this one is in, or the failed items would never be returned
    /// again.
    fn round_done(
        &self,
        f: &MFolder,
        round: &delta::Round,
        map: &HashMap<String, ItemCopy>,
        rep: &mut FolderReport,
    ) -> Result<()> {
        note_round(f, round, map, rep);
        if rep.failures.is_empty() {
            self.state.set_delta_link(&items_key(&f.id), &round.link)?;
        }
        Ok(())
    }

    /// Imports `lanes.width` items at a time into the target while the source exports the
    /// next batches: each mailbox has its own 4 request slots, and one request at a time used
    /// a fifth of the target's (the Exchange benchmark measured 0.20 of what the limits allow).
    async fn copy_batches(
        &self,
        f: &MFolder,
        batches: impl futures_util::Stream<Item = Vec<String>>,
        lanes: Lanes,
        books: &Mutex<Books<'_>>,
        progress: &Progress,
        rep: &mut FolderReport,
    ) -> Result<()> {
        let Lanes { width, look_first } = lanes;
        // The exports run on their own, a batch or two ahead, and hand items over through a
        // queue: chained to the imports, an export progressed only when an import slot was
        // free to ask for its next item, and the slots waited for it at each batch's end. Held
        // meanwhile: up to two batches queued and two being exported.
        let (tx, rx) = tokio::sync::mpsc::channel(2 * EXPORT_BATCH);
        let exports = async move {
            let exported = batches
                .map(|batch| async move {
                    let mut got = self.src.export(&batch).await?;
                    Ok::<_, anyhow::Error>(
                        batch
                            .iter()
                            .map(|id| (id.clone(), got.remove(id)))
                            .collect::<Vec<_>>(),
                    )
                })
                .buffered(2);
            let mut exported = std::pin::pin!(exported);
            while let Some(batch) = exported.next().await {
                let items = match batch {
                    Ok(items) => items.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                for item in items {
                    // The imports stopped (an error): nothing more to export.
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
        };
        let imports = async {
            let mut rx = rx;
            let queued = stream::poll_fn(move |cx| rx.poll_recv(cx));
            let outcomes = queued
                .map(|item| async move {
                    let (id, got) = item?;
                    let Some((ck, data)) = got else {
                        return Ok((id, 0, Err(anyhow::anyhow!("the source did not export it"))));
                    };
                    let size = decoded_len(&data);
                    let outcome = self.copy(&id, &ck, &data, size, look_first, books).await;
                    Ok::<_, anyhow::Error>((id, size, outcome))
                })
                .buffer_unordered(width);
            let mut outcomes = std::pin::pin!(outcomes);
            while let Some(next) = outcomes.next().await {
                let (id, size, outcome) = next?;
                match outcome {
                    Ok(true) => rep.matched += 1,
                    Ok(false) => {
                        rep.copied += 1;
                        rep.bytes += size;
                        progress.add(1, size);
                    }
                    Err(e) => rep.failures.push(failure(f, &id, format!("{e:#}"))),
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        let ((), imported) = tokio::join!(exports, imports);
        imported
    }

    /// Imports one item (or finds it after a lost answer, or when `look_first`); `true` when
    /// found.
    #[allow(clippy::too_many_arguments)]
    async fn copy(
        &self,
        id: &str,
        ck: &str,
        data: &str,
        size: u64,
        look_first: bool,
        books: &Mutex<Books<'_>>,
    ) -> Result<bool> {
        let previous = books.lock().expect("books").map.get(id).cloned();
        if previous.is_none() && (look_first || self.pending.contains(id)) {
            if let Some(found) = self.find(data, size, books).await? {
                self.record(id, ck, found, books)?;
                return Ok(true);
            }
        }
        let body = match &previous {
            Some(p) => json!({"FolderId": self.target, "Mode": "update", "Data": data,
                              "ItemId": p.target_id, "ChangeKey": p.target_change_key}),
            None => json!({"FolderId": self.target, "Mode": "create", "Data": data}),
        };
        self.state.add_item_pending(id)?;
        match self.dst.import(&body).await {
            Ok(done) => self.record(id, ck, done, books).map(|_| false),
            Err(GraphError::Transient { .. }) if previous.is_none() => {
                // The service may have imported it: look before importing again.
                if let Some(found) = self.find(data, size, books).await? {
                    self.record(id, ck, found, books)?;
                    return Ok(true);
                }
                let done = self.dst.import(&body).await?;
                self.record(id, ck, done, books).map(|_| false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A target item of the folder no source item claims, with exactly this data. Claimed
    /// when found (a concurrent import of equal data must not take the same one).
    async fn find(
        &self,
        data: &str,
        size: u64,
        books: &Mutex<Books<'_>>,
    ) -> Result<Option<(String, String)>> {
        let listed = self.dst.items(self.target).await?;
        let candidates: Vec<String> = {
            let b = books.lock().expect("books");
            listed
                .into_iter()
                .filter(|(id, _, s)| *s == size && !b.claimed.contains(id))
                .map(|(id, _, _)| id)
                .collect()
        };
        for batch in candidates.chunks(EXPORT_BATCH) {
            for (tid, (tck, tdata)) in self.dst.export(batch).await? {
                if tdata == data && books.lock().expect("books").claimed.insert(tid.clone()) {
                    return Ok(Some((tid, tck)));
                }
            }
        }
        Ok(None)
    }

    fn record(
        &self,
        id: &str,
        ck: &str,
        (target_id, target_change_key): (String, String),
        books: &Mutex<Books<'_>>,
    ) -> Result<()> {
        let copy = ItemCopy {
            source_change_key: ck.to_string(),
            target_id,
            target_change_key,
        };
        self.state.map_item(id, &copy)?;
        let mut b = books.lock().expect("books");
        b.claimed.insert(copy.target_id.clone());
        b.map.insert(id.to_string(), copy);
        Ok(())
    }
}

/// Compares both mailboxes, trusting no state: per mapped folder, the multiset of the items'
/// exported data on each side; names the folders where items are missing or extra. (Only what
/// the fake guarantees: a real Exchange may export an imported item with other bytes.)
pub async fn verify_mailbox(src: &ExportMailbox, dst: &ExportMailbox) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        source: src.describe(),
        target: dst.describe(),
        ..Default::default()
    };
    let source_folders = src.folders().await?;
    let target_folders = dst.folders().await?;
    let pairs = map_folders_read_only(&source_folders, &target_folders);
    for f in source_folders
        .iter()
        .filter(|f| f.parent.is_some() && !pairs.iter().any(|(s, _)| s.id == f.id))
    {
        report
            .differences
            .push(format!("{}: no such folder in the target", f.name));
    }
    for (f, target) in pairs {
        let (a, a_bytes) = all_data(src, &f.id).await?;
        let (b, _) = all_data(dst, &target).await?;
        report.folders.push(FolderCheck {
            source: f.name.clone(),
            target: f.well_known.clone().unwrap_or_else(|| f.name.clone()),
            source_count: a.values().sum(),
            target_count: b.values().sum(),
            source_bytes: a_bytes,
        });
        let missing: usize = a
            .iter()
            .map(|(d, n)| n.saturating_sub(*b.get(d).unwrap_or(&0)))
            .sum();
        let extra: usize = b
            .iter()
            .map(|(d, n)| n.saturating_sub(*a.get(d).unwrap_or(&0)))
            .sum();
        if missing > 0 {
            report.differences.push(format!(
                "{}: {missing} item(s) missing in the target",
                f.name
            ));
        }
        if extra > 0 {
            report.differences.push(format!(
                "{}: {extra} item(s) in the target not on the source",
                f.name
            ));
        }
    }
    Ok(report)
}

/// The folder pairs `map_folders` would make, without creating anything.
fn map_folders_read_only(src: &[MFolder], dst: &[MFolder]) -> Vec<(MFolder, String)> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let mut pending: Vec<&MFolder> = src.iter().collect();
    // Parents first: repeat until no folder can be placed.
    loop {
        let before = pending.len();
        pending.retain(|f| {
            let id = match (&f.well_known, &f.parent) {
                (Some(wk), _) => dst
                    .iter()
                    .find(|d| d.well_known.as_deref() == Some(wk.as_str()))
                    .map(|d| d.id.clone()),
                (None, Some(p)) => match map.get(p) {
                    Some(tp) => dst
                        .iter()
                        .find(|d| {
                            d.parent.as_deref() == Some(tp.as_str())
                                && d.name.eq_ignore_ascii_case(&f.name)
                        })
                        .map(|d| d.id.clone()),
                    None => return true,
                },
                (None, None) => None,
            };
            if let Some(id) = id {
                map.insert(f.id.clone(), id.clone());
                if f.parent.is_some() {
                    out.push(((*f).clone(), id));
                }
            }
            false
        });
        if pending.len() == before || pending.is_empty() {
            return out;
        }
    }
}

/// A folder's items as the multiset of their exported data, and their bytes.
async fn all_data(m: &ExportMailbox, folder: &str) -> Result<(HashMap<String, usize>, u64)> {
    let ids: Vec<String> = m.items(folder).await?.into_iter().map(|i| i.0).collect();
    let mut out: HashMap<String, usize> = HashMap::new();
    let mut bytes = 0;
    for batch in ids.chunks(EXPORT_BATCH) {
        for (_, (_, data)) in m.export(batch).await? {
            bytes += data.len() as u64 / 4 * 3;
            *out.entry(data).or_default() += 1;
        }
    }
    Ok((out, bytes))
}

/// The bytes a base64 text decodes to, without decoding it (on the task that drives the
/// imports, decoding every item only to learn its size cost as much as the import's own
/// encoding).
fn decoded_len(b64: &str) -> u64 {
    let pad = b64.bytes().rev().take(2).filter(|b| *b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(pad) as u64
}

fn failure(f: &MFolder, id: &str, reason: impl Into<String>) -> Failure {
    Failure {
        folder: f.name.clone(),
        uid: 0,
        size: 0,
        reason: format!("item {id}: {}", reason.into()),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[test]
    fn decoded_len_is_the_length_of_the_decoded_bytes() {
        for n in 0..10 {
            let data = vec![7u8; n];
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(super::decoded_len(&b64), n as u64, "{b64}");
        }
    }
}
