//! The ledger API against a real `tenantry serve` on a temporary SQLite file.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use tenantry_testkit::faults::{kind, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_tenants_objects_are_not_found_on_every_endpoint() {
    let s = Server::start();
    let a = s.tenant("Alpha").await;
    let b = s.tenant("Beta").await;
    let admin_a = s.token(&a, "GlobalAdmin").await;
    let sub_b = s.subscription(&b, "ENTERPRISEPACK", 5).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let user_b = s.user(&b, "bob").await;
    let assign = json!({"addLicenses": [{"skuId": E3, "disabledPlans": []}], "removeLicenses": []});

    // B's tenant path with A's token.
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/tenants/{b}"), None),
        (Method::GET, format!("/v1/tenants/{b}/subscriptions"), None),
        (
            Method::POST,
            format!("/v1/tenants/{b}/subscriptions"),
            Some(json!({"skuPartNumber": "SPE_E3", "quantity": 1})),
        ),
        (
            Method::GET,
            format!("/v1/tenants/{b}/subscriptions/{sub_b}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/tenants/{b}/subscriptions/{sub_b}"),
            Some(json!({"quantity": 1})),
        ),
        (
            Method::POST,
            format!("/v1/tenants/{b}/subscriptions/{sub_b}/cancel"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/{b}/subscriptions/{sub_b}/reactivate"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/{b}/subscriptions/{sub_b}/transfer"),
            None,
        ),
        (Method::GET, format!("/v1/tenants/{b}/subscribedSkus"), None),
        (Method::GET, format!("/v1/tenants/{b}/users"), None),
        (
            Method::POST,
            format!("/v1/tenants/{b}/users"),
            Some(json!({"userPrincipalName": "x@example.com", "displayName": "X"})),
        ),
        (Method::GET, format!("/v1/tenants/{b}/users/{user_b}"), None),
        (
            Method::PATCH,
            format!("/v1/tenants/{b}/users/{user_b}"),
            Some(json!({"displayName": "Hacked"})),
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/{b}/users/{user_b}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/{b}/users/{user_b}/assignLicense"),
            Some(assign.clone()),
        ),
        (
            Method::GET,
            format!("/v1/tenants/{b}/users/{user_b}/licenseDetails"),
            None,
        ),
        (Method::GET, format!("/v1/tenants/{b}/auditLogs"), None),
        (
            Method::POST,
            format!("/v1/tenants/{b}/tokens"),
            Some(json!({"role": "GlobalAdmin"})),
        ),
        // A's own tenant path, B's object ids.
        (
            Method::GET,
            format!("/v1/tenants/{a}/subscriptions/{sub_b}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/tenants/{a}/subscriptions/{sub_b}"),
            Some(json!({"quantity": 1})),
        ),
        (
            Method::POST,
            format!("/v1/tenants/{a}/subscriptions/{sub_b}/cancel"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/{a}/subscriptions/{sub_b}/transfer"),
            None,
        ),
        (Method::GET, format!("/v1/tenants/{a}/users/{user_b}"), None),
        (
            Method::PATCH,
            format!("/v1/tenants/{a}/users/{user_b}"),
            Some(json!({"displayName": "Hacked"})),
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/{a}/users/{user_b}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/{a}/users/{user_b}/assignLicense"),
            Some(assign),
        ),
        (
            Method::GET,
            format!("/v1/tenants/{a}/users/{user_b}/licenseDetails"),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let result = s.call(method.clone(), &path, &admin_a, body).await;
        assert_problem(&result, 404, "NotFound");
        let _ = (method, path);
    }
    // A tenant principal lists only its own tenant.
    let (_, tenants) = s.get("/v1/tenants", &admin_a).await;
    assert_eq!(tenants["value"].as_array().unwrap().len(), 1);
    assert_eq!(tenants["value"][0]["id"], a.as_str());
    // Nothing of B changed.
    let (_, user) = s
        .get(&format!("/v1/tenants/{b}/users/{user_b}"), OPERATOR)
        .await;
    assert_eq!(user["displayName"], "bob");
    assert_eq!(s.subscribed(&b, "ENTERPRISEPACK").await["consumedUnits"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_can_do_exactly_its_job() {
    let s = Server::start();
    let t = s.tenant("Roles").await;
    let sub = s.subscription(&t, "ENTERPRISEPACK", 50).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    for role in [
        "GlobalAdmin",
        "BillingAdmin",
        "LicenseAdmin",
        "UserAdmin",
        "GlobalReader",
    ] {
        let token = s.token(&t, role).await;
        let user = s.user(&t, &format!("target-{}", role.to_lowercase())).await;
        let buy = s
            .post(
                &format!("/v1/tenants/{t}/subscriptions"),
                &token,
                json!({"skuPartNumber": "SPE_E3", "quantity": 1}),
            )
            .await;
        let seats = s
            .patch(
                &format!("/v1/tenants/{t}/subscriptions/{sub}"),
                &token,
                json!({"quantity": 51}),
            )
            .await;
        let assign = s.assign(&t, &user, E3, &token).await;
        let create_user = s
            .post(
                &format!("/v1/tenants/{t}/users"),
                &token,
                json!({"userPrincipalName": format!("new-{}@example.com", role.to_lowercase()), "displayName": "New"}),
            )
            .await;
        let read_users = s.get(&format!("/v1/tenants/{t}/users"), &token).await;
        let read_skus = s
            .get(&format!("/v1/tenants/{t}/subscribedSkus"), &token)
            .await;
        let audit = s.get(&format!("/v1/tenants/{t}/auditLogs"), &token).await;
        let tokens = s
            .post(
                &format!("/v1/tenants/{t}/tokens"),
                &token,
                json!({"role": "GlobalReader"}),
            )
            .await;
        let new_tenant = s
            .post(
                "/v1/tenants",
                &token,
                json!({"displayName": "X", "defaultDomain": "x.example.com"}),
            )
            .await;

        let expect = |allowed: bool, result: &(StatusCode, Value), what: &str| {
            if allowed {
                assert!(
                    result.0.is_success(),
                    "{role} should be able to {what}: {} {}",
                    result.0,
                    result.1
                );
            } else {
                assert_problem(result, 403, "Forbidden");
            }
        };
        let is = |roles: &[&str]| roles.contains(&role);
        expect(is(&["GlobalAdmin", "BillingAdmin"]), &buy, "buy");
        expect(is(&["GlobalAdmin", "BillingAdmin"]), &seats, "change seats");
        expect(is(&["GlobalAdmin", "LicenseAdmin"]), &assign, "assign");
        expect(
            is(&["GlobalAdmin", "UserAdmin"]),
            &create_user,
            "create users",
        );
        expect(true, &read_users, "read users");
        expect(true, &read_skus, "read subscribedSkus");
        expect(
            is(&["GlobalAdmin", "GlobalReader"]),
            &audit,
            "read the audit log",
        );
        expect(is(&["GlobalAdmin"]), &tokens, "issue tokens");
        expect(false, &new_tenant, "create tenants");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_key_replays_without_a_second_effect() {
    let s = Server::start();
    let t = s.tenant("Idem").await;
    let url = format!("{}/v1/tenants/{t}/subscriptions", s.base);
    let send = |key: &'static str, quantity: u32| {
        s.http
            .post(&url)
            .bearer_auth(OPERATOR)
            .header("Idempotency-Key", key)
            .json(&json!({"skuPartNumber": "ENTERPRISEPACK", "quantity": quantity}))
            .send()
    };
    let first = send("order-1", 10).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send("order-1", 10).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let (_, subs) = s
        .get(&format!("/v1/tenants/{t}/subscriptions"), OPERATOR)
        .await;
    assert_eq!(
        subs["value"].as_array().unwrap().len(),
        1,
        "no second purchase"
    );

    let other = send("order-1", 11).await.unwrap();
    assert_eq!(other.status(), 422);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["code"], "IdempotencyKeyReused");

    // A refusal is remembered too: the same retry gets the same refusal.
    let bad1 = send("order-2", 0).await.unwrap();
    let bad2 = send("order-2", 0).await.unwrap();
    assert_eq!((bad1.status().as_u16(), bad2.status().as_u16()), (422, 422));
    assert_eq!(
        bad2.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(
        s.subscribed(&t, "ENTERPRISEPACK").await["prepaidUnits"]["enabled"],
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_etag_is_refused_with_412() {
    let s = Server::start();
    let t = s.tenant("Etag").await;
    let sub = s.subscription(&t, "ENTERPRISEPACK", 10).await;
    let id = sub["id"].as_str().unwrap();
    let path = format!("{}/v1/tenants/{t}/subscriptions/{id}", s.base);
    let read = s
        .http
        .get(&path)
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    let etag = read
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    let patch = |tag: String, q: u32| {
        s.http
            .patch(&path)
            .bearer_auth(OPERATOR)
            .header("If-Match", tag)
            .json(&json!({"quantity": q}))
            .send()
    };
    let ok = patch(etag.clone(), 12).await.unwrap();
    assert_eq!(ok.status(), 200);
    let new_tag = ok
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(new_tag, etag);
    let stale = patch(etag, 14).await.unwrap();
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["code"], "PreconditionFailed");
    let malformed = patch("not-an-etag".into(), 14).await.unwrap();
    assert_eq!(malformed.status(), 400);
    let (_, now) = s
        .get(&format!("/v1/tenants/{t}/subscriptions/{id}"), OPERATOR)
        .await;
    assert_eq!(now["quantity"], 12, "the stale write changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_assignments_to_fifty_seats() {
    let s = Server::start();
    let t = s.tenant("Rush").await;
    s.subscription(&t, "ENTERPRISEPACK", 50).await;
    let admin = s.token(&t, "LicenseAdmin").await;
    let mut users = Vec::new();
    for i in 0..200 {
        users.push(s.user(&t, &format!("u{i}")).await);
    }
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for user in users {
        let (s, t, admin) = (s.clone(), t.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            s.assign(&t, &user, E3, &admin).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        let result = task.await.unwrap();
        match result.0.as_u16() {
            200 => ok += 1,
            409 => {
                assert_problem(&result, 409, "NoFreeSeat");
                refused += 1
            }
            other => panic!("unexpected {other}: {}", result.1),
        }
    }
    assert_eq!((ok, refused), (50, 150));
    let sku = s.subscribed(&t, "ENTERPRISEPACK").await;
    assert_eq!(sku["consumedUnits"], 50);
    assert_eq!(sku["prepaidUnits"]["enabled"], 50);
    let (_, log) = s
        .get(
            &format!("/v1/tenants/{t}/auditLogs?action=user.licensesChanged&$top=1000"),
            OPERATOR,
        )
        .await;
    assert_eq!(
        log["value"].as_array().unwrap().len(),
        50,
        "one audit record per successful assignment"
    );
    record(
        kind::LOAD,
        "ledger: 200 concurrent licence assignments to 50 seats, over HTTP",
        "50 granted, 150 refused NoFreeSeat, 0 oversold",
        0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_survives_a_kill_and_restart() {
    let mut s = Server::start();
    let t = s.tenant("Durable").await;
    let sub = s.subscription(&t, "SPE_E3", 7).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reader = s.token(&t, "GlobalReader").await;
    let mut users = Vec::new();
    for i in 0..5 {
        let u = s.user(&t, &format!("d{i}")).await;
        let r = s
            .assign(&t, &u, "05e9a617-0261-4cee-bb44-138d3ef5d965", OPERATOR)
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        users.push(u);
    }
    let (_, before_log) = s
        .get(&format!("/v1/tenants/{t}/auditLogs?$top=1000"), OPERATOR)
        .await;

    s.kill();
    s.restart();

    let (status, sub_after) = s
        .get(&format!("/v1/tenants/{t}/subscriptions/{sub}"), &reader)
        .await;
    assert_eq!(status, 200, "tenant tokens survive a restart");
    assert_eq!(sub_after["quantity"], 7);
    let sku = s.subscribed(&t, "SPE_E3").await;
    assert_eq!(sku["consumedUnits"], 5);
    for u in &users {
        let (_, details) = s
            .get(
                &format!("/v1/tenants/{t}/users/{u}/licenseDetails"),
                OPERATOR,
            )
            .await;
        assert_eq!(details["value"][0]["skuPartNumber"], "SPE_E3");
    }
    let (_, after_log) = s
        .get(&format!("/v1/tenants/{t}/auditLogs?$top=1000"), OPERATOR)
        .await;
    assert_eq!(before_log, after_log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_operator_token_is_printed_once_and_stored_only_as_a_hash() {
    let mut s = Server::start_without_operator_token();
    let at = s
        .banner
        .iter()
        .position(|l| l.starts_with("Operator token"))
        .expect("token announced");
    let token = s.banner[at + 1].trim().to_string();
    assert!(token.starts_with("op_"));
    let (status, _) = s.get("/v1/tenants", &token).await;
    assert_eq!(status, 200);
    s.kill();
    s.launch(None);
    assert!(
        !s.banner.iter().any(|l| l.contains(&token)),
        "never printed again"
    );
    let (status, _) = s.get("/v1/tenants", &token).await;
    assert_eq!(status, 200, "the same token still works");
    let needle = token.as_bytes();
    for bytes in s.stored_bytes() {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the secret is not in the database"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_right_4xx_and_never_a_500() {
    let s = Server::start();
    let t = s.tenant("Bad").await;
    let u = s.user(&t, "eve").await;
    let subs = format!("{}/v1/tenants/{t}/subscriptions", s.base);
    let raw = |body: &'static str, content_type: &'static str| {
        s.http
            .post(&subs)
            .bearer_auth(OPERATOR)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let check = |resp: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    };
    check(
        raw("{\"quantity\": ", "application/json").await.unwrap(),
        400,
        "MalformedJson",
    )
    .await;
    check(
        raw(
            "{\"skuPartNumber\": \"ENTERPRISEPACK\", \"quantity\": \"ten\"}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "ValidationFailed",
    )
    .await;
    check(
        raw(
            "{\"skuPartNumber\": \"ENTERPRISEPACK\", \"quantity\": -1}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "ValidationFailed",
    )
    .await;
    check(
        raw(
            "{\"skuPartNumber\": \"ENTERPRISEPACK\", \"quantity\": 1, \"colour\": 1}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "ValidationFailed",
    )
    .await;
    check(
        raw(
            "{\"skuPartNumber\": \"ENTERPRISEPACK\", \"quantity\": 1}",
            "text/plain",
        )
        .await
        .unwrap(),
        415,
        "UnsupportedMediaType",
    )
    .await;
    check(
        raw(
            "{\"skuPartNumber\": \"NOPE\", \"quantity\": 1}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "UnknownSku",
    )
    .await;
    check(
        raw("{\"quantity\": 1}", "application/json").await.unwrap(),
        422,
        "SkuRequired",
    )
    .await;
    let huge = format!(
        "{{\"skuPartNumber\": \"{}\", \"quantity\": 1}}",
        "A".repeat(2 * 1024 * 1024)
    );
    // Its own connection: the server closes a connection whose body it refused to read.
    let resp = reqwest::Client::new()
        .post(&subs)
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    check(resp, 413, "PayloadTooLarge").await;

    assert_problem(
        &s.get("/v1/tenants/not-a-guid/users", OPERATOR).await,
        400,
        "MalformedId",
    );
    assert_problem(
        &s.get(&format!("/v1/tenants/{t}/users/123"), OPERATOR).await,
        400,
        "MalformedId",
    );
    assert_problem(
        &s.get(&format!("/v1/tenants/{t}/users?$top=0"), OPERATOR)
            .await,
        400,
        "InvalidPageSize",
    );
    assert_problem(
        &s.get(&format!("/v1/tenants/{t}/users?$skiptoken=zz"), OPERATOR)
            .await,
        400,
        "InvalidSkipToken",
    );
    assert_problem(&s.get("/v1/nothing-here", OPERATOR).await, 404, "NotFound");
    assert_problem(
        &s.get("/v1/tenants", "wrong-token").await,
        401,
        "Unauthorized",
    );
    let anonymous = s
        .http
        .get(format!("{}/v1/tenants", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );

    let users = format!("/v1/tenants/{t}/users");
    assert_problem(
        &s.post(
            &users,
            OPERATOR,
            json!({"userPrincipalName": "no-at-sign", "displayName": "X"}),
        )
        .await,
        422,
        "InvalidUserPrincipalName",
    );
    assert_problem(&s.post(&users, OPERATOR, json!({"userPrincipalName": "x@example.com", "displayName": "X", "usageLocation": "USA"})).await, 422, "InvalidUsageLocation");
    assert_problem(
        &s.post(
            &users,
            OPERATOR,
            json!({"userPrincipalName": "EVE@example.com", "displayName": "Eve 2"}),
        )
        .await,
        409,
        "DuplicateUserPrincipalName",
    );
    assert_problem(
        &s.post(
            "/v1/tenants",
            OPERATOR,
            json!({"displayName": "Y", "defaultDomain": "bad domain"}),
        )
        .await,
        422,
        "InvalidDomain",
    );
    assert_problem(
        &s.post(
            "/v1/tenants",
            OPERATOR,
            json!({"displayName": "Bad again", "defaultDomain": "bad.onmicrosoft.com"}),
        )
        .await,
        409,
        "DomainInUse",
    );
    assert_problem(
        &s.post(
            &format!("/v1/tenants/{t}/tokens"),
            OPERATOR,
            json!({"role": "God"}),
        )
        .await,
        422,
        "InvalidRole",
    );
    let assign = format!("/v1/tenants/{t}/users/{u}/assignLicense");
    assert_problem(
        &s.post(
            &assign,
            OPERATOR,
            json!({"addLicenses": [{"skuId": "nope"}], "removeLicenses": []}),
        )
        .await,
        422,
        "ValidationFailed",
    );
    assert_problem(
        &s.post(
            &assign,
            OPERATOR,
            json!({"addLicenses": [], "removeLicenses": []}),
        )
        .await,
        422,
        "EmptyLicenseChange",
    );
    assert_problem(&s.assign(&t, &u, E3, OPERATOR).await, 409, "NoFreeSeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seat_rules_volume_and_transfer() {
    let s = Server::start();
    let t = s.tenant("Seats").await;
    let sub = s.subscription(&t, "ENTERPRISEPACK", 3).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let path = format!("/v1/tenants/{t}/subscriptions/{id}");
    for i in 0..3 {
        let u = s.user(&t, &format!("s{i}")).await;
        assert_eq!(s.assign(&t, &u, E3, OPERATOR).await.0, 200);
    }
    // Never below assigned.
    assert_problem(
        &s.patch(&path, OPERATOR, json!({"quantity": 2})).await,
        409,
        "BelowAssigned",
    );
    // Adding is immediate and charged.
    let (status, added) = s.patch(&path, OPERATOR, json!({"quantity": 10})).await;
    assert_eq!(status, 200);
    assert_eq!(added["quantity"], 10);
    assert!(added["outcome"]["money"]["chargedCents"].as_u64().unwrap() > 0);
    // Inside the window: removed now, refunded.
    let (_, removed) = s.patch(&path, OPERATOR, json!({"quantity": 8})).await;
    assert_eq!(removed["quantity"], 8);
    assert!(
        removed["outcome"]["money"]["refundedCents"]
            .as_u64()
            .unwrap()
            > 0
    );
    // After the window: scheduled for renewal.
    s.advance_days(8).await;
    let (_, scheduled) = s.patch(&path, OPERATOR, json!({"quantity": 4})).await;
    assert_eq!(scheduled["quantity"], 8);
    assert_eq!(scheduled["scheduledQuantity"], 4);
    assert_eq!(scheduled["outcome"]["money"]["refundedCents"], 0);

    // Volume: read-only, with guidance.
    let vol = s
        .ok(
            Method::POST,
            &format!("/v1/tenants/{t}/subscriptions"),
            OPERATOR,
            Some(json!({"skuPartNumber": "SPE_E5", "quantity": 100, "channel": "volume"})),
        )
        .await;
    let vol_path = format!(
        "/v1/tenants/{t}/subscriptions/{}",
        vol["id"].as_str().unwrap()
    );
    for result in [
        s.patch(&vol_path, OPERATOR, json!({"quantity": 120})).await,
        s.post(&format!("{vol_path}/cancel"), OPERATOR, json!({}))
            .await,
    ] {
        assert_problem(&result, 409, "VolumeLicensingReadOnly");
        assert!(result.1["detail"]
            .as_str()
            .unwrap()
            .contains("Volume Licensing Service Center"));
    }
    let admin = s.token(&t, "GlobalAdmin").await;
    let bought = s
        .post(
            &format!("/v1/tenants/{t}/subscriptions"),
            &admin,
            json!({"skuPartNumber": "SPE_E5", "quantity": 1, "channel": "volume"}),
        )
        .await;
    assert_problem(&bought, 409, "VolumeLicensingReadOnly");

    // Transfer: always refused, pointing at moves.
    let transfer = s
        .post(
            &format!("{path}/transfer"),
            &admin,
            json!({"targetTenantId": "anything"}),
        )
        .await;
    assert_problem(&transfer, 409, "LicenseTransferNotSupported");
    assert!(transfer.1["detail"].as_str().unwrap().contains("/v1/moves"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_expired_disabled_reactivated_with_the_test_clock() {
    let s = Server::start();
    let t = s.tenant("Life").await;
    let sub = s
        .ok(Method::POST, &format!("/v1/tenants/{t}/subscriptions"), OPERATOR,
            Some(json!({"skuPartNumber": "ENTERPRISEPACK", "quantity": 2, "autoRenew": false, "term": "monthly"})))
        .await;
    let path = format!(
        "/v1/tenants/{t}/subscriptions/{}",
        sub["id"].as_str().unwrap()
    );
    let u1 = s.user(&t, "l1").await;
    let u2 = s.user(&t, "l2").await;
    assert_eq!(s.assign(&t, &u1, E3, OPERATOR).await.0, 200);

    s.advance_days(31).await;
    let (_, expired) = s.get(&path, OPERATOR).await;
    assert_eq!(expired["status"], "Expired");
    let sku = s.subscribed(&t, "ENTERPRISEPACK").await;
    assert_eq!(sku["prepaidUnits"]["warning"], 2);
    assert_eq!(sku["capabilityStatus"], "Warning");
    assert_eq!(
        s.assign(&t, &u2, E3, OPERATOR).await.0,
        200,
        "grace period: still assignable"
    );

    s.advance_days(30).await;
    let (_, disabled) = s.get(&path, OPERATOR).await;
    assert_eq!(disabled["status"], "Disabled");
    assert_eq!(
        s.subscribed(&t, "ENTERPRISEPACK").await["prepaidUnits"]["suspended"],
        2
    );
    let u3 = s.user(&t, "l3").await;
    assert_problem(&s.assign(&t, &u3, E3, OPERATOR).await, 409, "NoFreeSeat");
    assert_problem(
        &s.patch(&path, OPERATOR, json!({"quantity": 5})).await,
        409,
        "SubscriptionNotActive",
    );

    let (status, active) = s
        .post(&format!("{path}/reactivate"), OPERATOR, json!({}))
        .await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["status"], "Active");
    assert_eq!(
        s.subscribed(&t, "ENTERPRISEPACK").await["prepaidUnits"]["enabled"],
        2
    );

    // Cancel inside the refund window of the new term: disabled at once, refunded, locked out.
    let (_, cancelled) = s.post(&format!("{path}/cancel"), OPERATOR, json!({})).await;
    assert_eq!(cancelled["status"], "Disabled");
    assert_eq!(cancelled["outcome"]["immediate"], true);
    assert_eq!(
        s.subscribed(&t, "ENTERPRISEPACK").await["prepaidUnits"]["lockedOut"],
        2
    );

    s.advance_days(91).await;
    let (_, deleted) = s.get(&path, OPERATOR).await;
    assert_eq!(deleted["status"], "Deleted");
    assert_problem(
        &s.post(&format!("{path}/reactivate"), OPERATOR, json!({}))
            .await,
        409,
        "SubscriptionDeleted",
    );

    let (_, log) = s
        .get(
            &format!("/v1/tenants/{t}/auditLogs?action=subscription.lifecycle"),
            OPERATOR,
        )
        .await;
    let records = log["value"].as_array().unwrap();
    assert!(records.len() >= 3);
    assert!(records.iter().all(|r| r["actor"] == "system:lifecycle"
        && !r["before"].is_null()
        && !r["after"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_are_paged_and_the_audit_log_records_before_and_after() {
    let s = Server::start();
    let t = s.tenant("Pages").await;
    for i in 0..7 {
        s.user(&t, &format!("p{i}")).await;
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("/v1/tenants/{t}/users?$top=3"));
    let mut pages = 0;
    while let Some(path) = next {
        let (status, page) = s.get(&path, OPERATOR).await;
        assert_eq!(status, 200);
        pages += 1;
        for u in page["value"].as_array().unwrap() {
            seen.push(u["userPrincipalName"].as_str().unwrap().to_string());
        }
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    let (_, found) = s
        .get(&format!("/v1/tenants/{t}/users?$search=p3"), OPERATOR)
        .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);

    let u = s.user(&t, "renamed").await;
    let (_, _) = s
        .patch(
            &format!("/v1/tenants/{t}/users/{u}"),
            OPERATOR,
            json!({"displayName": "New Name"}),
        )
        .await;
    let (_, log) = s
        .get(&format!("/v1/tenants/{t}/auditLogs?targetId={u}"), OPERATOR)
        .await;
    let update = &log["value"][0];
    assert_eq!(update["action"], "user.updated");
    assert_eq!(update["actor"], "operator");
    assert_eq!(update["before"]["display_name"], "renamed");
    assert_eq!(update["after"]["display_name"], "New Name");
    assert!(update["activityDateTime"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_health_and_metrics_are_served() {
    let s = Server::start();
    let (status, doc) = s.get("/openapi.json", "").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/tenants",
        "/v1/tenants/{tenantId}/users/{id}/assignLicense",
        "/v1/tenants/{tenantId}/subscribedSkus",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert_eq!(s.get("/healthz", "").await.0, 200);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "tenantry_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_add_their_own_skus_and_tenants_buy_them() {
    let s = Server::start();
    let t = s.tenant("Custom").await;
    let admin = s.token(&t, "GlobalAdmin").await;
    let sku = json!({
        "skuPartNumber": "CONTOSO_ARCHIVE",
        "displayName": "Contoso Archive",
        "monthlyPriceCents": 300,
        "servicePlans": [{"servicePlanId": "11111111-2222-3333-4444-555555555555", "servicePlanName": "ARCHIVE_PLAN"}]
    });
    assert_problem(
        &s.post("/v1/skus", &admin, sku.clone()).await,
        403,
        "Forbidden",
    );
    let (status, created) = s.post("/v1/skus", OPERATOR, sku.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["custom"], true);
    assert_problem(
        &s.post("/v1/skus", OPERATOR, sku).await,
        409,
        "DuplicateSku",
    );
    assert_problem(
        &s.post(
            "/v1/skus",
            OPERATOR,
            json!({"skuPartNumber": "bad part!", "displayName": "X"}),
        )
        .await,
        422,
        "InvalidSkuPartNumber",
    );
    let (status, sub) = s
        .post(
            &format!("/v1/tenants/{t}/subscriptions"),
            &admin,
            json!({"skuPartNumber": "contoso_archive", "quantity": 2}),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["skuPartNumber"], "CONTOSO_ARCHIVE");
    let (_, catalog) = s.get("/v1/skus", &admin).await;
    assert!(catalog["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["skuPartNumber"] == "CONTOSO_ARCHIVE"));
    assert!(catalog["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["skuPartNumber"] == "SPE_E5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_role_hears_403_whatever_body_it_sends() {
    let s = Server::start();
    let t = s.tenant("Order").await;
    let sub = s.subscription(&t, "ENTERPRISEPACK", 1).await;
    let reader = s.token(&t, "GlobalReader").await;
    let u = s.user(&t, "z").await;
    let junk = json!({"no": "such fields"});
    for (method, path) in [
        (Method::POST, format!("/v1/tenants/{t}/subscriptions")),
        (
            Method::PATCH,
            format!(
                "/v1/tenants/{t}/subscriptions/{}",
                sub["id"].as_str().unwrap()
            ),
        ),
        (Method::POST, format!("/v1/tenants/{t}/users")),
        (Method::PATCH, format!("/v1/tenants/{t}/users/{u}")),
        (
            Method::POST,
            format!("/v1/tenants/{t}/users/{u}/assignLicense"),
        ),
        (Method::POST, format!("/v1/tenants/{t}/tokens")),
        (Method::POST, "/v1/tenants".to_string()),
        (Method::POST, "/v1/moves".to_string()),
    ] {
        assert_problem(
            &s.call(method, &path, &reader, Some(junk.clone())).await,
            403,
            "Forbidden",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_token_issue_never_stores_or_repeats_the_secret() {
    let s = Server::start();
    let t = s.tenant("Secret").await;
    let url = format!("{}/v1/tenants/{t}/tokens", s.base);
    let send = || {
        s.http
            .post(&url)
            .bearer_auth(OPERATOR)
            .header("Idempotency-Key", "issue-1")
            .json(&json!({"role": "GlobalReader"}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("x-tenantry-secret-fields").is_none());
    let first: Value = first.json().await.unwrap();
    let token = first["token"].as_str().unwrap().to_string();
    let again: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], first["id"], "no second token");
    assert!(again["token"].is_null());
    for bytes in s.stored_bytes() {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
    let (status, _) = s.get("/v1/tenants", &token).await;
    assert_eq!(status, 200, "the first response's token works");
}
