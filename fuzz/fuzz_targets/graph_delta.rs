//! Any delta page the Graph drive API sends: applying it to the saved item map and rebuilding
//! paths from parent ids never panics or loops, and every path it lists passes the engine's
//! path check (a hostile or confused service cannot name `..` or an absolute path).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tenantry_files::graph::listing::{apply_delta, entries};
use tenantry_files::relpath;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Array(delta)) = serde_json::from_slice(data) else {
        return;
    };
    let mut items = HashMap::new();
    let mut root = Some("root".to_string());
    apply_delta(&mut items, &mut root, &delta);
    let root = root.unwrap_or_default();
    for prefix in ["", "a"] {
        let listing = entries(&items, &root, prefix, &HashMap::new());
        for e in &listing.entries {
            assert_eq!(relpath::check(&e.path), Ok(()), "{:?}", e.path);
        }
    }
});
