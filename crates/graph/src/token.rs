//! App-only access tokens (OAuth2 client credentials), cached and refreshed before they expire.
//!
//! POST `{authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`,
//! `client_id`, `scope={graph}/.default` and the credential: `client_secret`, or
//! `client_assertion_type` + `client_assertion` (a JWT signed with the app's certificate, made
//! fresh for each request, [`crate::certificate`]); the answer carries `access_token` and
//! `expires_in` (seconds) and no refresh token: a new token is simply requested
//! (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-credentials-flow>).

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::body::{read_capped, read_prefix, BodyError};
use crate::certificate::ASSERTION_TYPE;
use crate::config::{ClientCredential, GraphConfig};
use crate::error::{parse_error_body, GraphError, RequestIds};

#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub refresh_at: Instant,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<Token>>,
}

/// When to fetch a new token: five minutes before expiry, or at three quarters of a short
/// lifetime, so no request leaves with a token about to lapse.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(300))
}

impl TokenCache {
    /// A valid token; one request to the token endpoint at a time (the lock is held while
    /// fetching, so concurrent callers wait for the same new token).
    pub async fn get(
        &self,
        http: &reqwest::Client,
        cfg: &GraphConfig,
    ) -> Result<String, GraphError> {
        self.get_for(http, cfg, &cfg.scope()).await
    }

    /// As `get`, for the `.default` scope of another resource.
    async fn get_for(
        &self,
        http: &reqwest::Client,
        cfg: &GraphConfig,
        scope: &str,
    ) -> Result<String, GraphError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let t = fetch(http, cfg, scope).await?;
        let v = t.value.clone();
        *cur = Some(t);
        Ok(v)
    }

    /// Graph said the token is no longer valid (401): forget it unless it was already replaced.
    pub async fn invalidate(&self, token: &str) {
        let mut cur = self.current.lock().await;
        if cur.as_ref().is_some_and(|t| t.value == token) {
            *cur = None;
        }
    }
}

/// Most of a token endpoint's answer we read.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// Exchange Online's IMAP, POP and SMTP with app-only tokens: "use the scope
/// `https://outlook.office365.com/.default`" (learn.microsoft.com/exchange/client-developer/
/// legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth).
pub const EXCHANGE_ONLINE_SCOPE: &str = "https://outlook.office365.com/.default";

/// App-only tokens for a resource other than Graph (Exchange Online's IMAP), from the same
/// token endpoint and app registration, cached and refreshed before expiry as Graph's are, so a
/// run that outlives one token (60–90 minutes) gets a new one when it next asks.
pub struct AppTokens {
    cfg: GraphConfig,
    scope: String,
    http: reqwest::Client,
    cache: TokenCache,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration's own Debug redacts the secret; tokens are never shown.
        f.debug_struct("AppTokens")
            .field("cfg", &self.cfg)
            .field("scope", &self.scope)
            .finish()
    }
}

impl AppTokens {
    pub fn new(cfg: GraphConfig, scope: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            cfg,
            scope: scope.into(),
            http,
            cache: TokenCache::default(),
        }
    }

    /// A token valid for a while yet (a new one once the old is near expiry).
    pub async fn get(&self) -> Result<String, GraphError> {
        self.cache.get_for(&self.http, &self.cfg, &self.scope).await
    }

    /// The server refused `token`: forget it, so the next `get` asks for a new one.
    pub async fn invalidate(&self, token: &str) {
        self.cache.invalidate(token).await
    }
}

async fn fetch(
    http: &reqwest::Client,
    cfg: &GraphConfig,
    scope: &str,
) -> Result<Token, GraphError> {
    let client_request_id = uuid::Uuid::new_v4().to_string();
    let ids = |rid: Option<String>| RequestIds {
        request_id: rid,
        client_request_id: Some(client_request_id.clone()),
    };
    let token_url = cfg.token_url();
    let assertion;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", cfg.client_id.as_str()),
        ("scope", scope),
    ];
    match &cfg.credential {
        ClientCredential::Secret(secret) => form.push(("client_secret", secret.expose())),
        ClientCredential::Certificate(cert) => {
            // The audience is the very URL the request goes to.
            assertion =
                cert.assertion(&cfg.client_id, &token_url)
                    .map_err(|e| GraphError::Auth {
                        status: 0,
                        code: None,
                        message: format!("signing the client assertion: {e}"),
                        ids: ids(None),
                    })?;
            form.push(("client_assertion_type", ASSERTION_TYPE));
            form.push(("client_assertion", &assertion));
        }
    }
    let resp = http
        .post(&token_url)
        .header("client-request-id", &client_request_id)
        .form(&form)
        .send()
        .await
        .map_err(|e| GraphError::Transient {
            // Without the URL: reqwest's message would name the tenant's endpoint only, but keep
            // errors short and free of anything from the request.
            message: format!("token endpoint unreachable: {}", e.without_url()),
            ids: ids(None),
        })?;
    let status = resp.status().as_u16();
    let rid = resp
        .headers()
        .get("x-ms-request-id")
        .or_else(|| resp.headers().get("request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status == 429 || status >= 500 {
        // The service's trouble, not the app's: try again (the body, often an HTML page, is not read).
        return Err(GraphError::Transient {
            message: format!("token endpoint answered HTTP {status}"),
            ids: ids(rid),
        });
    }
    if status != 200 {
        let body = read_prefix(resp, TOKEN_BODY_LIMIT).await;
        let (code, message, _) = parse_error_body(&body);
        return Err(GraphError::Auth {
            status,
            code,
            message,
            ids: ids(rid),
        });
    }
    // A token answer is a few kilobytes.
    let body = read_capped(resp, TOKEN_BODY_LIMIT)
        .await
        .map_err(|e| match e {
            BodyError::Network(message) => GraphError::Transient {
                message: format!("the token endpoint's answer: {message}"),
                ids: ids(rid.clone()),
            },
            too_large => GraphError::Auth {
                status,
                code: None,
                message: format!("the token endpoint's answer: {too_large}"),
                ids: ids(rid.clone()),
            },
        })?;
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: String,
        expires_in: serde_json::Value,
    }
    let a: Answer = serde_json::from_slice(&body).map_err(|_| GraphError::Auth {
        status,
        code: None,
        message: "the token endpoint's answer has no access_token/expires_in".into(),
        ids: ids(rid.clone()),
    })?;
    // `expires_in` is a number of seconds (some endpoints send it as a string).
    let secs = a
        .expires_in
        .as_u64()
        .or_else(|| a.expires_in.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(300);
    let lifetime = Duration::from_secs(secs);
    Ok(Token {
        value: a.access_token,
        refresh_at: Instant::now() + lifetime - refresh_margin(lifetime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_well_before_expiry() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3599)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
    }
}
