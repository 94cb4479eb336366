//! Modified UTF-7 (RFC 3501 §5.1.3), the encoding of mailbox names on the wire.

use base64::alphabet::Alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

fn engine() -> GeneralPurpose {
    // IMAP's variant of base64: ',' instead of '/', no padding.
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
            .expect("static alphabet is valid");
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

pub fn encode(s: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine().encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a name; a name that is not valid modified UTF-7 is returned as-is (servers do
/// send such names, and losing the folder would be worse than an odd name).
pub fn decode(s: &str) -> String {
    try_decode(s).unwrap_or_else(|| s.to_string())
}

fn try_decode(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let dash = after.find('-')?;
        if dash == 0 {
            out.push('&');
        } else {
            let bytes = engine().decode(&after[..dash]).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[dash + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (plain, wire) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("Elementy wysłane", "Elementy wys&AUI-ane"),
            ("A&B", "A&-B"),
            ("日本語", "&ZeVnLIqe-"),
            ("plain", "plain"),
            ("😀", "&2D3eAA-"),
        ] {
            assert_eq!(encode(plain), wire);
            assert_eq!(decode(wire), plain);
        }
        assert_eq!(decode("bad&"), "bad&");
    }
}
