//! Any bytes a server sends as one response: framing, parsing and reading FETCH attributes
//! must return a value or an error, never panic, overflow the stack or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_mail::protocol::{
    frame, literal_len, parse_fetch, parse_framed, parse_internaldate, Response,
};

fuzz_target!(|data: &[u8]| {
    let _ = literal_len(data);
    let Ok(framed) = frame(data) else { return };
    match parse_framed(framed) {
        Ok(Response::Numbered(_, name, values)) if name == "FETCH" => {
            if let Ok(item) = parse_fetch(values) {
                if let Some(date) = item.internaldate {
                    let _ = parse_internaldate(&date);
                }
            }
        }
        Ok(Response::UntaggedStatus(info)) | Ok(Response::Tagged(_, info)) => {
            let _ = info.describe();
        }
        _ => {}
    }
});
