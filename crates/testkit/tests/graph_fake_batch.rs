//! The fake Graph's JSON batching (learn.microsoft.com/graph/json-batching): the envelope's
//! rules (at most 20 requests, unique ids, the batch's token for all), each inner request routed
//! and counted as a direct one (throttled one by one inside a 200), `dependsOn` ordering.

use serde_json::{json, Value};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions};

async fn post_batch(
    fake: &FakeGraph,
    http: &reqwest::Client,
    auth: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut rb = http
        .post(format!("{}/v1.0/$batch", fake.url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let resp = rb.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn get(id: &str, url: &str) -> Value {
    json!({"id": id, "method": "GET", "url": url})
}

/// The inner response with this id (the fake answers in an order of its own).
fn by_id<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no response {id}: {answer}"))
}

#[tokio::test]
async fn the_envelope_is_checked_whole() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_user("adele@contoso.com");
    let http = reqwest::Client::new();
    let auth = fake.bearer();
    let url = format!("/drives/{drive}/root");

    let many: Vec<Value> = (0..21).map(|i| get(&i.to_string(), &url)).collect();
    let (status, v) = post_batch(&fake, &http, Some(&auth), &json!({ "requests": many })).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "BadRequest");
    assert!(v["error"]["innerError"]["request-id"].is_string(), "{v}");

    // Ids are case-insensitive and unique within a batch.
    let twice = json!({"requests": [get("a", &url), get("A", &url)]});
    let (status, v) = post_batch(&fake, &http, Some(&auth), &twice).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than once"));

    // The batch's token is every inner request's: without one, nothing runs.
    let one = json!({"requests": [get("1", &url)]});
    let (status, _) = post_batch(&fake, &http, None, &one).await;
    assert_eq!(status, 401);

    let s = fake.stats();
    assert_eq!(s.batches, 3);
    assert_eq!(s.requests, 0, "no inner request of a refused batch ran");
}

#[tokio::test]
async fn inner_requests_are_routed_counted_and_throttled_one_by_one() {
    let fake = FakeGraph::start(FakeGraphOptions {
        throttle_every: Some(3),
        retry_after_secs: 7,
        ..Default::default()
    });
    let drive = fake.add_user("adele@contoso.com");
    let t = time::OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
    fake.put_file(&drive, "a.txt", b"a", t);
    let http = reqwest::Client::new();
    let auth = fake.bearer();
    let patch = json!({
        "id": "2", "method": "PATCH", "url": format!("/drives/{drive}/root:/a.txt:"),
        "headers": {"Content-Type": "application/json"},
        "body": {"fileSystemInfo": {"lastModifiedDateTime": "2001-09-09T01:46:40Z"}},
    });
    let batch = json!({"requests": [
        get("1", &format!("/drives/{drive}/root:/a.txt:")),
        patch,
        get("3", &format!("/drives/{drive}/root:/missing.txt:")),
    ]});
    let (status, v) = post_batch(&fake, &http, Some(&auth), &batch).await;
    assert_eq!(
        status, 200,
        "the envelope succeeds whatever its requests do: {v}"
    );
    let statuses: Vec<u64> = ["1", "2", "3"]
        .iter()
        .map(|id| by_id(&v, id)["status"].as_u64().unwrap())
        .collect();
    // The third request of the fake's life is refused, with its own Retry-After.
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{v}");
    let refused = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 429)
        .unwrap();
    assert_eq!(refused["headers"]["Retry-After"], "7", "{v}");
    assert_eq!(refused["body"]["error"]["code"], "activityLimitReached");
    let s = fake.stats();
    assert_eq!(
        (s.requests, s.throttled, s.batches, s.batched_requests),
        (3, 1, 1, 3)
    );
    // The ones that ran did what a direct call does.
    if by_id(&v, "2")["status"] == 200 {
        let m = fake.times(&drive, "a.txt").unwrap().modified;
        assert_eq!(m.unix_timestamp(), 1_000_000_000);
    }
    if by_id(&v, "3")["status"] != 429 {
        assert_eq!(by_id(&v, "3")["status"], 404);
        assert_eq!(by_id(&v, "3")["body"]["error"]["code"], "itemNotFound");
    }
}

#[tokio::test]
async fn depends_on_runs_in_order_and_a_failed_dependency_stops_its_dependents() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_user("adele@contoso.com");
    let http = reqwest::Client::new();
    let auth = fake.bearer();
    let mkdir = |id: &str, name: &str, parent: &str| {
        json!({
            "id": id, "method": "POST", "url": format!("/drives/{drive}/root:/{parent}:/children"),
            "headers": {"Content-Type": "application/json"},
            "body": {"name": name, "folder": {}},
        })
    };
    let mut first = mkdir("1", "Plans", "");
    first["url"] = json!(format!("/drives/{drive}/root/children"));
    let mut second = mkdir("2", "2019", "Plans");
    second["dependsOn"] = json!(["1"]);
    let mut third = get("3", &format!("/drives/{drive}/root:/Nowhere:"));
    third["dependsOn"] = json!(["2"]);
    let mut fourth = get("4", &format!("/drives/{drive}/root:/Plans/2019:"));
    fourth["dependsOn"] = json!(["3"]);
    let batch = json!({"requests": [first, second, third, fourth]});
    let (status, v) = post_batch(&fake, &http, Some(&auth), &batch).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(by_id(&v, "1")["status"], 201, "{v}");
    assert_eq!(
        by_id(&v, "2")["status"],
        201,
        "the parent existed when it ran: {v}"
    );
    assert_eq!(by_id(&v, "3")["status"], 404);
    assert_eq!(by_id(&v, "4")["status"], 424, "{v}");
    assert!(fake.paths(&drive).contains(&"Plans/2019".to_string()));

    // A dependency on a later (or unknown) request cannot be met: the batch is refused.
    let mut early = get("1", &format!("/drives/{drive}/root"));
    early["dependsOn"] = json!(["2"]);
    let batch = json!({"requests": [early, get("2", &format!("/drives/{drive}/root"))]});
    let (status, _) = post_batch(&fake, &http, Some(&auth), &batch).await;
    assert_eq!(status, 400);
}
