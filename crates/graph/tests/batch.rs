//! JSON batching against the test kit's fake Graph, which answers a batch's requests in an order
//! of its own and throttles them one by one, as the service may.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tenantry_graph::client::Call;
use tenantry_graph::{ClientSecret, GraphClient, GraphConfig};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

fn client(fake: &FakeGraph) -> GraphClient {
    let mut cfg = GraphConfig::from_env(TENANT, CLIENT_ID, ClientSecret::new(CLIENT_SECRET));
    cfg.graph_url = fake.url().to_string();
    cfg.authority = fake.url().to_string();
    GraphClient::new(cfg, reqwest::Client::new())
}

fn at(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn stamp(drive: &str, name: &str, secs: i64) -> Call {
    let iso = at(secs)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    Call::new(Method::PATCH, format!("/drives/{drive}/root:/{name}:")).json(&json!({
        "fileSystemInfo": {"createdDateTime": iso, "lastModifiedDateTime": iso}
    }))
}

#[tokio::test]
async fn twenty_one_calls_make_two_requests_and_answers_keep_the_calls_order() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_user("adele@contoso.com");
    for i in 0..21 {
        fake.put_file(&drive, &format!("f{i:02}.txt"), b"x", at(1_600_000_000));
    }
    let c = client(&fake);
    let calls: Vec<Call> = (0..21)
        .map(|i| Call::new(Method::GET, format!("/drives/{drive}/root:/f{i:02}.txt:")))
        .collect();
    let results = c.batch(&calls).await;
    assert_eq!(results.len(), 21);
    for (i, r) in results.iter().enumerate() {
        let item = r.as_ref().unwrap();
        assert_eq!(
            item["name"],
            format!("f{i:02}.txt"),
            "answer {i} in its call's place"
        );
    }
    let s = fake.stats();
    assert_eq!((s.batches, s.batched_requests), (2, 21));
    assert_eq!(c.requests_sent(), 2, "two HTTP requests for 21 calls");
}

#[tokio::test]
async fn an_inner_404_is_that_calls_error_and_the_others_succeed() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_user("adele@contoso.com");
    fake.put_file(&drive, "a.txt", b"a", at(1_600_000_000));
    fake.put_file(&drive, "c.txt", b"c", at(1_600_000_000));
    let c = client(&fake);
    let calls = [
        stamp(&drive, "a.txt", 1_000_000_000),
        stamp(&drive, "missing.txt", 1_000_000_000),
        stamp(&drive, "c.txt", 1_000_000_100),
    ];
    let results = c.batch(&calls).await;
    assert_eq!(results[0].as_ref().unwrap()["name"], "a.txt");
    assert_eq!(results[2].as_ref().unwrap()["name"], "c.txt");
    let e = results[1].as_ref().unwrap_err();
    assert!(e.is_not_found() && e.code() == Some("itemNotFound"), "{e}");
    assert!(
        e.ids().request_id.is_some() && e.ids().client_request_id.is_some(),
        "{e}"
    );
    assert_eq!(
        fake.times(&drive, "a.txt").unwrap().modified,
        at(1_000_000_000)
    );
    assert_eq!(
        fake.times(&drive, "c.txt").unwrap().modified,
        at(1_000_000_100)
    );
    // A refusal retrying cannot change is not sent again.
    assert_eq!(c.requests_sent(), 1);
}

/// Inner 429s (inside a 200) pause the tenant for their own Retry-After, and only the refused
/// requests go again: every request the fake saw either succeeded once or was refused.
#[tokio::test]
async fn a_batch_with_injected_429s_completes_without_a_retry_storm() {
    let (fake, c) = stamp_under_throttling(9, 45, 120).await;
    let s = fake.stats();
    assert!(s.throttled > 0, "the fake throttled some inner requests");
    assert_eq!(
        s.requests,
        45 + s.throttled,
        "each refused request sent once more"
    );
    assert_eq!(
        s.ignored_retry_after, 0,
        "nothing sent during a Retry-After"
    );
    let (_, events) = c.budget().throttled_stats();
    assert!(events > 0, "inner 429s reach the tenant's budget");
}

/// Once Graph throttles one request of a batch it refuses the rest for the Retry-After, so a
/// batch's 429s come in runs, and a full batch can meet a throttle at its very first request
/// round after round. With every third request throttled: rounds that settle some calls do not
/// use up the attempts, and a round refused whole halves the calls sent together (before, the
/// batch gave up after eight rounds on calls only ever refused behind another).
#[tokio::test]
async fn a_batch_throttled_in_every_round_completes_while_it_progresses() {
    let (fake, c) = stamp_under_throttling(3, 20, 180).await;
    assert!(
        fake.stats().batches > c.config().attempts as u64,
        "more rounds than attempts were needed"
    );
}

/// `n` files' times set in one `batch` while the fake throttles every `every`-th request (each
/// refusal closes the tenant for 1 s); every call must succeed with its time. The fake and the
/// client, for the counts.
async fn stamp_under_throttling(
    every: u64,
    n: i64,
    deadline_secs: u64,
) -> (FakeGraph, GraphClient) {
    let fake = FakeGraph::start(FakeGraphOptions {
        throttle_every: Some(every),
        retry_after_secs: 1,
        ..Default::default()
    });
    let drive = fake.add_user("adele@contoso.com");
    for i in 0..n {
        fake.put_file(&drive, &format!("f{i:02}.txt"), b"x", at(1_600_000_000));
    }
    let c = client(&fake);
    let calls: Vec<Call> = (0..n)
        .map(|i| stamp(&drive, &format!("f{i:02}.txt"), 1_000_000_000 + i))
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(deadline_secs), c.batch(&calls))
        .await
        .expect("the batch ends");
    for (i, r) in results.iter().enumerate() {
        r.as_ref().unwrap_or_else(|e| panic!("call {i}: {e}"));
        let t = fake.times(&drive, &format!("f{i:02}.txt")).unwrap();
        assert_eq!(t.modified, at(1_000_000_000 + i as i64));
    }
    (fake, c)
}
