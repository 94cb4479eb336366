//! WebDAV (RFC 4918) endpoint: Apache mod_dav, Nextcloud/ownCloud (`X-OC-Mtime`), wsgidav and
//! other generic servers. Listing is a breadth-first walk of `Depth: 1` PROPFINDs because
//! Apache refuses `Depth: infinity` by default.

pub mod propfind;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::sync::{oneshot, OnceCell};

use crate::endpoint::{
    limit_to_listed, parent, rebuffer, temp_path_for, ByteStream, Endpoint, EndpointError, Entry,
    FileTimes, Listing, MtimeSupport, PutOutcome, RefusedEntry, UploadChoice, UploadMode,
    UploadPolicy,
};
use crate::limits::{Limits, MAX_XML_EVENT_BYTES};
use crate::relpath;
use crate::retry::{throttle_wait, RetryPolicy};
use propfind::{
    encode_path, proppatch_mtime_body, read_multistatus, DavEntry, HrefRoot, MultistatusCaps,
    PROPFIND_BODY,
};

/// How a target keeps modification times, found out on the first upload that can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MtimeMode {
    /// The server applied `X-OC-Mtime` from the PUT (ownCloud, Nextcloud, wsgidav with
    /// `honor_mtime_header`).
    OcHeader,
    /// The server accepts a PROPPATCH of `DAV:getlastmodified`.
    Proppatch,
    /// Neither: the server stamps its own time (Apache mod_dav).
    None,
}

/// Size of the chunks a download is regrouped into before it is written on.
const READ_CHUNK: usize = 256 * 1024;

/// PROPFINDs in flight while listing.
const LIST_PARALLEL: usize = 8;

/// Uploads a run must have before probing the server's PUT pays off: the probe costs about
/// `PROBE_WINDOW`, a direct upload saves one MOVE (around a millisecond on a LAN).
const PROBE_MIN_FILES: u64 = 200;

/// How long a probe upload stays half-sent, at least, while we look for it under its name
/// (longer on a slow link: four of the slowest round trips seen).
const PROBE_WINDOW: Duration = Duration::from_millis(300);

/// Looks at the half-sent probe, at least, before believing it stays out of sight.
const PROBE_MIN_LOOKS: u32 = 3;

/// The whole probe, at most; past it the probe is inconclusive and uploads are staged (a server
/// that answers one request at a time would otherwise wait on us forever).
const PROBE_LIMIT: Duration = Duration::from_secs(10);

pub struct WebDavEndpoint {
    client: reqwest::Client,
    /// Root URL, always ending in `/`.
    base: String,
    /// The root, for turning the hrefs of listings back into relative paths.
    root: HrefRoot,
    user: Option<String>,
    password: Option<String>,
    retry: RetryPolicy,
    limits: Limits,
    mtime_mode: OnceCell<MtimeMode>,
    /// Set once the server refused a PROPPATCH of `getlastmodified`: no point asking per file.
    proppatch_refused: AtomicBool,
    upload_policy: UploadPolicy,
    /// Settled by `prepare_uploads`; staged until then.
    upload_choice: OnceCell<UploadChoice>,
    /// When the server last asked us to wait (429/503 + Retry-After), every worker waits, not
    /// only the one that was told: carrying on would count against the limit and prolong it.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// One HTTP client for the whole run: its keep-alive pool is what makes small files fast.
/// `extra_ca` (PEM) is trusted besides the system roots, for servers with a private CA.
pub fn http_client(
    parallel: usize,
    extra_ca: Option<&[u8]>,
) -> Result<reqwest::Client, EndpointError> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(parallel.max(1) * 2)
        .tcp_nodelay(true)
        // Redirects would turn MOVE/PUT into GET; we handle the one case (trailing slash) ourselves.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .user_agent(concat!(
            "NONISV|tenantry|tenantry-files/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(pem) = extra_ca {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| EndpointError::Permanent(format!("CA certificate: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| EndpointError::Permanent(format!("HTTP client: {e}")))
}

impl WebDavEndpoint {
    /// `base` is an `http(s)://host[:port]/path` URL without credentials (a URL with user info
    /// is refused).
    pub fn new(
        client: reqwest::Client,
        base: &str,
        user: Option<String>,
        password: Option<String>,
        retry: RetryPolicy,
    ) -> Result<Self, EndpointError> {
        let mut base = base.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let url = reqwest::Url::parse(&base)
            .map_err(|e| EndpointError::Permanent(format!("bad URL: {e}")))?;
        // The HTTP client would turn user info into an `Authorization` header of its own,
        // beside ours: credentials come only through `user` and `password`
        // (`location::resolve_login` settles them).
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointError::Permanent(
                "the WebDAV URL holds credentials; they are passed separately".into(),
            ));
        }
        let root = HrefRoot::new(&url).map_err(EndpointError::Permanent)?;
        Ok(Self {
            client,
            base,
            root,
            user,
            password,
            retry,
            limits: Limits::default(),
            mtime_mode: OnceCell::new(),
            proppatch_refused: AtomicBool::new(false),
            upload_policy: UploadPolicy::Auto,
            upload_choice: OnceCell::new(),
            paused_until: std::sync::Mutex::new(None),
        })
    }

    pub fn with_upload_policy(mut self, policy: UploadPolicy) -> Self {
        self.upload_policy = policy;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn url(&self, rel: &str, dir: bool) -> String {
        format!("{}{}", self.base, encode_path(rel, dir))
    }

    /// Waits out a pause the server asked for.
    async fn wait_if_paused(&self) {
        let until = *self.paused_until.lock().expect("pause lock");
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }

    /// Maps the status like `check_status`, and turns a throttle into a pause for all workers.
    async fn checked(&self, resp: Response, path: &str) -> Result<Response, EndpointError> {
        let r = check_status(resp, path).await;
        if let Err(EndpointError::Throttled {
            retry_after: Some(d),
            ..
        }) = &r
        {
            let t = tokio::time::Instant::now() + (*d).min(self.retry.max_retry_after);
            let mut g = self.paused_until.lock().expect("pause lock");
            if g.is_none_or(|cur| cur < t) {
                *g = Some(t);
            }
        }
        r
    }

    /// A request with the credentials and the deadline for a request without a large body (a
    /// transfer or a listing sets its own).
    fn req(&self, method: Method, url: &str) -> RequestBuilder {
        let b = self
            .client
            .request(method, url)
            .timeout(self.limits.request_deadline);
        match &self.user {
            Some(u) => b.basic_auth(u, self.password.as_deref()),
            None => b,
        }
    }

    /// Sends a request once, after any pause the server asked for, and classifies the status.
    async fn send_once(&self, b: RequestBuilder, path: &str) -> Result<Response, EndpointError> {
        self.wait_if_paused().await;
        let resp = b.send().await.map_err(|e| net_error(path, e))?;
        self.checked(resp, path).await
    }

    /// Sends a request built by `make` (called again for each retry) and classifies the status.
    async fn send(
        &self,
        what: &str,
        path: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, EndpointError> {
        self.retry.run(what, || self.send_once(make(), path)).await
    }

    /// A PROPFIND for the properties a listing needs.
    fn propfind_request(&self, rel: &str, dir: bool, depth: &'static str) -> RequestBuilder {
        self.req(dav_method("PROPFIND"), &self.url(rel, dir))
            .header("Depth", depth)
            .header(CONTENT_TYPE, "application/xml; charset=utf-8")
            .timeout(self.limits.listing_deadline)
            .body(PROPFIND_BODY)
    }

    /// The entries of a 207 Multi-Status answer, at most `max_entries`, parsed as the body
    /// arrives: memory holds the entries and one XML event, never the body. The body is cut
    /// off past `max_listing_bytes`, and an event past about `MAX_XML_EVENT_BYTES` (the
    /// count is per network chunk, so twice that is allowed before reading stops). Entries
    /// after the first (the folder listed) are taken from `budget` as they are read.
    async fn multistatus(
        &self,
        resp: Response,
        rel: &str,
        max_entries: u64,
        budget: Option<&EntryBudget>,
    ) -> Result<Vec<DavEntry>, EndpointError> {
        let max_body = self.limits.max_listing_bytes;
        let since_event = Arc::new(AtomicU64::new(0));
        // Why reading stopped, as our own error: a network error stays retryable.
        let stopped: Arc<std::sync::Mutex<Option<EndpointError>>> = Arc::default();
        let (counter, slot, path) = (since_event.clone(), stopped.clone(), rel.to_string());
        let mut total = 0u64;
        let body = resp.bytes_stream().map(move |chunk| {
            let fail = |e: EndpointError| {
                let msg = e.to_string();
                *slot.lock().expect("listing error slot") = Some(e);
                std::io::Error::other(msg)
            };
            let chunk = chunk.map_err(|e| fail(net_error(&path, e)))?;
            let n = chunk.len() as u64;
            total += n;
            if total > max_body {
                return Err(fail(EndpointError::Permanent(format!(
                    "{path}: the listing answer is larger than {max_body} bytes"
                ))));
            }
            if counter.fetch_add(n, Ordering::Relaxed) + n > 2 * MAX_XML_EVENT_BYTES {
                return Err(fail(EndpointError::Permanent(format!(
                    "{path}: the listing holds an XML element or text over {MAX_XML_EVENT_BYTES} bytes"
                ))));
            }
            Ok(chunk)
        });
        let caps = MultistatusCaps {
            max_entries,
            max_event_bytes: MAX_XML_EVENT_BYTES,
        };
        let mut taken = 0u64;
        let parsed = read_multistatus(tokio_util::io::StreamReader::new(body), caps, |n| {
            since_event.store(0, Ordering::Relaxed);
            let beyond_self = (n as u64).saturating_sub(1);
            match budget {
                Some(b) if beyond_self > taken => {
                    let more = beyond_self - taken;
                    taken = beyond_self;
                    b.take(more)
                }
                _ => Ok(()),
            }
        })
        .await;
        if parsed.is_err() {
            // A retry reads the answer again and takes its entries again.
            if let Some(b) = budget {
                b.give_back(taken);
            }
        }
        if let Some(e) = stopped.lock().expect("listing error slot").take() {
            return Err(e);
        }
        parsed.map_err(|e| EndpointError::Permanent(format!("{}: {e}", display_path(rel))))
    }

    /// One PROPFIND (retried as any request, answer included) for the properties a listing
    /// needs.
    async fn propfind_raw(
        &self,
        rel: &str,
        dir: bool,
        depth: &'static str,
        max_entries: u64,
        budget: Option<&EntryBudget>,
    ) -> Result<Vec<DavEntry>, EndpointError> {
        self.retry
            .run("PROPFIND", || async {
                let resp = self
                    .send_once(self.propfind_request(rel, dir, depth), rel)
                    .await?;
                self.multistatus(resp, rel, max_entries, budget).await
            })
            .await
    }

    /// The children of folder `dir`, each checked: a child must lie directly inside `dir` (which
    /// also stops a server from sending the walk in circles) under a safe name; anything outside
    /// `dir` is refused by name. The folder itself, which Depth 1 answers include, and deeper
    /// descendants are left out. The other entries are taken from the walk's `budget` as they
    /// are read.
    async fn children(&self, dir: &str, budget: &EntryBudget) -> Result<Listing, EndpointError> {
        let mut out = Listing::default();
        // The budget is the cap: no count per answer besides it.
        for d in self
            .propfind_raw(dir, true, "1", u64::MAX, Some(budget))
            .await?
        {
            let path = match self.root.resolve(&d.href) {
                Ok(p) if p == dir => continue,
                Ok(p) if parent(&p) == dir && !p.is_empty() => p,
                // Deeper down: some servers answer Depth 1 as infinity. The entry comes again
                // from its own folder's listing, so the walk stays one level at a time.
                Ok(p) if dir.is_empty() || p.starts_with(&format!("{dir}/")) => continue,
                Ok(_) => {
                    out.refused.push(RefusedEntry {
                        path: format!("{:?}", d.href),
                        reason: format!(
                            "listed in folder {dir:?} but does not lie directly inside it"
                        ),
                    });
                    continue;
                }
                Err(reason) => {
                    out.refused.push(RefusedEntry {
                        path: format!("{:?}", d.href),
                        reason: format!("refused: {reason}"),
                    });
                    continue;
                }
            };
            out.entries.push(Entry {
                path,
                is_dir: d.is_collection,
                size: d.size.unwrap_or(0),
                mtime_ns: d.mtime.and_then(|s| s.checked_mul(1_000_000_000)),
                etag: d.etag,
                ..Entry::default()
            });
        }
        Ok(out)
    }

    /// One look at `rel`, without retries (the probe must stay within its time): absent, or
    /// present with its size.
    async fn look_once(&self, rel: &str) -> Result<Option<u64>, EndpointError> {
        let resp = match self
            .send_once(self.propfind_request(rel, false, "0"), rel)
            .await
        {
            Ok(r) => r,
            Err(EndpointError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let items = self.multistatus(resp, rel, 1, None).await?;
        Ok(items.first().map(|d| d.size.unwrap_or(0)))
    }

    /// Settles how this run uploads, probing the server when `--upload auto` asks for it.
    async fn choose_upload_mode(&self, files: u64) -> UploadChoice {
        match self.upload_policy {
            UploadPolicy::Direct => UploadChoice::new(UploadMode::Direct, "--upload direct"),
            UploadPolicy::Staged => UploadChoice::staged("--upload staged"),
            UploadPolicy::Auto if files < PROBE_MIN_FILES => UploadChoice::staged(format!(
                "fewer than {PROBE_MIN_FILES} files to upload: not worth probing the server"
            )),
            UploadPolicy::Auto => {
                let probe = temp_path_for("");
                let outcome = tokio::time::timeout(PROBE_LIMIT, self.probe_put_is_atomic(&probe))
                    .await
                    .unwrap_or_else(|_| {
                        Err(EndpointError::Transient(format!(
                            "no answer within {}s",
                            PROBE_LIMIT.as_secs()
                        )))
                    });
                // The probe is a temporary name: if this fails, the next run removes it.
                let url = self.url(&probe, false);
                let deleted = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.req(Method::DELETE, &url).send(),
                )
                .await;
                if !matches!(deleted, Ok(Ok(ref r)) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND)
                {
                    tracing::warn!(probe = %probe, "could not delete the upload probe; the next run removes it");
                }
                match outcome {
                    Ok(true) => UploadChoice::new(
                        UploadMode::Direct,
                        "probed: a half-sent upload stayed out of sight until complete",
                    ),
                    Ok(false) => UploadChoice::staged(
                        "probed: a half-sent upload showed under its name at once",
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "upload probe inconclusive; using temporary names");
                        UploadChoice::staged(format!(
                            "upload probe inconclusive ({e}): temporary names to be safe"
                        ))
                    }
                }
            }
        }
    }

    /// Finds out whether the server keeps an upload out of sight until its body is complete:
    /// sends the first part of a probe file, holds the last byte back while it looks for the
    /// name (at least `PROBE_MIN_LOOKS` times, over `PROBE_WINDOW` or four round trips), then
    /// completes it and checks the finished file is there with its full size. A server that
    /// writes in place (wsgidav, many simple servers) shows the half-sent file; one that
    /// writes aside and renames (Apache mod_dav_fs, nginx, Nextcloud) shows nothing until the
    /// end. Anything unexpected is an error, which the caller takes as "stage uploads".
    async fn probe_put_is_atomic(&self, probe: &str) -> Result<bool, EndpointError> {
        const FIRST: usize = 64 * 1024;
        let url = self.url(probe, false);
        let (sent_tx, sent_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let body = futures_util::stream::unfold(
            (0u8, Some(sent_tx), Some(release_rx)),
            |(step, sent, release)| async move {
                match step {
                    0 => Some((
                        Ok::<_, std::io::Error>(Bytes::from(vec![b'.'; FIRST])),
                        (1, sent, release),
                    )),
                    1 => {
                        // The client asks for more once the first part is queued for the socket
                        // (it is flushed while we hold the rest back).
                        if let Some(s) = sent {
                            let _ = s.send(());
                        }
                        if let Some(r) = release {
                            let _ = r.await;
                        }
                        Some((Ok(Bytes::from_static(b"\n")), (2, None, None)))
                    }
                    _ => None,
                }
            },
        );
        let put = self.send_once(
            self.req(Method::PUT, &url)
                .header(CONTENT_LENGTH, FIRST as u64 + 1)
                .body(reqwest::Body::wrap_stream(body)),
            probe,
        );
        let watch = async move {
            // Dropping `release_tx` when this block ends lets the upload finish, whatever happens.
            let _release = release_tx;
            sent_rx.await.map_err(|_| {
                EndpointError::Permanent("the probe upload ended before its body was sent".into())
            })?;
            let started = tokio::time::Instant::now();
            let mut looks = 0;
            let mut slowest = Duration::ZERO;
            loop {
                tokio::time::sleep(Duration::from_millis(25)).await;
                let t = tokio::time::Instant::now();
                if self.look_once(probe).await?.is_some() {
                    return Ok(true);
                }
                slowest = slowest.max(t.elapsed());
                looks += 1;
                if looks >= PROBE_MIN_LOOKS && started.elapsed() >= PROBE_WINDOW.max(slowest * 4) {
                    return Ok::<bool, EndpointError>(false);
                }
            }
        };
        let (put, seen_early) = tokio::join!(put, watch);
        put?;
        let seen_early = seen_early?;
        match self.look_once(probe).await? {
            Some(n) if n == FIRST as u64 + 1 => Ok(!seen_early),
            Some(n) => Err(EndpointError::Permanent(format!(
                "the probe file has {n} bytes after upload, not {}",
                FIRST + 1
            ))),
            None => Err(EndpointError::Permanent(
                "the finished probe file is not listed".into(),
            )),
        }
    }

    /// A file's `getlastmodified` in seconds.
    async fn remote_mtime(&self, rel: &str) -> Result<Option<i64>, EndpointError> {
        Ok(self
            .propfind_raw(rel, false, "0", 1, None)
            .await?
            .first()
            .and_then(|d| d.mtime))
    }

    /// PROPPATCHes `getlastmodified`; returns whether the server accepted it.
    async fn proppatch_mtime(
        &self,
        rel: &str,
        dir: bool,
        secs: i64,
    ) -> Result<bool, EndpointError> {
        let url = self.url(rel, dir);
        let body = proppatch_mtime_body(secs);
        let resp = self
            .send("PROPPATCH", rel, || {
                self.req(dav_method("PROPPATCH"), &url)
                    .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                    .body(body.clone())
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            // 403/405/501: this server does not do PROPPATCH of live properties.
            Err(EndpointError::Http { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let items = match self.multistatus(resp, rel, 16, None).await {
            Ok(items) => items,
            Err(e @ EndpointError::Transient(_)) => return Err(e),
            // An answer we cannot read accepted nothing we can rely on.
            Err(_) => Vec::new(),
        };
        Ok(!items.is_empty()
            && items
                .iter()
                .all(|d| !d.statuses.is_empty() && d.statuses.iter().all(|s| *s == 200)))
    }

    /// Works out, on an uploaded file whose wanted time is far from now, how this server keeps
    /// modification times.
    async fn probe_mtime_mode(&self, tmp: &str, secs: i64) -> Result<MtimeMode, EndpointError> {
        if self.remote_mtime(tmp).await? == Some(secs) {
            return Ok(MtimeMode::OcHeader);
        }
        if self.proppatch_mtime(tmp, false, secs).await?
            && self.remote_mtime(tmp).await? == Some(secs)
        {
            return Ok(MtimeMode::Proppatch);
        }
        Ok(MtimeMode::None)
    }

    async fn keep_mtime(
        &self,
        tmp: &str,
        secs: i64,
        oc_accepted: bool,
    ) -> Result<bool, EndpointError> {
        if oc_accepted {
            let _ = self.mtime_mode.set(MtimeMode::OcHeader);
            return Ok(true);
        }
        let mode = match self.mtime_mode.get() {
            Some(m) => *m,
            None => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                if (now - secs).abs() <= 2 {
                    // The server's own stamp would look right: this file cannot tell us.
                    if self.proppatch_refused.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                    let ok = self.proppatch_mtime(tmp, false, secs).await?;
                    self.proppatch_refused.store(!ok, Ordering::Relaxed);
                    return Ok(ok);
                }
                *self
                    .mtime_mode
                    .get_or_try_init(|| self.probe_mtime_mode(tmp, secs))
                    .await?
            }
        };
        match mode {
            MtimeMode::OcHeader => Ok(true),
            MtimeMode::Proppatch => self.proppatch_mtime(tmp, false, secs).await,
            MtimeMode::None => Ok(false),
        }
    }

    async fn put_inner(
        &self,
        path: &str,
        tmp: &str,
        size: u64,
        mtime_ns: Option<i64>,
        body: ByteStream,
    ) -> Result<PutOutcome, EndpointError> {
        let secs = mtime_ns.map(|n| n.div_euclid(1_000_000_000));
        let mut b = self
            .req(Method::PUT, &self.url(tmp, false))
            .timeout(self.limits.transfer_deadline(size))
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(s) = secs.filter(|s| *s >= 0) {
            b = b.header("X-OC-Mtime", s.to_string());
        }
        // Not retried here: the body is consumed. The caller retries the whole copy.
        let resp = self.send_once(b, path).await?;
        let oc_accepted = header_is(resp.headers(), "x-oc-mtime", "accepted");
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mtime_kept = match secs {
            Some(s) if s >= 0 => self.keep_mtime(tmp, s, oc_accepted).await?,
            _ => false,
        };
        let from = self.url(tmp, false);
        let to = self.url(path, false);
        if tmp == path {
            return Ok(PutOutcome { etag, mtime_kept });
        }
        self.send("MOVE", path, || {
            self.req(dav_method("MOVE"), &from)
                .header("Destination", &to)
                .header("Overwrite", "T")
        })
        .await?;
        Ok(PutOutcome { etag, mtime_kept })
    }
}

/// The entries a walk may still take, shared by the listings in flight: each answer takes its
/// entries as it reads them, so together they never hold much more than `--max-entries`
/// (each alone could, were the cap per answer).
struct EntryBudget {
    max: u64,
    taken: AtomicU64,
}

impl EntryBudget {
    fn new(max: u64) -> Self {
        Self {
            max,
            taken: AtomicU64::new(0),
        }
    }

    fn take(&self, n: u64) -> Result<(), String> {
        if self.taken.fetch_add(n, Ordering::Relaxed).saturating_add(n) > self.max {
            return Err(format!(
                "the listing has more than {} entries (--max-entries)",
                self.max
            ));
        }
        Ok(())
    }

    fn give_back(&self, n: u64) {
        self.taken.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A WebDAV method (RFC 4918 names, all valid tokens).
fn dav_method(name: &'static str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("RFC 4918 method names are valid tokens")
}

fn header_is(h: &HeaderMap, name: &str, value: &str) -> bool {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(value))
}

/// `/` for the root, which is `""` as a relative path.
fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Network-level failures are transient; the URL is dropped from the message (it is long and
/// adds nothing to the path we name), the causes are kept (TLS and DNS errors hide there).
fn net_error(path: &str, e: reqwest::Error) -> EndpointError {
    if e.is_timeout() {
        return EndpointError::Transient(format!(
            "{}: timed out: the server stalled, or sent too slowly to finish within the \
             deadline for this request",
            display_path(path)
        ));
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    EndpointError::Transient(format!("{}: {msg}", display_path(path)))
}

/// Maps an HTTP status to our error kinds.
async fn check_status(resp: Response, path: &str) -> Result<Response, EndpointError> {
    let st = resp.status();
    if st.is_success() {
        return Ok(resp);
    }
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
    let retry_after = throttle_wait(header(RETRY_AFTER.as_str()), header("ratelimit-reset"));
    Err(match st {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            EndpointError::Throttled {
                status: st.as_u16(),
                retry_after,
            }
        }
        StatusCode::UNAUTHORIZED => EndpointError::Auth(401),
        StatusCode::NOT_FOUND => EndpointError::NotFound(path.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => EndpointError::TooLarge,
        StatusCode::INSUFFICIENT_STORAGE => EndpointError::InsufficientStorage,
        StatusCode::LOCKED
        | StatusCode::REQUEST_TIMEOUT
        | StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::BAD_GATEWAY
        | StatusCode::GATEWAY_TIMEOUT => EndpointError::Transient(format!("{path}: HTTP {st}")),
        _ => EndpointError::Http {
            status: st.as_u16(),
            path: path.to_string(),
        },
    })
}

#[async_trait::async_trait]
impl Endpoint for WebDavEndpoint {
    fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("{} (user {u})", self.base),
            None => self.base.clone(),
        }
    }

    /// A walk within `Limits`: past `max_entries` entries or `max_depth` levels the listing
    /// fails as a whole, because a partial listing would plan deletions (`--delete`) of what it
    /// did not see.
    async fn list(&self) -> Result<Listing, EndpointError> {
        let Limits {
            max_entries,
            max_depth,
            ..
        } = self.limits;
        // Declared before `inflight`, which borrows it.
        let budget = EntryBudget::new(max_entries);
        let budget = &budget;
        let mut out = Listing::default();
        let mut seen = HashSet::new();
        let mut queue = vec![String::new()];
        let mut inflight = FuturesUnordered::new();
        loop {
            while inflight.len() < LIST_PARALLEL {
                let Some(dir) = queue.pop() else { break };
                inflight.push(async move {
                    let r = self.children(&dir, budget).await;
                    (dir, r)
                });
            }
            let Some((dir, r)) = inflight.next().await else {
                break;
            };
            let entries = match r {
                Ok(children) => {
                    out.refused.extend(children.refused);
                    children.entries
                }
                // A target root that does not exist yet is empty; it is created before copying.
                Err(EndpointError::NotFound(_)) if dir.is_empty() => return Ok(out),
                Err(e) => return Err(e),
            };
            for e in entries {
                // A server that lists a child twice gets it copied once.
                if !seen.insert(e.path.clone()) {
                    continue;
                }
                if e.is_dir {
                    if e.path.split('/').count() > max_depth {
                        return Err(EndpointError::Permanent(format!(
                            "{:?}: folders nest more than {max_depth} levels deep (--max-depth)",
                            e.path
                        )));
                    }
                    queue.push(e.path.clone());
                }
                out.entries.push(e);
            }
            if (out.entries.len() + out.refused.len()) as u64 > max_entries {
                return Err(EndpointError::Permanent(format!(
                    "the listing has more than {max_entries} entries (--max-entries)"
                )));
            }
        }
        Ok(out)
    }

    async fn read(&self, path: &str, size: u64) -> Result<ByteStream, EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        let url = self.url(path, false);
        let deadline = self.limits.transfer_deadline(size);
        let resp = self
            .send("GET", path, || {
                self.req(Method::GET, &url).timeout(deadline)
            })
            .await?;
        let p = Arc::new(path.to_string());
        let body = Box::pin(resp.bytes_stream().map_err(move |e| net_error(&p, e)));
        Ok(rebuffer(limit_to_listed(body, size, path), READ_CHUNK))
    }

    async fn mkdir(&self, path: &str) -> Result<(), EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        let url = self.url(path, true);
        match self
            .send("MKCOL", path, || self.req(dav_method("MKCOL"), &url))
            .await
        {
            Ok(_) => Ok(()),
            // 405: the folder already exists.
            Err(EndpointError::Http { status: 405, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put(
        &self,
        path: &str,
        size: u64,
        times: FileTimes,
        body: ByteStream,
    ) -> Result<PutOutcome, EndpointError> {
        // A WebDAV server's creation date is protected (RFC 4918 `creationdate` is live):
        // only the modification time can be kept.
        let mtime_ns = times.modified_ns;
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        let staged = self.upload_choice().mode == UploadMode::Staged;
        let tmp = if staged {
            temp_path_for(path)
        } else {
            path.to_string()
        };
        let r = self.put_inner(path, &tmp, size, mtime_ns, body).await;
        // Never delete the final name: a failed direct upload left the previous version there.
        if r.is_err() && staged {
            // Best effort: the next run removes any temporary file left anyway.
            let url = self.url(&tmp, false);
            let _ = self.req(Method::DELETE, &url).send().await;
        }
        r
    }

    async fn delete(&self, path: &str) -> Result<(), EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        for dir in [false, true] {
            let url = self.url(path, dir);
            match self
                .send("DELETE", path, || self.req(Method::DELETE, &url))
                .await
            {
                Ok(_) | Err(EndpointError::NotFound(_)) => return Ok(()),
                // 301: a folder addressed without its trailing slash.
                Err(EndpointError::Http { status: 301, .. }) if !dir => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn set_dir_times(&self, path: &str, times: FileTimes) -> Result<bool, EndpointError> {
        relpath::check(path).map_err(EndpointError::unsafe_path)?;
        let Some(mtime_ns) = times.modified_ns else {
            return Ok(true);
        };
        if self.mtime_mode.get() == Some(&MtimeMode::Proppatch) {
            self.proppatch_mtime(path, true, mtime_ns.div_euclid(1_000_000_000))
                .await
        } else {
            Ok(false)
        }
    }

    fn mtime_support(&self) -> MtimeSupport {
        match self.mtime_mode.get() {
            None => MtimeSupport::Unknown,
            Some(MtimeMode::None) => MtimeSupport::NotSupported,
            Some(_) => MtimeSupport::Kept,
        }
    }

    async fn prepare_uploads(&self, files: u64) {
        let choice = self.choose_upload_mode(files).await;
        let _ = self.upload_choice.set(choice);
    }

    fn upload_choice(&self) -> UploadChoice {
        self.upload_choice
            .get()
            .cloned()
            .unwrap_or_else(|| UploadChoice::staged("uploads not prepared"))
    }
}
