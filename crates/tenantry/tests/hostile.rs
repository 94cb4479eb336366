//! A hostile mail server or WebDAV library named in a move must not bring `tenantry serve` down
//! for every tenant: planning the move probes them, and what they send is an error in the plan.

mod support;

use reqwest::Method;
use serde_json::json;
use support::*;
use tenantry_testkit::faults::{kind, record};
use tenantry_testkit::hostile::{multistatus, respond, HttpServer, ImapServer};

fn nested(n: usize) -> Vec<u8> {
    let mut v = vec![b'('; n];
    v.extend(std::iter::repeat_n(b')', n));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_against_hostile_servers_blocks_the_move_and_the_server_stays_up() {
    // A greeting of 20,000 nested lists (a stack overflow, killing the server, before the bound).
    let imap = ImapServer::start(|c| {
        let mut greeting = b"* OK [".to_vec();
        greeting.extend(nested(20_000));
        greeting.extend_from_slice(b"] hi\r\n");
        c.send(&greeting)
    });
    // A library whose listing tries to leave its folder.
    let dav = HttpServer::start(|req, w| match req.method.as_str() {
        "PROPFIND" => respond(
            w,
            207,
            &[],
            multistatus(&[
                (req.path.as_str(), true, 0),
                ("/lib/../../etc/passwd", false, 6),
            ])
            .as_bytes(),
        ),
        _ => respond(w, 404, &[], b""),
    });
    let s = Server::start();
    let source = s.tenant("HostileSource").await;
    let target = s.tenant("HostileTarget").await;
    // One user to move, so that the mailbox probe has someone to log in as.
    s.ok(
        Method::POST,
        &format!("/v1/tenants/{source}/users"),
        OPERATOR,
        Some(json!({"userPrincipalName": "adele@fabrikam.com", "displayName": "Adele", "usageLocation": "US"})),
    )
    .await;
    s.ok(
        Method::POST,
        "/v1/connectionProfiles",
        OPERATOR,
        Some(json!({"name": "hostile", "kind": "imap", "username": "admin", "password": "x"})),
    )
    .await;
    let mail = format!("imap://127.0.0.1:{}", imap.port());
    let (status, m) = s
        .post(
            "/v1/moves",
            OPERATOR,
            json!({"sourceTenantId": source, "targetTenantId": target, "path": "retire-source",
                "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
                "sourceMail": {"url": mail, "profile": "hostile"},
                "targetMail": {"url": mail, "profile": "hostile"},
                "libraries": [{"source": format!("webdav://127.0.0.1:{}/lib/", dav.port()),
                               "target": "/nonexistent/target"}]}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap();

    let (status, plan) = s.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["runnable"], false);
    assert!(imap.connections() >= 1, "the mail server was probed");
    let findings = plan["findings"].to_string();
    assert!(findings.contains("nested deeper"), "{findings}");
    assert!(findings.contains("etc/passwd"), "{findings}");

    // Still serving, for everyone.
    let (status, _) = s.get("/healthz", OPERATOR).await;
    assert_eq!(status, 200);
    let (status, _) = s.get(&format!("/v1/tenants/{source}"), OPERATOR).await;
    assert_eq!(status, 200);
    record(
        kind::BAD_INPUT,
        "tenant move planned on `serve` against a hostile IMAP greeting and a WebDAV listing with ..",
        "both named as blockers, the server kept serving (it died before the fix)",
        0,
    );
}
