//! The Graph surface (`/v1.0`) and the client-credentials grant, as a Graph client uses them:
//! over plain HTTP against the real `tenantry serve`.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use support::*;

/// Registers an application of `tenant` and returns (client id, client secret).
async fn application(s: &Server, tenant: &str, role: &str) -> (String, String) {
    let app = s
        .ok(
            Method::POST,
            &format!("/v1/tenants/{tenant}/applications"),
            OPERATOR,
            Some(json!({"displayName": "migration script", "role": role})),
        )
        .await;
    (
        app["clientId"].as_str().unwrap().to_string(),
        app["clientSecret"].as_str().unwrap().to_string(),
    )
}

/// The token endpoint, with a form body as MSAL sends it.
async fn token_request(s: &Server, tenant: &str, form: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .post(format!("{}/{tenant}/oauth2/v2.0/token", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn client_credentials(s: &Server, tenant: &str, id: &str, secret: &str) -> String {
    let (status, body) = token_request(
        s,
        tenant,
        &format!(
            "grant_type=client_credentials&client_id={id}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            tenantry_api::routes::urlencode(secret)
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_string()
}

/// A Graph request: (status, request-id header, body).
async fn graph(
    s: &Server,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
    eventual: bool,
) -> (StatusCode, String, Value) {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        format!("{}/v1.0{url}", s.base)
    };
    let mut r = s.http.request(method, url).bearer_auth(token);
    if eventual {
        r = r.header("ConsistencyLevel", "eventual");
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let request_id = r
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap();
    (
        status,
        request_id,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Asserts Graph's error envelope with tenantry's code, and that it names its request.
fn assert_graph_error(got: &(StatusCode, String, Value), status: u16, code: &str) {
    let (s, request_id, body) = got;
    assert_eq!(s.as_u16(), status, "expected {status} {code}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        request_id.as_str()
    );
    assert!(!request_id.is_empty());
    assert!(body["error"]["innerError"]["date"].as_str().is_some());
}

fn graph_user(upn: &str, name: &str) -> Value {
    json!({
        "accountEnabled": true,
        "displayName": name,
        "mailNickname": upn.split('@').next().unwrap(),
        "userPrincipalName": upn,
        "usageLocation": "DE",
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graph_client_with_client_credentials() {
    let s = Server::start();
    let t = s.tenant("Contoso").await;
    s.subscription(&t, "ENTERPRISEPACK", 2).await;

    // Registering an application: the tenant's global admin may, a licence admin may not.
    let licence_admin = s.token(&t, "LicenseAdmin").await;
    let refused = s
        .post(
            &format!("/v1/tenants/{t}/applications"),
            &licence_admin,
            json!({"displayName": "x", "role": "GlobalAdmin"}),
        )
        .await;
    assert_problem(&refused, 403, "Forbidden");
    let (client_id, secret) = application(&s, &t, "GlobalAdmin").await;
    assert!(secret.len() >= 40);

    // The token endpoint refuses as Entra ID does.
    let wrong = token_request(&s, &t, &format!("grant_type=client_credentials&client_id={client_id}&client_secret=nope&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default")).await;
    assert_eq!(wrong.0, 401, "{}", wrong.1);
    assert_eq!(wrong.1["error"], "invalid_client");
    let other_tenant = s.tenant("Fabrikam").await;
    let elsewhere = token_request(&s, &other_tenant, &format!("grant_type=client_credentials&client_id={client_id}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default", tenantry_api::routes::urlencode(&secret))).await;
    assert_eq!(
        elsewhere.1["error"], "invalid_client",
        "a client of another tenant"
    );
    let scope = token_request(
        &s,
        &t,
        &format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret=x&scope=User.Read"
        ),
    )
    .await;
    assert_eq!(
        (scope.0.as_u16(), scope.1["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let grant = token_request(&s, &t, "grant_type=password&scope=a/.default").await;
    assert_eq!(grant.1["error"], "unsupported_grant_type");

    let token = client_credentials(&s, &t, &client_id, &secret).await;

    // subscribedSkus, as Graph shapes it.
    let (status, _, skus) = graph(&s, Method::GET, "/subscribedSkus", &token, None, false).await;
    assert_eq!(status, 200, "{skus}");
    let e3 = skus["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["skuPartNumber"] == "ENTERPRISEPACK")
        .expect("E3 is subscribed");
    assert_eq!(e3["skuId"], E3);
    assert_eq!(e3["prepaidUnits"]["enabled"], 2);
    assert_eq!(e3["consumedUnits"], 0);
    assert_eq!(e3["capabilityStatus"], "Enabled");
    assert_eq!(e3["subscriptionIds"].as_array().unwrap().len(), 1);
    let (_, _, subs) = graph(
        &s,
        Method::GET,
        "/directory/subscriptions",
        &token,
        None,
        false,
    )
    .await;
    assert_eq!(subs["value"][0]["totalLicenses"], 2);
    assert_eq!(subs["value"][0]["status"], "Enabled");
    let (_, _, org) = graph(&s, Method::GET, "/organization", &token, None, false).await;
    assert_eq!(org["value"][0]["id"], t.as_str());

    // A user with Graph's required fields; without them, refused in Graph's envelope.
    let created = graph(
        &s,
        Method::POST,
        "/users",
        &token,
        Some(graph_user("adele@contoso.com", "Adele Vance")),
        false,
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    assert_eq!(created.2["userPrincipalName"], "adele@contoso.com");
    let mut incomplete = graph_user("x@contoso.com", "X");
    incomplete.as_object_mut().unwrap().remove("mailNickname");
    let refused = graph(&s, Method::POST, "/users", &token, Some(incomplete), false).await;
    assert_graph_error(&refused, 400, "ValidationFailed");

    // Assign and remove a licence by userPrincipalName.
    let add = json!({"addLicenses": [{"skuId": E3, "disabledPlans": []}], "removeLicenses": []});
    let (status, _, user) = graph(
        &s,
        Method::POST,
        "/users/adele@contoso.com/assignLicense",
        &token,
        Some(add.clone()),
        false,
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["assignedLicenses"][0]["skuId"], E3);
    let (_, _, details) = graph(
        &s,
        Method::GET,
        "/users/ADELE@contoso.com/licenseDetails",
        &token,
        None,
        false,
    )
    .await;
    assert_eq!(details["value"][0]["skuPartNumber"], "ENTERPRISEPACK");
    assert!(details["value"][0]["servicePlans"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["provisioningStatus"] == "Success"));
    let remove = json!({"addLicenses": [], "removeLicenses": [E3]});
    let (status, _, _) = graph(
        &s,
        Method::POST,
        "/users/adele@contoso.com/assignLicense",
        &token,
        Some(remove),
        false,
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, details) = graph(
        &s,
        Method::GET,
        "/users/adele@contoso.com/licenseDetails",
        &token,
        None,
        false,
    )
    .await;
    assert_eq!(details["value"], json!([]));

    // PATCH answers 204; the change is there.
    let (status, _, _) = graph(
        &s,
        Method::PATCH,
        "/users/adele@contoso.com",
        &token,
        Some(json!({"displayName": "Adele V."})),
        false,
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, adele) = graph(
        &s,
        Method::GET,
        "/users/adele@contoso.com?$select=displayName,assignedLicenses",
        &token,
        None,
        false,
    )
    .await;
    assert_eq!(
        adele,
        json!({"displayName": "Adele V.", "assignedLicenses": []})
    );

    // Two seats: the third assignment is refused, with tenantry's code in Graph's envelope.
    let mut holders = Vec::new();
    for alias in ["megan", "lee", "nestor"] {
        let upn = format!("{alias}@contoso.com");
        let (status, _, _) = graph(
            &s,
            Method::POST,
            "/users",
            &token,
            Some(graph_user(&upn, alias)),
            false,
        )
        .await;
        assert_eq!(status, 201);
        holders.push(upn);
    }
    for upn in &holders[..2] {
        let (status, _, _) = graph(
            &s,
            Method::POST,
            &format!("/users/{upn}/assignLicense"),
            &token,
            Some(add.clone()),
            false,
        )
        .await;
        assert_eq!(status, 200);
    }
    let no_seat = graph(
        &s,
        Method::POST,
        "/users/nestor@contoso.com/assignLicense",
        &token,
        Some(add.clone()),
        false,
    )
    .await;
    assert_graph_error(&no_seat, 400, "NoFreeSeat");

    // Filter by SKU with $count (needs ConsistencyLevel: eventual).
    let by_sku = format!("/users?$filter=assignedLicenses/any(x:x/skuId%20eq%20{E3})&$count=true");
    let (status, _, found) = graph(&s, Method::GET, &by_sku, &token, None, true).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["@odata.count"], 2);
    let upns: HashSet<&str> = found["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert_eq!(upns, holders[..2].iter().map(String::as_str).collect());
    let no_header = graph(&s, Method::GET, &by_sku, &token, None, false).await;
    assert_graph_error(&no_header, 400, "ConsistencyLevelRequired");
    let combined = "/users?$filter=startswith(displayName,'me')%20and%20usageLocation%20eq%20'DE'&$select=userPrincipalName";
    let (_, _, found) = graph(&s, Method::GET, combined, &token, None, false).await;
    assert_eq!(
        found["value"],
        json!([{"userPrincipalName": "megan@contoso.com"}])
    );
    let (_, _, found) = graph(
        &s,
        Method::GET,
        "/users?$search=%22displayName:sto%22&$count=true",
        &token,
        None,
        true,
    )
    .await;
    assert_eq!(found["@odata.count"], 1, "{found}");

    // Options not served are refused, never ignored.
    let unknown = graph(
        &s,
        Method::GET,
        "/users?$orderby=displayName",
        &token,
        None,
        false,
    )
    .await;
    assert_graph_error(&unknown, 400, "UnsupportedQueryOption");
    let too_big = graph(&s, Method::GET, "/users?$top=1000", &token, None, false).await;
    assert_graph_error(&too_big, 400, "InvalidPageSize");
    let missing = graph(
        &s,
        Method::GET,
        "/users/nobody@contoso.com",
        &token,
        None,
        false,
    )
    .await;
    assert_graph_error(&missing, 404, "NotFound");
    let no_route = graph(&s, Method::GET, "/groups", &token, None, false).await;
    assert_graph_error(&no_route, 404, "NotFound");

    // The operator token has no tenant to act in here.
    let operator = graph(&s, Method::GET, "/users", OPERATOR, None, false).await;
    assert_graph_error(&operator, 403, "OperatorTokenNotAccepted");

    // The audit log in directoryAudit's shape, naming the application.
    let (_, _, audits) = graph(
        &s,
        Method::GET,
        "/auditLogs/directoryAudits?$top=50",
        &token,
        None,
        false,
    )
    .await;
    let licence_change = audits["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["activityDisplayName"] == "Change user license")
        .expect("audited");
    assert_eq!(
        licence_change["initiatedBy"]["app"]["appId"],
        client_id.as_str()
    );
    // People read it: the application and the user by name, the licences as products.
    assert_eq!(
        licence_change["initiatedBy"]["app"]["displayName"],
        "application 'migration script' (GlobalAdmin)"
    );
    let adele_assigned = audits["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["targetResources"][0]["userPrincipalName"] == "adele@contoso.com"
                && a["additionalDetails"][1]["value"] == "ENTERPRISEPACK assigned"
        })
        .unwrap_or_else(|| panic!("adele's licence, described: {audits}"));
    let target = &adele_assigned["targetResources"][0];
    // A licence record names the user as they are called now (renamed above).
    assert_eq!(target["displayName"], "Adele V.");
    assert_eq!(
        target["modifiedProperties"],
        json!([{"displayName": "Licences", "oldValue": null, "newValue": "ENTERPRISEPACK"}])
    );

    // DELETE answers 204 and frees nothing it did not hold.
    let (status, _, _) = graph(
        &s,
        Method::DELETE,
        "/users/adele@contoso.com",
        &token,
        None,
        false,
    )
    .await;
    assert_eq!(status, 204);

    // The /v1 API takes a userPrincipalName too.
    let v1 = s
        .get(
            &format!("/v1/tenants/{t}/users/megan@contoso.com/licenseDetails"),
            OPERATOR,
        )
        .await;
    assert_eq!(v1.0, 200, "{}", v1.1);
    assert_eq!(v1.1["value"][0]["skuId"], E3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_through_2500_users_with_top_and_next_links() {
    let s = Server::start();
    let t = s.tenant("Big").await;
    let (client_id, secret) = application(&s, &t, "GlobalReader").await;
    let token = client_credentials(&s, &t, &client_id, &secret).await;
    let path = format!("/v1/tenants/{t}/users");
    let mut tasks = tokio::task::JoinSet::new();
    let created = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..2500 {
        let (http, url, permit) = (s.http.clone(), format!("{}{path}", s.base), created.clone());
        tasks.spawn(async move {
            let _p = permit.acquire().await.unwrap();
            let r = http.post(url).bearer_auth(OPERATOR)
                .json(&json!({"userPrincipalName": format!("u{i:04}@big.example"), "displayName": format!("User {i}")}))
                .send().await.unwrap();
            assert_eq!(r.status(), 201);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let mut seen = HashSet::new();
    let mut url = format!(
        "{}/v1.0/users?$top=999&$select=id,userPrincipalName",
        s.base
    );
    let mut pages = 0;
    loop {
        let (status, _, page) = graph(&s, Method::GET, &url, &token, None, false).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for u in page["value"].as_array().unwrap() {
            assert_eq!(
                u.as_object().unwrap().len(),
                2,
                "only the selected properties: {u}"
            );
            assert!(
                seen.insert(u["id"].as_str().unwrap().to_string()),
                "no user twice"
            );
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&s.base), "an absolute nextLink: {next}");
                assert!(
                    next.contains("%24select") || next.contains("$select"),
                    "the nextLink keeps $select: {next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 2500);
    assert_eq!(pages, 3);
    let tampered = graph(&s, Method::GET, "/users?$skiptoken=42", &token, None, false).await;
    assert_graph_error(&tampered, 400, "InvalidSkipToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_tokens_and_the_request_budget() {
    let s = Server::start_with_args(&[
        // Long enough that a loaded machine still uses the token in time, short for the test.
        "--token-lifetime",
        "5",
        "--graph-budget",
        "5",
        "--graph-budget-window",
        "3600",
    ]);
    let t = s.tenant("Small").await;
    let (client_id, secret) = application(&s, &t, "GlobalReader").await;

    let short = client_credentials(&s, &t, &client_id, &secret).await;
    let (status, _, _) = graph(&s, Method::GET, "/organization", &short, None, false).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(6100)).await;
    let expired = graph(&s, Method::GET, "/organization", &short, None, false).await;
    assert_graph_error(&expired, 401, "Unauthorized");

    // Five requests per hour for this application: the sixth waits, with Retry-After.
    let token = client_credentials(&s, &t, &client_id, &secret).await;
    let mut last = None;
    for _ in 0..5 {
        let r = s
            .http
            .get(format!("{}/v1.0/subscribedSkus", s.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        last = Some(r.status());
    }
    // The first token's request counted too: the budget is the application's.
    assert_eq!(last, Some(StatusCode::TOO_MANY_REQUESTS));
    let r = s
        .http
        .get(format!("{}/v1.0/subscribedSkus", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 60 && retry <= 720, "Retry-After {retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");

    // Another application of the tenant has its own budget.
    let (other_id, other_secret) = application(&s, &t, "GlobalReader").await;
    let other = client_credentials(&s, &t, &other_id, &other_secret).await;
    let (status, _, _) = graph(&s, Method::GET, "/subscribedSkus", &other, None, false).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_token_cannot_mint_lasting_credentials() {
    let s = Server::start();
    let t = s.tenant("Persistence").await;
    let (id, secret) = application(&s, &t, "GlobalAdmin").await;
    let token = client_credentials(&s, &t, &id, &secret).await;
    // An hour-long app token of a global admin must not turn into an API token that never
    // expires, or a second application with its own secret.
    for (path, body) in [
        (
            format!("/v1/tenants/{t}/tokens"),
            json!({"role": "GlobalAdmin"}),
        ),
        (
            format!("/v1/tenants/{t}/applications"),
            json!({"displayName": "backdoor", "role": "GlobalAdmin"}),
        ),
    ] {
        let result = s.post(&path, &token, body).await;
        assert_problem(&result, 403, "AppTokenCannotIssueCredentials");
    }
    // It still does what an app is for.
    let (status, _) = s.get(&format!("/v1/tenants/{t}/users"), &token).await;
    assert_eq!(status, 200);
}

/// Behind a TLS-terminating proxy, `--public-url` is what absolute links start with (not the
/// `Host` a client sent), and MSAL finds the token endpoint through the OpenID configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_and_the_openid_configuration() {
    let s = Server::start_with_args(&["--public-url", "https://tenantry.example:8443/"]);
    let t = s.tenant("Proxied").await;
    let (client_id, secret) = application(&s, &t, "GlobalReader").await;
    let token = client_credentials(&s, &t, &client_id, &secret).await;

    let discovery = s
        .http
        .get(format!(
            "{}/{t}/v2.0/.well-known/openid-configuration",
            s.base
        ))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 200);
    let discovery: Value = discovery.json().await.unwrap();
    assert_eq!(
        discovery["token_endpoint"],
        format!("https://tenantry.example:8443/{t}/oauth2/v2.0/token")
    );
    assert_eq!(
        discovery["issuer"],
        format!("https://tenantry.example:8443/{t}/v2.0")
    );
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["client_credentials"])
    );
    let authorize = s
        .http
        .get(format!("{}/{t}/oauth2/v2.0/authorize", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), 400);
    let refused: Value = authorize.json().await.unwrap();
    assert_eq!(refused["error"], "unsupported_response_type");
    let not_a_tenant = s
        .http
        .get(format!(
            "{}/not-a-guid/v2.0/.well-known/openid-configuration",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_tenant.status(), 400);

    for i in 0..3 {
        s.ok(
            Method::POST,
            &format!("/v1/tenants/{t}/users"),
            OPERATOR,
            Some(json!({"userPrincipalName": format!("p{i}@proxied.example"), "displayName": format!("P {i}")})),
        )
        .await;
    }
    let (status, _, page) = graph(&s, Method::GET, "/users?$top=2", &token, None, false).await;
    assert_eq!(status, 200, "{page}");
    let next = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with("https://tenantry.example:8443/v1.0/users?"),
        "{next}"
    );
    assert!(page["@odata.context"]
        .as_str()
        .unwrap()
        .starts_with("https://tenantry.example:8443/v1.0/$metadata#users"));

    // A path, a query or another scheme is refused at start-up.
    for bad in ["ftp://x.example", "https://x.example/tenantry", "not a url"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["serve", "--public-url", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--public-url"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A leaked secret is replaced, and an application no longer needed is deleted: both stop the old
/// credentials at once, access tokens included; a tenant sees and touches only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_secret_and_deleting_an_application() {
    let s = Server::start();
    let t = s.tenant("Contoso").await;
    let (client_id, old_secret) = application(&s, &t, "GlobalReader").await;
    let old_token = client_credentials(&s, &t, &client_id, &old_secret).await;
    let (status, _, _) = graph(&s, Method::GET, "/users", &old_token, None, false).await;
    assert_eq!(status, 200);

    // Listed without a secret.
    let listed = s
        .ok(
            Method::GET,
            &format!("/v1/tenants/{t}/applications"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(listed["value"][0]["clientId"], client_id.as_str());
    assert_eq!(listed["value"][0]["displayName"], "migration script");
    assert!(listed["value"][0].get("clientSecret").is_none(), "{listed}");

    // The application's own token cannot rotate its secret (it would outlive its hour).
    let (status, body) = s
        .post(
            &format!("/v1/tenants/{t}/applications/{client_id}/rotateSecret"),
            &old_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    let rotated = s
        .ok(
            Method::POST,
            &format!("/v1/tenants/{t}/applications/{client_id}/rotateSecret"),
            OPERATOR,
            Some(json!({})),
        )
        .await;
    let new_secret = rotated["clientSecret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, old_secret);
    let form = |secret: &str| {
        format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            tenantry_api::routes::urlencode(secret)
        )
    };
    let (status, body) = token_request(&s, &t, &form(&old_secret)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, _, _) = graph(&s, Method::GET, "/users", &old_token, None, false).await;
    assert_eq!(
        status, 401,
        "an access token issued with the old secret stops working"
    );
    let new_token = client_credentials(&s, &t, &client_id, &new_secret).await;
    let (status, _, _) = graph(&s, Method::GET, "/users", &new_token, None, false).await;
    assert_eq!(status, 200);

    // Another tenant's admin does not find it.
    let other = s.tenant("Fabrikam").await;
    let other_admin = s.token(&other, "GlobalAdmin").await;
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{other}/applications/{client_id}"),
            &other_admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{t}/applications/not-a-guid"),
            OPERATOR,
            None,
        )
        .await;
    assert_problem(&(status, body), 400, "MalformedId");

    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{t}/applications/{client_id}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = graph(&s, Method::GET, "/users", &new_token, None, false).await;
    assert_eq!(status, 401, "a deleted application's tokens stop working");
    let (status, _) = token_request(&s, &t, &form(&new_secret)).await;
    assert_eq!(status, 401);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{t}/applications/{client_id}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 404, "deleted once");
    let listed = s
        .ok(
            Method::GET,
            &format!("/v1/tenants/{t}/applications"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(listed["value"], json!([]));

    // The audit log says who did it, by name.
    let audit = s
        .ok(
            Method::GET,
            &format!("/v1/tenants/{t}/auditLogs?action=application.secretRotated"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(
        audit["value"][0]["summary"],
        "Client secret of migration script replaced; its access tokens revoked"
    );
    let audit = s
        .ok(
            Method::GET,
            &format!("/v1/tenants/{t}/auditLogs?action=application.deleted"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(audit["value"][0]["summary"], "Deleted migration script");
    assert_eq!(audit["value"][0]["actorName"], "operator");
}

/// `/openapi/graph.json` documents exactly what `/v1.0` serves: every documented operation is
/// routed (asked without a token it answers 401 in Graph's envelope, not 404 or 405), and a
/// method the document does not list is not. Schemathesis (scripts/api-contract) checks the
/// shapes against the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_openapi_document_matches_the_routes() {
    let s = Server::start();
    let doc: Value = s
        .http
        .get(format!("{}/openapi/graph.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let url = format!("{}{}", s.base, path.replace("{id}", "ada@contoso.example"));
        for method in ["get", "post", "patch", "delete"] {
            let asked = s
                .http
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &url,
                )
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = asked.status().as_u16();
            let body: Value = asked.json().await.unwrap_or(Value::Null);
            if item.get(method).is_some() {
                operations += 1;
                assert_eq!(status, 401, "{method} {path} is documented: {body}");
                assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
            } else {
                assert!(
                    status == 405 || status == 404,
                    "{method} {path} is not documented but answers {status}: {body}"
                );
            }
        }
    }
    assert_eq!(operations, 13, "the thirteen /v1.0 operations");
}
