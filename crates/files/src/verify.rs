//! `verify`: re-reads both sides and compares structure, sizes, content hashes and modification times.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;

use crate::endpoint::{is_temp_name, same_second, Endpoint, EndpointError};
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
            "compared {} files: {} identical, {} missing, {} size mismatch, {} content mismatch, {} errors; modification times: {} equal, {} differ; {} extra on target\n",
            self.files_compared,
            self.files_identical,
            self.missing.len(),
            self.size_mismatch.len(),
            self.content_mismatch.len(),
            self.errors.len(),
            self.mtime_matched,
            self.mtime_mismatch.len(),
            self.extra_on_target.len()
        );
        for (what, v) in [
            ("missing", &self.missing),
            ("size mismatch", &self.size_mismatch),
            ("content mismatch", &self.content_mismatch),
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
    Error(String),
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
        jobs.push((
            m.entry.path.clone(),
            m.target_path.clone(),
            m.entry.size,
            mtime_equal,
        ));
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

    let results: Vec<(String, Outcome)> = futures_util::stream::iter(jobs)
        .map(|(sp, tp, size, mtime_equal)| {
            let (source, target) = (source.clone(), target.clone());
            async move {
                let a = async { hash_stream(source.read(&sp, size).await?).await };
                let b = async { hash_stream(target.read(&tp, size).await?).await };
                let out = match tokio::join!(a, b) {
                    (Ok(x), Ok(y)) if x == y => Outcome::Same { mtime_equal },
                    (Ok(_), Ok(_)) => Outcome::Differs,
                    (Err(e), _) | (_, Err(e)) => Outcome::Error(e.to_string()),
                };
                (tp, out)
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
            Outcome::Error(e) => rep.errors.push(format!("{tp}: {e}")),
        }
    }
    rep.missing.sort();
    rep.content_mismatch.sort();
    rep.mtime_mismatch.sort();
    Ok(rep)
}
