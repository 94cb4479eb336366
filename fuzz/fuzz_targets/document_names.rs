//! SharePoint's name rules over any listing: checking never panics, and under
//! `--on-invalid rename` every renamed name passes the rules it was renamed for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_files::endpoint::Entry;
use tenantry_files::preflight::{check_name, map_entries, rename_name, OnInvalid};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One entry per line; a trailing `/` marks a folder.
    let entries: Vec<Entry> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| Entry {
            path: l.trim_end_matches('/').to_string(),
            is_dir: l.ends_with('/'),
            size: l.len() as u64,
            ..Entry::default()
        })
        .collect();
    for e in &entries {
        let name = e.name();
        let at_root = !e.path.contains('/');
        let problems = check_name(name, e.is_dir, at_root);
        if problems.iter().all(|p| p.renamable()) && !problems.is_empty() {
            let renamed = rename_name(name, e.is_dir, at_root);
            let left = check_name(&renamed, e.is_dir, at_root);
            assert!(
                left.iter().all(|p| !p.renamable()),
                "{name:?} renamed to {renamed:?} still has {left:?}"
            );
        }
    }
    for policy in [OnInvalid::Fail, OnInvalid::Skip, OnInvalid::Rename] {
        let _ = map_entries(&entries, policy);
    }
});
