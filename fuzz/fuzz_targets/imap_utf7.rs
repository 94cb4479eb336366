//! Folder names in modified UTF-7 (RFC 3501 §5.1.3), as servers list them: decoding never
//! panics, and encoding then decoding any string gives it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry_mail::protocol::utf7::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = decode(s);
    assert_eq!(decode(&encode(s)), s, "round trip of {s:?}");
});
