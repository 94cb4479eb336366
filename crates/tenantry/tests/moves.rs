//! Tenant moves through the API, ledger side only (no mail servers, no libraries): the plan,
//! blockers, the run as durable steps, and the licences on both sides afterwards.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

async fn setup(s: &Server, source_domain: &str) -> (String, String) {
    let source = s.tenant(&format!("Src{source_domain}")).await;
    let target = s.tenant(&format!("Dst{source_domain}")).await;
    s.subscription(&source, "ENTERPRISEPACK", 10).await;
    s.subscription(&target, "ENTERPRISEPACK", 2).await;
    for alias in ["adele", "bob", "cara", "dan", "eve", "stays"] {
        let u = s
            .ok(
                Method::POST,
                &format!("/v1/tenants/{source}/users"),
                OPERATOR,
                Some(json!({"userPrincipalName": format!("{alias}@{source_domain}"), "displayName": alias, "usageLocation": "US"})),
            )
            .await;
        let r = s
            .assign(&source, u["id"].as_str().unwrap(), E3, OPERATOR)
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    (source, target)
}

async fn wait_for(s: &Server, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = s.get(&format!("/v1/moves/{id}"), OPERATOR).await;
        if m["state"] == state {
            return m;
        }
        assert!(
            m["state"] != "Failed" || state == "Failed",
            "move failed: {m}"
        );
        assert!(Instant::now() < deadline, "move did not reach {state}: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retire_source_moves_five_users_buys_in_target_and_cancels_source() {
    let s = Server::start();
    let (source, target) = setup(&s, "fabrikam.com").await;
    let csv = "sourceUpn,targetUpn\nadele@fabrikam.com,adele@contoso.com\nbob@fabrikam.com,bob@contoso.com\ncara@fabrikam.com,cara@contoso.com\ndan@fabrikam.com,dan@contoso.com\neve@fabrikam.com,eve@contoso.com\n";
    let (status, m) = s
        .post("/v1/moves", OPERATOR, json!({"sourceTenantId": source, "targetTenantId": target, "path": "retire-source", "usersCsv": csv}))
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();

    let plan = s.runnable_plan(&id).await;
    let e3 = &plan["licences"][0];
    assert_eq!(
        (
            e3["seatsNeeded"].as_u64(),
            e3["targetFree"].as_u64(),
            e3["seatsToBuy"].as_u64()
        ),
        (Some(5), Some(2), Some(3))
    );
    assert_eq!(plan["licences"][0]["purchase"]["kind"], "addSeats");
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"buyTargetLicences"));
    assert_eq!(kinds.last(), Some(&"report"));

    s.run_move(&id).await;
    wait_for(&s, &id, "Completed").await;

    let target_e3 = s.subscribed(&target, "ENTERPRISEPACK").await;
    assert_eq!(target_e3["prepaidUnits"]["enabled"], 5);
    assert_eq!(target_e3["consumedUnits"], 5);
    let (_, users) = s
        .get(&format!("/v1/tenants/{target}/users"), OPERATOR)
        .await;
    assert_eq!(users["value"].as_array().unwrap().len(), 5);
    let (_, subs) = s
        .get(&format!("/v1/tenants/{source}/subscriptions"), OPERATOR)
        .await;
    assert_eq!(
        subs["value"][0]["autoRenew"], false,
        "source cancelled (outside nothing: bought today, so at once)"
    );
    assert_eq!(
        subs["value"][0]["status"], "Disabled",
        "bought today: inside the refund window, cancelled at once"
    );

    // After the run, the plan shown is the one the run followed, not a recomputation.
    let (_, after) = s.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
    assert_eq!(after["fingerprint"], plan["fingerprint"]);
    assert_eq!(after["licences"][0]["seatsToBuy"], 3);

    // Running again is refused; the report lists every step done.
    let again = s
        .post(&format!("/v1/moves/{id}/run"), OPERATOR, json!({}))
        .await;
    assert_problem(&again, 409, "InvalidMoveState");
    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    assert_eq!(report["summary"]["done"], report["summary"]["steps"]);
    let csv = s
        .http
        .get(format!("{}/v1/moves/{id}/report?format=csv", s.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("kind,subject,state"));
    assert!(csv.contains("targetUser,adele@contoso.com,Done"));
    // Both audit logs know about the move; the target's also records what the mover did.
    let (_, log) = s
        .get(
            &format!("/v1/tenants/{target}/auditLogs?$top=1000"),
            OPERATOR,
        )
        .await;
    let actions: Vec<&str> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "move.created",
        "move.started",
        "move.completed",
        "subscription.quantityChanged",
        "user.created",
        "user.licensesChanged",
    ] {
        assert!(actions.contains(&a), "{a} missing in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_source_unassigns_movers_and_reduces_seats_never_below_assigned() {
    let s = Server::start();
    let (source, target) = setup(&s, "northwind.com").await;
    let (_, m) = s
        .post(
            "/v1/moves",
            OPERATOR,
            json!({"sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
                   "domainRewrite": {"from": "northwind.com", "to": "tailspin.com"},
                   "users": [{"sourceUpn": "stays@northwind.com", "targetUpn": "ignored@tailspin.com"}]}),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    // The explicit mapping takes "stays"; so every user moves.
    let (_, plan) = s.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
    assert_eq!(plan["users"].as_array().unwrap().len(), 6);
    s.run_move(&id).await;
    wait_for(&s, &id, "Completed").await;
    let source_e3 = s.subscribed(&source, "ENTERPRISEPACK").await;
    assert_eq!(
        source_e3["consumedUnits"], 0,
        "movers unassigned in the source"
    );
    let target_e3 = s.subscribed(&target, "ENTERPRISEPACK").await;
    assert_eq!(target_e3["consumedUnits"], 6);
    assert_eq!(target_e3["prepaidUnits"]["enabled"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blockers_stop_the_run_and_transfer_points_at_moves() {
    let s = Server::start();
    let (source, target) = setup(&s, "litware.com").await;
    // A target user that clashes, an unknown source user, and no purchases allowed.
    s.ok(
        Method::POST,
        &format!("/v1/tenants/{target}/users"),
        OPERATOR,
        Some(json!({"userPrincipalName": "adele@contoso.com", "displayName": "Other Adele"})),
    )
    .await;
    let (_, m) = s
        .post("/v1/moves", OPERATOR, json!({"sourceTenantId": source, "targetTenantId": target, "path": "retire-source", "allowPurchase": false,
            "users": [{"sourceUpn": "adele@litware.com", "targetUpn": "adele@contoso.com"},
                      {"sourceUpn": "ghost@litware.com", "targetUpn": "ghost@contoso.com"},
                      {"sourceUpn": "bob@litware.com", "targetUpn": "bob@contoso.com"},
                      {"sourceUpn": "cara@litware.com", "targetUpn": "cara@contoso.com"}]}))
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let (_, plan) = s.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
    assert_eq!(plan["runnable"], false);
    let codes: Vec<&str> = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "Blocker")
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    for code in [
        "TargetUpnExists",
        "UnknownSourceUser",
        "InsufficientTargetSeats",
    ] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    let refused = s
        .post(&format!("/v1/moves/{id}/run"), OPERATOR, json!({}))
        .await;
    assert_problem(&refused, 409, "MoveHasBlockers");
    assert!(refused.1["detail"]
        .as_str()
        .unwrap()
        .contains("TargetUpnExists"));
    // Nothing happened in either tenant.
    assert_eq!(
        s.subscribed(&target, "ENTERPRISEPACK").await["prepaidUnits"]["enabled"],
        2
    );

    let admin = s.token(&source, "GlobalAdmin").await;
    assert_problem(
        &s.post("/v1/moves", &admin, json!({})).await,
        403,
        "Forbidden",
    );
    let bad = s
        .post(
            "/v1/moves",
            OPERATOR,
            json!({"sourceTenantId": source, "targetTenantId": target, "path": "sideways"}),
        )
        .await;
    assert_problem(&bad, 422, "ValidationFailed");
    let bad_csv = s.post("/v1/moves", OPERATOR, json!({"sourceTenantId": source, "targetTenantId": target, "path": "keep-source", "usersCsv": "just-one-column@x.com"})).await;
    assert_problem(&bad_csv, 422, "InvalidUserMapping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_keep_secrets_encrypted_and_never_return_them() {
    let s = Server::start();
    let (status, p) = s
        .post("/v1/connectionProfiles", OPERATOR, json!({"name": "src-imap", "kind": "imap", "username": "admin", "password": "s3cret-Pa55"}))
        .await;
    assert_eq!(status, 201, "{p}");
    assert!(p.get("password").is_none());
    let (_, list) = s.get("/v1/connectionProfiles", OPERATOR).await;
    assert!(!list.to_string().contains("s3cret-Pa55"));
    assert_problem(
        &s.post(
            "/v1/connectionProfiles",
            OPERATOR,
            json!({"name": "src-imap", "kind": "imap", "username": "a", "password": "b"}),
        )
        .await,
        409,
        "DuplicateProfile",
    );
    for bytes in s.stored_bytes() {
        assert!(
            !bytes.windows(11).any(|w| w == b"s3cret-Pa55"),
            "the password is not stored in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_mail_servers_and_libraries_are_blockers() {
    let s = Server::start();
    let (source, target) = setup(&s, "wingtip.com").await;
    s.ok(
        Method::POST,
        "/v1/connectionProfiles",
        OPERATOR,
        Some(json!({"name": "nowhere", "kind": "imap", "username": "admin", "password": "x"})),
    )
    .await;
    let (_, m) = s
        .post("/v1/moves", OPERATOR, json!({"sourceTenantId": source, "targetTenantId": target, "path": "retire-source",
            "domainRewrite": {"from": "wingtip.com", "to": "contoso.com"},
            "sourceMail": {"url": "imap://127.0.0.1:1", "profile": "nowhere"},
            "targetMail": {"url": "imap://127.0.0.1:1", "profile": "missing-profile"},
            "libraries": [{"source": "/nonexistent/library/path", "target": "webdav://127.0.0.1:1/"}]}))
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let (_, plan) = s.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
    assert_eq!(plan["runnable"], false);
    let blockers: Vec<String> = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "Blocker")
        .map(|f| format!("{} {}", f["code"], f["subject"]))
        .collect();
    assert!(
        blockers
            .iter()
            .any(|b| b.contains("EndpointUnavailable") && b.contains("source imap://127.0.0.1:1")),
        "{blockers:?}"
    );
    assert!(
        blockers
            .iter()
            .any(|b| b.contains("EndpointUnavailable") && b.contains("target imap://127.0.0.1:1")),
        "{blockers:?}"
    );
    assert!(
        blockers
            .iter()
            .any(|b| b.contains("/nonexistent/library/path")),
        "{blockers:?}"
    );
    assert_problem(
        &s.post(&format!("/v1/moves/{id}/run"), OPERATOR, json!({}))
            .await,
        409,
        "MoveHasBlockers",
    );
}
