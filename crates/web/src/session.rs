//! Browser sessions: a random id in an HttpOnly, SameSite=Strict cookie, naming the principal
//! the signed-in token names and a per-session CSRF token.
//!
//! A signed-in session is stored in the database (only a BLAKE3 hash of its id), so a restart
//! signs nobody out and every `serve` process on the same database knows it.
//!
//! A visitor who has not signed in yet stores nothing: their "session" is a cookie signed
//! with a key of this process (issue time, nonce, BLAKE3 keyed MAC) from which the sign-in form's
//! CSRF token is derived. So any number of anonymous visits cannot fill the database; only a
//! valid token creates a stored session. A restart ends only such pending sign-ins (the page
//! asks to reload).

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tenantry_ledger::role::Principal;
use tenantry_ledger::Timestamp;
use tenantry_store::{Store, StoreError, WebSession};

pub const COOKIE: &str = "tenantry_session";
/// A signed-in session ends after this long without a request.
const IDLE_SIGNED_IN_SECS: i64 = tenantry_api::WEB_SESSION_IDLE_SECS;
/// A session that never signed in (it only carries the sign-in form's CSRF token).
const IDLE_ANONYMOUS: Duration = Duration::from_secs(3600);
/// A stored session's last request is written at most this often (not on every page).
const TOUCH_EVERY_SECS: i64 = 60;
/// Marks the id of an anonymous (signed, not stored) session.
const ANONYMOUS_PREFIX: &str = "a.";

#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Option<Principal>,
    pub csrf: String,
}

pub struct Sessions {
    /// Signs anonymous session ids; new at every start (a restart also ends pending sign-ins).
    key: [u8; 32],
    /// One-shot messages for the next page (after a redirect), per session id. Kept by this
    /// process only: a message lost to a restart costs nothing.
    flashes: Mutex<HashMap<String, String>>,
}

impl Default for Sessions {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Sessions {
            key,
            flashes: Mutex::default(),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// 256 random bits, URL-safe.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a session id: whoever reads the database cannot sign in with it.
fn id_hash(id: &str) -> String {
    blake3::hash(id.as_bytes()).to_hex().to_string()
}

impl Sessions {
    fn flashes(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding the lock cannot leave a message half-written: recover the map.
        self.flashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mac(&self, purpose: &str, body: &str) -> String {
        b64(blake3::keyed_hash(&self.key, format!("{purpose}|{body}").as_bytes()).as_bytes())
    }

    /// A signed anonymous id `a.<issued>.<nonce>.<mac>`; nothing is stored.
    pub fn create_anonymous(&self) -> (String, Session) {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let body = format!("{}.{}", unix_now(), b64(&nonce));
        let id = format!("{ANONYMOUS_PREFIX}{body}.{}", self.mac("id", &body));
        let session = Session {
            principal: None,
            csrf: self.mac("csrf", &body),
        };
        (id, session)
    }

    /// The anonymous session a signed id stands for, if the signature holds and it is fresh.
    fn anonymous(&self, id: &str) -> Option<Session> {
        let rest = id.strip_prefix(ANONYMOUS_PREFIX)?;
        let (body, mac) = rest.rsplit_once('.')?;
        if !same_secret(mac, &self.mac("id", body)) {
            return None;
        }
        let issued: u64 = body.split_once('.')?.0.parse().ok()?;
        if unix_now().saturating_sub(issued) > IDLE_ANONYMOUS.as_secs() {
            return None;
        }
        Some(Session {
            principal: None,
            csrf: self.mac("csrf", body),
        })
    }

    /// A new signed-in session, stored; returns its id.
    pub async fn create(
        &self,
        store: &dyn Store,
        principal: Principal,
        now: Timestamp,
    ) -> Result<(String, Session), StoreError> {
        let id = random_secret();
        let session = Session {
            principal: Some(principal),
            csrf: random_secret(),
        };
        store
            .create_web_session(WebSession {
                id_hash: id_hash(&id),
                principal,
                csrf: session.csrf.clone(),
                last_seen: now,
            })
            .await?;
        Ok((id, session))
    }

    /// The live session of this id (touching it), or `None`. A database that cannot be read
    /// is an error, not a sign-out.
    pub async fn get(
        &self,
        store: &dyn Store,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Session>, StoreError> {
        if id.starts_with(ANONYMOUS_PREFIX) {
            return Ok(self.anonymous(id));
        }
        let hash = id_hash(id);
        let Some(stored) = store.web_session(hash.clone()).await? else {
            return Ok(None);
        };
        let idle = now.0 - stored.last_seen.0;
        if idle > IDLE_SIGNED_IN_SECS {
            store.delete_web_session(hash).await?;
            return Ok(None);
        }
        if idle >= TOUCH_EVERY_SECS {
            store.touch_web_session(hash, now).await?;
        }
        Ok(Some(Session {
            principal: Some(stored.principal),
            csrf: stored.csrf,
        }))
    }

    /// Takes the one-shot message of a session.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.flashes().remove(id)
    }

    pub fn set_flash(&self, id: &str, message: String) {
        self.flashes().insert(id.to_string(), message);
    }

    pub async fn remove(&self, store: &dyn Store, id: &str) -> Result<(), StoreError> {
        self.flashes().remove(id);
        if id.starts_with(ANONYMOUS_PREFIX) {
            return Ok(());
        }
        store.delete_web_session(id_hash(id)).await
    }
}

/// The session id the request's cookie names, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether the browser reached us over HTTPS through a TLS-terminating proxy (then the cookie is
/// marked `Secure`; on plain loopback HTTP a `Secure` cookie would not come back).
pub fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("tenantry_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tenantry_session=abc; b=2"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("tenantry_session="),
        );
        assert_eq!(cookie_value(&h), None);
        assert!(!behind_https(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(behind_https(&h));
        assert!(set_cookie("x", true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
    }

    #[test]
    fn flashes_are_one_shot() {
        let sessions = Sessions::default();
        sessions.set_flash("x", "done".into());
        assert_eq!(sessions.take_flash("x").as_deref(), Some("done"));
        assert_eq!(sessions.take_flash("x"), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }

    #[test]
    fn anonymous_ids_are_signed_by_this_process() {
        let sessions = Sessions::default();
        let (pending, first) = sessions.create_anonymous();
        let again = sessions
            .anonymous(&pending)
            .expect("the pending sign-in is valid");
        assert_eq!(again.csrf, first.csrf);
        assert!(again.principal.is_none());
        // A forged or altered anonymous id is worth nothing.
        let mut forged = pending.clone();
        forged.replace_range(2..3, if &pending[2..3] == "1" { "2" } else { "1" });
        assert!(sessions.anonymous(&forged).is_none());
        assert!(
            Sessions::default().anonymous(&pending).is_none(),
            "another process's key"
        );
        assert!(sessions.anonymous("a.0.AAAA.xyz").is_none());
    }
}
