//! The run: pair source collections with target collections (creating those missing, with
//! their properties), find what changed (sync token, else a full listing compared by ETag),
//! delete what the source deleted, then copy each changed object byte for byte.
//!
//! Exactly once, even after a kill -9: a new object is PUT with `If-None-Match: *` and recorded
//! after the target acknowledged it; a re-run whose PUT meets a 412 looks at what the target
//! holds under that name, and takes it as ours when its UID is the source object's UID (then
//! brings its bytes in line). An update is PUT with `If-Match` on the ETag we recorded, so an
//! object changed on the target since is reported, not overwritten, unless the target already
//! holds the source's content (a later run's copy whose record a restored snapshot missed, or a
//! killed run's), or that version is our own unrecorded write (its content fingerprint was
//! marked pending before it was sent): then the source's bytes go over it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Url;
use tenantry_files::endpoint::RefusedEntry;
use tokio::sync::OnceCell;

use crate::collections::{self, child_url, Collection, Found, Member, Side};
use crate::dav::{Dav, DavError, Overwrite};
use crate::kind::Kind;
use crate::object::{content_hash, inspect, same_content, ObjectInfo};
use crate::report::{CollectionSummary, Duplicate, Failure, MigrationReport, Progress};
use crate::state::{ObjectRecord, StateStore};
use crate::xml::CollectionProps;

pub const DEFAULT_PARALLEL: usize = 8;

pub struct Options {
    pub parallel: usize,
    pub dry_run: bool,
    pub state_path: PathBuf,
    pub progress: bool,
    /// The state store was put back from a snapshot (a move's worker died), so the target may
    /// hold copies it has no record of: objects the source created and deleted since are
    /// looked for on the target and named in a note. Off for the CLI: its state file is the
    /// last run's.
    pub state_restored: bool,
    /// Counters a caller reads while the run goes on (a move's progress bar); the run's own
    /// otherwise.
    pub counters: Option<Arc<Progress>>,
}

/// A source collection and where it goes.
#[derive(Debug)]
pub struct Pair {
    pub source: Collection,
    pub target_url: Url,
    /// The target collection as it is now (`None`: to be created).
    pub target: Option<Collection>,
}

/// Every pair, the target's other collections of the kind (for duplicate UIDs), and the hrefs
/// refused on the way.
#[derive(Debug, Default)]
pub struct Plan {
    pub pairs: Vec<Pair>,
    pub target_collections: Vec<Collection>,
    pub refused: Vec<RefusedEntry>,
}

/// Pairs the collections of both sides. A source collection goes to the target URL when that
/// is a collection of the kind or does not exist yet; into it, under the same name, when it is
/// anything else (a home). A source home goes into the target home, name for name.
pub async fn plan(kind: Kind, src: &Dav, dst: &Dav) -> anyhow::Result<Plan> {
    let (s, t) = tokio::join!(
        collections::find(src, kind, Side::Source),
        collections::find(dst, kind, Side::Target)
    );
    // The server's error stays in the chain: a move tells a refused login from an outage by it.
    let s = s.map_err(|e| anyhow::Error::new(e).context("reading the source"))?;
    let t = t.map_err(|e| anyhow::Error::new(e).context("reading the target"))?;
    let mut plan = Plan::default();
    let sources = match s {
        Found::Missing => anyhow::bail!("the source location does not exist (HTTP 404)"),
        Found::Collection(c) => vec![c],
        Found::Home {
            collections,
            refused,
        } => {
            plan.refused.extend(refused);
            collections
        }
    };
    let single_source = sources.len() == 1 && sources[0].url == *src.base();
    let (target_home, existing) = match t {
        Found::Missing if single_source => (None, Vec::new()),
        Found::Missing => anyhow::bail!(
            "the target home does not exist (HTTP 404): give the URL of the target user's home"
        ),
        Found::Collection(c) if single_source => {
            plan.target_collections.push(c.clone());
            plan.pairs.push(Pair {
                source: sources.into_iter().next().expect("one"),
                target_url: c.url.clone(),
                target: Some(c),
            });
            return Ok(plan);
        }
        Found::Collection(_) => anyhow::bail!(
            "the source is a home with {} {}, the target one collection: give the target user's home",
            sources.len(),
            kind.name()
        ),
        Found::Home {
            collections,
            refused,
        } => {
            plan.refused.extend(refused);
            (Some(dst.base().clone()), collections)
        }
    };
    plan.target_collections = existing.clone();
    for source in sources {
        let (target_url, target) = match &target_home {
            None => (dst.base().clone(), None),
            Some(home) => match existing.iter().find(|c| c.name == source.name) {
                Some(c) => (c.url.clone(), Some(c.clone())),
                None => (child_url(home, &source.name, true)?, None),
            },
        };
        plan.pairs.push(Pair {
            source,
            target_url,
            target,
        });
    }
    Ok(plan)
}

/// UIDs the target holds, by UID: where each is (`collection/name`). Built on first need.
type UidIndex = Mutex<HashMap<String, Vec<(String, String)>>>;

struct Run<'a> {
    kind: Kind,
    src: &'a Dav,
    dst: &'a Dav,
    state: &'a StateStore,
    progress: Arc<Progress>,
    target_collections: &'a [Collection],
    target_uids: OnceCell<UidIndex>,
    notes: Mutex<Vec<String>>,
    state_restored: bool,
}

/// What happened to one object.
enum Outcome {
    Copied {
        bytes: u64,
        duplicate: Option<Duplicate>,
    },
    Reconciled,
    Failed(Failure),
    NotCopied(Duplicate),
}

pub async fn migrate(
    kind: Kind,
    src: &Dav,
    dst: &Dav,
    source_name: &str,
    target_name: &str,
    opts: &Options,
) -> anyhow::Result<MigrationReport> {
    let start = Instant::now();
    let mut report = MigrationReport::new(
        kind,
        source_name.to_string(),
        target_name.to_string(),
        opts.dry_run,
    );
    let plan = plan(kind, src, dst).await?;
    report.refused.extend(plan.refused.iter().cloned());
    if plan.pairs.is_empty() {
        report
            .notes
            .push(format!("the source holds no {} collections", kind.name()));
    }
    let state = StateStore::open(&opts.state_path, source_name, target_name)?;
    let run = Run {
        kind,
        src,
        dst,
        state: &state,
        progress: opts.counters.clone().unwrap_or_default(),
        target_collections: &plan.target_collections,
        target_uids: OnceCell::new(),
        notes: Mutex::new(Vec::new()),
        state_restored: opts.state_restored,
    };
    let _guard = opts.progress.then(|| run.progress.spawn());
    for pair in &plan.pairs {
        run.collection(pair, opts, &mut report).await?;
    }
    report
        .notes
        .extend(run.notes.into_inner().expect("notes lock"));
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Objects a run could not put on the target so far.
fn blocked(r: &MigrationReport) -> usize {
    r.failures.len() + r.duplicates.iter().filter(|d| !d.copied).count()
}

fn differs(source: &CollectionProps, target: &CollectionProps) -> bool {
    (source.displayname.is_some() && source.displayname != target.displayname)
        || (source.color.is_some() && source.color != target.color)
        || (source.description.is_some() && source.description != target.description)
}

impl Run<'_> {
    /// A server may create a collection but refuse some of the properties sent with MKCALENDAR or
    /// extended MKCOL (Xandikos answers 201 with `addressbook-description` refused in the
    /// body, yet takes it in a PROPPATCH afterwards): read them back and set what is missing.
    async fn complete_properties(&self, url: &Url, source: &Collection) {
        let Ok(Some(created)) = collections::probe(self.dst, url, Side::Target).await else {
            return;
        };
        if differs(&source.props, &created.props) {
            if let Err(e) = self.dst.proppatch(url, self.kind, &source.props).await {
                self.note(format!(
                    "{}: the new collection lacks a name, colour or description ({e})",
                    source.name
                ));
            }
        }
    }

    fn note(&self, n: String) {
        self.notes.lock().expect("notes lock").push(n);
    }

    async fn collection(
        &self,
        pair: &Pair,
        opts: &Options,
        report: &mut MigrationReport,
    ) -> anyhow::Result<()> {
        let source = &pair.source;
        let cname = source.name.clone();
        let fail = |object: &str, status: Option<u16>, error: String| Failure {
            collection: cname.clone(),
            object: object.to_string(),
            uid: None,
            status,
            error,
        };
        // 1. The target collection, with the source's properties.
        let target_state = match (&pair.target, opts.dry_run) {
            (None, true) => "missing",
            (None, false) => {
                if let Err(e) = self
                    .dst
                    .create_collection(&pair.target_url, self.kind, &source.props)
                    .await
                {
                    report.failures.push(fail(
                        "",
                        e.status(),
                        format!("creating the target collection: {e}"),
                    ));
                    return Ok(());
                }
                self.complete_properties(&pair.target_url, source).await;
                "created"
            }
            (Some(t), dry) => {
                if differs(&source.props, &t.props) && !dry {
                    if let Err(e) = self
                        .dst
                        .proppatch(&pair.target_url, self.kind, &source.props)
                        .await
                    {
                        self.note(format!(
                            "{cname}: the target kept its own name, colour or description ({e})"
                        ));
                    }
                }
                "existing"
            }
        };
        // The target's size limit: from the existing collection, else ask the new one.
        let max_size = match &pair.target {
            Some(t) => t.max_resource_size,
            None if !opts.dry_run => collections::probe(self.dst, &pair.target_url, Side::Target)
                .await
                .ok()
                .flatten()
                .and_then(|r| r.max_resource_size),
            None => None,
        };

        // 2. What changed.
        let src_key = source.url.as_str();
        let tgt_key = pair.target_url.as_str();
        let saved = self.state.sync_token(src_key, tgt_key)?;
        // The token the source listed with the collection is the one its sync-collection
        // report would answer (RFC 6578 §4): the saved one means nothing changed since the last
        // complete run, and the report (which a server may compute over every object) is
        // skipped. Only into a collection that was there: a new one is filled from a listing.
        if pair.target.is_some() && saved.is_some() && saved == source.sync_token {
            report.collections.push(CollectionSummary {
                source: source.url.path().to_string(),
                target: pair.target_url.path().to_string(),
                target_state: target_state.to_string(),
                listing: "sync-token".to_string(),
                // As an incremental listing counts: what it listed, here nothing.
                objects: 0,
            });
            return Ok(());
        }
        let (members, listing, incremental) = match (&source.sync_token, saved.as_deref()) {
            (None, _) => (
                collections::members(self.src, &source.url, None).await,
                "etags",
                false,
            ),
            (Some(_), Some(tok)) if !tok.is_empty() => {
                match collections::members(self.src, &source.url, Some(tok)).await {
                    Ok(m) => (Ok(m), "sync-token", true),
                    // An expired or unknown token (RFC 6578 §3.2: valid-sync-token): start over.
                    Err(DavError::Refused { .. }) => {
                        self.note(format!(
                            "{cname}: the source no longer accepts the saved sync token; compared every object by ETag"
                        ));
                        (
                            collections::members(self.src, &source.url, Some("")).await,
                            "sync-full",
                            false,
                        )
                    }
                    Err(e) => (Err(e), "sync-token", true),
                }
            }
            (Some(_), _) => (
                collections::members(self.src, &source.url, Some("")).await,
                "sync-full",
                false,
            ),
        };
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                report.failures.push(fail(
                    "",
                    e.status(),
                    format!("listing the source collection: {e}"),
                ));
                return Ok(());
            }
        };
        report.refused.extend(members.refused.iter().cloned());
        report.collections.push(CollectionSummary {
            source: source.url.path().to_string(),
            target: pair.target_url.path().to_string(),
            target_state: target_state.to_string(),
            listing: listing.to_string(),
            objects: members.present.len() as u64,
        });
        let mut records = self.state.objects(src_key)?;
        let present: HashSet<&str> = members.present.iter().map(|m| m.name.as_str()).collect();
        let mut removed: Vec<String> = if incremental {
            members
                .removed
                .iter()
                .filter(|n| records.contains_key(*n) && !present.contains(n.as_str()))
                .cloned()
                .collect()
        } else {
            records
                .keys()
                .filter(|n| !present.contains(n.as_str()))
                .cloned()
                .collect()
        };
        removed.sort();
        if self.state_restored && incremental {
            self.unrecorded_leftovers(pair, &members, &records).await;
        }
        let changed: Vec<&Member> = members
            .present
            .iter()
            .filter(|m| match (records.get(&m.name), &m.etag) {
                (Some(r), Some(etag)) => r.source_etag.as_ref() != Some(etag),
                _ => true,
            })
            .collect();
        report.unchanged += (members.present.len() - changed.len()) as u64;
        self.progress
            .listed
            .fetch_add(changed.len() as u64, Ordering::Relaxed);
        if opts.dry_run {
            report.copied += changed.len() as u64;
            report.deleted += removed.len() as u64;
            return Ok(());
        }
        let blocked_before = blocked(report);

        // 3. Deletions first: they free UIDs and names the copies may reuse.
        for name in removed {
            let rec = records.remove(&name).expect("removed names are recorded");
            let url = child_url(&pair.target_url, &name, false)?;
            match self.dst.delete(&url, rec.target_etag.as_deref()).await {
                Ok(()) | Err(DavError::NotFound) => {
                    self.state.remove_object(src_key, &name)?;
                    report.deleted += 1;
                }
                // Some servers answer If-Match on a missing resource with 412: gone is gone.
                Err(DavError::Refused { status: 412, .. })
                    if matches!(self.dst.get(&url).await, Err(DavError::NotFound)) =>
                {
                    self.state.remove_object(src_key, &name)?;
                    report.deleted += 1;
                }
                Err(e @ DavError::Refused { status: 412, .. }) => report.failures.push(Failure {
                    uid: Some(rec.uid),
                    ..fail(
                        &name,
                        e.status(),
                        "deleted on the source, but changed on the target since it was copied: not deleted".into(),
                    )
                }),
                Err(e) => report.failures.push(Failure {
                    uid: Some(rec.uid),
                    ..fail(&name, e.status(), format!("deleting on the target: {e}"))
                }),
            }
        }

        // 4. Copies, `parallel` at a time. UIDs claimed so far in this collection: one object
        // per UID (RFC 4791 §5.3.2.1, RFC 6352 §6.3.2.1).
        let claims: Mutex<HashMap<String, String>> = Mutex::new(
            records
                .values()
                .map(|r| (r.uid.clone(), r.name.clone()))
                .collect(),
        );
        let ctx = ObjectCtx {
            pair,
            records: &records,
            claims: &claims,
            max_size,
        };
        let mut outcomes = futures_util::stream::iter(changed)
            .map(|m| self.object(&ctx, m))
            .buffer_unordered(opts.parallel.max(1));
        while let Some(o) = outcomes.next().await {
            self.progress.done.fetch_add(1, Ordering::Relaxed);
            match o? {
                Outcome::Copied { bytes, duplicate } => {
                    report.copied += 1;
                    report.copied_bytes += bytes;
                    self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                    report.duplicates.extend(duplicate);
                }
                Outcome::Reconciled => report.reconciled += 1,
                Outcome::Failed(f) => report.failures.push(f),
                Outcome::NotCopied(d) => report.duplicates.push(d),
            }
        }
        drop(outcomes);

        // 5. The token moves on only when everything it covers is on the target.
        if blocked(report) == blocked_before {
            self.state
                .set_sync_token(src_key, tgt_key, members.token.as_deref())?;
        }
        Ok(())
    }

    /// The UIDs of the target's collections, read once (one query REPORT per collection).
    async fn target_uids(&self) -> &UidIndex {
        self.target_uids
            .get_or_init(|| async {
                let mut idx: HashMap<String, Vec<(String, String)>> = HashMap::new();
                for c in self.target_collections {
                    let ms = match self.dst.query_all(&c.url, self.kind).await {
                        Ok(ms) => ms,
                        Err(e) => {
                            self.note(format!(
                                "could not read the UIDs of target collection {} ({e}): duplicates there are not reported",
                                c.name
                            ));
                            continue;
                        }
                    };
                    let root = tenantry_files::webdav::propfind::HrefRoot::new(&c.url);
                    for r in ms.responses {
                        let (Some(data), Ok(root)) = (r.data, root.as_ref()) else {
                            continue;
                        };
                        let Ok(name) = root.resolve(&r.href) else { continue };
                        if let Ok(info) = inspect(self.kind, data.as_bytes()) {
                            idx.entry(info.uid).or_default().push((c.name.clone(), name));
                        }
                    }
                }
                Mutex::new(idx)
            })
            .await
    }

    async fn object(&self, ctx: &ObjectCtx<'_>, m: &Member) -> anyhow::Result<Outcome> {
        let pair = ctx.pair;
        let cname = &pair.source.name;
        let fail = |uid: Option<&str>, status: Option<u16>, error: String| {
            Outcome::Failed(Failure {
                collection: cname.clone(),
                object: m.name.clone(),
                uid: uid.map(str::to_string),
                status,
                error,
            })
        };
        let src_url = child_url(&pair.source.url, &m.name, false)?;
        let (bytes, etag) = match self.src.get(&src_url).await {
            Ok(x) => x,
            Err(DavError::NotFound) => {
                return Ok(fail(
                    None,
                    Some(404),
                    "removed from the source during the run: re-run to carry the deletion".into(),
                ))
            }
            Err(e) => return Ok(fail(None, e.status(), format!("reading the source: {e}"))),
        };
        let info = match inspect(self.kind, &bytes) {
            Ok(i) => i,
            Err(e) => return Ok(fail(None, None, format!("unparsable, not copied: {e}"))),
        };
        let uid = Some(info.uid.as_str());
        if let Some(max) = ctx.max_size {
            if bytes.len() as u64 > max {
                return Ok(fail(
                    uid,
                    None,
                    format!(
                        "{} bytes, over the target's limit of {max} bytes (max-resource-size): not copied",
                        bytes.len()
                    ),
                ));
            }
        }
        {
            let mut claims = ctx.claims.lock().expect("claims lock");
            match claims.get(&info.uid) {
                Some(other) if *other != m.name => {
                    return Ok(Outcome::NotCopied(Duplicate {
                        collection: cname.clone(),
                        object: m.name.clone(),
                        uid: info.uid.clone(),
                        also_in: format!("{other} in the same source collection"),
                        copied: false,
                        action: format!(
                        "not copied: a collection holds one object per UID, and {other} was copied"
                    ),
                    }))
                }
                _ => {
                    claims.insert(info.uid.clone(), m.name.clone());
                }
            }
        }
        let elsewhere: Option<String> = {
            let idx = self.target_uids().await.lock().expect("uid lock");
            idx.get(&info.uid).and_then(|places| {
                places
                    .iter()
                    .find(|(c, _)| *c != pair.target_name())
                    .map(|(c, n)| format!("{c}/{n} on the target"))
            })
        };
        let record = ctx.records.get(&m.name);
        let target_url = child_url(&pair.target_url, &m.name, false)?;
        let overwrite = match record.and_then(|r| r.target_etag.clone()) {
            Some(e) => Overwrite::IfMatch(e),
            None => Overwrite::Never,
        };
        let source_etag = etag.or_else(|| m.etag.clone());
        let collection = pair.source.url.as_str();
        if let Overwrite::IfMatch(_) = overwrite {
            // Intent before effect: what this update writes, should the record never follow.
            self.state
                .add_pending(collection, &m.name, &content_hash(&bytes))?;
        }
        let put = self
            .dst
            .put(&target_url, self.kind, bytes.clone(), &overwrite)
            .await;
        let (target_etag, reconciled) = match put {
            Ok(e) => (e, false),
            Err(DavError::Refused { status: 412, .. }) if matches!(overwrite, Overwrite::Never) => {
                match self.reconcile(&target_url, &info, &bytes).await {
                    Ok(e) => (e, true),
                    Err(why) => return Ok(fail(uid, Some(412), why)),
                }
            }
            Err(e @ DavError::Refused { status: 412, .. }) => {
                match self
                    .own_copy(collection, &m.name, &target_url, &bytes)
                    .await
                {
                    Some(etag) => (etag, true),
                    None => {
                        return Ok(fail(
                            uid,
                            e.status(),
                            "changed on the target since it was copied: not overwritten".into(),
                        ))
                    }
                }
            }
            Err(e) => {
                let mut why = format!("the target refused it: {e}");
                if let Some(w) = &elsewhere {
                    why.push_str(&format!(" (its UID is also in {w})"));
                }
                return Ok(fail(uid, e.status(), why));
            }
        };
        self.state.put_object(
            pair.source.url.as_str(),
            &ObjectRecord {
                name: m.name.clone(),
                uid: info.uid.clone(),
                source_etag,
                target_etag,
                hash: format!("blake3:{}", blake3::hash(&bytes).to_hex()),
            },
        )?;
        self.target_uids()
            .await
            .lock()
            .expect("uid lock")
            .entry(info.uid.clone())
            .or_default()
            .push((pair.target_name(), m.name.clone()));
        if reconciled {
            return Ok(Outcome::Reconciled);
        }
        Ok(Outcome::Copied {
            bytes: bytes.len() as u64,
            duplicate: elsewhere.map(|w| Duplicate {
                collection: cname.clone(),
                object: m.name.clone(),
                uid: info.uid.clone(),
                also_in: w,
                copied: true,
                action:
                    "copied: the target now holds this UID in both collections, as the source does"
                        .into(),
            }),
        })
    }

    /// An update's `If-Match` failed: the target holds another version than the recorded one.
    /// Its ETag (`Some`) is recorded when
    /// - it already has the source's content (`same_content`): nothing is left to write, whoever
    ///   wrote it (a run after a restored snapshot, a run killed before its record);
    /// - or it is a version a run wrote without recording it (killed between the target's
    ///   answer and the record, or the answer lost and the request retried): its content is
    ///   one the state marked pending. The source changed again since: its bytes go over it
    ///   (`If-Match` on its ETag).
    ///
    /// Anything else may be someone's edit on the target and stays reported.
    async fn own_copy(
        &self,
        collection: &str,
        name: &str,
        url: &Url,
        bytes: &Bytes,
    ) -> Option<Option<String>> {
        let (there, etag) = self.dst.get(url).await.ok()?;
        if same_content(bytes, &there) {
            return Some(etag);
        }
        let ours = self
            .state
            .was_pending(collection, name, &content_hash(&there))
            .ok()?;
        if !ours {
            return None;
        }
        let cond = Overwrite::IfMatch(etag?);
        self.dst
            .put(url, self.kind, bytes.clone(), &cond)
            .await
            .ok()
    }

    /// With a restored (older) state, an object created and deleted on the source since the
    /// snapshot may have been copied by a run the snapshot missed: the source's report lists it
    /// as removed, the state has no record of it, and it may still be on the target. Nothing
    /// proves that copy is ours (the target's own object could have that name), so it is left
    /// there and named in a note, for someone to check.
    async fn unrecorded_leftovers(
        &self,
        pair: &Pair,
        members: &collections::Members,
        records: &HashMap<String, ObjectRecord>,
    ) {
        for name in members.removed.iter().filter(|n| !records.contains_key(*n)) {
            let Ok(url) = child_url(&pair.target_url, name, false) else {
                continue;
            };
            if self.dst.get(&url).await.is_ok() {
                self.note(format!(
                    "{}/{name}: deleted on the source, but on the target with no record in the restored state (copied by a run after the snapshot?): left there, check it and delete it by hand",
                    pair.source.name
                ));
            }
        }
    }

    /// A create met something under the object's name (a killed run wrote it, or the target had
    /// it): ours when it carries the same UID, then brought to the source's bytes. Returns its
    /// ETag, or why it was left alone.
    async fn reconcile(
        &self,
        url: &Url,
        info: &ObjectInfo,
        bytes: &Bytes,
    ) -> Result<Option<String>, String> {
        let (there, etag) = self.dst.get(url).await.map_err(|e| {
            format!("the target has something under this name, and reading it failed: {e}")
        })?;
        match inspect(self.kind, &there) {
            Ok(t) if t.uid == info.uid => {}
            Ok(t) => {
                return Err(format!(
                    "the target already holds another object (UID {:.80}) under this name: not overwritten",
                    t.uid
                ))
            }
            Err(e) => {
                return Err(format!(
                    "the target already holds an unreadable object under this name ({e}): not overwritten"
                ))
            }
        }
        // Already the source's content (a target that re-serialises stores other bytes for it).
        if same_content(bytes, &there) {
            return Ok(etag);
        }
        let cond = match etag {
            Some(e) => Overwrite::IfMatch(e),
            None => {
                return Err(
                    "the target holds an older copy without an ETag: not overwritten".into(),
                )
            }
        };
        self.dst
            .put(url, self.kind, bytes.clone(), &cond)
            .await
            .map_err(|e| format!("updating the copy already on the target: {e}"))
    }
}

impl Pair {
    /// The target collection's name, as the duplicate index knows it.
    fn target_name(&self) -> String {
        self.target
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_else(|| collections::last_segment(&self.target_url))
    }
}

struct ObjectCtx<'a> {
    pair: &'a Pair,
    records: &'a HashMap<String, ObjectRecord>,
    claims: &'a Mutex<HashMap<String, String>>,
    max_size: Option<u64>,
}
