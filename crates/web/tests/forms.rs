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

/// A form of owned values as `Client::post` takes it.
fn borrowed<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn tenant_token(server: &Server, tenant: tenantry_ledger::TenantId, role: Role) -> String {
    server
        .app
        .ledger
        .issue_token(
            &tenantry_app::Caller::system("test"),
            tenant,
            role.as_str(),
            server.app.clock.now(),
        )
        .await
        .unwrap()
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_what_the_pages_hide() {
    let server = Server::start().await;
    let store = &server.app.store;
    let now = server.app.clock.now();
    let contoso = server
        .app
        .ledger
        .create_tenant(
            &tenantry_app::Caller::system("test"),
            "Contoso",
            "contoso.onmicrosoft.com",
            now,
        )
        .await
        .unwrap();
    let fabrikam = server
        .app
        .ledger
        .create_tenant(
            &tenantry_app::Caller::system("test"),
            "Fabrikam",
            "fabrikam.onmicrosoft.com",
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
    let user = server
        .app
        .ledger
        .create_user(
            &tenantry_app::Caller::system("test"),
            contoso.id,
            tenantry_app::NewUser {
                user_principal_name: "gone@contoso.com".into(),
                display_name: "Gone".into(),
                usage_location: None,
                account_enabled: true,
            },
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_are_for_the_operator_only_and_every_action_needs_csrf() {
    use tenantry_moves::model::{MovePath, MoveSpec, UserMapping};
    use tenantry_store::moves::MoveState;

    let server = Server::start().await;
    let store = &server.app.store;
    let now = server.app.clock.now();
    let mut tenants = Vec::new();
    for (name, domain) in [
        ("Fabrikam", "fabrikam.onmicrosoft.com"),
        ("Contoso", "contoso.onmicrosoft.com"),
    ] {
        tenants.push(
            server
                .app
                .ledger
                .create_tenant(&tenantry_app::Caller::system("test"), name, domain, now)
                .await
                .unwrap(),
        );
    }
    let (fabrikam, contoso) = (&tenants[0], &tenants[1]);
    let spec = MoveSpec {
        source_tenant_id: fabrikam.id,
        target_tenant_id: contoso.id,
        path: MovePath::RetireSource,
        users: vec![UserMapping {
            source_upn: "adele@fabrikam.com".into(),
            target_upn: "adele@contoso.com".into(),
        }],
        domain_rewrite: None,
        allow_purchase: true,
        source_mail: None,
        target_mail: None,
        libraries: vec![],
        source_graph: None,
        target_graph: None,
        pim: Default::default(),
    };
    let m = tenantry_app::Ledger::new(store.clone())
        .create_move(spec, "test".into(), now)
        .await
        .unwrap();
    let id = m.id;

    // A tenant's Global admin: every moves page is a 403 that says who runs moves, and a forged
    // POST (with the session's own CSRF token) is refused too. Another tenant stays a 404.
    let admin = tenant_token(&server, contoso.id, Role::GlobalAdmin).await;
    let mut c = Client::new(&server.base);
    c.sign_in(&admin).await;
    let csrf = c.csrf(&format!("/tenants/{}/products", contoso.id)).await;
    for path in [
        "/moves".to_string(),
        "/moves/new".to_string(),
        "/moves/profiles".to_string(),
        format!("/moves/{id}"),
        format!("/moves/{id}/progress"),
        format!("/moves/{id}/report"),
        format!("/moves/{id}/report.json"),
        format!("/moves/{id}/report.csv"),
        format!("/tenants/{}/moves", contoso.id),
    ] {
        let (status, html) = c.get(&path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            html.contains("only the platform operator plans and runs them"),
            "{path}"
        );
    }
    let (status, _) = c.get(&format!("/tenants/{}/moves", fabrikam.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for op in ["run", "pause", "cancel"] {
        let r = c
            .post(&format!("/moves/{id}/{op}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{op}");
    }
    let r = c
        .post(
            "/moves",
            &[
                ("csrf", &csrf),
                ("source", &fabrikam.id.to_string()),
                ("target", &contoso.id.to_string()),
                ("path", "retire-source"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(
            "/moves/profiles",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("kind", "imap"),
                ("username", "u"),
                ("password", "p"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The operator: a POST without the CSRF token, or with another one, is refused.
    let mut op = Client::new(&server.base);
    op.sign_in(OPERATOR).await;
    let csrf = op.csrf("/moves").await;
    for form in [vec![], vec![("csrf", "forged")]] {
        for path in [
            format!("/moves/{id}/run"),
            format!("/moves/{id}/cancel"),
            "/moves".to_string(),
            "/moves/profiles".to_string(),
        ] {
            let r = op.post(&path, &form).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
        }
    }
    assert_eq!(store.get_move(id).await.unwrap().state, MoveState::Draft);
    assert_eq!(
        store
            .list_moves(Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Domain refusals are shown next to the form: a bad mapping line, an unknown tenant.
    let r = op
        .post(
            "/moves",
            &[
                ("csrf", &csrf),
                ("source", &fabrikam.id.to_string()),
                ("target", &contoso.id.to_string()),
                ("path", "keep-source"),
                ("users", "adele@fabrikam.com adele@contoso.com"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"create-move-error\"")
            && html.contains("expected `sourceUpn,targetUpn`"),
        "{html}"
    );
    assert!(
        html.contains("adele@fabrikam.com adele@contoso.com"),
        "what was typed stays"
    );
    let r = op
        .post(
            "/moves",
            &[
                ("csrf", &csrf),
                ("source", &fabrikam.id.to_string()),
                ("target", &uuid::Uuid::new_v4().to_string()),
                ("path", "retire-source"),
                ("users", "adele@fabrikam.com,adele@contoso.com"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("id=\"create-move-error\""));

    // CalDAV/CardDAV servers: a URL and a profile, both or neither; a URL of another kind is the
    // model's refusal naming the field; what was typed stays.
    let (fab, con) = (fabrikam.id.to_string(), contoso.id.to_string());
    let create = |extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![
            ("csrf", csrf.clone()),
            ("source", fab.clone()),
            ("target", con.clone()),
            ("path", "retire-source".to_string()),
            ("users", "adele@fabrikam.com,adele@contoso.com".to_string()),
        ];
        form.extend(extra.into_iter().map(|(k, v)| (k, v.to_string())));
        form
    };
    let form = create(vec![("source_caldav_url", "caldavs://dav.fabrikam.com/")]);
    let r = op.post("/moves", &borrowed(&form)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Give both the URL and the connection profile of the Source CalDAV server"),
        "{html}"
    );
    let form = create(vec![
        ("target_carddav_url", "https://dav.contoso.com/"),
        ("target_carddav_profile", "contoso-dav"),
    ]);
    let r = op.post("/moves", &borrowed(&form)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("targetCarddav: the URL must start with carddavs://"),
        "{html}"
    );
    assert!(
        html.contains("value=\"https://dav.contoso.com/\""),
        "what was typed stays"
    );
    let form = create(vec![
        ("source_caldav_url", "caldavs://dav.fabrikam.com/"),
        ("source_caldav_profile", "fabrikam-dav"),
        ("target_caldav_url", "caldavs://dav.contoso.com/dav/"),
        ("target_caldav_profile", "contoso-dav"),
    ]);
    let r = op.post("/moves", &borrowed(&form)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let moves = store.list_moves(Default::default()).await.unwrap().items;
    let created = moves.iter().find(|m| m.id != id).expect("the new move");
    let (source, target) = created
        .spec
        .pim
        .of(tenantry_moves::model::PimKind::Calendars);
    assert_eq!(
        (
            source.unwrap().url.as_str(),
            target.unwrap().profile.as_str()
        ),
        ("caldavs://dav.fabrikam.com/", "contoso-dav")
    );
    assert!(created.spec.pim.source_carddav.is_none());
    let (_, page) = op.get(&format!("/moves/{}", created.id)).await;
    assert!(
        page.contains(
            "calendars and contacts: calendars: caldavs://dav.fabrikam.com/ (fabrikam-dav) → \
             caldavs://dav.contoso.com/dav/ (contoso-dav)"
        ),
        "{page}"
    );

    // Run with a blocker (adele is not a user of the source): refused with the list, still Draft.
    let r = op
        .post(&format!("/moves/{id}/run"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"refused-blockers\"") && html.contains("UnknownSourceUser"),
        "{html}"
    );
    assert_eq!(store.get_move(id).await.unwrap().state, MoveState::Draft);
    // Pausing a move that is not running is the store's refusal, shown on the page.
    let r = op
        .post(&format!("/moves/{id}/pause"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The report downloads with the session; a profile's password never comes back.
    let r = op
        .http
        .get(format!("{}/moves/{id}/report.csv", server.base))
        .header(COOKIE, &op.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".csv"));
    assert!(r.text().await.unwrap().starts_with("kind,subject,state"));
    let (status, json) = op.get(&format!("/moves/{id}/report.json")).await;
    assert_eq!(status, StatusCode::OK);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["move"]["state"], "Draft");
    let r = op
        .post(
            "/moves/profiles",
            &[
                ("csrf", &csrf),
                ("name", "fabrikam-dav"),
                ("kind", "webdav"),
                ("username", "dav"),
                ("password", "s3cret-never-shown"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = op.get("/moves/profiles").await;
    assert!(html.contains("fabrikam-dav") && !html.contains("s3cret-never-shown"));
    let r = op
        .post(
            "/moves/profiles",
            &[
                ("csrf", &csrf),
                ("name", "fabrikam-dav"),
                ("kind", "ftp"),
                ("username", "dav"),
                ("password", "s3cret-never-shown"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("kind must be imap or webdav") && !html.contains("s3cret-never-shown"));
    // A refused login is fixed here: the profile's user name and password are replaced.
    let r = op
        .post(
            "/moves/profiles/login",
            &[
                ("csrf", &csrf),
                ("name", "fabrikam-dav"),
                ("username", "dav2"),
                ("password", "n3w-s3cret-never-shown"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = op.get("/moves/profiles").await;
    assert!(html.contains("login of connection profile fabrikam-dav is replaced"));
    assert!(html.contains("<td>dav2</td>") && !html.contains("n3w-s3cret-never-shown"));
    let r = op
        .post(
            "/moves/profiles/login",
            &[
                ("csrf", &csrf),
                ("name", "no-such-profile"),
                ("username", "x"),
                ("password", "n3w-s3cret-never-shown"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("connection profile not found") && !html.contains("n3w-s3cret-never-shown")
    );
    let (status, _) = op.get("/moves/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Once the source user exists the plan is clear: run, pause, resume and cancel, each the
    // store's transition (no worker runs here, so the states stay put between the requests).
    server
        .app
        .ledger
        .create_user(
            &tenantry_app::Caller::system("test"),
            fabrikam.id,
            tenantry_app::NewUser {
                user_principal_name: "adele@fabrikam.com".into(),
                display_name: "Adele".into(),
                usage_location: Some("US".into()),
                account_enabled: true,
            },
            now,
        )
        .await
        .unwrap();
    let page = format!("/moves/{id}");
    let (_, html) = op.get(&page).await;
    assert!(
        html.contains("id=\"no-blockers\"") && html.contains("Run the move"),
        "{html}"
    );
    for (op_name, state, button) in [
        ("run", MoveState::Running, "id=\"pause-move\""),
        ("pause", MoveState::Paused, "Resume the move"),
        ("resume", MoveState::Running, "hx-trigger=\"every 2s\""),
        ("cancel", MoveState::Cancelled, "id=\"report-link\""),
    ] {
        let r = op
            .post(&format!("/moves/{id}/{op_name}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{op_name}");
        assert_eq!(store.get_move(id).await.unwrap().state, state, "{op_name}");
        let (_, html) = op.get(&page).await;
        assert!(html.contains(button), "{op_name}: {html}");
    }
    // Over: nothing more to run; the progress fragment no longer polls.
    let r = op
        .post(&format!("/moves/{id}/run"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("only a draft, paused or failed move can run"));
    let (_, fragment) = op.get(&format!("/moves/{id}/progress")).await;
    assert!(fragment.contains("Cancelled") && !fragment.contains("hx-trigger"));
    // htmx polling a move that stopped running is told to reload the page (its actions change).
    let r = op
        .http
        .get(format!("{}/moves/{id}/progress", server.base))
        .header(COOKIE, &op.cookie)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["hx-refresh"], "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_moves_says_so() {
    let server = Server::start_with(false).await;
    let mut op = Client::new(&server.base);
    op.sign_in(OPERATOR).await;
    let (status, html) = op.get("/moves").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("id=\"moves-disabled\"") && !html.contains("id=\"new-move\""),
        "{html}"
    );
    for path in ["/moves/new", "/moves/profiles"] {
        let (status, html) = op.get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(html.contains("not enabled on this server"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_are_limited_with_a_clear_message() {
    let server = Server::start().await;
    // One failure given back a minute: still limited when the right token comes, however
    // slowly this machine runs the test.
    server.app.auth_failures.configure(1);
    let mut anon = Client::new(&server.base);
    let (_, html) = anon.get("/signin").await;
    let csrf = csrf_of(&html);
    let mut statuses = Vec::new();
    let mut last_page = String::new();
    for _ in 0..30 {
        let r = anon
            .post("/signin", &[("csrf", &csrf), ("token", "op_wrong")])
            .await;
        statuses.push(r.status().as_u16());
        last_page = r.text().await.unwrap();
        if statuses.last() == Some(&429) {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 401));
    assert!(
        last_page.contains("Too many failed sign-ins from your address"),
        "{last_page}"
    );
    // The right token from the same address waits too (no oracle while limited).
    let r = anon
        .post("/signin", &[("csrf", &csrf), ("token", OPERATOR)])
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Signed-in sessions live in the database: a server started afresh on the same database (a
/// restart, or a second process behind the same load balancer) knows the cookie and its CSRF
/// token, and signing out there ends the session on the first server too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_signs_nobody_out() {
    let first = Server::start().await;
    let mut browser = Client::new(&first.base);
    browser.sign_in(OPERATOR).await;
    assert_eq!(browser.get("/tenants").await.0, StatusCode::OK);
    let signed_in = browser.cookie.clone();

    let second = first.restarted().await;
    browser.base = second.base.clone();
    let (status, html) = browser.get("/tenants").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "still signed in after the restart: {html}"
    );
    let csrf = browser.csrf("/tenants").await;
    let r = browser.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The old cookie, replayed on the first server: the session is gone everywhere.
    browser.base = first.base.clone();
    browser.cookie = signed_in;
    let (status, _) = browser.get("/tenants").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed out everywhere");
}

/// Revoking an API token ends the admin-center sessions signed in with it, on every server
/// sharing the database (sessions outlive restarts, so nothing else would end them).
#[tokio::test]
async fn revoking_a_token_signs_its_sessions_out() {
    let server = Server::start().await;
    let now = server.app.clock.now();
    let contoso = server
        .app
        .ledger
        .create_tenant(
            &tenantry_app::Caller::system("test"),
            "Contoso",
            "contoso.onmicrosoft.com",
            now,
        )
        .await
        .unwrap();
    let issued = server
        .app
        .ledger
        .issue_token(
            &tenantry_app::Caller::system("test"),
            contoso.id,
            Role::GlobalAdmin.as_str(),
            now,
        )
        .await
        .unwrap();
    let mut browser = Client::new(&server.base);
    browser.sign_in(&issued.token).await;
    let users = format!("/tenants/{}/users", contoso.id);
    assert_eq!(browser.get(&users).await.0, StatusCode::OK);

    server
        .app
        .ledger
        .revoke_token(
            &tenantry_app::Caller::system("test"),
            contoso.id,
            issued.record.id,
            now,
        )
        .await
        .unwrap();
    let (status, _) = browser.get(&users).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed out with its token");
}

/// A running mailbox step whose engine reported counts shows a bar with items, bytes, the rate
/// and the estimated end, on the move page and in the fragment htmx polls; a running step
/// without counts shows no bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_step_shows_its_progress_bar_and_numbers() {
    use tenantry_app::progress::{advance, Counts};
    use tenantry_ledger::Timestamp;
    use tenantry_moves::model::{MovePath, MoveSpec};
    use tenantry_moves::plan::Step;
    use tenantry_store::moves::NewStep;

    let server = Server::start().await;
    let (ledger, now) = (&server.app.ledger, server.app.clock.now());
    let system = tenantry_app::Caller::system("test");
    let source = ledger
        .create_tenant(&system, "Fabrikam", "fabrikam.onmicrosoft.com", now)
        .await
        .unwrap();
    let target = ledger
        .create_tenant(&system, "Contoso", "contoso.onmicrosoft.com", now)
        .await
        .unwrap();
    let spec = MoveSpec {
        source_tenant_id: source.id,
        target_tenant_id: target.id,
        path: MovePath::RetireSource,
        users: vec![],
        domain_rewrite: None,
        allow_purchase: true,
        source_mail: None,
        target_mail: None,
        libraries: vec![],
        source_graph: None,
        target_graph: None,
        pim: Default::default(),
    };
    let id = ledger
        .create_move(spec, "test".into(), now)
        .await
        .unwrap()
        .id;
    let mailbox = |upn: &str| NewStep {
        key: format!("mailbox:{upn}"),
        step: serde_json::to_value(Step::MigrateMailbox {
            source_upn: upn.into(),
            target_upn: upn.replace("fabrikam", "contoso"),
        })
        .unwrap(),
        depends_on: vec![],
        servers: vec![],
    };
    let steps = vec![mailbox("adele@fabrikam.com"), mailbox("bob@fabrikam.com")];
    ledger
        .start_run(id, steps, "test".into(), now)
        .await
        .unwrap();
    let first = ledger
        .claim_step("w1".into(), now, 600, 4)
        .await
        .unwrap()
        .unwrap();
    ledger
        .claim_step("w2".into(), now, 600, 4)
        .await
        .unwrap()
        .unwrap();
    // 310 of 590 MB in the 10 s since the step started: 31 MB/s, 280 MB left, 10 s to go.
    let counts = Counts {
        items_done: 1204,
        items_total: Some(2300),
        bytes_done: 310_000_000,
        bytes_total: Some(590_000_000),
    };
    let record = advance(None, id, &first.key, Timestamp(now.0 - 10), counts, now);
    assert!(ledger.record_progress("w1".into(), record).await.unwrap());

    let mut op = Client::new(&server.base);
    op.sign_in(OPERATOR).await;
    for page in [format!("/moves/{id}/progress"), format!("/moves/{id}")] {
        let (status, html) = op.get(&page).await;
        assert_eq!(status, StatusCode::OK, "{page}: {html}");
        let at = html
            .find("data-step=\"mailbox:adele@fabrikam.com\"")
            .expect(&html);
        let adele = &html[at..];
        let adele = &adele[..adele.find("</li>").unwrap()];
        assert!(
            adele.contains("<progress class=\"step-bar\" max=\"1000\" value=\"525\""),
            "{adele}"
        );
        assert!(adele.contains("52%"), "{adele}");
        // The page counts the ETA from its own clock, which ticks on after `now`: at most the
        // 10 s the counts leave, never more.
        let numbers = "1,204/2,300 messages · 310 MB/590 MB · 31 MB/s · ETA ";
        let eta = adele
            .find(numbers)
            .map(|at| &adele[at + numbers.len()..])
            .and_then(|rest| rest.split('s').next())
            .and_then(|secs| secs.parse::<u32>().ok());
        assert!(eta.is_some_and(|secs| secs <= 10), "{adele}");
        assert!(adele.contains("on w1"), "{adele}");
        let at = html
            .find("data-step=\"mailbox:bob@fabrikam.com\"")
            .expect(&html);
        let bob = &html[at..];
        let bob = &bob[..bob.find("</li>").unwrap()];
        assert!(!bob.contains("<progress"), "no counts, no bar: {bob}");
        assert!(bob.contains("no counts yet"), "{bob}");
    }
}
