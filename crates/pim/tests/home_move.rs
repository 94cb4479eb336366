//! One user's home as a tenant move copies it, against real Radicale servers with a service
//! login that may open every home: discovery of another user's home, a re-run that copies
//! nothing, a user without a source home, a target without the user's home, a refused login.

use tenantry_pim::dav::DavError;
use tenantry_pim::home_move::{
    migrate_home, probe, verify_home, HomeCheck, HomeRun, NoTargetHome, ServiceLogin,
};
use tenantry_pim::kind::Kind;
use tenantry_testkit::radicale::{Radicale, SERVICE_USER};
use tenantry_testkit::PASSWORD;

async fn send(method: &str, url: &str, user: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .basic_auth(user, Some(PASSWORD))
        .header("Content-Type", "text/calendar")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn service(server: &Radicale, password: &str) -> ServiceLogin {
    ServiceLogin {
        url: format!("caldav://127.0.0.1:{}/", server.port),
        user: SERVICE_USER.into(),
        password: password.into(),
    }
}

const EVENT: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:standup@example.org\r\nDTSTAMP:20240101T090000Z\r\nDTSTART:20240102T090000Z\r\nSUMMARY:Stand-up\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_service_login_moves_another_users_home() {
    let src = Radicale::start_for_users(&["alice", "bob"]);
    let dst = Radicale::start_for_users(&["carol", "dave"]);
    // Alice has a calendar with one event; bob never signed in (no home); carol exists on the
    // target (signed in once), dave does not yet.
    assert_eq!(
        send("MKCALENDAR", &src.http("/alice/work/"), "alice", "").await,
        201
    );
    assert_eq!(
        send("PUT", &src.http("/alice/work/standup.ics"), "alice", EVENT).await,
        201
    );
    assert_eq!(
        send("PROPFIND", &dst.http("/carol/"), "carol", "").await,
        207
    );
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("calendars.sqlite");
    let (s, t) = (service(&src, PASSWORD), service(&dst, PASSWORD));
    probe(Kind::Calendars, &s).await.unwrap();

    let run = migrate_home(Kind::Calendars, &s, "alice", &t, "carol", &state)
        .await
        .unwrap();
    let HomeRun::Migrated {
        source_home,
        target_home,
        report,
    } = run
    else {
        panic!("{run:?}")
    };
    assert!(
        source_home.ends_with("/alice/") && target_home.ends_with("/carol/"),
        "{source_home} {target_home}"
    );
    assert_eq!(report.copied, 1, "{report:?}");
    let copy = reqwest::Client::new()
        .get(dst.http("/carol/work/standup.ics"))
        .basic_auth("carol", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(copy.contains("UID:standup@example.org"), "{copy}");
    // A re-run copies nothing; verification finds the object identical.
    let again = migrate_home(Kind::Calendars, &s, "alice", &t, "carol", &state)
        .await
        .unwrap();
    let HomeRun::Migrated { report, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!((report.copied, report.reconciled), (0, 0), "{report:?}");
    let check = verify_home(Kind::Calendars, &s, "alice", &t, "carol")
        .await
        .unwrap();
    let HomeCheck::Verified(v) = check else {
        panic!("{check:?}")
    };
    assert!(v.ok() && v.identical == 1, "{v:?}");

    // No home on the source: an outcome with a notice, not an error.
    let none = migrate_home(Kind::Calendars, &s, "bob", &t, "carol", &state)
        .await
        .unwrap();
    let HomeRun::NoSourceHome { notice } = none else {
        panic!("{none:?}")
    };
    assert!(
        notice.contains("bob has no calendars home on the source"),
        "{notice}"
    );
    // No home on the target yet: its own error, which a move waits on.
    let e = migrate_home(Kind::Calendars, &s, "alice", &t, "dave", &state)
        .await
        .unwrap_err();
    assert!(e.chain().any(|c| c.is::<NoTargetHome>()), "{e:#}");
    // A refused service login: the server's 401 in the chain, no password in the message.
    let wrong = service(&dst, "not-the-password");
    let e = migrate_home(Kind::Calendars, &s, "alice", &wrong, "carol", &state)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.chain().find_map(|c| c.downcast_ref::<DavError>()),
            Some(DavError::Auth(401))
        ),
        "{e:#}"
    );
    assert!(!format!("{e:#}").contains("not-the-password"));
    assert!(probe(Kind::Calendars, &wrong).await.is_err());
}
