//! `tenantry calendars …` and `tenantry contacts …` are wired to the calendar and contact engine:
//! one calendar between two real Radicale servers, and clear refusals of bad locations.

use std::process::{Command, Output};

use tenantry_testkit::radicale::Radicale;
use tenantry_testkit::{PASSWORD, USER};

fn tenantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
        .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

async fn send(method: &str, url: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .basic_auth(USER, Some(PASSWORD))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn calendars_migrate_and_verify_run_from_the_main_binary() {
    let (src, dst) = (Radicale::start(), Radicale::start());
    assert_eq!(send("MKCALENDAR", &src.http("/alice/cal/"), "").await, 201);
    let ev = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:e1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240110T100000Z\r\nSUMMARY:Grüße\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    assert_eq!(send("PUT", &src.http("/alice/cal/e1.ics"), ev).await, 201);
    let state = tempfile::tempdir().unwrap();
    let (s, t) = (src.url("caldav", "/alice/"), dst.url("caldav", "/alice/"));
    let out = tenantry(&[
        "calendars",
        "migrate",
        "--source",
        &s,
        "--target",
        &t,
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("copied 1 objects"), "{text}");
    let out = tenantry(&["calendars", "verify", "--source", &s, "--target", &t]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A calendar URL given to `contacts`, and a password in a URL: refused, exit 2, not echoed.
    let out = tenantry(&["contacts", "migrate", "--source", &s, "--target", &t]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("carddav://"));
    let out = tenantry(&[
        "calendars",
        "verify",
        "--source",
        "caldav://alice:hunter2@127.0.0.1:1/x/",
        "--target",
        &t,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password in the URL is refused") && !err.contains("hunter2"),
        "{err}"
    );
}
