//! Connection-profile secrets, encrypted at rest with ChaCha20-Poly1305. The key comes from the
//! environment (`TENANTRY_SECRET_KEY`, 64 hex characters) or a key file created on first use
//! with owner-only permissions. Plaintext never leaves this module except to the engines.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::fmt;
use std::path::Path;

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

/// A password in memory; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Sealer {
    pub fn from_key(key: [u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The key from `TENANTRY_SECRET_KEY` if set, else from `key_file`, created if missing.
    pub fn load(env_key: Option<&str>, key_file: &Path) -> Result<Sealer, String> {
        if let Some(text) = env_key {
            return parse_key(text)
                .map(Sealer::from_key)
                .map_err(|e| format!("TENANTRY_SECRET_KEY: {e}"));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => parse_key(&text)
                .map(Sealer::from_key)
                .map_err(|e| format!("secret key file {}: {e}", key_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = ChaCha20Poly1305::generate_key(&mut OsRng).into();
                write_private(key_file, &hex::encode(key)).map_err(|e| {
                    format!("cannot create secret key file {}: {e}", key_file.display())
                })?;
                Ok(Sealer::from_key(key))
            }
            Err(e) => Err(format!(
                "cannot read secret key file {}: {e}",
                key_file.display()
            )),
        }
    }

    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(&nonce, plaintext.as_bytes())
                .expect("encryption of a bounded buffer"),
        );
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Secret, String> {
        if sealed.len() < NONCE_LEN {
            return Err("the stored secret is damaged".into());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| "the stored secret cannot be decrypted with this key (was TENANTRY_SECRET_KEY changed?)".to_string())?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| "the stored secret is damaged".into())
    }
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes =
        hex::decode(text.trim()).map_err(|_| "expected 64 hexadecimal characters".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "expected 64 hexadecimal characters (32 bytes)".to_string())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_other_keys_cannot_open_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        let sealer = Sealer::load(None, &file).unwrap();
        let sealed = sealer.seal("hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            Sealer::load(None, &file).unwrap().open(&sealed).unwrap().0,
            "hunter2"
        );
        let other = Sealer::from_key([7; 32]);
        assert!(other.open(&sealed).is_err());
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<secret>");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_malformed_environment_key_is_refused_clearly() {
        let err = Sealer::load(Some("zz"), Path::new("/nonexistent")).unwrap_err();
        assert!(err.contains("64 hexadecimal"));
    }
}
