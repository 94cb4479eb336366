//! Any 207 Multi-Status body a WebDAV server sends: parsing never panics, and every href it
//! yields either resolves to a path that passes the engine's path check (no `..`, no empty or
//! absolute segment, nothing outside the root) or is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_files::relpath;
use tenantry_files::webdav::propfind::{parse_multistatus, HrefRoot};

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let root =
        HrefRoot::new(&reqwest::Url::parse("https://dav.example/dav/lib/").unwrap()).unwrap();
    // The body as a listing, and the body as one href (hrefs are where paths come from).
    let hrefs = parse_multistatus(xml)
        .map(|entries| entries.into_iter().map(|e| e.href).collect::<Vec<_>>())
        .unwrap_or_default();
    for href in hrefs.iter().map(String::as_str).chain([xml]) {
        if let Ok(path) = root.resolve(href) {
            assert_eq!(
                relpath::check(&path),
                Ok(()),
                "{href:?} resolved to {path:?}"
            );
        }
    }
});
