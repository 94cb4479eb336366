//! API token secrets: random 256-bit values with a recognisable prefix (so secret scanners find
//! leaked ones); only their SHA-256 is stored (a slow hash adds nothing at this entropy).

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new secret token, e.g. `tnt_…` for a tenant token, `op_…` for the operator's.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}
