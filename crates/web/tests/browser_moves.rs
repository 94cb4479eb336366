//! Tenant moves in a real headless Chromium: a move whose plan has a blocker is refused with
//! the blocker shown; a ledger-only move (no mail servers, no libraries) is planned from the
//! transfer refusal, runs while the page polls its progress, completes and has a report. A
//! screenshot of each page, and no browser console error allowed.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::webdriver::Browser;
use support::{Server, OPERATOR};
use tenantry_app::{Caller, NewUser, Order, SkuRef};
use tenantry_ledger::assignment::AddLicense;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::SubscriptionId;

const ENTER: &str = "\u{E007}";
const E3: &str = "ENTERPRISEPACK";

async fn buy(server: &Server, tenant: &Tenant, quantity: u32) -> SubscriptionId {
    let order = Order::new(tenant.id, SkuRef::PartNumber(E3.into()), quantity);
    let (sub, _) = server
        .app
        .ledger
        .buy(&Caller::system("test"), order, server.app.clock.now())
        .await
        .unwrap();
    sub.id
}

async fn user(server: &Server, tenant: &Tenant, upn: &str, licensed: bool) {
    let store = &server.app.store;
    let now = server.app.clock.now();
    let u = server
        .app
        .ledger
        .create_user(
            &Caller::system("test"),
            tenant.id,
            NewUser {
                user_principal_name: upn.into(),
                display_name: upn.split('@').next().unwrap().into(),
                usage_location: Some("US".into()),
                account_enabled: true,
            },
            now,
        )
        .await
        .unwrap();
    if licensed {
        let sku = store
            .list_skus()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.sku_part_number == E3)
            .unwrap();
        server
            .app
            .ledger
            .assign_licenses(
                &Caller::system("test"),
                tenant.id,
                u.id,
                vec![AddLicense {
                    sku_id: sku.sku_id,
                    disabled_plans: vec![],
                }],
                vec![],
                now,
            )
            .await
            .unwrap();
    }
}

/// Waits until an element matching `css` exists (pages reload meanwhile).
async fn wait_for(b: &Browser, css: &str, within: Duration) {
    let started = Instant::now();
    while b.try_find(css).await.is_none() {
        assert!(
            started.elapsed() < within,
            "no {css} on {} after {within:?}",
            b.url().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_plans_runs_and_reports_tenant_moves_in_chromium() {
    let server = Server::start().await;
    let store = &server.app.store;
    let now = server.app.clock.now();
    // Fabrikam moves five of its six licensed users to Contoso, which has two free licences
    // and one user already.
    let fabrikam = server
        .app
        .ledger
        .create_tenant(
            &Caller::system("test"),
            "Fabrikam",
            "fabrikam.onmicrosoft.com",
            now,
        )
        .await
        .unwrap();
    let contoso = server
        .app
        .ledger
        .create_tenant(
            &Caller::system("test"),
            "Contoso",
            "contoso.onmicrosoft.com",
            now,
        )
        .await
        .unwrap();
    let source_sub = buy(&server, &fabrikam, 10).await;
    buy(&server, &contoso, 2).await;
    for alias in ["adele", "bob", "cara", "dan", "eve", "stays"] {
        user(&server, &fabrikam, &format!("{alias}@fabrikam.com"), true).await;
    }
    user(&server, &contoso, "taken@contoso.com", false).await;

    let mut b = Browser::start().await;
    let base = server.base.clone();
    b.goto(&format!("{base}/signin")).await;
    b.type_in("#token", &format!("{OPERATOR}{ENTER}")).await;
    b.wait_text("#signed-in-as", "Platform operator").await;

    // A move onto a name the target already has: the plan shows the blocker first, and Run is
    // refused with the list of blockers.
    b.click("nav a[href='/moves']").await;
    b.wait_text("h1", "Tenant moves").await;
    b.click("#new-move").await;
    b.wait_text("h1", "Plan a tenant move").await;
    b.select("#move-source", "Fabrikam").await;
    b.select("#move-target", "Contoso").await;
    b.fill("#move-users", "adele@fabrikam.com,taken@contoso.com")
        .await;
    b.click("#create-move").await;
    b.wait_text("#flash", "Move created").await;
    let blockers = b.wait_text("#blockers", "TargetUpnExists").await;
    assert!(blockers.contains("taken@contoso.com"), "{blockers}");
    b.find("#not-runnable").await;
    b.click("#run-move").await;
    let refused = b.wait_text("#run-error", "Not started").await;
    assert!(refused.contains("TargetUpnExists"), "{refused}");
    assert_eq!(b.text("#move-state").await, "Draft");
    b.screenshot("20-move-blockers.png").await;
    b.click("#cancel-move").await;
    b.wait_text("#flash", "Cancelled").await;
    assert_eq!(b.text("#move-state").await, "Cancelled");
    assert!(b.try_find("#run-move").await.is_none());

    // The transfer refusal leads to the move form, with this tenant as the source.
    b.goto(&format!(
        "{base}/tenants/{}/products/{source_sub}",
        fabrikam.id
    ))
    .await;
    b.click("#transfer").await;
    b.wait_text("#transfer-refused", "cannot be transferred")
        .await;
    b.click("#plan-move").await;
    b.wait_text("h1", "Plan a tenant move").await;
    let chosen = b
        .script(
            "return document.querySelector('#move-source').value;",
            json!([]),
        )
        .await;
    assert_eq!(chosen, json!(fabrikam.id.to_string()), "source pre-filled");
    b.select("#move-target", "Contoso").await;
    b.click("#path-keep").await;
    let csv: String = ["adele", "bob", "cara", "dan", "eve"]
        .iter()
        .map(|a| format!("{a}@fabrikam.com,{a}@contoso.com\n"))
        .collect();
    b.fill("#move-users", &csv).await;
    assert!(
        b.script(
            "return document.querySelector('#allow-purchase').checked;",
            json!([])
        )
        .await
            == json!(true),
        "buying is allowed by default"
    );
    b.click("#create-move").await;
    b.wait_text("#flash", "Move created").await;

    // The plan: five users; three licences to buy in the target (two are free); the source
    // keeps one licence (for the user who stays), the rest refunded (bought today).
    b.find("#no-blockers").await;
    let users = b.text("#plan-users").await;
    assert!(
        users.contains("Users (5)") && users.contains("eve@contoso.com"),
        "{users}"
    );
    let licences = b.text("#plan-licences").await;
    assert!(
        licences.contains("Add licences to subscription") && licences.contains("2 → 5"),
        "{licences}"
    );
    let charge = b.text("#charge-total").await;
    assert!(
        charge.contains('.') && charge != "0.00",
        "a charge in the target: {charge}"
    );
    let source = b.text("#plan-source").await;
    assert!(source.contains("Reduce from 10 to 1"), "{source}");
    let steps = b.text("#plan-steps").await;
    assert!(
        steps.starts_with("Target licences ENTERPRISEPACK") && steps.ends_with("Write the report"),
        "{steps}"
    );
    // The shot shows the money: licences bought in the target, the source's reduction, overlap.
    b.script(
        "document.querySelector('#plan-h').scrollIntoView();",
        json!([]),
    )
    .await;
    b.screenshot("17-move-plan.png").await;

    // Run: no worker yet, so the page shows the move running and polls its progress.
    b.click("#run-move").await;
    b.wait_text("#flash", "Running").await;
    let polling = b
        .script(
            "const p = document.querySelector('#move-progress'); return p && p.getAttribute('hx-trigger');",
            json!([]),
        )
        .await;
    assert_eq!(polling, json!("every 2s"));
    let count = b.text("#progress-count").await;
    assert!(count.starts_with("0 of "), "{count}");
    b.find("#pause-move").await;
    b.screenshot("18-move-running.png").await;

    // The worker starts: the fragment follows the steps, and once the move is over the page
    // reloads with its final state (the polling stops).
    server.start_move_worker();
    wait_for(&b, "#move-state.move-Completed", Duration::from_secs(60)).await;
    let count = b.text("#progress-count").await;
    let (done, total) = count
        .split_once(" of ")
        .map(|(d, rest)| (d.to_string(), rest.split(' ').next().unwrap().to_string()))
        .unwrap();
    assert_eq!(done, total, "{count}");
    assert!(b
        .script(
            "return document.querySelector('#move-progress').hasAttribute('hx-trigger');",
            json!([])
        )
        .await
        .eq(&json!(false)));
    assert!(b.try_find("#run-move").await.is_none() && b.try_find("#pause-move").await.is_none());
    b.screenshot("18-move-completed.png").await;
    // A narrow screen: the plan's wide tables scroll inside their frame, the page does not.
    b.set_window(390, 844).await;
    let fits = b
        .script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1;",
            json!([]),
        )
        .await;
    assert_eq!(
        fits,
        json!(true),
        "the move page scrolls sideways at 390 px"
    );
    b.set_window(1280, 1000).await;

    // The report, and its downloads served with the session.
    b.click("#report-link").await;
    b.wait_text("#report-state", "Completed").await;
    let report = b.text("#report-steps").await;
    assert!(
        report.contains("targetUser") && report.contains("adele@contoso.com"),
        "{report}"
    );
    assert!(!report.contains("Failed"), "{report}");
    b.screenshot("19-move-report.png").await;
    let csv = b
        .script(
            "const x = new XMLHttpRequest(); x.open('GET', document.querySelector('#report-csv').href, false); x.send();
             return [x.status, x.getResponseHeader('content-type'), x.responseText];",
            json!([]),
        )
        .await;
    assert_eq!(csv[0], json!(200));
    assert!(csv[1].as_str().unwrap().starts_with("text/csv"));
    let csv = csv[2].as_str().unwrap();
    assert!(
        csv.starts_with("kind,subject,state") && csv.contains("targetUser,adele@contoso.com,Done"),
        "{csv}"
    );
    let report_json = b
        .script(
            "const x = new XMLHttpRequest(); x.open('GET', document.querySelector('#report-json').href, false); x.send();
             return JSON.parse(x.responseText);",
            json!([]),
        )
        .await;
    assert_eq!(report_json["move"]["state"], "Completed");
    assert_eq!(
        report_json["summary"]["done"],
        report_json["summary"]["steps"]
    );

    // The ledger agrees: five new users in the target, all licensed from five seats.
    let target_users = store
        .list_users(contoso.id, None, Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(target_users.len(), 6, "taken@ and the five moved");

    // The list of moves, and the source tenant's own Moves page.
    b.click("nav a[href='/moves']").await;
    let list = b.wait_text("#moves", "Completed").await;
    assert!(
        list.contains("Cancelled") && list.contains("Fabrikam → Contoso"),
        "{list}"
    );
    b.screenshot("16-moves-list.png").await;
    b.goto(&format!("{base}/tenants/{}/moves", fabrikam.id))
        .await;
    b.wait_text("h1", "Moves of Fabrikam").await;
    assert!(b.text("#moves").await.contains("Completed"));

    // Connection profiles: saved, listed without the password.
    b.click("#profiles-link").await;
    b.fill("#profile-name", "contoso-imap").await;
    b.fill("#profile-username", "mailadmin").await;
    b.fill("#profile-password", "pw-never-shown").await;
    b.click("#create-profile").await;
    b.wait_text("#flash", "contoso-imap saved").await;
    let page = b
        .script("return document.documentElement.outerHTML;", json!([]))
        .await;
    assert!(!page.as_str().unwrap().contains("pw-never-shown"));
    assert!(b.text("#profiles").await.contains("mailadmin"));
    b.screenshot("21-move-profiles.png").await;

    b.collect_console().await;
    let errors = std::mem::take(&mut b.console_errors);
    b.quit().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}
