//! Any 207 Multi-Status body a WebDAV server sends: parsing never panics, and every href it
//! yields is either refused or names a path that, turned back into the URL tenantry requests,
//! stays below the root: the URL's decoded segments are the root's followed by the path's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use tenantry_files::webdav::propfind::{encode_path, parse_multistatus, HrefRoot};

const BASE: &str = "https://dav.example/dav/lib/";

fuzz_target!(|data: &[u8]| {
    let root = HrefRoot::new(&reqwest::Url::parse(BASE).unwrap()).unwrap();
    // The body as a listing, and the body as one href (hrefs are where paths come from).
    let hrefs = parse_multistatus(data)
        .map(|entries| entries.into_iter().map(|e| e.href).collect::<Vec<_>>())
        .unwrap_or_default();
    let whole = std::str::from_utf8(data).ok();
    for href in hrefs.iter().map(String::as_str).chain(whole) {
        let Ok(path) = root.resolve(href) else {
            continue;
        };
        // What a request for this path would be sent to, as the URL parser normalises it.
        let url = reqwest::Url::parse(&format!("{BASE}{}", encode_path(&path, false))).unwrap();
        assert_eq!(url.host_str(), Some("dav.example"));
        let sent: Vec<String> = url
            .path_segments()
            .unwrap()
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8().unwrap().into_owned())
            .collect();
        let wanted: Vec<&str> = ["dav", "lib"]
            .into_iter()
            .chain(path.split('/').filter(|s| !s.is_empty()))
            .collect();
        assert_eq!(
            sent, wanted,
            "{href:?} resolved to {path:?}, requested as {url}"
        );
    }
});
