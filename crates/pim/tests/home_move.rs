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

/// A SabreDAV-shaped server (Nextcloud, Baïkal): principals of users under
/// `/principals/users/`, while `principal-collection-set` names only `/principals/`. Another
/// user's principal is found beside the service login's own; an href to another server is
/// refused, not followed.
#[tokio::test(flavor = "multi_thread")]
async fn another_users_principal_is_found_beside_the_service_logins_own() {
    use tenantry_pim::dav::Dav;
    use tenantry_pim::discovery::user_home;
    use tenantry_pim::location::Access;
    use tenantry_testkit::hostile::{respond, HttpServer};

    let props = |href: &str, inner: &str| {
        format!(
            r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:cal="urn:ietf:params:xml:ns:caldav"><d:response><d:href>{href}</d:href><d:propstat><d:prop>{inner}</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#
        )
    };
    let server = HttpServer::start(move |req, w| {
        let body = match req.path.as_str() {
            "/remote.php/dav/" => props(
                "/remote.php/dav/",
                "<d:current-user-principal><d:href>/remote.php/dav/principals/users/svc/</d:href></d:current-user-principal><d:principal-collection-set><d:href>/remote.php/dav/principals/</d:href></d:principal-collection-set>",
            ),
            "/remote.php/dav/principals/users/alice/" => props(
                &req.path,
                "<cal:calendar-home-set><d:href>/remote.php/dav/calendars/alice/</d:href></cal:calendar-home-set>",
            ),
            "/remote.php/dav/principals/users/mallory/" => props(
                &req.path,
                "<cal:calendar-home-set><d:href>https://elsewhere.example/calendars/mallory/</d:href></cal:calendar-home-set>",
            ),
            _ => return respond(w, 404, &[], b""),
        };
        respond(
            w,
            207,
            &[("Content-Type", "application/xml")],
            body.as_bytes(),
        )
    });
    let dav = Dav::new(
        reqwest::Client::new(),
        Access {
            url: format!("http://127.0.0.1:{}/remote.php/dav/", server.port())
                .parse()
                .unwrap(),
            user: Some("svc".into()),
            password: Some("pw".into()),
        },
        Default::default(),
    );
    let home = user_home(&dav, Kind::Calendars, "alice").await.unwrap();
    assert_eq!(
        home.map(|u| u.path().to_string()).as_deref(),
        Some("/remote.php/dav/calendars/alice/")
    );
    // No such principal: no home, not an error.
    assert_eq!(user_home(&dav, Kind::Calendars, "bob").await.unwrap(), None);
    // A home on another server is refused.
    let e = user_home(&dav, Kind::Calendars, "mallory")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(server
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/remote.php/dav/principals/alice")));
}
