//! A move between two tenants that live on two other tenantry servers, reached only through
//! their `/v1.0` Graph surfaces with client credentials (connection profiles of kind `graph`),
//! run by a third server: seats are bought by "an administrator" (the test, through the target
//! server's `/v1` API) when the run asks for them, the mover is killed (SIGKILL) once the
//! purchase is seen and restarted, the source's reduction is confirmed by an operator; both
//! tenants end exact and no user is created twice.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

async fn application(s: &Server, tenant: &str) -> (String, String) {
    let app = s
        .ok(
            Method::POST,
            &format!("/v1/tenants/{tenant}/applications"),
            OPERATOR,
            Some(json!({"displayName": "tenantry mover", "role": "GlobalAdmin"})),
        )
        .await;
    (
        app["clientId"].as_str().unwrap().to_string(),
        app["clientSecret"].as_str().unwrap().to_string(),
    )
}

/// Creates a graph profile on `mover` for `tenant` of `server`, as the CLI would.
async fn graph_profile(mover: &Server, name: &str, server: &Server, tenant: &str) {
    let (client_id, secret) = application(server, tenant).await;
    let (status, p) = mover
        .post(
            "/v1/connectionProfiles",
            OPERATOR,
            json!({"name": name, "kind": "graph", "tenantId": tenant, "clientId": client_id,
                   "clientSecret": secret, "authority": server.base, "graphUrl": server.base}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["kind"], "graph");
    assert!(
        !p.to_string().contains(&secret),
        "the secret is never returned"
    );
}

async fn report(s: &Server, id: &str) -> Value {
    s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await.1
}

fn step_state(report: &Value, key: &str) -> String {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["key"] == key)
        .map(|s| s["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Polls the move until `done` says so (generous: the run polls subscribedSkus every 10 s).
async fn until(s: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, m) = s.get(&format!("/v1/moves/{id}"), OPERATOR).await;
        if done(&m) {
            return m;
        }
        assert!(
            m["state"] != "Failed",
            "move failed waiting for {what}: {m}"
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn waiting_keys(m: &Value) -> Vec<String> {
    m["waitingForAdministrator"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["key"].as_str().unwrap().to_string())
        .collect()
}

/// Users of `tenant` on `server`: (upn, skuIds held).
async fn users(server: &Server, tenant: &str) -> Vec<(String, Vec<String>)> {
    let (_, list) = server
        .get(&format!("/v1/tenants/{tenant}/users?$top=999"), OPERATOR)
        .await;
    let mut out = Vec::new();
    for u in list["value"].as_array().unwrap() {
        let id = u["id"].as_str().unwrap();
        let (_, details) = server
            .get(
                &format!("/v1/tenants/{tenant}/users/{id}/licenseDetails"),
                OPERATOR,
            )
            .await;
        let skus = details["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["skuId"].as_str().unwrap().to_string())
            .collect();
        out.push((
            u["userPrincipalName"].as_str().unwrap().to_lowercase(),
            skus,
        ));
    }
    out.sort();
    out
}

// Fails today at `POST /v1/moves` (FOREIGN KEY): the `moves` table's tenant ids reference local
// tenants, and move audit records go to both tenants' logs. Lifting that needs SQLite
// migration 24 / PostgreSQL 6 and the audit written for local tenants only.
#[ignore = "a tenant reached only through Graph cannot be stored in `moves` yet (migration 24)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_between_two_servers_through_graph_waits_for_the_administrator_and_survives_a_kill()
{
    let (source_server, target_server) = (Server::start(), Server::start());
    let mut mover = Server::start();
    let source = source_server.tenant("Fabrikam").await;
    let target = target_server.tenant("Contoso").await;
    source_server
        .subscription(&source, "ENTERPRISEPACK", 10)
        .await;
    target_server
        .subscription(&target, "ENTERPRISEPACK", 2)
        .await;
    for alias in ["adele", "bob", "cara", "stays"] {
        let u = source_server
            .ok(
                Method::POST,
                &format!("/v1/tenants/{source}/users"),
                OPERATOR,
                Some(json!({"userPrincipalName": format!("{alias}@fabrikam.com"), "displayName": alias, "usageLocation": "US"})),
            )
            .await;
        let r = source_server
            .assign(&source, u["id"].as_str().unwrap(), E3, OPERATOR)
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    graph_profile(&mover, "fabrikam-graph", &source_server, &source).await;
    graph_profile(&mover, "contoso-graph", &target_server, &target).await;

    let csv = "adele@fabrikam.com,adele@contoso.com\nbob@fabrikam.com,bob@contoso.com\ncara@fabrikam.com,cara@contoso.com\n";
    let (status, m) = mover
        .post(
            "/v1/moves",
            OPERATOR,
            json!({"sourceGraph": "fabrikam-graph", "targetGraph": "contoso-graph",
                   "path": "keep-source", "usersCsv": csv}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["spec"]["sourceTenantId"], source.as_str());
    let id = m["id"].as_str().unwrap().to_string();

    // The plan, made from both tenants' Graph surfaces: 3 seats needed, 2 free, 1 to buy by hand.
    let (_, plan) = mover.get(&format!("/v1/moves/{id}/plan"), OPERATOR).await;
    assert_eq!(plan["runnable"], true, "{plan}");
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"awaitTargetSeats"), "{kinds:?}");
    assert!(kinds.contains(&"awaitSourceChange"), "{kinds:?}");
    assert!(!kinds.contains(&"buyTargetLicences"), "{kinds:?}");
    assert_eq!(plan["microsoftMigration"]["totalLicences"], 3);

    let (status, run) = mover
        .post(&format!("/v1/moves/{id}/run"), OPERATOR, json!({}))
        .await;
    assert_eq!(status, 202, "{run}");

    // The run waits (not failed, not retried into failure) and says exactly what to buy.
    let seats_key = format!("await-seats:{E3}");
    let m = until(&mover, &id, "the purchase request", |m| {
        waiting_keys(m).contains(&seats_key)
    })
    .await;
    assert_eq!(m["state"], "Running");
    let ask = &m["waitingForAdministrator"][0]["action"];
    assert_eq!(
        (
            ask["skuId"].as_str(),
            ask["skuPartNumber"].as_str(),
            ask["seats"].as_u64(),
            ask["tenantId"].as_str()
        ),
        (
            Some(E3),
            Some("ENTERPRISEPACK"),
            Some(1),
            Some(target.as_str())
        ),
        "{ask}"
    );
    // Nothing moved yet: the users come after the seats.
    assert_eq!(users(&target_server, &target).await.len(), 0);
    // Still waiting a while later, attempts not used up.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let r = report(&mover, &id).await;
    assert_eq!(step_state(&r, &seats_key), "Pending", "{r}");

    // The administrator buys the seat; the run sees it in subscribedSkus by itself.
    target_server
        .subscription(&target, "ENTERPRISEPACK", 1)
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while step_state(&report(&mover, &id).await, &seats_key) != "Done" {
        assert!(Instant::now() < deadline, "the purchase was not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Crash of the mover during the licence stage, then a restart on the same database.
    mover.kill();
    mover.restart();

    // The source's reduction waits for an operator's confirmation, with its refund deadline.
    let change_key = until(&mover, &id, "the source change", |m| {
        waiting_keys(m)
            .iter()
            .any(|k| k.starts_with("await-source:"))
    })
    .await["waitingForAdministrator"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = mover
        .post(
            &format!("/v1/moves/{id}/steps/{seats_key}/confirm"),
            OPERATOR,
            json!({}),
        )
        .await;
    assert_problem(&refused, 409, "StepNotWaiting");
    let confirmed = mover
        .ok(
            Method::POST,
            &format!("/v1/moves/{id}/steps/{change_key}/confirm"),
            OPERATOR,
            Some(json!({})),
        )
        .await;
    assert_eq!(confirmed["key"], change_key.as_str());
    until(&mover, &id, "completion", |m| m["state"] == "Completed").await;

    // Both tenants exact: the movers in the target once each with E3, gone from the source's seats.
    assert_eq!(
        users(&target_server, &target).await,
        ["adele", "bob", "cara"]
            .iter()
            .map(|a| (format!("{a}@contoso.com"), vec![E3.to_string()]))
            .collect::<Vec<_>>()
    );
    let source_users = users(&source_server, &source).await;
    assert_eq!(
        source_users,
        vec![
            ("adele@fabrikam.com".to_string(), vec![]),
            ("bob@fabrikam.com".to_string(), vec![]),
            ("cara@fabrikam.com".to_string(), vec![]),
            ("stays@fabrikam.com".to_string(), vec![E3.to_string()]),
        ]
    );
    let target_e3 = target_server.subscribed(&target, "ENTERPRISEPACK").await;
    assert_eq!(target_e3["consumedUnits"], 3);
    // The source's seats were not touched by tenantry: Graph cannot; the operator confirmed.
    let source_e3 = source_server.subscribed(&source, "ENTERPRISEPACK").await;
    assert_eq!(source_e3["prepaidUnits"]["enabled"], 10);

    let r = report(&mover, &id).await;
    let actions = r["administratorActions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{r}");
    let seats = actions
        .iter()
        .find(|a| a["key"] == seats_key.as_str())
        .unwrap();
    assert_eq!(seats["seenInSubscribedSkus"], 3, "{seats}");
    let change = actions
        .iter()
        .find(|a| a["key"] == change_key.as_str())
        .unwrap();
    assert!(
        change["confirmedBy"]
            .as_str()
            .is_some_and(|b| !b.is_empty()),
        "{change}"
    );
    assert!(change["confirmedAt"].is_number(), "{change}");
    assert_eq!(change["action"]["change"]["kind"], "reduce", "{change}");
}
