//! The client against an endpoint that misbehaves: a Graph URL comes from a connection profile or
//! `TENANTRY_GRAPH_URL`, so whatever answers there must not make a run grow without bound.

use std::io::Write;

use reqwest::Method;
use tenantry_graph::client::Call;
use tenantry_graph::config::Limits;
use tenantry_graph::{ClientSecret, GraphClient, GraphConfig, GraphError};
use tenantry_testkit::hostile::{
    repeat_body, respond, respond_head, HttpRequest, HttpServer, Then,
};

const TOKEN: &str = r#"{"token_type":"Bearer","expires_in":3599,"access_token":"t0k"}"#;

/// A server that answers the token endpoint properly and every other request with `page`.
fn server(
    page: impl Fn(&HttpRequest, &mut dyn Write) -> std::io::Result<Then> + Send + Sync + 'static,
) -> HttpServer {
    HttpServer::start(move |req, w| {
        if req.path.ends_with("/oauth2/v2.0/token") {
            respond(
                w,
                200,
                &[("Content-Type", "application/json")],
                TOKEN.as_bytes(),
            )
        } else {
            page(req, w)
        }
    })
}

fn client(server: &HttpServer, limits: Limits) -> GraphClient {
    let mut cfg = GraphConfig::from_env("t", "c", ClientSecret::new("s"));
    cfg.graph_url = server.url("");
    cfg.authority = server.url("");
    cfg.attempts = 1;
    cfg.limits = limits;
    GraphClient::new(cfg, reqwest::Client::new())
}

fn json(w: &mut dyn Write, body: &serde_json::Value) -> std::io::Result<Then> {
    respond(
        w,
        200,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn pages_asked(server: &HttpServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| !r.path.ends_with("/token"))
        .count()
}

fn permanent_message(e: GraphError) -> String {
    match e {
        GraphError::Permanent { message, .. } => message,
        other => panic!("expected a permanent error, got {other}"),
    }
}

/// `http://{the Host the client sent}`: links that point back at the server that sent them.
fn origin(req: &HttpRequest) -> String {
    format!("http://{}", req.header("host").unwrap_or_default())
}

#[tokio::test]
async fn a_next_link_back_to_a_page_already_read_ends_the_listing() {
    // The page at /items links to /items?p=2, which links back to /items.
    let srv = server(|req, w| {
        let next = if req.path.contains("p=2") {
            format!("{}/v1.0/items", origin(req))
        } else {
            format!("{}/v1.0/items?p=2", origin(req))
        };
        json(
            w,
            &serde_json::json!({"value": [{"id": "x"}], "@odata.nextLink": next}),
        )
    });
    let c = client(&srv, Limits::default());
    let e = c.get_all("/items").await.unwrap_err();
    assert!(
        permanent_message(e).contains("already followed"),
        "a loop is named as one"
    );
    assert_eq!(
        pages_asked(&srv),
        2,
        "the loop is caught before a third page"
    );
    let e = c.delta("/items").await.unwrap_err();
    assert!(permanent_message(e).contains("already followed"));
}

#[tokio::test]
async fn an_endless_body_is_refused_at_the_page_limit() {
    let srv = server(|_, w| {
        respond_head(w, 200, &[("Content-Type", "application/json")])?;
        // 64 MiB of spaces without a Content-Length: valid JSON whitespace, never a document.
        repeat_body(w, &[b' '; 64 * 1024], 1024)
    });
    let limits = Limits {
        max_page_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = client(&srv, limits).get_json("/items").await.unwrap_err();
    let m = permanent_message(e);
    assert!(m.contains("larger than 1048576 bytes"), "{m}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let srv = server(|_, w| {
        w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n{}",
        )?;
        Ok(Then::Close)
    });
    let e = client(&srv, Limits::default())
        .get_json("/items")
        .await
        .unwrap_err();
    assert!(permanent_message(e).contains("larger than"));
}

#[tokio::test]
async fn a_listing_stops_at_its_item_and_page_limits() {
    // Every page is new (its number grows) and holds two items.
    let srv = server(|req, w| {
        let n: u64 = req
            .path
            .rsplit_once("p=")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        let next = format!("{}/v1.0/items?p={}", origin(req), n + 1);
        json(
            w,
            &serde_json::json!({"value": [{"id": n}, {"id": n}], "@odata.nextLink": next}),
        )
    });
    let c = client(
        &srv,
        Limits {
            max_listing_items: 7,
            ..Limits::default()
        },
    );
    let e = c.get_all("/items").await.unwrap_err();
    assert!(permanent_message(e).contains("more than 7 items"));
    assert_eq!(pages_asked(&srv), 4, "the fourth page passes 7 items");

    let c = client(
        &srv,
        Limits {
            max_listing_pages: 10,
            ..Limits::default()
        },
    );
    let e = c.delta("/items").await.unwrap_err();
    assert!(permanent_message(e).contains("past 10 pages"));
    assert_eq!(pages_asked(&srv), 4 + 10);
}

#[tokio::test]
async fn an_endless_token_answer_is_an_authentication_failure_not_a_hang() {
    let srv = HttpServer::start(|req, w| {
        if req.path.ends_with("/token") {
            respond_head(w, 200, &[("Content-Type", "application/json")])?;
            repeat_body(w, &[b' '; 64 * 1024], 1024)
        } else {
            json(w, &serde_json::json!({"value": []}))
        }
    });
    let e = client(&srv, Limits::default())
        .get_json("/items")
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Auth { .. }), "{e}");
    assert!(e.to_string().contains("larger than"), "{e}");
    assert_eq!(pages_asked(&srv), 0, "no request without a token");
}

#[tokio::test]
async fn a_token_endpoint_in_trouble_is_transient_whatever_its_page_weighs() {
    // A 503 with a 1 MiB error page: the service's trouble, retried, never the app's credentials.
    let srv = HttpServer::start(|req, w| {
        if req.path.ends_with("/token") {
            respond(w, 503, &[("Content-Type", "text/html")], &[b'x'; 1 << 20])
        } else {
            json(w, &serde_json::json!({"value": []}))
        }
    });
    let e = client(&srv, Limits::default())
        .get_json("/items")
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Transient { .. }), "{e}");
}

#[tokio::test]
async fn a_call_may_allow_a_larger_answer_and_a_too_large_one_says_so() {
    // 2 MiB of JSON: over a 1 MiB page limit, within a call's own 4 MiB allowance.
    let srv = server(|_, w| {
        let big = "x".repeat(2 << 20);
        json(w, &serde_json::json!({ "value": [big] }))
    });
    let c = client(
        &srv,
        Limits {
            max_page_bytes: 1 << 20,
            ..Limits::default()
        },
    );
    let e = c.get_json("/export").await.unwrap_err();
    assert!(e.is_too_large(), "{e}");
    let call = tenantry_graph::client::Call::new(reqwest::Method::GET, "/export").max_body(4 << 20);
    let v = c.json(&call).await.unwrap();
    assert_eq!(v["value"][0].as_str().unwrap().len(), 2 << 20);
}

/// A `$batch` answer that leaves requests out, names ids never sent or is not a batch answer at
/// all: the calls it does not answer end as transient errors (retried within the call's attempts,
/// here one), never as another call's answer, a hang or a panic.
#[tokio::test]
async fn a_batch_answer_that_leaves_calls_out_fails_those_calls_only() {
    let srv = server(|req, w| {
        assert!(req.path.ends_with("/v1.0/$batch"), "{}", req.path);
        json(
            w,
            &serde_json::json!({"responses": [
                {"id": "0", "status": 200, "body": {"answer": 0}},
                {"id": "7", "status": 200, "body": {"answer": 7}},
                {"id": "x"},
                "junk",
            ]}),
        )
    });
    let c = client(&srv, Limits::default());
    let calls: Vec<Call> = (0..3)
        .map(|i| Call::new(Method::GET, format!("/items/{i}")))
        .collect();
    let results = c.batch(&calls).await;
    assert_eq!(results[0].as_ref().unwrap()["answer"], 0);
    for r in &results[1..] {
        let e = r.as_ref().unwrap_err();
        assert!(matches!(e, GraphError::Transient { .. }), "{e}");
        assert!(
            e.to_string().contains("lacks this request's response"),
            "{e}"
        );
    }
    // The first round settled call 0, so it used no attempt; the second settled nothing.
    assert_eq!(pages_asked(&srv), 2);

    let srv = server(|_, w| json(w, &serde_json::json!({"value": []})));
    let results = client(&srv, Limits::default()).batch(&calls).await;
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(GraphError::Transient { .. }))));
}
