//! The client against the test kit's fake Graph (Microsoft's services cannot run here).

use tenantry_graph::{ClientSecret, GraphClient, GraphConfig, GraphError};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};

fn client(fake: &FakeGraph, secret: &str) -> GraphClient {
    let mut cfg = GraphConfig::from_env(TENANT, CLIENT_ID, ClientSecret::new(secret));
    cfg.graph_url = fake.url().to_string();
    cfg.authority = fake.url().to_string();
    GraphClient::new(cfg, reqwest::Client::new())
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_and_the_request_goes_through() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.add_user("adele@contoso.com");
    let c = client(&fake, CLIENT_SECRET);
    c.get_json("/users/adele@contoso.com/drive").await.unwrap();
    fake.revoke_tokens();
    c.get_json("/users/adele@contoso.com/drive").await.unwrap();
    let s = fake.stats();
    assert_eq!(s.tokens_issued, 2);
    assert_eq!(s.unauthorized, 1);
}

#[tokio::test]
async fn errors_are_typed_and_name_the_request() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let c = client(&fake, "not-the-secret");
    let e = c.get_json("/users/x@y/drive").await.unwrap_err();
    assert!(matches!(e, GraphError::Auth { status: 401, .. }), "{e}");
    assert_eq!(e.code(), Some("invalid_client"));
    assert!(!format!("{e} {e:?}").contains("not-the-secret"));
    let c = client(&fake, CLIENT_SECRET);
    let e = c
        .get_json("/users/nobody@contoso.com/drive")
        .await
        .unwrap_err();
    assert!(e.is_not_found() && e.code() == Some("itemNotFound"), "{e}");
    assert!(e.ids().request_id.is_some() && e.ids().client_request_id.is_some());
}

#[tokio::test]
async fn paging_follows_next_links_and_delta_ends_with_a_delta_link() {
    let fake = FakeGraph::start(FakeGraphOptions {
        page_size: 3,
        ..Default::default()
    });
    let drive = fake.add_user("adele@contoso.com");
    let t = time::OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
    for i in 0..8 {
        fake.put_file(&drive, &format!("f{i}.txt"), b"x", t);
    }
    let c = client(&fake, CLIENT_SECRET);
    let kids = c
        .get_all(&format!("/drives/{drive}/root/children"))
        .await
        .unwrap();
    assert_eq!(kids.len(), 8);
    let d = c
        .delta(&format!("/drives/{drive}/root/delta"))
        .await
        .unwrap();
    assert_eq!(d.items.len(), 9, "root and 8 files");
    fake.put_file(&drive, "f1.txt", b"changed", t);
    let again = c.delta(&d.delta_link).await.unwrap();
    assert_eq!(again.items.len(), 1);
    assert_eq!(again.items[0]["name"], "f1.txt");
}

#[tokio::test]
async fn a_429_pauses_the_tenant_and_is_retried_once() {
    let fake = FakeGraph::start(FakeGraphOptions {
        throttle_every: Some(2),
        retry_after_secs: 1,
        ..Default::default()
    });
    fake.add_user("adele@contoso.com");
    let c = client(&fake, CLIENT_SECRET);
    let started = std::time::Instant::now();
    c.get_json("/users/adele@contoso.com/drive").await.unwrap();
    c.get_json("/users/adele@contoso.com/drive").await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    let s = fake.stats();
    assert_eq!(s.throttled, 1);
    assert_eq!(s.requests, 3);
    let (waited, times) = c.budget().throttled_stats();
    assert_eq!(times, 1);
    assert!(waited >= std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn app_tokens_for_another_resource_are_cached_renewed_and_replaced() {
    use tenantry_graph::token::{AppTokens, EXCHANGE_ONLINE_SCOPE};
    let fake = FakeGraph::start(FakeGraphOptions {
        token_lifetime: std::time::Duration::from_secs(2),
        ..Default::default()
    });
    let mut cfg = GraphConfig::from_env(TENANT, CLIENT_ID, ClientSecret::new(CLIENT_SECRET));
    cfg.authority = fake.url().to_string();
    let tokens = AppTokens::new(cfg, EXCHANGE_ONLINE_SCOPE);
    let first = tokens.get().await.unwrap();
    // Renewed once three quarters of a short lifetime (1.5 s of 2 s) have passed.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let second = tokens.get().await.unwrap();
    assert_ne!(first, second, "renewed before expiry");
    // A token the server refused is forgotten, even if still young.
    tokens.invalidate(&second).await;
    let third = tokens.get().await.unwrap();
    assert_ne!(second, third);
    let s = fake.stats();
    assert_eq!(s.tokens_issued, 3);
    assert_eq!(s.token_scopes, [EXCHANGE_ONLINE_SCOPE]);
    assert!(!format!("{tokens:?}").contains(CLIENT_SECRET));
}
