//! A move between two tenants that live on two other tenantry servers (each its own SQLite),
//! reached only through their `/v1.0` Graph surfaces with client credentials (applications
//! registered with `tenantry app create`, connection profiles of kind `graph`), run by a third
//! server, with the mailboxes on Dovecot: seats are bought by "an administrator" (the test,
//! through the target server's `/v1` API) once the run shows it waits for them, the mover is
//! killed (SIGKILL) in the licence stage and restarted, the source's reduction is confirmed by
//! an operator; both tenants end exact, no user is created twice, the mail arrives whole.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::mail::{assert_mailboxes_identical, dovecot, seed_mail};
use support::*;

const MOVERS: [&str; 3] = ["adele", "bob", "cara"];

/// Runs the real CLI against `server` as the operator; its stdout, or a panic with its stderr.
fn cli(server: &Server, args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(args)
        .env("TENANTRY_SERVER", &server.base)
        .env("TENANTRY_TOKEN", OPERATOR)
        .env_remove("TENANTRY_TENANT")
        .output()
        .expect("run tenantry");
    assert!(
        out.status.success(),
        "tenantry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers an application in `tenant` of `server` (`tenantry app create`) and makes a graph
/// profile of it on `mover` (`tenantry profile create --kind graph`), the secret only in a file;
/// the application's client id.
async fn graph_profile(mover: &Server, name: &str, server: &Server, tenant: &str) -> String {
    let app: Value = serde_json::from_str(&cli(
        server,
        &[
            "app",
            "create",
            "--tenant",
            tenant,
            "--role",
            "GlobalAdmin",
            "--name",
            "tenantry mover",
            "--json",
        ],
    ))
    .expect("app create --json prints JSON");
    let (client_id, secret) = (
        app["clientId"].as_str().unwrap(),
        app["clientSecret"].as_str().unwrap(),
    );
    let secret_file = mover.dir.path().join(format!("{name}.secret"));
    std::fs::write(&secret_file, secret).unwrap();
    let created = cli(
        mover,
        &[
            "profile",
            "create",
            "--name",
            name,
            "--kind",
            "graph",
            "--tenant-id",
            tenant,
            "--client-id",
            client_id,
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--authority",
            &server.base,
            "--graph-url",
            &server.base,
            "--json",
        ],
    );
    assert!(!created.contains(secret), "the secret is never shown again");
    let p: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(p["kind"], "graph", "{p}");
    client_id.to_string()
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

/// Polls the move until `done` says so. Generous: the run looks at a waiting step every 10 s,
/// and on PostgreSQL a step the killed mover held is taken again only once its 120 s lease ends
/// (a restarting server cannot tell its own leases from another worker's there).
async fn until(s: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    s.wait_move(id, what, Duration::from_secs(300), done).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_between_two_servers_through_graph_waits_for_the_administrator_and_survives_a_kill()
{
    let source_mail = dovecot(&MOVERS, "fabrikam.com", ("srcadmin", "srcadminpw"), false);
    let target_mail = dovecot(&MOVERS, "contoso.com", ("admin", "adminpw"), true);
    let messages = seed_mail(&source_mail, &MOVERS, "fabrikam.com").await;
    // The tenants' own servers, each on its own SQLite file; the mover on the database the run
    // chooses.
    let (source_server, target_server) = (Server::start_on(None), Server::start_on(None));
    let mut mover = Server::start();
    let source = source_server.tenant("Fabrikam").await;
    let target = target_server.tenant("Contoso").await;
    source_server
        .subscription(&source, "ENTERPRISEPACK", 10)
        .await;
    target_server
        .subscription(&target, "ENTERPRISEPACK", 2)
        .await;
    source_server
        .licensed_users(
            &source,
            "fabrikam.com",
            &["adele", "bob", "cara", "stays"],
            "US",
        )
        .await;
    graph_profile(&mover, "fabrikam-graph", &source_server, &source).await;
    graph_profile(&mover, "contoso-graph", &target_server, &target).await;
    mover.profiles(&MAIL_PROFILES).await;

    let csv = "adele@fabrikam.com,adele@contoso.com\nbob@fabrikam.com,bob@contoso.com\ncara@fabrikam.com,cara@contoso.com\n";
    let (status, m) = mover
        .post(
            "/v1/moves",
            OPERATOR,
            json!({"sourceGraph": "fabrikam-graph", "targetGraph": "contoso-graph",
                   "path": "keep-source", "usersCsv": csv,
                   "sourceMail": {"url": source_mail.host_url(), "profile": "src-imap"},
                   "targetMail": {"url": target_mail.host_url(), "profile": "dst-imap"}}),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["spec"]["sourceTenantId"], source.as_str());
    assert_eq!(m["spec"]["targetTenantId"], target.as_str());
    let id = m["id"].as_str().unwrap().to_string();

    // The plan, made from both tenants' Graph surfaces: 3 seats needed, 2 free, 1 to buy by hand.
    let plan = mover.runnable_plan(&id).await;
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"awaitTargetSeats"), "{kinds:?}");
    assert!(kinds.contains(&"awaitSourceChange"), "{kinds:?}");
    assert!(!kinds.contains(&"buyTargetLicences"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "migrateMailbox").count(), 3);
    assert_eq!(plan["microsoftMigration"]["totalLicences"], 3);

    mover.run_move(&id).await;

    // The run waits (not failed, not retried into failure) and says exactly what to buy: in
    // the move and first thing in `move status`.
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
    let status_text = cli(&mover, &["move", "status", &id]);
    assert!(
        status_text.starts_with("WAITING FOR AN ADMINISTRATOR: buy 1 ENTERPRISEPACK seat(s)"),
        "{status_text}"
    );
    assert!(
        status_text.contains(&format!("tenantry move confirm {id} {seats_key}")),
        "{status_text}"
    );
    // Nothing moved yet: the users come after the seats.
    assert_eq!(users(&target_server, &target).await.len(), 0);
    // Still waiting a while later (past a look at subscribedSkus), attempts not used up.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let r = report(&mover, &id).await;
    // Pending between looks; Running while the runner looks at subscribedSkus again.
    assert!(
        ["Pending", "Running"].contains(&step_state(&r, &seats_key).as_str()),
        "{r}"
    );

    // The administrator buys the seat; the run sees it in subscribedSkus by itself.
    target_server
        .subscription(&target, "ENTERPRISEPACK", 1)
        .await;
    // Crash of the mover in the licence stage (the first licence assigned through Graph, the
    // rest not yet), then a restart on the same database.
    let first_assign = format!("assign:{}@contoso.com", MOVERS[0]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let r = report(&mover, &id).await;
        if step_state(&r, &first_assign) == "Done" {
            break r;
        }
        assert!(Instant::now() < deadline, "no licence assigned: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    mover.kill();
    assert_eq!(step_state(&at_kill, &seats_key), "Done", "{at_kill}");
    assert_ne!(
        step_state(&at_kill, "mailbox:cara@fabrikam.com"),
        "Done",
        "killed before the mail was moved: {at_kill}"
    );
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
    let confirmed = cli(&mover, &["move", "confirm", &id, &change_key, "--json"]);
    let confirmed: Value = serde_json::from_str(&confirmed).unwrap();
    assert_eq!(confirmed["key"], change_key.as_str());
    until(&mover, &id, "completion", |m| m["state"] == "Completed").await;

    // Both tenants exact: the movers in the target once each with E3 (no user created twice,
    // whatever the kill interrupted), gone from the source's seats, the one who stays untouched.
    assert_eq!(
        users(&target_server, &target).await,
        MOVERS
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
    assert_eq!(
        (
            target_e3["prepaidUnits"]["enabled"].as_u64(),
            target_e3["consumedUnits"].as_u64()
        ),
        (Some(3), Some(3)),
        "{target_e3}"
    );
    // keep-source: the source keeps its tenant; its seats are not changed by tenantry (Graph
    // cannot; the operator confirmed the reduction), one still in use.
    let source_e3 = source_server.subscribed(&source, "ENTERPRISEPACK").await;
    assert_eq!(
        (
            source_e3["prepaidUnits"]["enabled"].as_u64(),
            source_e3["consumedUnits"].as_u64()
        ),
        (Some(10), Some(1)),
        "{source_e3}"
    );
    // Each user was created once: the target's audit log has one creation per mover.
    let (_, log) = target_server
        .get(
            &format!("/v1/tenants/{target}/auditLogs?$top=1000"),
            OPERATOR,
        )
        .await;
    let created = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "user.created")
        .count();
    assert_eq!(created, MOVERS.len(), "no user created twice");

    // The mail: every mailbox identical, every message once.
    let copied = assert_mailboxes_identical(
        &source_mail,
        &target_mail,
        &MOVERS,
        ("fabrikam.com", "contoso.com"),
    )
    .await;
    assert_eq!(copied, messages, "every message once, none twice");

    let r = report(&mover, &id).await;
    assert_eq!(r["summary"]["done"], r["summary"]["steps"], "{r}");
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

/// Through Graph the source's change is the administrator's; once it shows in
/// `directory/subscriptions/{id}` (fewer seats), the waiting step finishes by itself, without a
/// confirmation, and the report says where it was seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_reduction_made_by_the_administrator_is_seen_in_directory_subscriptions() {
    let source_server = Server::start_on(None);
    let mover = Server::start();
    let source = source_server.tenant("Fabrikam").await;
    let target = mover.tenant("Contoso").await;
    let sub = source_server
        .subscription(&source, "ENTERPRISEPACK", 5)
        .await;
    mover.subscription(&target, "ENTERPRISEPACK", 5).await;
    source_server
        .licensed_users(&source, "fabrikam.com", &["adele", "stays"], "US")
        .await;
    graph_profile(&mover, "fabrikam-graph", &source_server, &source).await;
    // The target is kept by the mover itself: one side through Graph, the other local.
    let id = mover
        .create_move(
            json!({"sourceGraph": "fabrikam-graph", "targetTenantId": target,
                   "path": "keep-source", "usersCsv": "adele@fabrikam.com,adele@contoso.com\n"}),
        )
        .await;
    mover.run_move(&id).await;
    let m = until(&mover, &id, "the source change", |m| {
        waiting_keys(m)
            .iter()
            .any(|k| k.starts_with("await-source:"))
    })
    .await;
    let change = &m["waitingForAdministrator"][0];
    assert_eq!(change["action"]["change"]["kind"], "reduce", "{change}");
    assert_eq!(change["action"]["change"]["to"], 1, "{change}");

    // The administrator reduces the subscription where it lives.
    let sub_id = sub["id"].as_str().unwrap();
    source_server
        .ok(
            Method::PATCH,
            &format!("/v1/tenants/{source}/subscriptions/{sub_id}"),
            OPERATOR,
            Some(json!({"quantity": 1})),
        )
        .await;
    until(&mover, &id, "completion", |m| m["state"] == "Completed").await;
    let r = report(&mover, &id).await;
    let seen = r["administratorActions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == change["key"])
        .cloned()
        .unwrap();
    assert_eq!(
        seen["seenInDirectorySubscriptions"]["totalLicenses"], 1,
        "{seen}"
    );
    assert!(seen["confirmedBy"].is_null(), "nobody confirmed: {seen}");
    // The source as keep-source leaves it: the mover unassigned, the one who stays licensed.
    let source_e3 = source_server.subscribed(&source, "ENTERPRISEPACK").await;
    assert_eq!(source_e3["consumedUnits"], 1, "{source_e3}");
}

/// An app's client secret is replaced mid-move (rotated where the tenant lives, as when a
/// secret expires): the old one stops at once, the move's plan cannot reach the tenant, and
/// `tenantry profile update --client-secret-file` on the mover puts the new one in the same
/// profile — the running server's next Graph call uses it (no cached client with the old one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_client_secret_is_used_at_once() {
    let source_server = Server::start_on(None);
    let mover = Server::start();
    let source = source_server.tenant("Fabrikam").await;
    let target = mover.tenant("Contoso").await;
    source_server
        .subscription(&source, "ENTERPRISEPACK", 1)
        .await;
    mover.subscription(&target, "ENTERPRISEPACK", 1).await;
    source_server
        .licensed_users(&source, "fabrikam.com", &["adele"], "US")
        .await;
    let client_id = graph_profile(&mover, "fabrikam-graph", &source_server, &source).await;
    let id = mover
        .create_move(
            json!({"sourceGraph": "fabrikam-graph", "targetTenantId": target,
                   "path": "keep-source", "usersCsv": "adele@fabrikam.com,adele@contoso.com\n"}),
        )
        .await;
    let plan_path = format!("/v1/moves/{id}/plan");
    let (status, p) = mover.get(&plan_path, OPERATOR).await;
    assert_eq!(
        (status.as_u16(), &p["runnable"]),
        (200, &json!(true)),
        "{p}"
    );

    // Rotated in the source tenant: the profile's secret and its cached token stop working.
    let rotated: Value = serde_json::from_str(&cli(
        &source_server,
        &[
            "app",
            "rotate-secret",
            "--tenant",
            &source,
            &client_id,
            "--json",
        ],
    ))
    .unwrap();
    let new_secret = rotated["clientSecret"].as_str().unwrap();
    let (status, p) = mover.get(&plan_path, OPERATOR).await;
    assert_eq!(status.as_u16(), 502, "the old secret still worked: {p}");
    assert_eq!(p["code"], "TenantUnreachable", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("invalid_client"),
        "Graph's reason: {detail}"
    );
    assert!(!detail.contains(new_secret), "{detail}");

    let secret_file = mover.dir.path().join("rotated.secret");
    std::fs::write(&secret_file, new_secret).unwrap();
    let updated = cli(
        &mover,
        &[
            "profile",
            "update",
            "--name",
            "fabrikam-graph",
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(!updated.contains(new_secret), "the secret is never shown");
    let (status, p) = mover.get(&plan_path, OPERATOR).await;
    assert_eq!(
        (status.as_u16(), &p["runnable"]),
        (200, &json!(true)),
        "{p}"
    );

    // A user name and password are not a graph profile's credential; the refusal says what is.
    let (status, refused) = mover
        .call(
            Method::PUT,
            "/v1/connectionProfiles/fabrikam-graph",
            OPERATOR,
            Some(json!({"username": "x", "password": "y"})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["code"], "ProfileKindNotUpdatable", "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("clientSecret"),
        "{refused}"
    );
}
