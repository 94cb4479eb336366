//! What a run must do: the diff of the source listing, the state store and the target listing.
//! Pure: no I/O, so every incremental rule is unit-tested.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::endpoint::{is_temp_name, parent, Entry, FileTimes};
use crate::preflight::Mapped;
use crate::state::Record;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Never copied (or the state was lost).
    New,
    /// Size or modification time changed at the source since the last copy.
    Changed,
    /// We copied it, but it is gone from the target or has another size there.
    TargetDiffers,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyJob {
    pub source_path: String,
    pub target_path: String,
    pub size: u64,
    pub mtime_ns: Option<i64>,
    pub created_ns: Option<i64>,
    pub source_etag: Option<String>,
    pub reason: Reason,
    /// `--checksum`: same size and time; hash the source first and copy only if it differs
    /// from this recorded hash.
    pub only_if_hash_differs: Option<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Folders to create on the target, parents first.
    pub mkdirs: Vec<String>,
    pub copies: Vec<CopyJob>,
    pub unchanged: usize,
    /// Target paths to delete (`--delete`), topmost only: a folder takes its content with it.
    pub deletes: Vec<String>,
    /// State records whose source is gone.
    pub forget: Vec<String>,
    /// Temporary upload files left by an interrupted run.
    pub stale_temps: Vec<String>,
    /// (target folder, source times) to stamp after copying, deepest first.
    pub dir_times: Vec<(String, FileTimes)>,
}

pub struct PlanOptions {
    pub checksum: bool,
    pub delete: bool,
}

pub fn make_plan(
    source: &[Mapped],
    state: &HashMap<String, Record>,
    target: &[Entry],
    opts: &PlanOptions,
) -> Plan {
    let mut plan = Plan::default();
    let tmap: HashMap<&str, &Entry> = target
        .iter()
        .filter(|e| !is_temp_name(&e.path))
        .map(|e| (e.path.as_str(), e))
        .collect();
    plan.stale_temps = target
        .iter()
        .filter(|e| is_temp_name(&e.path))
        .map(|e| e.path.clone())
        .collect();

    let mut wanted: HashSet<&str> = HashSet::new();
    let mut dirs: Vec<&Mapped> = Vec::new();
    for m in source {
        wanted.insert(&m.target_path);
        let e = &m.entry;
        if e.is_dir {
            dirs.push(m);
            if !tmap.get(m.target_path.as_str()).is_some_and(|t| t.is_dir) {
                plan.mkdirs.push(m.target_path.clone());
            }
            continue;
        }
        let on_target = tmap.get(m.target_path.as_str()).filter(|t| !t.is_dir);
        let mut job = CopyJob {
            source_path: e.path.clone(),
            target_path: m.target_path.clone(),
            size: e.size,
            mtime_ns: e.mtime_ns,
            created_ns: e.created_ns,
            source_etag: e.etag.clone(),
            reason: Reason::New,
            only_if_hash_differs: None,
        };
        match state.get(&e.path) {
            None => {}
            Some(r)
                if r.size != e.size
                    || r.source_mtime_ns != e.mtime_ns
                    || (e.etag.is_some() && r.source_etag.is_some() && r.source_etag != e.etag) =>
            {
                job.reason = Reason::Changed
            }
            Some(r) if r.target_path != m.target_path => job.reason = Reason::New,
            Some(_) if on_target.is_none_or(|t| t.size != e.size) => {
                job.reason = Reason::TargetDiffers
            }
            Some(r) if opts.checksum => {
                job.reason = Reason::Changed;
                job.only_if_hash_differs = Some(r.content_hash.clone());
            }
            Some(_) => {
                plan.unchanged += 1;
                continue;
            }
        }
        plan.copies.push(job);
    }
    // Parents first: sort by depth, then name.
    plan.mkdirs
        .sort_by_key(|p| (p.matches('/').count(), p.clone()));
    dirs.sort_by_key(|m| std::cmp::Reverse(m.target_path.matches('/').count()));
    plan.dir_times = dirs
        .iter()
        .map(|m| {
            let times = FileTimes {
                modified_ns: m.entry.mtime_ns,
                created_ns: m.entry.created_ns,
            };
            (m.target_path.clone(), times)
        })
        .filter(|(_, t)| !t.is_empty())
        .collect();
    // Largest first: long transfers start early instead of trailing at the end.
    plan.copies
        .sort_by(|a, b| b.size.cmp(&a.size).then(a.target_path.cmp(&b.target_path)));

    let source_paths: HashSet<&str> = source.iter().map(|m| m.entry.path.as_str()).collect();
    plan.forget = state
        .keys()
        .filter(|p| !source_paths.contains(p.as_str()))
        .cloned()
        .collect();
    plan.forget.sort();
    if opts.delete {
        let mut del: Vec<&str> = tmap
            .keys()
            .copied()
            .filter(|p| !wanted.contains(p))
            .collect();
        del.sort();
        let doomed: HashSet<&str> = del.iter().copied().collect();
        plan.deletes = del
            .iter()
            .filter(|p| {
                // Skip anything whose ancestor is deleted anyway.
                let mut q = parent(p);
                while !q.is_empty() {
                    if doomed.contains(q) {
                        return false;
                    }
                    q = parent(q);
                }
                true
            })
            .map(|p| p.to_string())
            .collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            is_dir: false,
            size,
            mtime_ns: Some(mtime),
            ..Entry::default()
        }
    }
    fn d(path: &str) -> Entry {
        Entry {
            path: path.into(),
            is_dir: true,
            size: 0,
            mtime_ns: Some(7),
            ..Entry::default()
        }
    }
    fn m(x: Entry) -> Mapped {
        Mapped {
            target_path: x.path.clone(),
            entry: x,
        }
    }
    fn rec(path: &str, size: u64, mtime: i64) -> (String, Record) {
        (
            path.into(),
            Record {
                source_path: path.into(),
                target_path: path.into(),
                size,
                source_mtime_ns: Some(mtime),
                source_etag: None,
                content_hash: "blake3:h".into(),
                target_etag: None,
                mtime_kept: false,
            },
        )
    }
    const PLAIN: PlanOptions = PlanOptions {
        checksum: false,
        delete: false,
    };

    #[test]
    fn first_run_copies_everything_and_creates_folders_parents_first() {
        let src = [m(d("a/b")), m(d("a")), m(e("a/b/f", 3, 1)), m(d("empty"))];
        let p = make_plan(&src, &HashMap::new(), &[], &PLAIN);
        assert_eq!(p.mkdirs, vec!["a", "empty", "a/b"]);
        assert_eq!(p.copies.len(), 1);
        assert_eq!(p.copies[0].reason, Reason::New);
        assert_eq!(p.dir_times[0].0, "a/b", "deepest first");
    }

    #[test]
    fn rerun_copies_only_changes_including_same_size_edits() {
        let src = [
            m(e("same", 3, 1)),
            m(e("touched", 3, 2)),
            m(e("grown", 4, 1)),
            m(e("new", 1, 1)),
        ];
        let state: HashMap<_, _> =
            [rec("same", 3, 1), rec("touched", 3, 1), rec("grown", 3, 1)].into();
        let tgt = [e("same", 3, 99), e("touched", 3, 99), e("grown", 3, 99)];
        let p = make_plan(&src, &state, &tgt, &PLAIN);
        let got: HashMap<_, _> = p
            .copies
            .iter()
            .map(|c| (c.source_path.as_str(), c.reason))
            .collect();
        assert_eq!(p.unchanged, 1);
        assert_eq!(got["touched"], Reason::Changed, "same size, new mtime");
        assert_eq!(got["grown"], Reason::Changed);
        assert_eq!(got["new"], Reason::New);
        assert!(p.deletes.is_empty());
    }

    #[test]
    fn a_new_source_etag_catches_an_edit_within_the_same_second() {
        let mut x = e("f", 3, 1);
        x.etag = Some("\"v2\"".into());
        let (k, mut r) = rec("f", 3, 1);
        r.source_etag = Some("\"v1\"".into());
        let state: HashMap<_, _> = [(k, r.clone())].into();
        let p = make_plan(&[m(x.clone())], &state, &[e("f", 3, 1)], &PLAIN);
        assert_eq!(p.copies[0].reason, Reason::Changed);
        r.source_etag = Some("\"v2\"".into());
        let state: HashMap<_, _> = [("f".to_string(), r)].into();
        assert_eq!(
            make_plan(&[m(x)], &state, &[e("f", 3, 1)], &PLAIN).unchanged,
            1
        );
    }

    #[test]
    fn target_damage_is_repaired_and_checksum_mode_rechecks_unchanged() {
        let src = [m(e("gone", 3, 1)), m(e("trunc", 3, 1)), m(e("ok", 3, 1))];
        let state: HashMap<_, _> = [rec("gone", 3, 1), rec("trunc", 3, 1), rec("ok", 3, 1)].into();
        let tgt = [e("trunc", 2, 1), e("ok", 3, 1)];
        let p = make_plan(&src, &state, &tgt, &PLAIN);
        assert_eq!(p.copies.len(), 2);
        assert!(p.copies.iter().all(|c| c.reason == Reason::TargetDiffers));
        let p = make_plan(
            &src,
            &state,
            &tgt,
            &PlanOptions {
                checksum: true,
                delete: false,
            },
        );
        let ok = p.copies.iter().find(|c| c.source_path == "ok").unwrap();
        assert_eq!(ok.only_if_hash_differs.as_deref(), Some("blake3:h"));
    }

    #[test]
    fn deletions_only_with_delete_topmost_only_and_temps_are_found() {
        let src = [m(e("keep", 1, 1))];
        let state: HashMap<_, _> = [rec("keep", 1, 1), rec("old", 1, 1)].into();
        let tgt = [
            e("keep", 1, 1),
            d("olddir"),
            e("olddir/x", 1, 1),
            e("old", 1, 1),
            e(".tenantry-part-00ff", 5, 1),
        ];
        let p = make_plan(&src, &state, &tgt, &PLAIN);
        assert!(p.deletes.is_empty());
        assert_eq!(p.forget, vec!["old"]);
        assert_eq!(p.stale_temps, vec![".tenantry-part-00ff"]);
        let p = make_plan(
            &src,
            &state,
            &tgt,
            &PlanOptions {
                checksum: false,
                delete: true,
            },
        );
        assert_eq!(p.deletes, vec!["old", "olddir"]);
    }
}
