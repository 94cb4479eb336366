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

    let run = migrate_home(Kind::Calendars, &s, "alice", &t, "carol", &state, false)
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
    let again = migrate_home(Kind::Calendars, &s, "alice", &t, "carol", &state, false)
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
    let none = migrate_home(Kind::Calendars, &s, "bob", &t, "carol", &state, false)
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
    let e = migrate_home(Kind::Calendars, &s, "alice", &t, "dave", &state, false)
        .await
        .unwrap_err();
    assert!(e.chain().any(|c| c.is::<NoTargetHome>()), "{e:#}");
    // A refused service login: the server's 401 in the chain, no password in the message.
    let wrong = service(&dst, "not-the-password");
    let e = migrate_home(Kind::Calendars, &s, "alice", &wrong, "carol", &state, false)
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

async fn get(url: &str, user: &str) -> Vec<u8> {
    let r = reqwest::Client::new()
        .get(url)
        .basic_auth(user, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

/// The standup event with another summary.
fn standup(summary: &str) -> String {
    EVENT.replace("SUMMARY:Stand-up", &format!("SUMMARY:{summary}"))
}

/// One run of alice's calendars into carol's on `state`; the report.
async fn run_home(
    s: &ServiceLogin,
    t: &ServiceLogin,
    state: &std::path::Path,
    restored: bool,
) -> tenantry_pim::report::MigrationReport {
    run_home_to(s, t, "carol", state, restored).await
}

/// One run of alice's calendars into `target_user`'s on `state`; the report.
async fn run_home_to(
    s: &ServiceLogin,
    t: &ServiceLogin,
    target_user: &str,
    state: &std::path::Path,
    restored: bool,
) -> tenantry_pim::report::MigrationReport {
    let run = migrate_home(Kind::Calendars, s, "alice", t, target_user, state, restored)
        .await
        .unwrap();
    let HomeRun::Migrated { report, .. } = run else {
        panic!("{run:?}")
    };
    *report
}

/// A move's worker dies after copying an update and a deletion but before its state was saved;
/// the next worker restores the older snapshot. The target then holds newer copies than the
/// state records: an object whose target copy has the source's content is taken as done (the
/// stale `If-Match` is a 412), and a deletion already carried out is done. A real edit on the
/// target is still reported.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_older_state_takes_the_targets_newer_copies_as_done() {
    let src = Radicale::start_for_users(&["alice"]);
    let dst = Radicale::start_for_users(&["carol"]);
    let (event, gone) = ("/alice/work/standup.ics", "/alice/work/review.ics");
    let target_event = dst.http("/carol/work/standup.ics");
    assert_eq!(
        send("MKCALENDAR", &src.http("/alice/work/"), "alice", "").await,
        201
    );
    assert_eq!(send("PUT", &src.http(event), "alice", EVENT).await, 201);
    let review = EVENT
        .replace("standup@example.org", "review@example.org")
        .replace("Stand-up", "Review");
    assert_eq!(send("PUT", &src.http(gone), "alice", &review).await, 201);
    assert_eq!(
        send("PROPFIND", &dst.http("/carol/"), "carol", "").await,
        207
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("calendars.sqlite");
    let (s, t) = (service(&src, PASSWORD), service(&dst, PASSWORD));

    let first = run_home(&s, &t, &state, false).await;
    assert_eq!((first.copied, first.failures.len()), (2, 0), "{first:?}");
    // The snapshot: the store is closed after a run (no WAL left beside it).
    assert!(!dir.path().join("calendars.sqlite-wal").exists());
    let snapshot = dir.path().join("snapshot.sqlite");
    std::fs::copy(&state, &snapshot).unwrap();

    // After the snapshot: the event changes and the review is deleted on the source, and a run
    // carries both to the target (new target ETag) before its worker dies.
    let later = send("PUT", &src.http(event), "alice", &standup("Stand-up later")).await;
    assert!(matches!(later, 201 | 204), "{later}");
    let deleted = send("DELETE", &src.http(gone), "alice", "").await;
    assert!(matches!(deleted, 200 | 204), "{deleted}");
    let second = run_home(&s, &t, &state, false).await;
    assert_eq!(
        (second.copied, second.deleted, second.failures.len()),
        (1, 1, 0),
        "{second:?}"
    );

    // The older state even without the flag: the stale If-Match is refused, and the target's
    // copy, already the source's content, is taken as it is (nothing is overwritten).
    let stale = dir.path().join("stale.sqlite");
    std::fs::copy(&snapshot, &stale).unwrap();
    let unflagged = run_home(&s, &t, &stale, false).await;
    assert!(unflagged.ok(), "{unflagged:?}");
    assert_eq!(
        (unflagged.copied, unflagged.reconciled, unflagged.deleted),
        (0, 1, 1),
        "{unflagged:?}"
    );

    // Restored: the target's copy is the source's version, taken as done; the deletion too.
    let restored = dir.path().join("restored.sqlite");
    std::fs::copy(&snapshot, &restored).unwrap();
    let report = run_home(&s, &t, &restored, true).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        (report.copied, report.reconciled, report.deleted),
        (0, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        get(&src.http(event), "alice").await,
        get(&target_event, "carol").await
    );
    // The state now records the target's current ETag: a plain re-run has nothing to do.
    let again = run_home(&s, &t, &restored, false).await;
    assert!(again.ok(), "{again:?}");
    assert_eq!((again.copied, again.reconciled), (0, 0), "{again:?}");

    // A real edit on the target is not the source's bytes: still reported, and kept.
    let edit = standup("Carol's own edit");
    let edited = send("PUT", &target_event, "carol", &edit).await;
    assert!(matches!(edited, 201 | 204), "{edited}");
    let moved = send("PUT", &src.http(event), "alice", &standup("Stand-up moved")).await;
    assert!(matches!(moved, 201 | 204), "{moved}");
    let conflict = run_home(&s, &t, &restored, true).await;
    assert!(
        conflict
            .failures
            .iter()
            .any(|f| f.object == "standup.ics" && f.status == Some(412)),
        "{conflict:?}"
    );
    let kept = String::from_utf8(get(&target_event, "carol").await).unwrap();
    assert!(kept.contains("Carol's own edit"), "{kept}");
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

/// A bare server URL's own home (`resolve_home`, the CLI's discovery) and another user's home
/// (`user_home`, a move's) start at the same entry point: `/.well-known/caldav`, whose redirect
/// is followed on the same server and refused towards another one.
#[tokio::test(flavor = "multi_thread")]
async fn both_discoveries_follow_a_same_server_redirect_and_refuse_another_server() {
    use tenantry_pim::dav::Dav;
    use tenantry_pim::discovery::{resolve_home, user_home};
    use tenantry_pim::location::Access;
    use tenantry_testkit::hostile::{respond, HttpServer};

    let props = |href: &str, inner: &str| {
        format!(
            r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:cal="urn:ietf:params:xml:ns:caldav"><d:response><d:href>{href}</d:href><d:propstat><d:prop>{inner}</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#
        )
    };
    let principal = |user: &str| {
        format!("<d:current-user-principal><d:href>/dav/principals/{user}/</d:href></d:current-user-principal>")
    };
    let home_set = |user: &str| {
        format!("<cal:calendar-home-set><d:href>/dav/calendars/{user}/</d:href></cal:calendar-home-set>")
    };
    let server = |well_known: &'static str| {
        HttpServer::start(move |req, w| {
            let body = match req.path.as_str() {
                "/.well-known/caldav" => return respond(w, 301, &[("Location", well_known)], b""),
                "/dav/" => props("/dav/", &principal("svc")),
                p if p.starts_with("/dav/principals/") => {
                    let user = p
                        .trim_start_matches("/dav/principals/")
                        .trim_end_matches('/');
                    props(p, &home_set(user))
                }
                _ => return respond(w, 404, &[], b""),
            };
            respond(
                w,
                207,
                &[("Content-Type", "application/xml")],
                body.as_bytes(),
            )
        })
    };
    // As the engine's own client: redirects come back to discovery, which judges them.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let dav = |server: &HttpServer| {
        Dav::new(
            client.clone(),
            Access {
                url: format!("http://127.0.0.1:{}/", server.port())
                    .parse()
                    .unwrap(),
                user: Some("svc".into()),
                password: Some("pw".into()),
            },
            Default::default(),
        )
    };

    let same = server("/dav/");
    let mut own = dav(&same);
    let home = resolve_home(&mut own, Kind::Calendars).await.unwrap();
    assert_eq!(
        home.map(|u| u.path().to_string()).as_deref(),
        Some("/dav/calendars/svc/")
    );
    assert_eq!(own.base().path(), "/dav/calendars/svc/");
    let alice = user_home(&dav(&same), Kind::Calendars, "alice")
        .await
        .unwrap();
    assert_eq!(
        alice.map(|u| u.path().to_string()).as_deref(),
        Some("/dav/calendars/alice/")
    );

    let elsewhere = server("https://elsewhere.example/dav/");
    let e = resolve_home(&mut dav(&elsewhere), Kind::Calendars)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("refused"), "{e:#}");
    let e = user_home(&dav(&elsewhere), Kind::Calendars, "alice")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(elsewhere
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/dav/")));
}

/// Into Xandikos, which re-serialises every iCalendar object it stores (properties reordered,
/// UID last): a move's verification counts its copies as the same content, and a restored
/// older state takes the re-serialised copy of a later run as done, as it does the byte-equal
/// copy of a server that stores what it is given (before, both judged by bytes alone: the
/// restored run reported the move's own copy as "changed on the target" on every attempt).
#[tokio::test(flavor = "multi_thread")]
async fn into_xandikos_the_same_content_counts_for_verify_and_a_restored_state() {
    let src = Radicale::start_for_users(&["alice"]);
    let dst = tenantry_testkit::xandikos::Xandikos::start();
    let event = "/alice/work/standup.ics";
    assert_eq!(
        send("MKCALENDAR", &src.http("/alice/work/"), "alice", "").await,
        201
    );
    assert_eq!(send("PUT", &src.http(event), "alice", EVENT).await, 201);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("calendars.sqlite");
    // Xandikos runs without authentication: the service login's credentials go unasked.
    let (s, t) = (
        service(&src, PASSWORD),
        ServiceLogin {
            url: format!("caldav://127.0.0.1:{}/", dst.port),
            user: SERVICE_USER.into(),
            password: PASSWORD.into(),
        },
    );
    let first = run_home_to(&s, &t, "alice", &state, false).await;
    assert_eq!((first.copied, first.failures.len()), (1, 0), "{first:?}");
    let target_event = dst.http("/alice/calendars/work/standup.ics");
    assert_ne!(
        get(&src.http(event), "alice").await,
        get(&target_event, "alice").await,
        "Xandikos no longer re-serialises: this test shows nothing"
    );
    let HomeCheck::Verified(check) = verify_home(Kind::Calendars, &s, "alice", &t, "alice")
        .await
        .unwrap()
    else {
        panic!("alice has a home")
    };
    assert!(check.ok(), "{check:?}");
    assert_eq!((check.identical, check.same_content), (0, 1), "{check:?}");

    // The snapshot, then a later run copies an update and its worker dies unrecorded.
    let snapshot = dir.path().join("snapshot.sqlite");
    std::fs::copy(&state, &snapshot).unwrap();
    let later = send("PUT", &src.http(event), "alice", &standup("Stand-up later")).await;
    assert!(matches!(later, 201 | 204), "{later}");
    let second = run_home_to(&s, &t, "alice", &state, false).await;
    assert_eq!((second.copied, second.failures.len()), (1, 0), "{second:?}");

    let report = run_home_to(&s, &t, "alice", &snapshot, true).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.copied, report.reconciled), (0, 1), "{report:?}");
    let again = run_home_to(&s, &t, "alice", &snapshot, false).await;
    assert_eq!((again.copied, again.reconciled), (0, 0), "{again:?}");
    let kept = String::from_utf8(get(&target_event, "alice").await).unwrap();
    assert!(kept.contains("Stand-up later"), "{kept}");
}

/// An event created on the source after the snapshot, copied by a run the snapshot missed, then
/// deleted on the source: the restored run has no record of the copy, so nothing proves it is
/// the move's own. It stays on the target and is named in the report, for someone to check
/// (before, it stayed there unmentioned).
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_state_names_a_copy_whose_source_came_and_went_since() {
    let src = Radicale::start_for_users(&["alice"]);
    let dst = Radicale::start_for_users(&["carol"]);
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
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("calendars.sqlite");
    let (s, t) = (service(&src, PASSWORD), service(&dst, PASSWORD));
    assert_eq!(run_home(&s, &t, &state, false).await.copied, 1);
    let snapshot = dir.path().join("snapshot.sqlite");
    std::fs::copy(&state, &snapshot).unwrap();

    let brief = EVENT
        .replace("standup@example.org", "brief@example.org")
        .replace("Stand-up", "Brief");
    let brief_at = src.http("/alice/work/brief.ics");
    assert_eq!(send("PUT", &brief_at, "alice", &brief).await, 201);
    assert_eq!(run_home(&s, &t, &state, false).await.copied, 1);
    let deleted = send("DELETE", &brief_at, "alice", "").await;
    assert!(matches!(deleted, 200 | 204), "{deleted}");

    let report = run_home(&s, &t, &snapshot, true).await;
    assert!(report.ok(), "{report:?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("work/brief.ics") && n.contains("delete it by hand")),
        "{report:?}"
    );
    let left = String::from_utf8(get(&dst.http("/carol/work/brief.ics"), "carol").await).unwrap();
    assert!(left.contains("UID:brief@example.org"), "{left}");
}
