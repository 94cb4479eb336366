//! The admin center's server-side guards, over plain HTTP (no browser): sessions, CSRF, roles,
//! tenant isolation and bad input. Whatever a page hides, the server must refuse on its own.

mod support;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect::Policy, StatusCode};
use support::{Server, OPERATOR};
use tenantry_ledger::role::Role;

/// A browser stand-in: one cookie, no redirects followed.
struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookie: String::new(),
        }
    }

    fn keep_cookie(&mut self, r: &reqwest::Response) {
        if let Some(c) = r.headers().get(SET_COOKIE) {
            let c = c.to_str().unwrap();
            assert!(
                c.contains("HttpOnly") && c.contains("SameSite=Strict"),
                "{c}"
            );
            self.cookie = c.split(';').next().unwrap().to_string();
        }
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        self.keep_cookie(&r);
        let status = r.status();
        (status, r.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookie(&r);
        r
    }

    async fn sign_in(&mut self, token: &str) {
        let (_, html) = self.get("/signin").await;
        let csrf = csrf_of(&html);
        let r = self
            .post("/signin", &[("csrf", &csrf), ("token", token)])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in");
    }

    async fn csrf(&mut self, path: &str) -> String {
        let (status, html) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        csrf_of(&html)
    }
}

async fn tenant_token(server: &Server, tenant: tenantry_ledger::TenantId, role: Role) -> String {
    let token = tenantry_api::auth::new_token("tnt");
    server
        .app
        .store
        .create_token(
            tenant,
            role,
            tenantry_api::auth::hash_token(&token),
            "test".into(),
            server.app.clock.now(),
        )
        .await
        .unwrap();
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_what_the_pages_hide() {
    let server = Server::start().await;
    let store = &server.app.store;
    let now = server.app.clock.now();
    let contoso = store
        .create_tenant(
            "Contoso".into(),
            "contoso.onmicrosoft.com".into(),
            "test".into(),
            now,
        )
        .await
        .unwrap();
    let fabrikam = store
        .create_tenant(
            "Fabrikam".into(),
            "fabrikam.onmicrosoft.com".into(),
            "test".into(),
            now,
        )
        .await
        .unwrap();
    let products = format!("/tenants/{}/products", contoso.id);

    // Signed out: pages lead to sign-in; a wrong token is refused with a readable message.
    let mut anon = Client::new(&server.base);
    let r = anon
        .http
        .get(format!("{}{products}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/signin");
    let (_, html) = anon.get("/signin").await;
    let csrf = csrf_of(&html);
    let r = anon
        .post("/signin", &[("csrf", &csrf), ("token", "op_wrong")])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("That token is not valid"));
    // Sign-in without the form's CSRF token is refused too.
    let r = anon.post("/signin", &[("token", OPERATOR)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A Global reader: no buy form, and a forged POST is refused by the server (403).
    let reader = tenant_token(&server, contoso.id, Role::GlobalReader).await;
    let mut c = Client::new(&server.base);
    c.sign_in(&reader).await;
    let (status, html) = c.get(&products).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("id=\"buy\"") && html.contains("billing-readonly"));
    let csrf = csrf_of(&html);
    let sku = "6fd2c87f-b296-42f0-b197-1e91e994b900"; // ENTERPRISEPACK
    let r = c
        .post(
            &products,
            &[("csrf", &csrf), ("sku", sku), ("quantity", "5")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("the GlobalReader role cannot buy"));
    // Another tenant does not exist for this principal; the operator's pages are closed.
    let (status, _) = c.get(&format!("/tenants/{}/products", fabrikam.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c.get("/tenants").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A Billing admin: a POST without the CSRF token, or with another one, is refused.
    let billing = tenant_token(&server, contoso.id, Role::BillingAdmin).await;
    let mut c = Client::new(&server.base);
    c.sign_in(&billing).await;
    let csrf = c.csrf(&products).await;
    let r = c.post(&products, &[("sku", sku), ("quantity", "5")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(
            &products,
            &[("csrf", "forged"), ("sku", sku), ("quantity", "5")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        store
            .list_subscriptions(contoso.id, Default::default())
            .await
            .unwrap()
            .items
            .len(),
        0
    );

    // Bad input never panics and is explained next to the form.
    for (quantity, expect) in [
        ("abc", "whole number"),
        ("0", "whole number"),
        ("99999999999", "whole number"),
        ("2000000", "between 1 and"),
    ] {
        let r = c
            .post(
                &products,
                &[("csrf", &csrf), ("sku", sku), ("quantity", quantity)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{quantity}");
        assert!(r.text().await.unwrap().contains(expect), "{quantity}");
    }
    let r = c
        .post(
            &products,
            &[("csrf", &csrf), ("sku", "not-a-sku"), ("quantity", "1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = c
        .http
        .post(format!("{}{products}", server.base))
        .header(COOKIE, &c.cookie)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    for path in [
        format!("/tenants/{}/products/not-a-uuid", contoso.id),
        format!("/tenants/{}/users/not-a-uuid", contoso.id),
        "/tenants/not-a-tenant/products".to_string(),
        format!("/tenants/{}/no-such-page", contoso.id),
    ] {
        let (status, html) = c.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(html.contains("not found"), "{path}");
    }

    // A good purchase redirects (Post/Redirect/Get) and shows what it cost.
    let r = c
        .post(
            &products,
            &[("csrf", &csrf), ("sku", sku), ("quantity", "3")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.get(&products).await;
    assert!(html.contains("Bought 3 licence(s)"), "{html}");
    // A trial: its seats are fixed and it can be extended only near its end; both refusals are
    // the ledger's, shown next to the form.
    let r = c
        .post(
            &products,
            &[
                ("csrf", &csrf),
                ("sku", sku),
                ("quantity", "2"),
                ("trial", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let trial = store
        .list_subscriptions(contoso.id, Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.is_trial)
        .unwrap();
    let sub = format!("{products}/{}", trial.id);
    let (_, html) = c.get(&sub).await;
    assert!(html.contains("id=\"extend-trial\"") && !html.contains("id=\"add\""));
    let r = c
        .post(&format!("{sub}/extendTrial"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("within 15 days of its end"));

    // htmx requests get their refusals with status 200 (htmx swaps only 2xx), the real status
    // in a header.
    let r = c
        .http
        .post(format!("{}{products}", server.base))
        .header(COOKIE, &c.cookie)
        .header("hx-request", "true")
        .header("x-csrf-token", &csrf)
        .form(&[("sku", sku), ("quantity", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-tenantry-status"], "422");

    // Sign-out ends the session on the server, not only in the browser.
    let old_cookie = c.cookie.clone();
    let r = c.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    c.cookie = old_cookie;
    let (status, _) = c.get(&products).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Deleting a user needs the confirmation box, and the User admin role (or Global admin).
    let user = store
        .create_user(
            contoso.id,
            tenantry_store::NewUser {
                user_principal_name: "gone@contoso.com".into(),
                display_name: "Gone".into(),
                usage_location: None,
                account_enabled: true,
            },
            "test".into(),
            now,
        )
        .await
        .unwrap();
    let delete = format!("/tenants/{}/users/{}/delete", contoso.id, user.id);
    let mut billing_admin = Client::new(&server.base);
    billing_admin.sign_in(&billing).await;
    let csrf = billing_admin.csrf(&products).await;
    let r = billing_admin
        .post(&delete, &[("csrf", &csrf), ("confirm", "1")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let admin = tenant_token(&server, contoso.id, Role::UserAdmin).await;
    let mut c = Client::new(&server.base);
    c.sign_in(&admin).await;
    let csrf = c.csrf(&products).await;
    let r = c.post(&delete, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("Tick the box to confirm"));
    let r = c.post(&delete, &[("csrf", &csrf), ("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(store.get_user(contoso.id, user.id).await.is_err());

    // The API is still there beside the pages.
    let r = anon
        .http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
