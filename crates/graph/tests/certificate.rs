//! Certificate credentials (a signed client assertion instead of a secret) against the test
//! kit's fake token endpoint, which verifies the assertion as Entra ID documents it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tenantry_graph::certificate::{CertificateError, ASSERTION_LIFETIME_SECS, ASSERTION_TYPE};
use tenantry_graph::token::{AppTokens, EXCHANGE_ONLINE_SCOPE};
use tenantry_graph::{ClientCertificate, GraphClient, GraphConfig, GraphError};
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, TENANT};
use tenantry_testkit::tls::{app_certificate, AppCertificate};

fn config(fake: &FakeGraph, cert: &AppCertificate) -> GraphConfig {
    let pem = std::fs::read(&cert.pem_file).unwrap();
    let mut cfg = GraphConfig::from_env(
        TENANT,
        CLIENT_ID,
        ClientCertificate::from_pem(&pem).unwrap(),
    );
    cfg.graph_url = fake.url().to_string();
    cfg.authority = fake.url().to_string();
    cfg
}

fn client(fake: &FakeGraph, cert: &AppCertificate) -> GraphClient {
    GraphClient::new(config(fake, cert), reqwest::Client::new())
}

/// The base64 of the private key's PEM lines: none of it may show in an error.
fn key_lines(cert: &AppCertificate) -> Vec<String> {
    String::from_utf8(cert.key_pem.clone())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

fn assert_names_neither_key_nor_assertion(text: &str, cert: &AppCertificate) {
    for line in key_lines(cert) {
        assert!(!text.contains(&line), "key material in: {text}");
    }
    // Every JWT starts with the base64url of `{"`.
    assert!(!text.contains("eyJ"), "an assertion in: {text}");
}

fn decode(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_registered_certificate_gets_tokens_for_graph_and_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let cert = app_certificate(dir.path(), "app");
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.register_certificate(&cert.certificate_pem);
    fake.add_user("adele@contoso.com");
    let c = client(&fake, &cert);
    c.get_json("/users/adele@contoso.com/drive").await.unwrap();
    // A new token needs a new assertion (the fake refuses a jti seen before).
    fake.revoke_tokens();
    c.get_json("/users/adele@contoso.com/drive").await.unwrap();
    let tokens = AppTokens::new(config(&fake, &cert), EXCHANGE_ONLINE_SCOPE);
    tokens.get().await.unwrap();
    let s = fake.stats();
    assert_eq!(s.tokens_issued, 3);
    assert_eq!(s.unauthorized, 1, "the revoked token only");
    assert!(s.token_scopes.contains(&EXCHANGE_ONLINE_SCOPE.to_string()));
    let shown = format!("{c:?} {tokens:?}");
    assert_names_neither_key_nor_assertion(&shown, &cert);
}

#[tokio::test]
async fn the_assertion_is_the_documented_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let cert = app_certificate(dir.path(), "app");
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let thumbprint = fake.register_certificate(&cert.certificate_pem);
    let c = ClientCertificate::from_pem(&std::fs::read(&cert.pem_file).unwrap()).unwrap();
    assert_eq!(c.thumbprint_s256(), thumbprint);
    let aud = "https://login.microsoftonline.com/contoso/oauth2/v2.0/token";
    let jwt = c.assertion(CLIENT_ID, aud).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t#S256"], thumbprint.as_str());
    // SHA-1, 20 bytes.
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(header["x5t"].as_str().unwrap())
            .unwrap()
            .len(),
        20
    );
    let claims = decode(parts[1]);
    assert_eq!(claims["aud"], aud);
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let nbf = claims["nbf"].as_i64().unwrap();
    assert!((now - nbf).abs() < 120, "nbf {nbf}, now {now}");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - nbf,
        ASSERTION_LIFETIME_SECS as i64
    );
    let again = decode(
        c.assertion(CLIENT_ID, aud)
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert_ne!(claims["jti"], again["jti"], "a new jti each time");
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused_without_showing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let registered = app_certificate(dir.path(), "registered");
    let other = app_certificate(dir.path(), "other");
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.register_certificate(&registered.certificate_pem);
    let e = client(&fake, &other)
        .get_json("/users/x@y/drive")
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Auth { status: 401, .. }), "{e}");
    assert_eq!(e.code(), Some("invalid_client"));
    let text = format!("{e} {e:?}");
    assert!(text.contains("AADSTS700027"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert_names_neither_key_nor_assertion(&text, &other);
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = app_certificate(dir.path(), "app");
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.register_certificate(&cert.certificate_pem);
    // The token endpoint's clock eleven minutes ahead: a fresh assertion is already past `exp`.
    fake.set_token_clock_ahead(std::time::Duration::from_secs(660));
    let e = client(&fake, &cert)
        .get_json("/users/x@y/drive")
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(text.contains("AADSTS700024"), "{text}");
    assert_names_neither_key_nor_assertion(&text, &cert);
    // Within the lifetime it is accepted.
    fake.set_token_clock_ahead(std::time::Duration::from_secs(60));
    fake.add_user("adele@contoso.com");
    client(&fake, &cert)
        .get_json("/users/adele@contoso.com/drive")
        .await
        .unwrap();
}

/// Assertions a client of ours would not send, posted as they are: the fake checks what Entra
/// ID checks.
#[tokio::test]
async fn the_fake_checks_signature_audience_and_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let a = app_certificate(dir.path(), "a");
    let b = app_certificate(dir.path(), "b");
    let fake = FakeGraph::start(FakeGraphOptions::default());
    fake.register_certificate(&a.certificate_pem);
    let load = |c: &AppCertificate| {
        ClientCertificate::from_pem(&std::fs::read(&c.pem_file).unwrap()).unwrap()
    };
    let (ca, cb) = (load(&a), load(&b));
    let url = format!("{}/{TENANT}/oauth2/v2.0/token", fake.url());
    let post = |assertion: String| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("scope", "https://graph.microsoft.com/.default"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A's header and claims, B's signature.
    let ja = ca.assertion(CLIENT_ID, &url).unwrap();
    let jb = cb.assertion(CLIENT_ID, &url).unwrap();
    let (head, _) = ja.rsplit_once('.').unwrap();
    let (_, sig_b) = jb.rsplit_once('.').unwrap();
    let (status, body) = post(format!("{head}.{sig_b}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("AADSTS700027") && body.contains("signature"),
        "{body}"
    );
    let (status, body) = post(ca.assertion(CLIENT_ID, "https://elsewhere/token").unwrap()).await;
    assert_eq!(status, 401);
    assert!(body.contains("AADSTS700023"), "{body}");
    let (status, body) = post(ca.assertion("another-app", &url).unwrap()).await;
    assert_eq!(status, 401);
    assert!(body.contains("AADSTS700021"), "{body}");
    // The same assertion twice: the second is a replay.
    let once = ca.assertion(CLIENT_ID, &url).unwrap();
    assert_eq!(post(once.clone()).await.0, 200);
    assert_eq!(post(once).await.0, 401);
}

#[test]
fn pem_files_are_checked_and_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let a = app_certificate(dir.path(), "a");
    let b = app_certificate(dir.path(), "b");
    let load = |pem: Vec<u8>| ClientCertificate::from_pem(&pem).map(|_| ());
    assert_eq!(
        load([a.key_pem.clone(), b.certificate_pem.clone()].concat()),
        Err(CertificateError::KeyMismatch)
    );
    assert_eq!(
        load(a.key_pem.clone()),
        Err(CertificateError::NoCertificate)
    );
    assert_eq!(
        load(a.certificate_pem.clone()),
        Err(CertificateError::NoPrivateKey)
    );
    // The certificate first and a PKCS#1 key ("RSA PRIVATE KEY") work as well.
    let pkcs1 = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(dir.path().join("a.key"))
        .output()
        .unwrap();
    assert!(pkcs1.status.success());
    assert!(String::from_utf8_lossy(&pkcs1.stdout).contains("BEGIN RSA PRIVATE KEY"));
    assert_eq!(
        load([a.certificate_pem.clone(), pkcs1.stdout].concat()),
        Ok(())
    );
    let c = ClientCertificate::from_pem(&std::fs::read(&a.pem_file).unwrap()).unwrap();
    assert_names_neither_key_nor_assertion(&format!("{c:?}"), &a);
}

/// A PEM text is parsed (and its key checked against the certificate) once while anything
/// holds the result: a configuration rebuilt from a stored profile for every lookup shares it.
#[test]
fn a_pem_text_is_parsed_once_while_its_certificate_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let a = app_certificate(dir.path(), "a");
    let b = app_certificate(dir.path(), "b");
    let pem_a = std::fs::read(&a.pem_file).unwrap();
    let first = ClientCertificate::parsed(&pem_a).unwrap();
    let again = ClientCertificate::parsed(&pem_a.clone()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again), "parsed again");
    let other = ClientCertificate::parsed(&std::fs::read(&b.pem_file).unwrap()).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &other));
    assert_ne!(first.thumbprint_s256(), other.thumbprint_s256());
    // Once nothing uses it, the key is not kept: the next lookup parses it anew.
    let thumbprint = first.thumbprint_s256().to_string();
    let held = std::sync::Arc::downgrade(&first);
    drop((first, again));
    assert!(held.upgrade().is_none(), "the cache keeps no key alive");
    let anew = ClientCertificate::parsed(&pem_a).unwrap();
    assert_eq!(anew.thumbprint_s256(), thumbprint);
    // A bad text is refused each time, never remembered as good.
    let mismatch = [a.key_pem.clone(), b.certificate_pem.clone()].concat();
    for _ in 0..2 {
        assert_eq!(
            ClientCertificate::parsed(&mismatch).map(|_| ()),
            Err(CertificateError::KeyMismatch)
        );
    }
}
