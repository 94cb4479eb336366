//! Browser sessions: a random id in an HttpOnly, SameSite=Strict cookie, mapped in memory to the
//! principal the signed-in token names and a per-session CSRF token.
//!
//! A visitor who has not signed in yet holds no memory here: their "session" is a cookie signed
//! with a key of this process (issue time, nonce, BLAKE3 keyed MAC) from which the sign-in form's
//! CSRF token is derived. So any number of anonymous visits cannot push out a pending sign-in or a
//! signed-in session; only a valid token creates a stored session.
//!
//! Sessions live in memory only: a restart signs everyone out, which is acceptable for an admin
//! center (the token stays valid; signing in again is one paste).

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenantry_ledger::role::Principal;

pub const COOKIE: &str = "tenantry_session";
/// A signed-in session ends after this long without a request.
const IDLE_SIGNED_IN: Duration = Duration::from_secs(8 * 3600);
/// A session that never signed in (it only carries the sign-in form's CSRF token).
const IDLE_ANONYMOUS: Duration = Duration::from_secs(3600);
/// Above this many signed-in sessions, expired ones are swept before a new one is stored.
const MAX_SESSIONS: usize = 10_000;
/// Marks the id of an anonymous (signed, not stored) session.
const ANONYMOUS_PREFIX: &str = "a.";

#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Option<Principal>,
    pub csrf: String,
    /// A one-shot message for the next page shown (after a redirect).
    pub flash: Option<String>,
    last_seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        let idle = if self.principal.is_some() {
            IDLE_SIGNED_IN
        } else {
            IDLE_ANONYMOUS
        };
        now.duration_since(self.last_seen) > idle
    }
}

pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Signs anonymous session ids; new at every start (a restart also ends pending sign-ins).
    key: [u8; 32],
}

impl Default for Sessions {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Sessions {
            map: Mutex::default(),
            key,
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

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave a session half-written: recover the map.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mac(&self, purpose: &str, body: &str) -> String {
        b64(blake3::keyed_hash(&self.key, format!("{purpose}|{body}").as_bytes()).as_bytes())
    }

    /// A signed anonymous id `a.<issued>.<nonce>.<mac>`; nothing is stored.
    fn create_anonymous(&self) -> (String, Session) {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let body = format!("{}.{}", unix_now(), b64(&nonce));
        let id = format!("{ANONYMOUS_PREFIX}{body}.{}", self.mac("id", &body));
        let session = Session {
            principal: None,
            csrf: self.mac("csrf", &body),
            flash: None,
            last_seen: Instant::now(),
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
            flash: None,
            last_seen: Instant::now(),
        })
    }

    /// A new session; returns its id. Only a signed-in one is stored.
    pub fn create(&self, principal: Option<Principal>) -> (String, Session) {
        if principal.is_none() {
            return self.create_anonymous();
        }
        let id = random_secret();
        let session = Session {
            principal,
            csrf: random_secret(),
            flash: None,
            last_seen: Instant::now(),
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| !s.expired(now));
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session of this id (touching it), or `None`.
    pub fn get(&self, id: &str) -> Option<Session> {
        if id.starts_with(ANONYMOUS_PREFIX) {
            return self.anonymous(id);
        }
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(id) {
            Some(s) if !s.expired(now) => {
                s.last_seen = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Takes the one-shot message of a session.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
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
    fn sessions_carry_a_csrf_token_and_a_one_shot_flash() {
        let sessions = Sessions::default();
        let (id, s) = sessions.create(Some(Principal::Operator));
        assert_eq!(s.csrf.len(), 43);
        sessions.set_flash(&id, "done".into());
        assert_eq!(sessions.take_flash(&id).as_deref(), Some("done"));
        assert_eq!(sessions.take_flash(&id), None);
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }

    #[test]
    fn anonymous_visits_store_nothing_and_evict_no_pending_sign_in() {
        let sessions = Sessions::default();
        let (pending, first) = sessions.create(None);
        let (signed_in, _) = sessions.create(Some(Principal::Operator));
        for _ in 0..MAX_SESSIONS + 1 {
            sessions.create(None);
        }
        assert_eq!(
            sessions.lock().len(),
            1,
            "only the signed-in session is stored"
        );
        let again = sessions
            .get(&pending)
            .expect("the pending sign-in is still valid");
        assert_eq!(again.csrf, first.csrf);
        assert!(again.principal.is_none());
        assert!(sessions.get(&signed_in).is_some());
        // A forged or altered anonymous id is worth nothing.
        let mut forged = pending.clone();
        forged.replace_range(2..3, if &pending[2..3] == "1" { "2" } else { "1" });
        assert!(sessions.get(&forged).is_none());
        assert!(
            Sessions::default().get(&pending).is_none(),
            "another process's key"
        );
        assert!(sessions.get("a.0.AAAA.xyz").is_none());
    }
}
