//! `verify`: compares structure, sizes, content hashes and modification times of both sides.
//!
//! Content is compared by re-reading both sides (BLAKE3), except where a side's listing carries
//! a hash the service computed itself (SharePoint / OneDrive for Business: quickXorHash): then
//! only the other side is read, its quickXorHash computed while streaming, and nothing is
//! downloaded from the service (two such sides compare their listed hashes and read nothing).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;

use crate::endpoint::{
    is_temp_name, same_second, ByteStream, Endpoint, EndpointError, ServiceHash,
};
use crate::hash::hash_stream;
use crate::preflight::{map_entries_under, OnInvalid};

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub files_compared: u64,
    pub files_identical: u64,
    pub folders_expected: u64,
    pub missing: Vec<String>,
    pub size_mismatch: Vec<String>,
    pub content_mismatch: Vec<String>,
    /// Files the service changed after they were copied (SharePoint writes its metadata into
    /// Office documents and PDFs): what it stores differs from what was sent, as recorded by the
    /// run that sent it. Not a difference.
    pub changed_by_service: Vec<String>,
    /// Files whose content was compared with the hash the service reports, without
    /// downloading them from it.
    pub compared_by_service_hash: u64,
    /// Files with the same content whose modification time differs (to the second).
    pub mtime_mismatch: Vec<String>,
    pub mtime_matched: u64,
    /// Present on the target only (not an error: the target may hold other content).
    pub extra_on_target: Vec<String>,
    /// Left out on purpose by the pre-flight policy.
    pub skipped_by_preflight: u64,
    pub errors: Vec<String>,
}

impl VerifyReport {
    /// Content and structure match (times are reported, not required: some targets cannot keep them).
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.size_mismatch.is_empty()
            && self.content_mismatch.is_empty()
            && self.errors.is_empty()
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "compared {} files: {} identical, {} missing, {} size mismatch, {} content mismatch, {} changed by the service, {} errors; modification times: {} equal, {} differ; {} extra on target; {} compared by the service's hash\n",
            self.files_compared,
            self.files_identical,
            self.missing.len(),
            self.size_mismatch.len(),
            self.content_mismatch.len(),
            self.changed_by_service.len(),
            self.errors.len(),
            self.mtime_matched,
            self.mtime_mismatch.len(),
            self.extra_on_target.len(),
            self.compared_by_service_hash
        );
        for (what, v) in [
            ("missing", &self.missing),
            ("size mismatch", &self.size_mismatch),
            ("content mismatch", &self.content_mismatch),
            ("changed by the service", &self.changed_by_service),
            ("error", &self.errors),
        ] {
            for p in v {
                s.push_str(&format!("  {what}: {p}\n"));
            }
        }
        crate::report::for_terminal(&s)
    }
}

enum Outcome {
    Same { mtime_equal: bool },
    Differs,
    ChangedByService,
    Error(String),
}

/// One file to compare, with the service hashes its two listings gave.
struct Job {
    source_path: String,
    target_path: String,
    size: u64,
    mtime_equal: bool,
    source_hash: Option<ServiceHash>,
    target_hash: Option<ServiceHash>,
}

/// quickXorHash of a whole stream, as Graph reports it (base64).
async fn quick_xor_stream(mut s: ByteStream) -> Result<String, EndpointError> {
    let mut qx = tenantry_graph::quickxor::QuickXor::default();
    while let Some(chunk) = s.next().await {
        qx.update(&chunk?);
    }
    Ok(qx.base64())
}

/// What a computed (or listed) quickXorHash `ours` says about a file the service lists with
/// `theirs`.
fn judge(ours: &str, theirs: &ServiceHash, mtime_equal: bool) -> Outcome {
    if ours == theirs.quick_xor {
        Outcome::Same { mtime_equal }
    } else if theirs.sent_quick_xor.as_deref() == Some(ours) {
        Outcome::ChangedByService
    } else {
        Outcome::Differs
    }
}

async fn compare(source: &dyn Endpoint, target: &dyn Endpoint, j: &Job) -> Outcome {
    let (sp, tp, size, mtime_equal) = (&j.source_path, &j.target_path, j.size, j.mtime_equal);
    let result = match (&j.source_hash, &j.target_hash) {
        // Both in a service that hashes: compare what they list, read nothing.
        (Some(s), Some(t)) => Ok(judge(&s.quick_xor, t, mtime_equal)),
        // One side hashes: read only the other one.
        (None, Some(t)) => async { quick_xor_stream(source.read(sp, size).await?).await }
            .await
            .map(|ours| judge(&ours, t, mtime_equal)),
        (Some(s), None) => async { quick_xor_stream(target.read(tp, size).await?).await }
            .await
            .map(|theirs| {
                if theirs == s.quick_xor {
                    Outcome::Same { mtime_equal }
                } else {
                    Outcome::Differs
                }
            }),
        (None, None) => {
            let a = async { hash_stream(source.read(sp, size).await?).await };
            let b = async { hash_stream(target.read(tp, size).await?).await };
            match tokio::join!(a, b) {
                (Ok(x), Ok(y)) if x == y => Ok(Outcome::Same { mtime_equal }),
                (Ok(_), Ok(_)) => Ok(Outcome::Differs),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
    };
    result.unwrap_or_else(|e| Outcome::Error(e.to_string()))
}

pub async fn verify(
    source: Arc<dyn Endpoint>,
    target: Arc<dyn Endpoint>,
    on_invalid: OnInvalid,
    parallel: usize,
) -> Result<VerifyReport, EndpointError> {
    let (s, t) = tokio::join!(source.list(), target.list());
    let (s, t) = (s?, t?);
    let errors = [("source", &s.refused), ("target", &t.refused)]
        .into_iter()
        .flat_map(|(side, refused)| {
            refused
                .iter()
                .map(move |r| format!("{side} listing: {}: {}", r.path, r.reason))
        })
        .collect();
    let (s, t) = (s.entries, t.entries);
    // Fail means "nothing invalid was moved": expect the valid entries only.
    let policy = if on_invalid == OnInvalid::Rename {
        OnInvalid::Rename
    } else {
        OnInvalid::Skip
    };
    let mapping = map_entries_under(&s, policy, target.path_prefix().await?.chars().count());
    let mut rep = VerifyReport {
        skipped_by_preflight: mapping.skipped.len() as u64,
        errors,
        ..Default::default()
    };
    let tmap: HashMap<&str, &crate::endpoint::Entry> = t
        .iter()
        .filter(|e| !is_temp_name(&e.path))
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut jobs = Vec::new();
    for m in &mapping.mapped {
        let Some(te) = tmap.get(m.target_path.as_str()) else {
            rep.missing.push(m.target_path.clone());
            continue;
        };
        if m.entry.is_dir {
            rep.folders_expected += 1;
            if !te.is_dir {
                rep.missing.push(format!("{} (folder)", m.target_path));
            }
            continue;
        }
        rep.files_compared += 1;
        if te.is_dir || te.size != m.entry.size {
            rep.size_mismatch.push(m.target_path.clone());
            continue;
        }
        let mtime_equal = match (m.entry.mtime_ns, te.mtime_ns) {
            (Some(a), Some(b)) => same_second(a, b),
            _ => false,
        };
        jobs.push(Job {
            source_path: m.entry.path.clone(),
            target_path: m.target_path.clone(),
            size: m.entry.size,
            mtime_equal,
            source_hash: m.entry.service_hash.clone(),
            target_hash: te.service_hash.clone(),
        });
    }
    let wanted: std::collections::HashSet<&str> = mapping
        .mapped
        .iter()
        .map(|m| m.target_path.as_str())
        .collect();
    rep.extra_on_target = tmap
        .keys()
        .filter(|p| !wanted.contains(*p))
        .map(|p| p.to_string())
        .collect();
    rep.extra_on_target.sort();

    rep.compared_by_service_hash = jobs
        .iter()
        .filter(|j| j.source_hash.is_some() || j.target_hash.is_some())
        .count() as u64;
    let results: Vec<(String, Outcome)> = futures_util::stream::iter(jobs)
        .map(|job| {
            let (source, target) = (source.clone(), target.clone());
            async move {
                let out = compare(&*source, &*target, &job).await;
                (job.target_path, out)
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    for (tp, o) in results {
        match o {
            Outcome::Same { mtime_equal } => {
                rep.files_identical += 1;
                if mtime_equal {
                    rep.mtime_matched += 1;
                } else {
                    rep.mtime_mismatch.push(tp);
                }
            }
            Outcome::Differs => rep.content_mismatch.push(tp),
            Outcome::ChangedByService => rep.changed_by_service.push(tp),
            Outcome::Error(e) => rep.errors.push(format!("{tp}: {e}")),
        }
    }
    rep.missing.sort();
    rep.content_mismatch.sort();
    rep.changed_by_service.sort();
    rep.mtime_mismatch.sort();
    Ok(rep)
}
