//! quickXorHash, the content hash OneDrive for Business and SharePoint report for every file
//! (`file.hashes.quickXorHash`, base64; <https://learn.microsoft.com/graph/api/resources/hashes>).
//!
//! The algorithm (<https://learn.microsoft.com/onedrive/developer/code-snippets/quickxorhash>):
//! byte `i` is XORed into a 160-bit circular register at bit `11 * i mod 160`; the register's
//! bytes, little-endian, with the total length (64-bit little-endian) XORed into the last eight.
//! Not cryptographic: it tells a corrupted or rewritten upload from an intact one.

use base64::Engine;

#[derive(Clone, Debug, Default)]
pub struct QuickXor {
    register: [u8; 20],
    /// Bit position of the next byte (0..160).
    shift: usize,
    len: u64,
}

impl QuickXor {
    pub fn update(&mut self, data: &[u8]) {
        let mut shift = self.shift;
        for &b in data {
            let (i, bit) = (shift / 8, shift % 8);
            let v = (b as u16) << bit;
            self.register[i] ^= v as u8;
            self.register[if i == 19 { 0 } else { i + 1 }] ^= (v >> 8) as u8;
            shift += 11;
            if shift >= 160 {
                shift -= 160;
            }
        }
        self.shift = shift;
        self.len += data.len() as u64;
    }

    pub fn digest(&self) -> [u8; 20] {
        let mut out = self.register;
        for (o, l) in out[12..].iter_mut().zip(self.len.to_le_bytes()) {
            *o ^= l;
        }
        out
    }

    /// The form Graph returns.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.digest())
    }
}

/// quickXorHash of a whole buffer, base64.
pub fn quickxor_base64(data: &[u8]) -> String {
    let mut h = QuickXor::default();
    h.update(data);
    h.base64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn published_vectors() {
        // The example of the quickxorhash C library's documentation, and vectors of rclone's
        // quickxorhash tests (which were checked against OneDrive for Business).
        assert_eq!(
            quickxor_base64(b"hello world"),
            "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
        );
        assert_eq!(quickxor_base64(b""), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(
            quickxor_base64(&b64("Sg==")),
            "SgAAAAAAAAAAAAAAAQAAAAAAAAA="
        );
        assert_eq!(
            quickxor_base64(&b64("2fuxhBJXtpWFe8dOfdGeHw==")),
            "O9tHLAghgSvYohKFyMMxnNCHaHg="
        );
        assert_eq!(
            quickxor_base64(&b64("ikwCorI7PKWz17EI50jZCGbV9JU2E8bXVfxNMg5zdmqSZ2NlsQPp0kqYIPjzwTg1MBtfWPg53k0h0P2naJNEVgrqpoHTfV2b3pJ4m0zYPTJmUX4Bg/lOxcnCxAYKU29Y5F0U8Quz7ZXFBEweftXxJ7RS4r6N7BzJrPsLhY7hgck=")),
            "imAoFvCWlDn4yVw3/oq1PDbbm6U="
        );
        assert_eq!(
            quickxor_base64(&b64("w0LGhqU1WXFbdavqDE4kAjEzWLGGzmTNikzqnsiXHx2KRReKVTxkv27u3UcEz9+lbMvYl4xFf2Z4aE1xRBBNd1Ke5C0zToSaYw5o4B/7X99nKK2/XaUX1byLow2aju2XJl2OpKpJg+tSJ2fmjIJTkfuYUz574dFX6/VXxSxwGH/xQEAKS5TCsBK3CwnuG1p5SAsQq3gGVozDWyjEBcWDMdy8/AIFrj/y03Lfc/RNRCQTAfZbnf2QwV7sluw4fH3XJr07UoD0YqN+7XZzidtrwqMY26fpLZnyZjnBEt1FAZWO7RnKG5asg8xRk9YaDdedXdQSJAOy6bWEWlABj+tVAigBxavaluUH8LOj+yfCFldJjNLdi90fVHkUD/m4Mr5OtmupNMXPwuG3EQlqWUVpQoYpUYKLsk7a5Mvg6UFkiH596y5IbJEVCI1Kb3D1")),
            "e3+wo77iKcILiZegnzyUNcjCdoQ="
        );
    }

    #[test]
    fn streaming_in_any_pieces_gives_the_same_hash() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = quickxor_base64(&data);
        for piece in [1, 3, 64, 4096, 65_537] {
            let mut h = QuickXor::default();
            data.chunks(piece).for_each(|c| h.update(c));
            assert_eq!(h.base64(), whole, "pieces of {piece}");
        }
    }
}
