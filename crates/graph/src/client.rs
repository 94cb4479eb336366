//! The Graph client: every request of a tenant goes through one token cache and one budget.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::Value;

use crate::body::{read_capped, read_prefix, BodyError};
use crate::budget::Budget;
use crate::config::{GraphConfig, Limits};
use crate::error::{parse_error_body, GraphError, RequestIds};
use crate::token::TokenCache;

/// What stays unencoded in one segment of a URL path (Graph path addressing `root:/a/b:`).
pub const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes a `/`-separated relative path for Graph path addressing, segment by segment.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// How Microsoft asks integrators to identify their traffic (SharePoint throttling guidance:
/// undecorated traffic is throttled first).
const USER_AGENT: &str = concat!("NONISV|tenantry|tenantry/", env!("CARGO_PKG_VERSION"));

/// The `code` of the error for an answer over its size limit (tenantry's own: Graph has none).
pub const RESPONSE_TOO_LARGE: &str = "responseTooLarge";

/// Most of an error body we read: enough for Graph's JSON, not a hostile stream.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// One page run of a delta query: every item up to the `@odata.deltaLink`.
#[derive(Debug, Default)]
pub struct DeltaPage {
    pub items: Vec<Value>,
    pub delta_link: String,
}

/// A request the client may send more than once (its body is held as `Bytes`).
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// `/drives/...` (relative to `{graph_url}/v1.0`) or an absolute URL.
    pub url: String,
    pub body: Option<(Bytes, &'static str)>,
    pub headers: Vec<(&'static str, String)>,
    /// Send the bearer token. Off for pre-authenticated URLs (`uploadUrl`,
    /// `@microsoft.graph.downloadUrl`), which must not receive an Authorization header.
    pub authenticated: bool,
    /// Send again after a network error or a 5xx. Off for requests that are not idempotent
    /// (creating a message): the service may have acted on a request whose answer was lost,
    /// and the caller must look before sending again. 429s are always retried (the request
    /// was refused, not carried out).
    pub retry_unanswered: bool,
    /// The most this answer's JSON may weigh, when it may exceed `limits.max_page_bytes` (an
    /// export of whole items).
    pub max_body: Option<usize>,
}

impl Call {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            body: None,
            headers: Vec::new(),
            authenticated: true,
            retry_unanswered: true,
            max_body: None,
        }
    }

    pub fn json(mut self, v: &Value) -> Self {
        self.body = Some((Bytes::from(v.to_string()), "application/json"));
        self
    }

    pub fn bytes(mut self, b: Bytes) -> Self {
        self.body = Some((b, "application/octet-stream"));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Not idempotent: a lost answer is returned as an error instead of sending again.
    pub fn not_idempotent(mut self) -> Self {
        self.retry_unanswered = false;
        self
    }

    /// Allows an answer of up to `bytes` (instead of the client's page limit).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// For pre-authenticated URLs handed out by the service.
    pub fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }
}

struct Inner {
    cfg: GraphConfig,
    http: reqwest::Client,
    tokens: TokenCache,
    budget: Arc<Budget>,
    requests: AtomicU64,
}

/// The Graph client of one app in one tenant. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("tenant_id", &self.inner.cfg.tenant_id)
            .field("client_id", &self.inner.cfg.client_id)
            .field("graph_url", &self.inner.cfg.graph_url)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// `http` should not follow redirects to other hosts with credentials (reqwest drops the
    /// Authorization header on cross-host redirects).
    /// Whether `other` is this very client (a clone), sharing its token cache.
    pub fn same_client(&self, other: &GraphClient) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn new(cfg: GraphConfig, http: reqwest::Client) -> Self {
        let budget = Budget::shared(&cfg.budget_key(), cfg.max_in_flight);
        Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                tokens: TokenCache::default(),
                budget,
                requests: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &GraphConfig {
        &self.inner.cfg
    }

    /// The tenant's budget (shared with every other client of the same app and tenant).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }

    /// HTTP requests this client sent, retries included (the token endpoint excluded).
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}/v1.0{url}", self.inner.cfg.graph_url)
        } else {
            url.to_string()
        }
    }

    /// The token goes to Graph only: a `nextLink` or redirect elsewhere must not receive it.
    fn check_token_destination(&self, url: &str) -> Result<(), GraphError> {
        let base = format!("{}/", self.inner.cfg.graph_url);
        if url.starts_with(&base) {
            Ok(())
        } else {
            Err(GraphError::Permanent {
                status: 0,
                code: None,
                message: "refusing to send the access token to a URL outside the Graph endpoint"
                    .into(),
                ids: RequestIds::default(),
            })
        }
    }

    /// Sends `call`, retrying 429/503/504 after the service's wait (pausing the whole tenant),
    /// other 5xx and network errors with backoff, and a 401 once with a fresh token. Returns
    /// the response of the first 2xx/3xx answer; anything else becomes a typed error.
    pub async fn send(&self, call: &Call) -> Result<reqwest::Response, GraphError> {
        let url = self.absolute(&call.url);
        if call.authenticated {
            self.check_token_destination(&url)?;
        }
        let cfg = &self.inner.cfg;
        let mut attempt = 1u32;
        let mut refreshed_token = false;
        loop {
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let ids = |rid: Option<String>| RequestIds {
                request_id: rid,
                client_request_id: Some(client_request_id.clone()),
            };
            let token = if call.authenticated {
                Some(self.inner.tokens.get(&self.inner.http, cfg).await?)
            } else {
                None
            };
            let permit = self.inner.budget.acquire().await;
            let mut rb = self
                .inner
                .http
                .request(call.method.clone(), &url)
                .header("User-Agent", USER_AGENT)
                .header("client-request-id", &client_request_id);
            if let Some(t) = &token {
                rb = rb.bearer_auth(t);
            }
            for (k, v) in &call.headers {
                rb = rb.header(*k, v);
            }
            match &call.body {
                Some((b, ct)) => rb = rb.header("Content-Type", *ct).body(b.clone()),
                None if call.method == Method::POST || call.method == Method::PUT => {
                    rb = rb.header("Content-Length", "0")
                }
                None => {}
            }
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let result = rb.send().await;
            drop(permit);
            let err = match result {
                Err(e) => GraphError::Transient {
                    message: format!("network: {}", e.without_url()),
                    ids: ids(None),
                },
                Ok(resp) => {
                    let status = resp.status();
                    let rid = header(&resp, "request-id");
                    if status.is_success() || status.is_redirection() {
                        self.inner.budget.success();
                        self.watch_rate_limit(&resp);
                        return Ok(resp);
                    }
                    let wait = throttle_wait(&resp);
                    let body = read_prefix(resp, ERROR_BODY_LIMIT).await;
                    let (code, message, body_rid) = parse_error_body(&body);
                    let ids = ids(rid.or(body_rid));
                    match status.as_u16() {
                        429 | 503 | 504 => {
                            let wait = wait.unwrap_or_else(|| backoff(attempt)).min(cfg.max_wait);
                            self.inner.budget.throttled(wait);
                            tracing::info!(status = status.as_u16(), wait_ms = wait.as_millis() as u64, %ids, "throttled by Graph; the tenant's requests pause");
                            GraphError::Throttled {
                                status: status.as_u16(),
                                retry_after: wait,
                                ids,
                            }
                        }
                        401 if token.is_some() && !refreshed_token => {
                            // Expired or revoked token: one retry with a fresh one.
                            self.inner
                                .tokens
                                .invalidate(token.as_deref().unwrap_or_default())
                                .await;
                            refreshed_token = true;
                            continue;
                        }
                        401 | 403 => {
                            return Err(GraphError::Auth {
                                status: status.as_u16(),
                                code,
                                message,
                                ids,
                            })
                        }
                        s if s >= 500 => GraphError::Transient {
                            message: format!(
                                "HTTP {s} {}: {message}",
                                code.as_deref().unwrap_or("")
                            ),
                            ids,
                        },
                        s => {
                            return Err(GraphError::Permanent {
                                status: s,
                                code,
                                message,
                                ids,
                            })
                        }
                    }
                }
            };
            if attempt >= cfg.attempts
                || (!call.retry_unanswered
                    && !matches!(err, GraphError::Throttled { status: 429, .. }))
            {
                return Err(err);
            }
            if !matches!(err, GraphError::Throttled { .. }) {
                // Not a tenant-wide wait: this request alone backs off.
                tokio::time::sleep(backoff(attempt)).await;
            }
            attempt += 1;
        }
    }

    /// `RateLimit-Remaining` below a tenth of `RateLimit-Limit`: slow down before a 429.
    fn watch_rate_limit(&self, resp: &reqwest::Response) {
        let num = |n| header(resp, n).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(limit), Some(rem)) = (num("RateLimit-Limit"), num("RateLimit-Remaining")) {
            if rem.saturating_mul(10) < limit {
                self.inner.budget.nearly_exhausted();
            }
        }
    }

    /// The answer's JSON (`Null` for an empty body), at most `limits.max_page_bytes` of it.
    pub async fn json(&self, call: &Call) -> Result<Value, GraphError> {
        let resp = self.send(call).await?;
        let ids = RequestIds {
            request_id: header(&resp, "request-id"),
            client_request_id: None,
        };
        let status = resp.status().as_u16();
        let limit = call
            .max_body
            .unwrap_or(self.inner.cfg.limits.max_page_bytes);
        let body = read_capped(resp, limit).await.map_err(|e| match e {
            BodyError::Network(message) => GraphError::Transient {
                message,
                ids: ids.clone(),
            },
            too_large => GraphError::Permanent {
                status,
                code: Some(RESPONSE_TOO_LARGE.into()),
                message: too_large.to_string(),
                ids: ids.clone(),
            },
        })?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|_| GraphError::Permanent {
            status,
            code: None,
            message: "the response is not JSON".into(),
            ids,
        })
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, GraphError> {
        self.json(&Call::new(Method::GET, path)).await
    }

    /// Every item of a collection, following `@odata.nextLink` (within [`Limits`]).
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, GraphError> {
        let mut out = Vec::new();
        let mut pager = Pager::new(self.inner.cfg.limits);
        let mut next = Some(path.to_string());
        while let Some(url) = next {
            pager.follow(&self.absolute(&url))?;
            let mut page = self.get_json(&url).await?;
            if let Some(v) = page["value"].as_array_mut() {
                pager.gather(&mut out, v)?;
            }
            next = page["@odata.nextLink"].as_str().map(str::to_string);
        }
        Ok(out)
    }

    /// A delta query from `start` (a `/…/delta` path, or a `@odata.deltaLink` kept from the last
    /// run) through every `@odata.nextLink` to the new `@odata.deltaLink`
    /// (<https://learn.microsoft.com/graph/api/driveitem-delta>), within [`Limits`]. A 410
    /// means the saved link expired: the caller enumerates again from scratch.
    pub async fn delta(&self, start: &str) -> Result<DeltaPage, GraphError> {
        self.delta_each(start, |_| {}).await
    }

    /// [`Self::delta`], showing each page's entries to `seen` as it arrives, so a caller can
    /// start on them while the next pages are read.
    pub async fn delta_each(
        &self,
        start: &str,
        mut seen: impl FnMut(&[Value]),
    ) -> Result<DeltaPage, GraphError> {
        let mut out = DeltaPage::default();
        let mut pager = Pager::new(self.inner.cfg.limits);
        let mut next = start.to_string();
        loop {
            pager.follow(&self.absolute(&next))?;
            let mut page = self.get_json(&next).await?;
            if let Some(v) = page["value"].as_array_mut() {
                let before = out.items.len();
                pager.gather(&mut out.items, v)?;
                seen(&out.items[before..]);
            }
            if let Some(n) = page["@odata.nextLink"].as_str() {
                next = n.to_string();
                continue;
            }
            match page["@odata.deltaLink"].as_str() {
                Some(d) => {
                    out.delta_link = d.to_string();
                    return Ok(out);
                }
                None => {
                    return Err(listing_error(
                        "a delta page with neither @odata.nextLink nor @odata.deltaLink",
                    ))
                }
            }
        }
    }
}

/// Keeps one listing within [`Limits`]: a link followed twice would loop forever, and an endless
/// run of pages or items would exhaust memory.
struct Pager {
    limits: Limits,
    followed: HashSet<u64>,
    items: usize,
}

impl Pager {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            followed: HashSet::new(),
            items: 0,
        }
    }

    /// Before a page is asked for. Links are remembered by hash: a million of them fit in a few
    /// megabytes, where the URLs themselves may be kilobytes each.
    fn follow(&mut self, url: &str) -> Result<(), GraphError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        url.hash(&mut h);
        if !self.followed.insert(h.finish()) {
            return Err(listing_error(
                "the service sent an @odata.nextLink that was already followed (the listing would never end)",
            ));
        }
        if self.followed.len() > self.limits.max_listing_pages {
            return Err(listing_error(&format!(
                "the listing goes on past {} pages",
                self.limits.max_listing_pages
            )));
        }
        Ok(())
    }

    fn gather(&mut self, out: &mut Vec<Value>, page: &mut Vec<Value>) -> Result<(), GraphError> {
        self.items += page.len();
        if self.items > self.limits.max_listing_items {
            return Err(listing_error(&format!(
                "the listing holds more than {} items",
                self.limits.max_listing_items
            )));
        }
        out.append(page);
        Ok(())
    }
}

/// A listing the service answered in a way no retry will fix.
fn listing_error(message: &str) -> GraphError {
    GraphError::Permanent {
        status: 200,
        code: None,
        message: message.into(),
        ids: RequestIds::default(),
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The greater of `Retry-After` (seconds or an HTTP date) and `RateLimit-Reset` (seconds), as
/// SharePoint's throttling guidance asks.
fn throttle_wait(resp: &reqwest::Response) -> Option<Duration> {
    wait_from_headers(
        header(resp, "Retry-After").as_deref(),
        header(resp, "RateLimit-Reset").as_deref(),
    )
}

pub fn wait_from_headers(retry_after: Option<&str>, reset: Option<&str>) -> Option<Duration> {
    let ra = retry_after.and_then(|v| {
        let v = v.trim();
        v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
            httpdate::parse_http_date(v).ok().map(|t| {
                t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            })
        })
    });
    let rr = reset.and_then(|v| v.trim().parse::<u64>().ok().map(Duration::from_secs));
    ra.max(rr)
}

/// Exponential backoff with jitter for errors that come without a wait.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ms = (500u64 << attempt.saturating_sub(1).min(6)).min(30_000);
    Duration::from_millis(ms / 2 + rand::random::<u64>() % (ms / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientSecret;

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(encode_path("a b/c#d/e%f"), "a%20b/c%23d/e%25f");
        assert_eq!(
            encode_path("Shared Documents/x.docx"),
            "Shared%20Documents/x.docx"
        );
    }

    #[test]
    fn wait_is_the_greater_hint() {
        assert_eq!(
            wait_from_headers(Some("2"), Some("5")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            wait_from_headers(Some("7"), None),
            Some(Duration::from_secs(7))
        );
        assert_eq!(wait_from_headers(None, None), None);
        assert_eq!(
            wait_from_headers(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            Some(Duration::ZERO)
        );
    }

    #[tokio::test]
    async fn the_token_never_leaves_for_another_host() {
        let mut cfg = GraphConfig::from_env("t", "c", ClientSecret::new("s"));
        cfg.graph_url = "https://graph.example".into();
        cfg.authority = "https://127.0.0.1:9".into();
        let c = GraphClient::new(cfg, reqwest::Client::new());
        let e = c
            .get_json("https://graph.example.evil.test/v1.0/x")
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("refusing to send the access token"),
            "{e}"
        );
        assert_eq!(c.requests_sent(), 0);
    }
}
