//! The path of a migration: list both sides, pre-flight, plan, then copy with bounded
//! concurrency, recording each completed file in the state store.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};

use crate::endpoint::{
    is_temp_name, parent, ByteStream, Endpoint, EndpointError, FileTimes, MtimeSupport,
};
use crate::hash::{hash_stream_like, ContentHasher};
use crate::plan::{make_plan, CopyJob, PlanOptions};
use crate::preflight::{map_entries_under, OnInvalid};
use crate::progress::Progress;
use crate::report::{Failure, MigrationReport};
use crate::retry::RetryPolicy;
use crate::state::{Record, StateStore};

/// What the migration was doing when an endpoint failed, with the endpoint's error kept typed:
/// a caller tells "wait" from "give up" by it. The message names both (not as a `source`, so
/// a chain printed with `{:#}` does not repeat the cause).
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {error}")]
pub struct EndpointStep {
    pub doing: &'static str,
    pub error: EndpointError,
}

fn step(doing: &'static str) -> impl FnOnce(EndpointError) -> EndpointStep {
    move |error| EndpointStep { doing, error }
}

pub struct MigrateOptions {
    pub parallel: usize,
    pub dry_run: bool,
    pub delete: bool,
    pub checksum: bool,
    pub on_invalid: OnInvalid,
    pub state_path: PathBuf,
    pub retry: RetryPolicy,
    pub progress: bool,
    /// Counters the caller watches (files and bytes done of the totals, set once both listings
    /// are compared); the run's own when `None`.
    pub counters: Option<Arc<Progress>>,
}

/// Default transfers in flight: enough to hide per-request latency for small files, few enough
/// not to be throttled at once by a real service.
pub const DEFAULT_PARALLEL: usize = 8;

pub async fn migrate(
    source: Arc<dyn Endpoint>,
    target: Arc<dyn Endpoint>,
    source_name: &str,
    target_name: &str,
    opts: &MigrateOptions,
) -> anyhow::Result<MigrationReport> {
    let started = Instant::now();
    let mut report = MigrationReport::new(source.describe(), target.describe(), opts.dry_run);
    let (src_list, tgt_list) = tokio::join!(source.list(), target.list());
    let src_list = src_list.map_err(step("listing the source"))?;
    let tgt_list = tgt_list.map_err(step("listing the target"))?;
    let src_refused = src_list.refused.len();
    // Entries a server listed under unusable paths are failures, named; the rest goes on.
    for (side, refused) in [("source", &src_list.refused), ("target", &tgt_list.refused)] {
        report.failures.extend(refused.iter().map(|r| Failure {
            path: r.path.clone(),
            error: format!("{side} listing: {}", r.reason),
        }));
    }
    let mut src_list = src_list.entries;
    // Debris of an interrupted copy *into* the source is not content.
    src_list.retain(|e| !is_temp_name(&e.path));
    let tgt_list = tgt_list.entries;
    // With entries missing from the source listing, `--delete` cannot tell what the source
    // still holds: deleting would remove the very folders it refused to name.
    let delete = opts.delete && src_refused == 0;
    if opts.delete && !delete {
        report.notes.push(format!(
            "--delete was not applied: the source listing refused {src_refused} entries, so \
             what the source still holds is not known"
        ));
    }
    for e in &src_list {
        if e.is_dir {
            report.source_folders += 1;
        } else {
            report.source_files += 1;
            report.source_bytes += e.size;
        }
    }

    // The service's whole-path limit counts the target's own prefix (site, library, folder).
    let prefix_chars = target
        .path_prefix()
        .await
        .map_err(|e| anyhow::anyhow!("finding the target library: {e}"))?
        .chars()
        .count();
    let mut mapping = map_entries_under(&src_list, opts.on_invalid, prefix_chars);
    report.findings = std::mem::take(&mut mapping.findings);
    report.skipped = std::mem::take(&mut mapping.skipped);
    report.renames = std::mem::take(&mut mapping.renames);
    if opts.on_invalid == OnInvalid::Fail && !report.findings.is_empty() {
        report.refused_by_preflight = true;
        return Ok(report);
    }

    let store = StateStore::open(&opts.state_path, source_name, target_name)?;
    let state = store.load()?;
    let plan = make_plan(
        &mapping.mapped,
        &state,
        &tgt_list,
        &PlanOptions {
            checksum: opts.checksum,
            delete,
        },
    );
    report.planned_copies = plan.copies.len() as u64;
    report.planned_bytes = plan.copies.iter().map(|c| c.size).sum();
    report.unchanged_files = plan.unchanged as u64;
    report.folders_created = plan.mkdirs.len() as u64;
    report.deleted = plan.deletes.clone();
    if opts.dry_run {
        report.elapsed_secs = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let writer = store.writer()?;
    if !report.renames.is_empty() {
        writer.renames(report.renames.clone());
    }
    for p in &plan.forget {
        writer.remove(p.clone());
    }
    for t in &plan.stale_temps {
        if target.delete(t).await.is_ok() {
            report.stale_temporaries_removed += 1;
        }
    }
    // The root may not exist yet (a new library folder).
    if tgt_list.is_empty() {
        target
            .mkdir("")
            .await
            .map_err(step("creating the target root"))?;
    }
    // Folders of one depth are independent: create them concurrently, one level after another.
    for level in plan
        .mkdirs
        .chunk_by(|a, b| a.matches('/').count() == b.matches('/').count())
    {
        let failed: Vec<Failure> = futures_util::stream::iter(level)
            .map(|d| {
                let target = &target;
                async move {
                    target.mkdir(d).await.err().map(|e| Failure {
                        path: d.clone(),
                        error: e.to_string(),
                    })
                }
            })
            .buffer_unordered(opts.parallel.max(1))
            .filter_map(|f| async move { f })
            .collect()
            .await;
        report.failures.extend(failed);
    }

    if !plan.copies.is_empty() {
        // Files only re-hashed (`--checksum`) are not counted: most of them upload nothing.
        let uploads = plan
            .copies
            .iter()
            .filter(|c| c.only_if_hash_differs.is_none())
            .count();
        target.prepare_uploads(uploads as u64).await;
    }
    let progress = match &opts.counters {
        Some(shared) => {
            shared
                .files_total
                .store(plan.copies.len() as u64, Ordering::Relaxed);
            shared
                .bytes_total
                .store(report.planned_bytes, Ordering::Relaxed);
            shared.clone()
        }
        None => Progress::new(plan.copies.len() as u64, report.planned_bytes),
    };
    let guard = opts.progress.then(|| progress.spawn());
    let results: Vec<(CopyJob, Result<Option<Record>, EndpointError>)> =
        futures_util::stream::iter(plan.copies.iter().cloned())
            .map(|job| {
                let (s, t, p, w, r) = (
                    source.clone(),
                    target.clone(),
                    progress.clone(),
                    writer.clone(),
                    opts.retry,
                );
                // Tasks, for the hashing to use every core; aborted if the run is dropped (a
                // move step stopped for a lost lease), so no copy goes on without its run.
                AbortOnDrop(tokio::spawn(async move {
                    let res = copy_with_retry(&*s, &*t, &job, &p, &r).await;
                    if let Ok(Some(rec)) = &res {
                        w.put(rec.clone());
                    }
                    p.files_done.fetch_add(1, Ordering::Relaxed);
                    (job, res)
                }))
            })
            .buffer_unordered(opts.parallel.max(1))
            .map(|r| r.map_err(|e| anyhow::anyhow!("copy task failed: {e}")))
            .try_collect()
            .await?;
    drop(guard);
    let mut insufficient = false;
    for (job, res) in results {
        match res {
            Ok(Some(rec)) => {
                report.copied_files += 1;
                report.copied_bytes += rec.size;
            }
            Ok(None) => report.unchanged_files += 1,
            Err(e) => {
                insufficient |= matches!(e, EndpointError::InsufficientStorage);
                report.failures.push(Failure {
                    path: job.source_path,
                    error: e.to_string(),
                })
            }
        }
    }
    if report.copied_files > 0 {
        report.upload = Some(target.upload_choice());
    }
    if insufficient {
        report.notes.push(
            "the target ran out of space (HTTP 507 or quota): files that fit were copied; \
             free space or raise the quota and re-run to copy the rest"
                .into(),
        );
    }

    for d in &plan.deletes {
        if let Err(e) = target.delete(d).await {
            report.failures.push(Failure {
                path: d.clone(),
                error: format!("delete: {e}"),
            });
        }
    }
    // Writing files changes their folders' times, so folders are stamped last, deepest first,
    // and only those this run touched (a no-op re-run sends nothing).
    let mut touched: HashSet<&str> = HashSet::new();
    let created = plan.mkdirs.iter().map(|d| format!("{d}/"));
    let written = plan.copies.iter().map(|c| c.target_path.clone());
    let removed = plan.deletes.iter().chain(&plan.stale_temps).cloned();
    let changed: Vec<String> = created.chain(written).chain(removed).collect();
    for p in &changed {
        // A created folder "d/" marks d itself; every entry marks its ancestors.
        let mut d = parent(p);
        while !d.is_empty() && touched.insert(d) {
            d = parent(d);
        }
    }
    let stamp: Vec<(String, FileTimes)> = plan
        .dir_times
        .iter()
        .filter(|(d, _)| touched.contains(d.as_str()))
        .cloned()
        .collect();
    for (d, e) in target.set_dirs_times(&stamp).await {
        tracing::warn!(folder = %d, error = %e, "could not set folder time");
    }
    writer.finish()?;

    report.mtime = target.mtime_support();
    if report.mtime == MtimeSupport::NotSupported {
        report.notes.push(
            "the target does not keep modification times (it stamps its own getlastmodified, \
             as plain Apache mod_dav does); source times are kept in the state store"
                .into(),
        );
    }
    report.notes.extend(source.notices());
    report.notes.extend(target.notices());
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.megabytes_per_sec = report.copied_bytes as f64 / 1e6 / report.elapsed_secs.max(0.001);
    Ok(report)
}

async fn copy_with_retry(
    source: &dyn Endpoint,
    target: &dyn Endpoint,
    job: &CopyJob,
    progress: &Arc<Progress>,
    retry: &RetryPolicy,
) -> Result<Option<Record>, EndpointError> {
    retry
        .run("copy", || async {
            if let Some(h) = &job.only_if_hash_differs {
                let s = source.read(&job.source_path, job.size).await?;
                if &hash_stream_like(s, h).await?.0 == h {
                    return Ok(None);
                }
            }
            let sent = Arc::new(AtomicU64::new(0));
            let r = copy_once(source, target, job, progress, &sent).await;
            if r.is_err() {
                // Bytes of a failed attempt are sent again by the next one.
                progress
                    .bytes_done
                    .fetch_sub(sent.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            r.map(Some)
        })
        .await
}

/// Streams one file from source to target, hashing it on the way.
async fn copy_once(
    source: &dyn Endpoint,
    target: &dyn Endpoint,
    job: &CopyJob,
    progress: &Arc<Progress>,
    sent: &Arc<AtomicU64>,
) -> Result<Record, EndpointError> {
    let stream = source.read(&job.source_path, job.size).await?;
    // The body is owned by the HTTP client, so the hash and counters are shared with it.
    let hasher = Arc::new(Mutex::new(ContentHasher::default()));
    let (h, n, p) = (hasher.clone(), sent.clone(), progress.clone());
    let body: ByteStream = Box::pin(stream.inspect_ok(move |chunk| {
        h.lock().expect("hasher lock").update(chunk);
        n.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        p.bytes_done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }));
    let out = target
        .put(
            &job.target_path,
            job.size,
            FileTimes {
                modified_ns: job.mtime_ns,
                created_ns: job.created_ns,
            },
            body,
        )
        .await?;
    let size = sent.load(Ordering::Relaxed);
    if size != job.size {
        // The file changed while we read it: record what was sent; the next run sees the new
        // size in the listing and copies it again.
        tracing::warn!(path = %job.source_path, listed = job.size, sent = size, "file changed during copy");
    }
    let content_hash = hasher.lock().expect("hasher lock").finish();
    Ok(Record {
        source_path: job.source_path.clone(),
        target_path: job.target_path.clone(),
        size,
        source_mtime_ns: job.mtime_ns,
        source_etag: job.source_etag.clone(),
        content_hash,
        target_etag: out.etag,
        mtime_kept: out.mtime_kept,
    })
}

/// A spawned task that is aborted when its handle is dropped (tokio lets a task whose handle is
/// dropped run on).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::AbortOnDrop;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_copy_task_stops() {
        let wrote = Arc::new(AtomicBool::new(false));
        let w = wrote.clone();
        let task = AbortOnDrop(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            w.store(true, Ordering::SeqCst);
        }));
        drop(task);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !wrote.load(Ordering::SeqCst),
            "the task ran on after its run was dropped"
        );
    }
}
