//! JSON batching (<https://learn.microsoft.com/graph/json-batching>): many calls, up to 20 to a
//! `POST /$batch`, each call's answer returned in the order the calls were given.
//!
//! A batch's 200 says nothing about the requests inside it: each has its own status. A throttled
//! one (429, or 503/504) comes back with its own `Retry-After` in its own headers
//! (<https://learn.microsoft.com/graph/throttling>, "Throttling and batching"): the tenant's
//! budget pauses for that wait, exactly as for a direct call, and only the refused requests are
//! sent again, in a new batch, once the pause is over (no retry storm). A round refused whole
//! halves the requests sent together (and one that settles some doubles them back): only rounds
//! that settle nothing count towards the attempts. Any other refusal is
//! that call's [`GraphError`], with its code, message and request ids; a failure of the batch
//! itself (network, 5xx, 401...) is retried like any call by [`GraphClient::json`] and, if it
//! persists, is the error of every call the batch carried.
//!
//! For the budget a batch is one request in flight: it is one HTTP request, and its inner
//! requests are answered before it is.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio::task::JoinSet;

use crate::client::{backoff, wait_from_headers, Call, GraphClient};
use crate::error::{parse_error_body, GraphError, RequestIds};

/// "JSON batch requests are currently limited to 20 individual requests" (json-batching,
/// "Batch size limitations").
pub const MAX_BATCH: usize = 20;

impl GraphClient {
    /// Sends `calls` through JSON batching, [`MAX_BATCH`] to a request (those requests in
    /// parallel, within the tenant's budget), and returns each call's JSON answer (`Null` when it
    /// had no body) or error, in the order of `calls`. Within one batch Graph runs requests in no
    /// particular order: calls that must follow others go in a later `batch`.
    ///
    /// Calls must be authenticated Graph calls with a JSON body or none (a pre-authenticated
    /// upload or download URL cannot be batched: such a call gets an error, the others go on).
    pub async fn batch(&self, calls: &[Call]) -> Vec<Result<Value, GraphError>> {
        let mut set = JoinSet::new();
        for (n, chunk) in calls.chunks(MAX_BATCH).enumerate() {
            let (client, chunk) = (self.clone(), chunk.to_vec());
            set.spawn(async move { (n, client.one_batch(&chunk).await) });
        }
        let mut parts: Vec<Vec<Result<Value, GraphError>>> = Vec::new();
        parts.resize_with(calls.len().div_ceil(MAX_BATCH), Vec::new);
        while let Some(done) = set.join_next().await {
            match done {
                Ok((n, results)) => parts[n] = results,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        parts.into_iter().flatten().collect()
    }

    /// At most [`MAX_BATCH`] calls: one `$batch`, then others for the throttled ones.
    async fn one_batch(&self, calls: &[Call]) -> Vec<Result<Value, GraphError>> {
        let cfg = self.config();
        let mut results: Vec<Option<Result<Value, GraphError>>> = Vec::new();
        results.resize_with(calls.len(), || None);
        let mut pending = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            match self.batchable(call) {
                Ok(()) => pending.push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Requests sent together: a round refused whole (the tenant throttled before its first
        // request) halves it, a round that settled some doubles it back. Graph refuses every
        // request after a throttled one for its Retry-After, so a full batch can keep meeting
        // a throttle early on; fewer at a time still progress, as lone calls do.
        let mut width = MAX_BATCH;
        let mut stalled = 0u32;
        while !pending.is_empty() {
            let later = pending.split_off(width.min(pending.len()));
            let client_ids: HashMap<usize, String> = pending
                .iter()
                .map(|&i| (i, uuid::Uuid::new_v4().to_string()))
                .collect();
            let requests: Vec<Value> = pending
                .iter()
                .map(|&i| inner_request(i, &calls[i], &client_ids[&i]))
                .collect();
            let max_body = pending
                .iter()
                .filter_map(|&i| calls[i].max_body)
                .fold(cfg.limits.max_page_bytes, usize::max);
            let mut envelope = Call::new(Method::POST, "/$batch")
                .json(&json!({ "requests": requests }))
                .max_body(max_body);
            if pending.iter().any(|&i| !calls[i].retry_unanswered) {
                envelope = envelope.not_idempotent();
            }
            let answer = match self.json(&envelope).await {
                Ok(v) => v,
                Err(e) => {
                    for &i in pending.iter().chain(&later) {
                        results[i] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            let mut answers: HashMap<usize, &Value> = HashMap::new();
            for r in answer["responses"].as_array().into_iter().flatten() {
                if let Some(i) = r["id"].as_str().and_then(|s| s.parse::<usize>().ok()) {
                    answers.insert(i, r);
                }
            }
            let mut wait: Option<Duration> = None;
            let mut again = Vec::new();
            let mut outcomes = Vec::with_capacity(pending.len());
            for &i in &pending {
                let ids = |request_id: Option<String>| RequestIds {
                    request_id,
                    client_request_id: Some(client_ids[&i].clone()),
                };
                let outcome = match answers.get(&i) {
                    Some(r) => inner_outcome(r, stalled + 1, cfg.max_wait, ids),
                    None => Err(GraphError::Transient {
                        message: "the batch's answer lacks this request's response".into(),
                        ids: ids(None),
                    }),
                };
                let retry = match &outcome {
                    // As for a direct call: a 429 was refused before it ran, a 503/504 may
                    // have run, so only a call safe to repeat goes again after one.
                    Err(GraphError::Throttled {
                        status,
                        retry_after,
                        ..
                    }) => {
                        wait = wait.max(Some(*retry_after));
                        *status == 429 || calls[i].retry_unanswered
                    }
                    Err(GraphError::Transient { .. }) => calls[i].retry_unanswered,
                    _ => false,
                };
                outcomes.push((i, outcome, retry));
            }
            // Only rounds that settled nothing count towards the attempts.
            if outcomes.iter().any(|(_, _, retry)| !retry) {
                stalled = 0;
                width = (width * 2).min(MAX_BATCH);
            } else {
                stalled += 1;
                width = (width / 2).max(1);
            }
            let last = stalled >= cfg.attempts;
            // Calls never sent share the fate of the round that gave up.
            let given_up = outcomes
                .iter()
                .find(|(_, _, retry)| *retry)
                .map(|(_, outcome, _)| outcome.clone());
            for (i, outcome, retry) in outcomes {
                if retry && !last {
                    again.push(i);
                } else {
                    results[i] = Some(outcome);
                }
            }
            let retried = again.len();
            match (last, given_up) {
                (true, Some(outcome)) => {
                    for &i in &later {
                        results[i] = Some(outcome.clone());
                    }
                    break;
                }
                _ => again.extend(later),
            }
            match wait {
                // The whole tenant waits, as after a direct 429; the next batch starts when
                // the budget lets it.
                Some(w) => {
                    self.budget().throttled(w);
                    tracing::info!(
                        throttled = retried,
                        wait_ms = w.as_millis() as u64,
                        "requests of a batch throttled by Graph; the tenant's requests pause"
                    );
                }
                None if retried > 0 => tokio::time::sleep(backoff(stalled.max(1))).await,
                None => {}
            }
            pending = again;
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(GraphError::Transient {
                        message: "the batch ended without an answer for this request".into(),
                        ids: RequestIds::default(),
                    })
                })
            })
            .collect()
    }

    /// What a batch can carry: a Graph call relative to the version, with the batch's token.
    fn batchable(&self, call: &Call) -> Result<(), GraphError> {
        if call.authenticated && call.url.starts_with('/') {
            return Ok(());
        }
        Err(GraphError::Permanent {
            status: 0,
            code: None,
            message: "only authenticated Graph calls (a path such as /drives/…) can be batched"
                .into(),
            ids: RequestIds::default(),
        })
    }
}

/// `{id, method, url, headers, body?}`: the id is the call's index; a JSON body goes as JSON,
/// any other as base64 (json-batching, "Request format").
fn inner_request(i: usize, call: &Call, client_request_id: &str) -> Value {
    let mut headers = Map::new();
    for (k, v) in &call.headers {
        headers.insert((*k).to_string(), json!(v));
    }
    headers.insert("client-request-id".into(), json!(client_request_id));
    let mut r = json!({
        "id": i.to_string(),
        "method": call.method.as_str(),
        "url": call.url,
    });
    if let Some((bytes, content_type)) = &call.body {
        headers.insert("Content-Type".into(), json!(content_type));
        r["body"] = match serde_json::from_slice::<Value>(bytes) {
            Ok(v) if content_type.starts_with("application/json") => v,
            _ => json!(base64::engine::general_purpose::URL_SAFE.encode(bytes)),
        };
    }
    r["headers"] = Value::Object(headers);
    r
}

/// One inner response as the call's result: its status decides, as for a direct call.
fn inner_outcome(
    r: &Value,
    attempt: u32,
    max_wait: Duration,
    ids: impl Fn(Option<String>) -> RequestIds,
) -> Result<Value, GraphError> {
    let status = r["status"].as_u64().unwrap_or(0) as u16;
    let header = |name: &str| {
        r["headers"].as_object().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
        })
    };
    let body = r.get("body").cloned().unwrap_or(Value::Null);
    if (200..400).contains(&status) {
        return Ok(body);
    }
    let (code, message, body_rid) = parse_error_body(body.to_string().as_bytes());
    let ids = ids(header("request-id").map(str::to_string).or(body_rid));
    Err(match status {
        429 | 503 | 504 => GraphError::Throttled {
            status,
            retry_after: wait_from_headers(header("Retry-After"), header("RateLimit-Reset"))
                .unwrap_or_else(|| backoff(attempt))
                .min(max_wait),
            ids,
        },
        401 | 403 => GraphError::Auth {
            status,
            code,
            message,
            ids,
        },
        s if s >= 500 => GraphError::Transient {
            message: format!("HTTP {s} {}: {message}", code.as_deref().unwrap_or("")),
            ids,
        },
        s => GraphError::Permanent {
            status: s,
            code,
            message,
            ids,
        },
    })
}
