//! A whole tenant move against real servers: two Dovecot instances (the source with '/' and
//! "Sent", the target Exchange-like with '.' and "Sent Items", master users on both), two Apache
//! mod_dav libraries, and `tenantry serve` on SQLite, killed with SIGKILL in the middle of the
//! mailbox migration and restarted. Afterwards: seat counts exact on both sides, mail and files
//! identical with no duplicates, the audit log complete.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::mail::{assert_mailboxes_identical, dovecot, seed_mail};
use support::*;
use tenantry_testkit::apache::Apache;
use tenantry_testkit::faults::{kind, record};
use tenantry_testkit::tree::{fingerprint, sample_tree};
use tenantry_testkit::{PASSWORD as DAV_PASSWORD, USER as DAV_USER};

const USERS: [&str; 5] = ["adele", "bob", "cara", "dan", "eve"];

async fn wait_state(s: &Server, id: &str, until: impl Fn(&Value) -> bool, what: &str) -> Value {
    s.wait_move(id, what, Duration::from_secs(240), until).await
}

/// Both tenants (the five users licensed in the source, one seat in the target) and the four
/// connection profiles.
async fn tenants_and_profiles(s: &Server) -> (String, String) {
    let tenants = s.move_tenants(&USERS, 8, 1).await;
    s.profiles(&MAIL_PROFILES).await;
    s.profiles(&[
        ("src-dav", "webdav", DAV_USER, DAV_PASSWORD),
        ("dst-dav", "webdav", DAV_USER, DAV_PASSWORD),
    ])
    .await;
    tenants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retire_source_survives_kill_9_and_ends_exact() {
    whole_move("retire-source").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_source_survives_kill_9_and_ends_exact() {
    whole_move("keep-source").await;
}

async fn whole_move(path: &str) {
    let source_mail = dovecot(&USERS, "fabrikam.com", ("srcadmin", "srcadminpw"), false);
    let target_mail = dovecot(&USERS, "contoso.com", ("admin", "adminpw"), true);
    let messages = seed_mail(&source_mail, &USERS, "fabrikam.com").await;
    let source_dav = Apache::start();
    let target_dav = Apache::start();
    sample_tree(&source_dav.root());
    source_dav.fix_owner();

    let mut s = Server::start();
    let (source, target) = tenants_and_profiles(&s).await;
    let plain = |url: String| url.replace(&format!("{DAV_USER}@"), "");
    let id = s
        .create_move(json!({
            "sourceTenantId": source, "targetTenantId": target, "path": path,
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "sourceMail": {"url": source_mail.host_url(), "profile": "src-imap"},
            "targetMail": {"url": target_mail.host_url(), "profile": "dst-imap"},
            "libraries": [{"source": plain(source_dav.url()), "target": plain(target_dav.url()), "sourceProfile": "src-dav", "targetProfile": "dst-dav"}],
        }))
        .await;

    let plan = s.runnable_plan(&id).await;
    assert_eq!(plan["licences"][0]["seatsToBuy"], 4);
    let first_mailbox = step_position(&plan, "migrateMailbox");

    s.run_move(&id).await;
    // Kill the server once the first mailbox is done and the next one is under way.
    let at_kill = wait_state(
        &s,
        &id,
        |m| m["progress"]["done"].as_u64().unwrap_or(0) > first_mailbox as u64,
        "a mailbox step",
    )
    .await;
    s.kill();
    assert_eq!(
        at_kill["state"], "Running",
        "killed in the middle of the run"
    );
    s.restart();
    wait_state(
        &s,
        &id,
        |m| m["state"] == "Completed",
        "completion after the restart",
    )
    .await;

    // Licences: exactly what the five users need in the target, the source cancelled.
    let target_e3 = s.subscribed(&target, "ENTERPRISEPACK").await;
    assert_eq!(
        (
            target_e3["prepaidUnits"]["enabled"].as_u64(),
            target_e3["consumedUnits"].as_u64()
        ),
        (Some(5), Some(5))
    );
    let (_, target_subs) = s
        .get(&format!("/v1/tenants/{target}/subscriptions"), OPERATOR)
        .await;
    assert_eq!(
        target_subs["value"].as_array().unwrap().len(),
        1,
        "seats added to the existing subscription, no second purchase"
    );
    let (_, users) = s
        .get(&format!("/v1/tenants/{target}/users"), OPERATOR)
        .await;
    assert_eq!(
        users["value"].as_array().unwrap().len(),
        5,
        "no user created twice"
    );
    let (_, source_subs) = s
        .get(&format!("/v1/tenants/{source}/subscriptions"), OPERATOR)
        .await;
    // Bought today, so inside the refund window: retire cancels at once; keep finds no seat still
    // in use once the movers are unassigned, so it cancels at once too.
    assert_eq!(source_subs["value"][0]["status"], "Disabled");
    assert_eq!(
        s.subscribed(&source, "ENTERPRISEPACK").await["consumedUnits"],
        if path == "keep-source" { 0 } else { 5 }
    );

    // Mail: every mailbox identical (bodies, flags, dates, counts per folder: duplicates kept once each).
    let copied = assert_mailboxes_identical(
        &source_mail,
        &target_mail,
        &USERS,
        ("fabrikam.com", "contoso.com"),
    )
    .await;
    assert_eq!(copied, messages, "every message once, none twice");
    // Files: the same tree, byte for byte.
    let (a, b) = (
        fingerprint(&source_dav.root()),
        fingerprint(&target_dav.root()),
    );
    assert_eq!(
        a.iter()
            .map(|(k, v)| (k.clone(), v.is_dir, v.sha256.clone()))
            .collect::<Vec<_>>(),
        b.iter()
            .map(|(k, v)| (k.clone(), v.is_dir, v.sha256.clone()))
            .collect::<Vec<_>>()
    );

    // The audit log holds every change the move made.
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
    assert_eq!(actions.iter().filter(|a| **a == "user.created").count(), 5);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "subscription.quantityChanged")
            .count(),
        1
    );
    assert!(actions.contains(&"move.completed"));
    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    assert_eq!(report["summary"]["done"], report["summary"]["steps"]);
    record(
        kind::FAULT,
        &format!("tenant move ({path}): server killed -9 mid-mailbox, restarted"),
        &format!(
            "5 users, {messages} messages, 1 library: exact seats, no second purchase or user"
        ),
        0,
    );
}

/// The target server's admin password changes in the middle of the run, so the connection
/// profile is now wrong: the next mail step's login is refused, a control login into a mailbox
/// the move already migrated is refused too, and the step fails after ONE attempt (retrying
/// would only risk locking the account), telling the operator to fix the connection profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_admin_login_fails_the_step_after_one_attempt() {
    let source_mail = dovecot(&USERS, "fabrikam.com", ("srcadmin", "srcadminpw"), false);
    let target_mail = dovecot(&USERS, "contoso.com", ("admin", "adminpw"), true);
    seed_mail(&source_mail, &USERS, "fabrikam.com").await;
    let s = Server::start();
    let (source, target) = tenants_and_profiles(&s).await;
    let id = s
        .create_move(json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "sourceMail": {"url": source_mail.host_url(), "profile": "src-imap"},
            "targetMail": {"url": target_mail.host_url(), "profile": "dst-imap"},
        }))
        .await;
    let plan = s.runnable_plan(&id).await;
    let first_mailbox = step_position(&plan, "migrateMailbox");
    s.run_move(&id).await;
    wait_state(
        &s,
        &id,
        |m| m["progress"]["done"].as_u64().unwrap_or(0) > first_mailbox as u64,
        "the first mailbox step",
    )
    .await;
    // Rotated on the server, not in the profile (a longer password: the file's size changes,
    // so Dovecot re-reads it even within the same second).
    std::fs::write(
        target_mail.dir.path().join("master-users"),
        "admin:{PLAIN}rotated-on-the-server\n",
    )
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(240);
    let failed = loop {
        let (_, m) = s.get(&format!("/v1/moves/{id}"), OPERATOR).await;
        if m["state"] == "Failed" {
            break m;
        }
        assert_ne!(
            m["state"], "Completed",
            "the move ignored the refused login: {m}"
        );
        assert!(Instant::now() < deadline, "the move did not fail: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let step = &failed["progress"]["current"];
    assert_eq!(step["state"], "Failed", "{failed}");
    assert_eq!(step["attempts"], 1, "not retried: {failed}");
    let error = step["error"].as_str().unwrap();
    assert!(error.contains("login refused"), "{error}");
    assert!(error.contains("fix the connection profile"), "{error}");
    for secret in ["adminpw", "rotated-on-the-server"] {
        assert!(!error.contains(secret), "{error}");
    }
    assert!(
        failed["progress"]["done"].as_u64().unwrap() > first_mailbox as u64,
        "{failed}"
    );

    // What the message says: fix the profile, resume — and the move completes.
    let (status, p) = s
        .call(
            Method::PUT,
            "/v1/connectionProfiles/dst-imap",
            OPERATOR,
            Some(json!({"username": "admin", "password": "rotated-on-the-server"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert!(!p.to_string().contains("rotated-on-the-server"), "{p}");
    let (status, m) = s
        .post(&format!("/v1/moves/{id}/resume"), OPERATOR, json!({}))
        .await;
    assert_eq!(status, 202, "{m}");
    wait_state(&s, &id, |m| m["state"] == "Completed", "completion").await;
    assert_problem(
        &s.call(
            Method::PUT,
            "/v1/connectionProfiles/no-such-profile",
            OPERATOR,
            Some(json!({"username": "admin", "password": "x"})),
        )
        .await,
        404,
        "NotFound",
    );
}
