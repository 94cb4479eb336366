//! The HTTP side of CalDAV/CardDAV: one client per server with basic auth, every request
//! retried by `tenantry_files::retry::RetryPolicy` (backoff with jitter, Retry-After obeyed and
//! shared by every worker of the server), and statuses turned into `DavError`s that keep the
//! server's stated reason.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, ETAG, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tenantry_files::endpoint::EndpointError;
use tenantry_files::retry::{throttle_wait, RetryPolicy};
use tenantry_graph::body::{read_capped, read_prefix, BodyError};

use crate::kind::Kind;
use crate::location::Access;
use crate::xml::{self, parse_multistatus, CollectionProps, Multistatus};

#[derive(Debug, thiserror::Error)]
pub enum DavError {
    #[error("throttled by the server (HTTP {status})")]
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Network trouble or a 5xx that may pass.
    #[error("{0}")]
    Transient(String),
    #[error("authentication failed (HTTP {0}): check the user in the URL and the password file or environment variable")]
    Auth(u16),
    #[error("not found")]
    NotFound,
    /// The server refused the request; retrying will not change that.
    #[error("HTTP {status}{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Refused { status: u16, reason: Option<String> },
    /// A redirect (followed only by discovery, and only on the same server).
    #[error("redirected (HTTP {status})")]
    Redirect {
        status: u16,
        location: Option<String>,
    },
    /// The server answered something we cannot use.
    #[error("{0}")]
    Protocol(String),
}

impl DavError {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient(_))
    }

    /// The same error as the files engine's retry policy sees it (for its delays).
    fn as_endpoint_error(&self) -> EndpointError {
        match self {
            Self::Throttled {
                status,
                retry_after,
            } => EndpointError::Throttled {
                status: *status,
                retry_after: *retry_after,
            },
            other => EndpointError::Transient(other.to_string()),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } | Self::Throttled { status, .. } => Some(*status),
            Self::Auth(s) => Some(*s),
            Self::NotFound => Some(404),
            _ => None,
        }
    }
}

/// What a PUT may overwrite.
#[derive(Clone, Debug)]
pub enum Overwrite {
    /// Only create: `If-None-Match: *` (a 412 means something is already there).
    Never,
    /// Only the version we know: `If-Match: <etag>`.
    IfMatch(String),
}

/// One CalDAV/CardDAV server, as one user.
pub struct Dav {
    client: reqwest::Client,
    access: Access,
    retry: RetryPolicy,
    /// When the server last asked us to wait, every worker waits.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

fn net_error(e: reqwest::Error) -> DavError {
    // reqwest's message may include the URL; ours never hold credentials.
    DavError::Transient(format!("network: {e}"))
}

/// A whole body held in memory is bounded: a server decides how much it sends.
/// A multistatus answer (a listing, or every object's data at once) up to 256 MiB...
const MAX_MULTISTATUS_BYTES: usize = 256 << 20;
/// ...and one object up to 100 MiB (Radicale's own default request limit is 100 MB; calendar
/// and contact objects are kilobytes, a vCard with a photo a few megabytes).
const MAX_OBJECT_BYTES: usize = 100 << 20;

fn body_error(e: BodyError) -> DavError {
    match e {
        BodyError::Network(m) => DavError::Transient(format!("network: {m}")),
        too_large => DavError::Protocol(too_large.to_string()),
    }
}

fn dav_method(name: &'static str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("valid method")
}

async fn classify(resp: Response) -> Result<Response, DavError> {
    let st = resp.status();
    if st.is_success() {
        return Ok(resp);
    }
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
    let retry_after = throttle_wait(header(RETRY_AFTER.as_str()), header("ratelimit-reset"));
    Err(match st {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => DavError::Throttled {
            status: st.as_u16(),
            retry_after,
        },
        StatusCode::UNAUTHORIZED => DavError::Auth(401),
        s if s.is_redirection() => DavError::Redirect {
            status: s.as_u16(),
            location: header("location").map(str::to_string),
        },
        StatusCode::NOT_FOUND => DavError::NotFound,
        StatusCode::LOCKED
        | StatusCode::REQUEST_TIMEOUT
        | StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::BAD_GATEWAY
        | StatusCode::GATEWAY_TIMEOUT => DavError::Transient(format!("HTTP {st}")),
        _ => {
            // The body says why (a CalDAV precondition, a quota message); its start is enough.
            let body = read_prefix(resp, 16 * 1024).await;
            let body = String::from_utf8_lossy(&body);
            DavError::Refused {
                status: st.as_u16(),
                reason: xml::error_reason(&body)
                    .or_else(|| st.canonical_reason().map(str::to_string)),
            }
        }
    })
}

impl Dav {
    pub fn new(client: reqwest::Client, access: Access, retry: RetryPolicy) -> Self {
        Self {
            client,
            access,
            retry,
            paused_until: std::sync::Mutex::new(None),
        }
    }

    /// Points this client at another URL of the same server (a discovered home).
    pub fn rebase(&mut self, url: Url) {
        self.access.url = url;
    }

    /// The location's URL (always ending in `/`).
    pub fn base(&self) -> &Url {
        &self.access.url
    }

    fn req(&self, method: Method, url: &Url) -> RequestBuilder {
        let b = self.client.request(method, url.clone());
        match &self.access.user {
            Some(u) => b.basic_auth(u, self.access.password.as_deref()),
            None => b,
        }
    }

    /// Sends the request `make` builds (again for each retry) and classifies the answer.
    async fn send(&self, make: impl Fn() -> RequestBuilder) -> Result<Response, DavError> {
        let mut attempt = 1;
        loop {
            let until = *self.paused_until.lock().expect("pause lock");
            if let Some(t) = until {
                tokio::time::sleep_until(t).await;
            }
            let r = match make().send().await {
                Ok(resp) => classify(resp).await,
                Err(e) => Err(net_error(e)),
            };
            match r {
                Err(e) if e.is_retryable() && attempt < self.retry.attempts => {
                    let d = self.retry.delay(attempt, &e.as_endpoint_error());
                    if let DavError::Throttled {
                        retry_after: Some(_),
                        ..
                    } = e
                    {
                        let t = tokio::time::Instant::now() + d;
                        let mut g = self.paused_until.lock().expect("pause lock");
                        if g.is_none_or(|cur| cur < t) {
                            *g = Some(t);
                        }
                    }
                    tracing::info!(attempt, wait_ms = d.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn multistatus(&self, resp: Response) -> Result<Multistatus, DavError> {
        let body = read_capped(resp, MAX_MULTISTATUS_BYTES)
            .await
            .map_err(body_error)?;
        // Without a second copy of what may be a large answer (unless it is not UTF-8).
        let text = String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        parse_multistatus(&text).map_err(DavError::Protocol)
    }

    pub async fn propfind(
        &self,
        url: &Url,
        depth: &'static str,
        body: &str,
    ) -> Result<Multistatus, DavError> {
        let resp = self
            .send(|| {
                self.req(dav_method("PROPFIND"), url)
                    .header("Depth", depth)
                    .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                    .body(body.to_string())
            })
            .await?;
        self.multistatus(resp).await
    }

    /// A sync-collection REPORT (RFC 6578) from `token` (empty: everything).
    pub async fn sync_collection(&self, url: &Url, token: &str) -> Result<Multistatus, DavError> {
        let body = xml::sync_collection(token);
        let resp = self
            .send(|| {
                self.req(dav_method("REPORT"), url)
                    .header("Depth", "0")
                    .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                    .body(body.clone())
            })
            .await?;
        self.multistatus(resp).await
    }

    /// A calendar-query / addressbook-query REPORT for every object's data.
    pub async fn query_all(&self, url: &Url, kind: Kind) -> Result<Multistatus, DavError> {
        let body = xml::query_all(kind);
        let resp = self
            .send(|| {
                self.req(dav_method("REPORT"), url)
                    .header("Depth", "1")
                    .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                    .body(body.clone())
            })
            .await?;
        self.multistatus(resp).await
    }

    /// The object's bytes exactly as served, and its ETag.
    pub async fn get(&self, url: &Url) -> Result<(Bytes, Option<String>), DavError> {
        let resp = self.send(|| self.req(Method::GET, url)).await?;
        let etag = etag_of(&resp);
        let body = read_capped(resp, MAX_OBJECT_BYTES)
            .await
            .map_err(body_error)?;
        Ok((Bytes::from(body), etag))
    }

    /// Stores `body` as is. `Schedule-Reply: F` asks a server with scheduling (RFC 6638) not to
    /// send replies on our behalf. Returns the new ETag when the server gives one.
    pub async fn put(
        &self,
        url: &Url,
        kind: Kind,
        body: Bytes,
        overwrite: &Overwrite,
    ) -> Result<Option<String>, DavError> {
        let resp = self
            .send(|| {
                let b = self
                    .req(Method::PUT, url)
                    .header(CONTENT_TYPE, kind.content_type())
                    .header("Schedule-Reply", "F")
                    .body(body.clone());
                match overwrite {
                    Overwrite::Never => b.header("If-None-Match", "*"),
                    Overwrite::IfMatch(e) => b.header("If-Match", e.as_str()),
                }
            })
            .await?;
        Ok(etag_of(&resp))
    }

    /// Deletes an object if it is still the version we wrote.
    pub async fn delete(&self, url: &Url, if_match: Option<&str>) -> Result<(), DavError> {
        self.send(|| {
            let b = self.req(Method::DELETE, url).header("Schedule-Reply", "F");
            match if_match {
                Some(e) => b.header("If-Match", e),
                None => b,
            }
        })
        .await
        .map(|_| ())
    }

    /// Creates a calendar or address book with the source's properties.
    pub async fn create_collection(
        &self,
        url: &Url,
        kind: Kind,
        props: &CollectionProps,
    ) -> Result<(), DavError> {
        let body = xml::create_collection(kind, props);
        self.send(|| {
            self.req(dav_method(kind.create_method()), url)
                .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                .body(body.clone())
        })
        .await
        .map(|_| ())
    }

    /// Sets a collection's properties; a 207 answer lists per property whether it was set.
    pub async fn proppatch(
        &self,
        url: &Url,
        kind: Kind,
        props: &CollectionProps,
    ) -> Result<(), DavError> {
        let Some(body) = xml::proppatch(kind, props) else {
            return Ok(());
        };
        self.send(|| {
            self.req(dav_method("PROPPATCH"), url)
                .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                .body(body.clone())
        })
        .await
        .map(|_| ())
    }
}

fn etag_of(resp: &Response) -> Option<String> {
    resp.headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
