//! The admin center in a real headless Chromium, driven over WebDriver: the licence lifecycle an
//! administrator goes through, with a screenshot of each page in the test output folder and no
//! browser console error allowed.

mod support;

use std::time::{Duration, Instant};
use support::webdriver::Browser;
use support::{Server, OPERATOR};

const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";

async fn wait_until_gone(b: &Browser, css: &str, needle: &str) {
    let started = Instant::now();
    while b.text(css).await.contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{css} still contains {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_user(b: &Browser, upn: &str, name: &str) {
    b.fill("#new-upn", upn).await;
    b.fill("#new-name", name).await;
    b.fill("#new-location", "US").await;
    b.click("#create-user").await;
    b.wait_text("#flash", &format!("Added {name}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_buys_assigns_removes_cancels_and_reactivates_in_chromium() {
    let server = Server::start().await;
    let mut b = Browser::start().await;
    let base = server.base.clone();

    // Sign in with the operator token, from the keyboard.
    b.goto(&format!("{base}/")).await;
    assert!(
        b.url().await.ends_with("/signin"),
        "signed out: / leads to sign-in"
    );
    b.find("label[for=token]").await;
    // The console check itself works: an error logged now is seen (then forgotten).
    b.script(
        "console.error('tenantry console check')",
        serde_json::json!([]),
    )
    .await;
    b.collect_console().await;
    assert!(
        b.console_errors
            .iter()
            .any(|e| e.contains("tenantry console check")),
        "the browser console log cannot be read, so console errors would go unnoticed"
    );
    b.console_errors.clear();
    // From the keyboard: the first Tab reaches the skip link, which leads to the content.
    b.press(TAB).await;
    let focused = b
        .script(
            "return document.activeElement.className;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(
        focused,
        serde_json::json!("skip"),
        "Tab first reaches the skip link"
    );
    b.screenshot("01-signin.png").await;
    b.type_in("#token", &format!("{OPERATOR}{ENTER}")).await;
    b.wait_text("#signed-in-as", "Platform operator").await;
    assert!(b.url().await.ends_with("/tenants"));

    // Tenants: create one, open it.
    b.fill("#tenant-name", "Contoso").await;
    b.fill("#tenant-domain", "contoso.onmicrosoft.com").await;
    b.click("#create-tenant").await;
    b.wait_text("#flash", "Tenant Contoso").await;
    b.screenshot("02-tenants.png").await;
    b.click("#main table a").await;
    b.wait_text("h1", "Your products").await;

    // Billing: buy two licences of Office 365 E3.
    b.select("#buy-sku", "ENTERPRISEPACK").await;
    b.fill("#buy-quantity", "2").await;
    b.click("#buy").await;
    b.wait_text("#flash", "Bought 2 licence(s)").await;
    let table = b.text("#subscriptions").await;
    assert!(
        table.contains("Office 365 E3") && table.contains("Renews"),
        "{table}"
    );
    b.screenshot("03-products-bought.png").await;

    // Users: three people with a usage location; search finds one.
    b.click("nav a[href$='/users']").await;
    b.wait_text("h1", "Users").await;
    create_user(&b, "adele@contoso.com", "Adele Vance").await;
    create_user(&b, "bob@contoso.com", "Bob Kelly").await;
    create_user(&b, "cara@contoso.com", "Cara Diaz").await;
    b.type_in("#user-search", "adele").await;
    wait_until_gone(&b, "#user-results", "Bob Kelly").await;
    assert!(b.text("#user-results").await.contains("Adele Vance"));
    b.screenshot("04-users-search.png").await;

    // Licences: assign until the seats run out; the third assignment is refused, clearly.
    b.click("nav a[href$='/licenses']").await;
    b.wait_text("#licence-counts", "Office 365 E3").await;
    b.click("#licence-counts a").await;
    b.wait_text("#sku-available", "2").await;
    b.select("#assign-user", "Adele").await;
    b.click("fieldset input[type=checkbox]").await; // turn one service plan off
    b.click("#assign").await;
    b.wait_text("#flash", "Assigned ENTERPRISEPACK to adele@contoso.com")
        .await;
    b.select("#assign-user", "Bob").await;
    b.click("#assign").await;
    b.wait_text("#flash", "Assigned ENTERPRISEPACK to bob@contoso.com")
        .await;
    assert_eq!(b.text("#sku-available").await, "0");
    // htmx is loaded (the CSP allows it) and swaps the form's answer in place: a marker set on
    // the window now survives, which a full page load would wipe.
    assert_eq!(
        b.script(
            "window.tenantryMarker = 7; return typeof window.htmx;",
            serde_json::json!([])
        )
        .await,
        serde_json::json!("object")
    );
    b.select("#assign-user", "Cara").await;
    b.click("#assign").await;
    let refusal = b.wait_text("#assign-error", "no free licence").await;
    assert!(refusal.contains("2 of 2"), "{refusal}");
    let holders = b.text("#holders").await;
    assert!(holders.contains("adele@contoso.com") && !holders.contains("cara@"));
    assert_eq!(
        b.script("return window.tenantryMarker;", serde_json::json!([]))
            .await,
        serde_json::json!(7)
    );
    b.screenshot("05-licences-no-free-seat.png").await;

    // A user's page: the licence with its service plan turned off; a bad usage location is
    // refused next to the form.
    b.click_link("Adele Vance").await;
    b.wait_text("#user-licences-h", "Licences").await;
    let off = b
        .script(
            "return document.querySelectorAll('.licence input[name=disabled]:checked').length;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(off, serde_json::json!(1), "one service plan is off");
    b.fill("#edit-location", "1A").await;
    b.click("#save-user").await;
    b.wait_text("#edit-error", "two-letter").await;
    let kept = b
        .script(
            "return document.querySelector('#edit-location').value;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(
        kept,
        serde_json::json!("1A"),
        "the form keeps what was typed"
    );
    b.screenshot("05b-user-invalid-location.png").await;

    // The subscription: removing below the assigned count is refused with the reason.
    b.click("nav a[href$='/products']").await;
    b.click("#subscriptions a").await;
    b.wait_text("#refund-explanation", "7 days").await;
    b.fill("#remove-count", "1").await;
    b.click("#remove").await;
    let refusal = b.wait_text("#remove-error", "assigned").await;
    assert!(refusal.contains("unassign 1"), "{refusal}");
    assert_eq!(b.text("#sub-quantity").await, "2");
    b.screenshot("06-remove-below-assigned.png").await;

    // Add one, then remove one: inside the refund window it goes at once.
    b.fill("#add-count", "1").await;
    b.click("#add").await;
    b.wait_text("#flash", "Added 1 licence(s): 3 in total")
        .await;
    b.fill("#remove-count", "1").await;
    b.click("#remove").await;
    b.wait_text("#flash", "Removed 1 licence(s) now").await;
    assert_eq!(b.text("#sub-quantity").await, "2");

    // Cancel (inside the refund window: disabled now), then reactivate.
    b.click("#cancel").await;
    b.wait_text("#flash", "Cancelled").await;
    assert_eq!(b.text("#sub-status").await, "Disabled");
    b.screenshot("07-cancelled.png").await;
    b.click("#reactivate").await;
    b.wait_text("#flash", "Reactivated").await;
    assert_eq!(b.text("#sub-status").await, "Active");
    b.screenshot("08-reactivated.png").await;

    // Unassign from the product's licence page: the seat is free again.
    b.click("nav a[href$='/licenses']").await;
    b.click("#licence-counts a").await;
    let clicked = b
        .script(
            "const row = [...document.querySelectorAll('#holders tr')].find(r => r.textContent.includes('bob@contoso.com'));
             row.querySelector('button').click(); return true;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(clicked, serde_json::json!(true));
    b.wait_text("#flash", "Unassigned ENTERPRISEPACK from bob@contoso.com")
        .await;
    assert_eq!(b.text("#sku-available").await, "1");
    b.click("nav a[href$='/products']").await;
    b.click("#subscriptions a").await;

    // Transfer: explained as impossible, pointing to a tenant move.
    b.click("#transfer").await;
    let why = b
        .wait_text("#transfer-refused", "cannot be transferred")
        .await;
    assert!(why.contains("Plan a tenant move instead"), "{why}");
    b.screenshot("09-transfer-refused.png").await;
    // The operator is taken to the move form, with this tenant as the source.
    b.click("#plan-move").await;
    b.wait_text("h1", "Plan a tenant move").await;
    let url = b.url().await;
    assert!(url.contains("/moves/new?source="), "{url}");
    b.screenshot("10-moves.png").await;
    let tenant = url.rsplit('=').next().unwrap().to_string();
    b.goto(&format!("{base}/tenants/{tenant}/products")).await;

    // A volume-licensing subscription (recorded by the operator) is read-only, with guidance.
    b.click("nav a[href$='/products']").await;
    b.select("#buy-sku", "SPE_E3").await;
    b.select("#buy-channel", "Volume").await;
    b.fill("#buy-quantity", "5").await;
    b.click("#buy").await;
    b.wait_text("#flash", "Bought 5 licence(s)").await;
    let href = b
        .script(
            "return [...document.querySelectorAll('#subscriptions tr')]
               .find(r => r.textContent.includes('Volume licensing')).querySelector('a').href;",
            serde_json::json!([]),
        )
        .await;
    b.goto(href.as_str().unwrap()).await;
    b.wait_text("#volume-guidance", "Volume Licensing Service Center")
        .await;
    assert!(b.try_find("#cancel").await.is_none() && b.try_find("#remove").await.is_none());
    b.screenshot("11-volume-read-only.png").await;

    // Audit log, filtered by action.
    b.click("nav a[href$='/audit']").await;
    b.select("#audit-action", "subscription.cancelled").await;
    b.click("#filter").await;
    wait_until_gone(&b, "#audit-results", "user.created").await;
    let cancelled = b.text("#audit-results").await;
    assert!(cancelled.contains("subscription.cancelled"), "{cancelled}");
    // The change reads as a change, with the product's name; the raw JSON is one click away.
    assert!(
        cancelled.contains("Status Active → Disabled") && cancelled.contains(" subscription"),
        "{cancelled}"
    );
    // Following a target shows that object's whole history.
    b.click("#audit-results td a").await;
    b.wait_text("#audit-results", "subscription.reactivated")
        .await;
    let history = b.text("#audit-results").await;
    assert!(
        history.contains("subscription.created") && !history.contains("user.created"),
        "{history}"
    );
    b.screenshot("12-audit-filtered.png").await;

    // A narrow screen: nothing wider than the viewport.
    b.set_window(390, 844).await;
    b.click("nav a[href$='/products']").await;
    b.wait_text("h1", "Your products").await;
    let fits = b
        .script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(
        fits,
        serde_json::json!(true),
        "the page scrolls sideways at 390 px"
    );
    b.screenshot("13-narrow-products.png").await;
    b.set_window(1280, 1000).await;

    // Role-aware: a Global reader token sees no buy form, and is told why.
    b.click("nav a[href$='/tokens']").await;
    b.select("#token-role", "Global reader").await;
    b.click("#issue-token").await;
    let reader_token = b.text("#token-value").await;
    assert!(reader_token.starts_with("tnt_"), "{reader_token}");
    b.click("#sign-out").await;
    b.wait_text("#main", "You are signed out").await;
    b.type_in("#token", &reader_token).await;
    b.click("#sign-in").await;
    b.wait_text("#signed-in-as", "Global reader").await;
    b.wait_text("#billing-readonly", "cannot buy").await;
    assert!(b.try_find("#buy").await.is_none());
    b.screenshot("14-reader-products.png").await;

    // Sign out.
    b.click("#sign-out").await;
    b.wait_text("#main", "You are signed out").await;
    b.screenshot("15-signed-out.png").await;
    b.goto(&format!("{base}/tenants")).await;
    assert!(b.url().await.ends_with("/signin"), "the session is gone");

    b.collect_console().await;
    let errors = std::mem::take(&mut b.console_errors);
    b.quit().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}
