//! Pure: delta items applied to the saved item map, and the map turned into a listing below the
//! endpoint's folder. Delta gives no paths (`parentReference.path` is absent from delta
//! responses; items are tracked by id — <https://learn.microsoft.com/graph/api/driveitem-delta>),
//! so paths are rebuilt from parent ids, and every name passes the same check as a WebDAV href.

use std::collections::HashMap;

use serde_json::Value;

use super::store::{Node, Rewrite};
use crate::endpoint::{Entry, FileTimes, Listing, RefusedEntry, ServiceHash};
use crate::relpath;

/// RFC 3339 (`2024-05-06T07:08:09Z`, with or without fractions) → ns since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// ns since the epoch → RFC 3339 in UTC, whole seconds (what SharePoint keeps).
pub fn format_time(ns: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(ns.div_euclid(1_000_000_000)).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The `fileSystemInfo` facet carrying `times`, or `None` when there is nothing to keep.
/// A client sets these read-write values on upload or with a PATCH
/// (https://learn.microsoft.com/graph/api/resources/filesysteminfo).
pub fn file_system_info(times: FileTimes) -> Option<Value> {
    let mut v = serde_json::Map::new();
    for (key, ns) in [
        ("createdDateTime", times.created_ns),
        ("lastModifiedDateTime", times.modified_ns),
    ] {
        if let Some(t) = ns.and_then(format_time) {
            v.insert(key.into(), Value::String(t));
        }
    }
    (!v.is_empty()).then_some(Value::Object(v))
}

/// Applies one delta run. Returns the root id if the run named it.
pub fn apply_delta(items: &mut HashMap<String, Node>, root: &mut Option<String>, delta: &[Value]) {
    for v in delta {
        let Some(id) = v["id"].as_str() else { continue };
        if v.get("deleted").is_some() {
            items.remove(id);
            continue;
        }
        if v.get("root").is_some() {
            *root = Some(id.to_string());
            continue;
        }
        items.insert(
            id.to_string(),
            Node {
                parent: v["parentReference"]["id"].as_str().map(str::to_string),
                name: v["name"].as_str().unwrap_or_default().to_string(),
                is_dir: v.get("folder").is_some(),
                size: v["size"].as_u64().unwrap_or(0),
                // fileSystemInfo holds the times a client set (ours, or the user's device's);
                // the item's own createdDateTime / lastModifiedDateTime are the service's
                // (https://learn.microsoft.com/graph/api/resources/filesysteminfo).
                mtime_ns: v["fileSystemInfo"]["lastModifiedDateTime"]
                    .as_str()
                    .and_then(parse_time),
                created_ns: v["fileSystemInfo"]["createdDateTime"]
                    .as_str()
                    .and_then(parse_time),
                etag: v["eTag"].as_str().map(str::to_string),
                qxh: v["file"]["hashes"]["quickXorHash"]
                    .as_str()
                    .map(str::to_string),
            },
        );
    }
}

/// The entries below `prefix` (a decoded path inside the drive, `""` for the whole drive).
/// Items whose chain of parents does not reach the root (a deleted folder's content) are left
/// out; names that are not safe path segments are refused by name.
pub fn entries(
    items: &HashMap<String, Node>,
    root: &str,
    prefix: &str,
    rewrites: &HashMap<String, Rewrite>,
) -> Listing {
    let mut paths: HashMap<&str, Option<String>> = HashMap::new();
    let mut out = Listing::default();
    for (id, n) in items {
        if let Err(reason) = relpath::check_segment(&n.name) {
            // Named in the report when its folder is ours; its content is unreachable.
            let parent = n
                .parent
                .as_deref()
                .and_then(|p| path_of(items, root, p, &mut paths));
            if let Some(pp) = parent.filter(|pp| under(pp, prefix).is_some() || pp == prefix) {
                out.refused.push(RefusedEntry {
                    path: format!("{pp}/{}", n.name).escape_debug().to_string(),
                    reason: format!("unsafe name from the service: {reason}"),
                });
            }
            continue;
        }
        let Some(full) = path_of(items, root, id, &mut paths) else {
            continue;
        };
        let Some(rel) = under(&full, prefix) else {
            continue;
        };
        if let Err(e) = relpath::check(rel) {
            out.refused.push(RefusedEntry {
                path: rel.escape_debug().to_string(),
                reason: e.to_string(),
            });
            continue;
        }
        let mut size = n.size;
        let mut service_hash = n.qxh.clone().map(|quick_xor| ServiceHash {
            quick_xor,
            sent_quick_xor: None,
        });
        // A file SharePoint rewrote after our upload, unchanged since: it stands for what we
        // sent, so the plan does not upload it again on every run.
        if let Some(r) = rewrites.get(rel) {
            if r.service_etag.is_some() && r.service_etag == n.etag {
                size = r.sent_size;
                if let Some(h) = &mut service_hash {
                    h.sent_quick_xor = Some(r.sent_qxh.clone());
                }
            }
        }
        out.entries.push(Entry {
            path: rel.to_string(),
            is_dir: n.is_dir,
            size: if n.is_dir { 0 } else { size },
            mtime_ns: n.mtime_ns,
            created_ns: n.created_ns,
            etag: n.etag.clone(),
            service_hash: service_hash.filter(|_| !n.is_dir),
        });
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Whether `prefix` (a decoded folder path in the drive) is a folder; the root always is.
pub fn folder_exists(items: &HashMap<String, Node>, root: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let mut cur = root.to_string();
    for seg in prefix.split('/') {
        // Names are case-insensitive in SharePoint and OneDrive.
        let next = items.iter().find(|(_, n)| {
            n.is_dir
                && n.parent.as_deref() == Some(cur.as_str())
                && n.name.to_lowercase() == seg.to_lowercase()
        });
        match next {
            Some((id, _)) => cur = id.clone(),
            None => return false,
        }
    }
    true
}

/// `full` relative to `prefix`, if it is below it.
fn under<'a>(full: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return (!full.is_empty()).then_some(full);
    }
    full.strip_prefix(prefix)?.strip_prefix('/')
}

/// The drive path of `id`; `None` when it does not lead to the root or a name is unusable.
fn path_of<'a>(
    items: &'a HashMap<String, Node>,
    root: &str,
    id: &'a str,
    memo: &mut HashMap<&'a str, Option<String>>,
) -> Option<String> {
    if let Some(p) = memo.get(id) {
        return p.clone();
    }
    // Guard against cycles from a confused server: a chain longer than the map is one.
    let mut chain: Vec<&str> = Vec::new();
    let mut cur = id;
    let base: Option<String> = loop {
        if cur == root {
            break Some(String::new());
        }
        if let Some(p) = memo.get(cur) {
            break p.clone();
        }
        if chain.len() > items.len() {
            break None;
        }
        chain.push(cur);
        match items.get(cur).and_then(|n| n.parent.as_deref()) {
            Some(p) => cur = p,
            None => break None,
        }
    };
    let mut acc = base;
    for c in chain.iter().rev() {
        acc = acc.and_then(|b| {
            let name = &items[*c].name;
            relpath::check_segment(name).ok()?;
            Some(if b.is_empty() {
                name.clone()
            } else {
                format!("{b}/{name}")
            })
        });
        memo.insert(c, acc.clone());
    }
    memo.get(id).cloned().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delta1() -> Vec<Value> {
        vec![
            json!({"id": "R", "root": {}, "name": "root", "folder": {}}),
            json!({"id": "A", "name": "Docs", "folder": {}, "parentReference": {"id": "R"}}),
            json!({"id": "F", "name": "a.txt", "size": 5, "file": {"hashes": {"quickXorHash": "q"}},
                   "eTag": "e1", "parentReference": {"id": "A"},
                   "fileSystemInfo": {"lastModifiedDateTime": "2020-05-06T07:08:09Z"}}),
            json!({"id": "X", "name": "..", "size": 1, "file": {}, "parentReference": {"id": "A"}}),
        ]
    }

    #[test]
    fn paths_are_rebuilt_from_ids_and_bad_names_are_left_out() {
        let mut items = HashMap::new();
        let mut root = None;
        apply_delta(&mut items, &mut root, &delta1());
        assert_eq!(root.as_deref(), Some("R"));
        let l = entries(&items, "R", "", &HashMap::new());
        let paths: Vec<_> = l.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["Docs", "Docs/a.txt"]);
        assert_eq!(l.refused.len(), 1, "the `..` name is refused by name");
        assert!(l.refused[0].path.ends_with("Docs/.."));
        assert_eq!(l.entries[1].mtime_ns, Some(1_588_748_889_000_000_000));
        // Below a prefix, paths are relative to it.
        let l = entries(&items, "R", "Docs", &HashMap::new());
        assert_eq!(l.entries.len(), 1);
        assert!(folder_exists(&items, "R", "docs") && folder_exists(&items, "R", ""));
        assert!(!folder_exists(&items, "R", "Docs/a.txt") && !folder_exists(&items, "R", "Nope"));
        assert_eq!(l.entries[0].path, "a.txt");
    }

    #[test]
    fn deletions_and_moves_apply() {
        let mut items = HashMap::new();
        let mut root = None;
        apply_delta(&mut items, &mut root, &delta1());
        apply_delta(
            &mut items,
            &mut root,
            &[
                json!({"id": "B", "name": "New", "folder": {}, "parentReference": {"id": "R"}}),
                json!({"id": "F", "name": "b.txt", "size": 6, "file": {}, "parentReference": {"id": "B"}}),
                json!({"id": "A", "deleted": {"state": "deleted"}}),
            ],
        );
        let l = entries(&items, "R", "", &HashMap::new());
        let paths: Vec<_> = l.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["New", "New/b.txt"]);
    }

    #[test]
    fn a_cycle_does_not_hang() {
        let mut items = HashMap::new();
        let mut root = None;
        apply_delta(
            &mut items,
            &mut root,
            &[
                json!({"id": "A", "name": "a", "folder": {}, "parentReference": {"id": "B"}}),
                json!({"id": "B", "name": "b", "folder": {}, "parentReference": {"id": "A"}}),
            ],
        );
        assert!(entries(&items, "R", "", &HashMap::new()).entries.is_empty());
    }

    #[test]
    fn file_system_info_carries_the_times_there_are() {
        let both = FileTimes {
            modified_ns: Some(1_588_748_889_000_000_000),
            created_ns: Some(1_000_000_000_000_000_000),
        };
        assert_eq!(
            file_system_info(both).unwrap(),
            json!({"createdDateTime": "2001-09-09T01:46:40Z", "lastModifiedDateTime": "2020-05-06T07:08:09Z"})
        );
        let only_modified = FileTimes::modified(1_588_748_889_000_000_000);
        assert_eq!(
            file_system_info(only_modified).unwrap(),
            json!({"lastModifiedDateTime": "2020-05-06T07:08:09Z"})
        );
        assert_eq!(file_system_info(FileTimes::default()), None);
    }

    #[test]
    fn times_round_trip_to_the_second() {
        let ns = parse_time("2021-01-02T03:04:05.678Z").unwrap();
        assert_eq!(format_time(ns).unwrap(), "2021-01-02T03:04:05Z");
    }
}
