//! JSON batching (<https://learn.microsoft.com/graph/json-batching>): `POST /v1.0/$batch` with
//! `{"requests": [{id, method, url, headers?, body?, dependsOn?}]}`, answered
//! `{"responses": [{id, status, headers, body}]}`.
//!
//! Each inner request goes through the fake's own routing ([`super::dispatch`]) with the outer
//! request's Authorization, so every rule applies to it as to a direct call: the token check,
//! injected throttling (a 429 inside a 200 envelope, its own `Retry-After` in its own headers:
//! <https://learn.microsoft.com/graph/throttling>, "Throttling and batching"), mailbox slots and
//! the counters. How a batch is counted: each inner request once in `FakeStats::requests` (and
//! in `throttled`, `unauthorized`... as it fares), the envelope itself only in
//! `FakeStats::batches`. HTTP round trips are therefore `requests - batched_requests + batches`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::task::JoinSet;

use super::{authorize, error, ok_json, Shared};

/// "JSON batch requests are currently limited to 20 individual requests" (json-batching,
/// "Batch size limitations").
pub const MAX_BATCH_REQUESTS: usize = 20;

/// Graph's `$batch` path segment (`$` may arrive percent-encoded).
pub(super) fn is_batch(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path == "/v1.0/$batch" || path.eq_ignore_ascii_case("/v1.0/%24batch"))
}

/// One inner request, checked.
struct Inner {
    id: String,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
    depends_on: Vec<String>,
    /// An answer decided before dispatch (a malformed inner request).
    refused: Option<Response>,
}

pub(super) async fn serve(world: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    {
        let mut w = world.lock().unwrap();
        w.stats.batches += 1;
        // The batch carries the token for all its requests.
        if let Some(r) = authorize(&mut w, headers) {
            return r;
        }
    }
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return bad_batch("a batch is sent with Content-Type: application/json");
    }
    let requests = match parse(body, headers) {
        Ok(r) => r,
        Err(message) => return bad_batch(&message),
    };
    world.lock().unwrap().stats.batched_requests += requests.len() as u64;
    let ordered = requests.iter().any(|r| !r.depends_on.is_empty());
    let answers = if ordered {
        in_order(world, requests).await
    } else {
        at_once(world, requests).await
    };
    // "Responses might appear in a different order than the requests" (json-batching,
    // "Response format"): the fake answers in reverse order, so a client must match by id.
    let responses: Vec<Value> = answers.into_iter().rev().collect();
    ok_json(StatusCode::OK, json!({ "responses": responses }))
}

/// A batch refused whole: 400 with Graph's error envelope.
fn bad_batch(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn parse(body: &[u8], outer: &HeaderMap) -> Result<Vec<Inner>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "Invalid batch payload format.")?;
    let list = v["requests"]
        .as_array()
        .ok_or("Invalid batch payload format: a 'requests' array is required.")?;
    if list.len() > MAX_BATCH_REQUESTS {
        return Err(format!(
            "Invalid batch payload format: a batch holds at most {MAX_BATCH_REQUESTS} requests, this one {}.",
            list.len()
        ));
    }
    let mut out: Vec<Inner> = Vec::with_capacity(list.len());
    for r in list {
        let id = r["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("Invalid batch payload format: every request needs a string 'id'.")?
            .to_string();
        // "id ... Case insensitive. Must be unique within the batch, or the batch request
        // fails with a 400 error code" (json-batching, "Request format").
        if out.iter().any(|o| o.id.eq_ignore_ascii_case(&id)) {
            return Err(format!(
                "Request id '{id}' appears more than once in the batch."
            ));
        }
        let depends_on: Vec<String> = match &r["dependsOn"] {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|d| d.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("Invalid batch payload format: 'dependsOn' lists request ids.")?,
            _ => return Err("Invalid batch payload format: 'dependsOn' lists request ids.".into()),
        };
        // A dependency must be a request before this one (so that order can satisfy it).
        if let Some(d) = depends_on
            .iter()
            .find(|d| !out.iter().any(|o| o.id.eq_ignore_ascii_case(d)))
        {
            return Err(format!(
                "Request '{id}' depends on '{d}', which is not an earlier request of the batch."
            ));
        }
        let method = r["method"]
            .as_str()
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .ok_or_else(|| format!("Request '{id}' has no valid 'method'."))?;
        let url = r["url"]
            .as_str()
            .ok_or_else(|| format!("Request '{id}' has no 'url'."))?;
        out.push(inner(id, method, url, r, outer, depends_on));
    }
    Ok(out)
}

/// Builds one inner request; what is wrong with it alone becomes its own 400.
fn inner(
    id: String,
    method: Method,
    url: &str,
    r: &Value,
    outer: &HeaderMap,
    depends_on: Vec<String>,
) -> Inner {
    let mut req = Inner {
        id,
        method,
        path: String::new(),
        query: String::new(),
        headers: HeaderMap::new(),
        body: Default::default(),
        depends_on,
        refused: None,
    };
    let refuse = |message: &str| Some(error(StatusCode::BAD_REQUEST, "BadRequest", message));
    // "url: Required. The relative resource URL the individual request would typically be
    // sent to" (json-batching): relative to the version, never absolute, never another batch.
    let rel = if url.starts_with('/') {
        url.to_string()
    } else {
        format!("/{url}")
    };
    let (path, query) = rel.split_once('?').unwrap_or((&rel, ""));
    if url.contains("://") || is_batch(&Method::POST, &format!("/v1.0{path}")) {
        req.refused = refuse("The url of a batched request is relative and not itself a batch.");
        return req;
    }
    req.path = format!("/v1.0{path}");
    req.query = query.to_string();
    if let Some(h) = r["headers"].as_object() {
        for (k, v) in h {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(HeaderValue::from_str),
            ) else {
                req.refused = refuse(&format!("Header '{k}' is not a valid header."));
                return req;
            };
            req.headers.insert(name, value);
        }
    }
    // Authentication is the batch's: what a batched request says itself does not count.
    req.headers.remove("authorization");
    if let Some(a) = outer.get("authorization") {
        req.headers.insert("authorization", a.clone());
    }
    match &r["body"] {
        Value::Null => {}
        body => {
            // "body ... When a body is included with the request, the headers object must
            // contain a value for Content-Type" (json-batching, "Request format").
            let content_type = req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok());
            let Some(ct) = content_type.map(str::to_string) else {
                req.refused = refuse("A request with a body needs a Content-Type header.");
                return req;
            };
            let bytes = match body {
                // "can be a JSON object or a base64 URL-encoded value (for example, when the
                // body is an image)".
                Value::String(s) if !ct.starts_with("application/json") => {
                    use base64::Engine;
                    let engines = [
                        base64::engine::general_purpose::URL_SAFE,
                        base64::engine::general_purpose::STANDARD,
                    ];
                    match engines.iter().find_map(|e| e.decode(s).ok()) {
                        Some(b) => b,
                        None => {
                            req.refused = refuse("The body is not base64.");
                            return req;
                        }
                    }
                }
                other => other.to_string().into_bytes(),
            };
            req.body = bytes.into();
        }
    }
    req
}

/// No request depends on another: the service "can process requests in the batch in the most
/// efficient order" — here, all at once.
async fn at_once(world: &Shared, requests: Vec<Inner>) -> Vec<Value> {
    let mut set = JoinSet::new();
    let n = requests.len();
    for (i, r) in requests.into_iter().enumerate() {
        let world = world.clone();
        set.spawn(async move {
            let id = r.id.clone();
            (i, answer(&id, run(&world, r).await).await)
        });
    }
    let mut out = vec![Value::Null; n];
    while let Some(done) = set.join_next().await {
        match done {
            Ok((i, v)) => out[i] = v,
            // A request that drops its connection on purpose drops the batch's.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

/// `dependsOn` makes the batch sequential (json-batching, "Sequencing requests with the
/// dependsOn property"); a request whose dependency failed is not run: 424 Failed Dependency.
async fn in_order(world: &Shared, requests: Vec<Inner>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(requests.len());
    let mut failed: Vec<String> = Vec::new();
    for r in requests {
        let id = r.id.clone();
        let resp = if r
            .depends_on
            .iter()
            .any(|d| failed.iter().any(|f| f.eq_ignore_ascii_case(d)))
        {
            error(
                StatusCode::FAILED_DEPENDENCY,
                "FailedDependency",
                "A request this one depends on failed.",
            )
        } else {
            run(world, r).await
        };
        if !resp.status().is_success() {
            failed.push(id.clone());
        }
        out.push(answer(&id, resp).await);
    }
    out
}

async fn run(world: &Shared, r: Inner) -> Response {
    if let Some(refused) = r.refused {
        world.lock().unwrap().stats.requests += 1;
        return refused;
    }
    super::dispatch(world, r.method, r.path, r.query, r.headers, r.body).await
}

/// `{id, status, headers, body}`: a JSON body as JSON, any other as base64.
async fn answer(id: &str, resp: Response) -> Value {
    let status = resp.status().as_u16();
    let mut headers = Map::new();
    for (k, v) in resp.headers() {
        if k == "content-length" {
            continue;
        }
        if let Ok(v) = v.to_str() {
            headers.insert(title_case(k.as_str()), json!(v));
        }
    }
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut v = json!({"id": id, "status": status, "headers": headers});
    if !bytes.is_empty() {
        v["body"] = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            use base64::Engine;
            json!(base64::engine::general_purpose::STANDARD.encode(&bytes))
        });
    }
    v
}

/// `retry-after` → `Retry-After`, as Graph writes header names in a batch's answers (a client
/// must not depend on case either way).
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}
