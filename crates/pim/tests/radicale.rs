//! Calendars and contacts between two real Radicale servers: byte identity, collection
//! properties, incremental changes, duplicate UIDs, and a kill -9 at any moment.

mod support;

use support::*;

const HOME: &str = "/alice/";

/// A source home with a calendar, a task list and an address book, filled with the corpus.
async fn seeded_source() -> Radicale {
    let src = Radicale::start();
    seed_home(&src.http(HOME), &src.http(HOME)).await;
    src
}

/// Every object of the source is on the target with the same bytes, and nothing else is.
async fn assert_same(src: &Radicale, dst: &Radicale, collection: &str) {
    let (s, t) = (
        src.collection_dir(collection),
        dst.collection_dir(collection),
    );
    let names = stored_names(&s);
    assert!(!names.is_empty(), "{collection} is empty on the source");
    assert_eq!(
        names,
        stored_names(&t),
        "{collection}: resource names differ"
    );
    let http = Http::default();
    for n in names {
        let path = format!("/{collection}/{}", n.replace('@', "%40"));
        let a = http.get(&src.http(&path)).await.unwrap();
        let b = http.get(&dst.http(&path)).await.unwrap();
        assert!(
            a == b,
            "{path}: bytes differ:\n{}\n---\n{}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_home_moves_byte_for_byte_with_properties_then_only_changes_move() {
    let src = seeded_source().await;
    let dst = Radicale::start();
    let state = tempfile::tempdir().unwrap();
    let (s_cal, t_cal) = (src.url("caldav", HOME), dst.url("caldav", HOME));
    let (s_card, t_card) = (src.url("carddav", HOME), dst.url("carddav", HOME));

    // A dry run says what would move and changes nothing.
    let (code, rep) = migrate_with("calendars", &s_cal, &t_cal, state.path(), &["--dry-run"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["copied"], 6, "{rep:#}");
    assert!(
        !dst.collection_dir("alice/work").exists(),
        "a dry run created a collection"
    );

    let (code, rep) = migrate("calendars", &s_cal, &t_cal, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["copied"], 6, "{rep:#}");
    assert_eq!(
        rep["collections"].as_array().unwrap().len(),
        2,
        "calendars only: {rep:#}"
    );
    assert!(
        !dst.collection_dir("alice/people").exists(),
        "calendars must not move address books"
    );
    let (code, rep) = migrate("contacts", &s_card, &t_card, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["copied"], 2, "{rep:#}");

    for c in ["alice/work", "alice/tasks", "alice/people"] {
        assert_same(&src, &dst, c).await;
    }
    let http = Http::default();
    for c in ["/alice/work/", "/alice/tasks/", "/alice/people/"] {
        assert_eq!(
            http.props(&src.http(c)).await,
            http.props(&dst.http(c)).await,
            "{c}"
        );
    }
    // The source kept its attendees, exception and time zones (the target got those bytes).
    let weekly = String::from_utf8(
        http.get(&dst.http("/alice/work/weekly-1%40tenantry.test.ics"))
            .await
            .unwrap(),
    )
    .unwrap();
    for must in [
        "RECURRENCE-ID;TZID=Europe/Berlin:20240122T100000",
        "EXDATE;TZID=Europe/Berlin:20240115T100000",
        "TZID:Europe/Berlin",
        "ATTENDEE;CN=Zo",
        "BEGIN:VALARM",
    ] {
        assert!(weekly.contains(must), "{must} lost:\n{weekly}");
    }
    for kind in ["calendars", "contacts"] {
        let (s, t) = if kind == "calendars" {
            (&s_cal, &t_cal)
        } else {
            (&s_card, &t_card)
        };
        let (code, v) = verify(kind, s, t);
        assert_eq!(code, 0, "{v:#}");
    }

    // Nothing changed: nothing moves, and the sync tokens are used.
    let (code, rep) = migrate("calendars", &s_cal, &t_cal, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["unchanged"].as_u64()),
        (Some(0), Some(0)),
        "{rep:#}"
    );
    assert!(
        rep["collections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["listing"] == "sync-token"),
        "{rep:#}"
    );

    // An edited exception, a deleted event, a new contact: exactly those move.
    http.put(
        &src.http("/alice/work/weekly-1%40tenantry.test.ics"),
        &recurring("Abgesagt? Nein: verlegt"),
    )
    .await;
    http.delete(&src.http("/alice/work/allday-1.ics")).await;
    let (name, card) = (
        "neu.vcf",
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:neu-1\r\nFN:Ñandú Nuevo\r\nEND:VCARD\r\n",
    );
    http.put(&src.http(&format!("/alice/people/{name}")), card)
        .await;
    let (code, rep) = migrate("calendars", &s_cal, &t_cal, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["deleted"].as_u64()),
        (Some(1), Some(1)),
        "{rep:#}"
    );
    let (code, rep) = migrate("contacts", &s_card, &t_card, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["deleted"].as_u64()),
        (Some(1), Some(0)),
        "{rep:#}"
    );
    assert!(
        http.get(&dst.http("/alice/work/allday-1.ics"))
            .await
            .is_none(),
        "deletion not carried"
    );
    for c in ["alice/work", "alice/tasks", "alice/people"] {
        assert_same(&src, &dst, c).await;
    }
    let weekly = String::from_utf8(
        http.get(&dst.http("/alice/work/weekly-1%40tenantry.test.ics"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        weekly.contains("SUMMARY:Abgesagt? Nein: verlegt"),
        "{weekly}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_any_moment_then_rerun_puts_every_object_there_exactly_once() {
    const N: usize = 240;
    let src = Radicale::start();
    let dst = Radicale::start();
    seed_big_calendar(&src, N).await;
    let state = tempfile::tempdir().unwrap();
    let (s, t) = (
        src.url("caldav", "/alice/big/"),
        dst.url("caldav", "/alice/big/"),
    );
    let target_dir = dst.collection_dir("alice/big");
    let count = || stored_names(&target_dir).len();
    migrate_killed_at(&s, &t, state.path(), &[0, 20, N / 2], count);
    let before = count();
    assert!(
        before < N,
        "the runs were not interrupted ({before} of {N} already there)"
    );

    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    let done = rep["copied"].as_u64().unwrap()
        + rep["reconciled"].as_u64().unwrap()
        + rep["unchanged"].as_u64().unwrap();
    assert_eq!(done, N as u64, "{rep:#}");
    let names = stored_names(&target_dir);
    assert_eq!(names.len(), N, "every object exactly once");
    assert_eq!(names, stored_names(&src.collection_dir("alice/big")));
    let (code, v) = verify("calendars", &s, &t);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["identical"], N, "{v:#}");

    // A crash between the target's acknowledgement and the record is the worst moment: with
    // the records gone, every object meets its own copy, which is recognised by name and UID.
    std::fs::remove_dir_all(state.path()).unwrap();
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["reconciled"].as_u64()),
        (Some(0), Some(N as u64)),
        "{rep:#}"
    );
    assert_eq!(stored_names(&target_dir).len(), N);
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["copied"], 0, "{rep:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_uids_are_reported_with_what_was_done() {
    let src = Radicale::start();
    let dst = Radicale::start();
    let http = Http::default();
    http.mkcalendar(&src.http("/alice/a/"), "A", "#111111FF", "a", &["VEVENT"])
        .await;
    http.mkcalendar(&src.http("/alice/b/"), "B", "#222222FF", "b", &["VEVENT"])
        .await;
    // Two objects with one UID in one collection: Radicale refuses that over HTTP (as RFC 4791
    // asks), but other servers and old exports hold such data; put them in its storage.
    let a = src.collection_dir("alice/a");
    std::fs::write(a.join("first.ics"), event("same-uid", "first")).unwrap();
    std::fs::write(a.join("second.ics"), event("same-uid", "second")).unwrap();
    http.put(
        &src.http("/alice/b/shared.ics"),
        &event("shared-uid", "from the source"),
    )
    .await;
    // The target already has the second UID in a calendar of its own.
    http.mkcalendar(
        &dst.http("/alice/old/"),
        "Old",
        "#333333FF",
        "old",
        &["VEVENT"],
    )
    .await;
    http.put(
        &dst.http("/alice/old/elsewhere.ics"),
        &event("shared-uid", "already on the target"),
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let (s, t) = (src.url("caldav", HOME), dst.url("caldav", HOME));
    for run in 0..2 {
        let (code, rep) = migrate("calendars", &s, &t, state.path());
        assert_eq!(code, 1, "an object was not copied: run {run} {rep:#}");
        let dups = rep["duplicates"].as_array().unwrap();
        let same = dups
            .iter()
            .find(|d| d["uid"] == "same-uid")
            .unwrap_or_else(|| panic!("{rep:#}"));
        assert_eq!(same["copied"], false, "{rep:#}");
        assert_eq!(same["collection"], "a");
        assert!(
            same["action"].as_str().unwrap().contains("not copied"),
            "{rep:#}"
        );
        if run == 0 {
            let shared = dups
                .iter()
                .find(|d| d["uid"] == "shared-uid")
                .unwrap_or_else(|| panic!("{rep:#}"));
            assert_eq!(shared["copied"], true, "{rep:#}");
            assert!(
                shared["also_in"]
                    .as_str()
                    .unwrap()
                    .contains("old/elsewhere.ics"),
                "{rep:#}"
            );
        }
    }
    // One of the two same-UID objects is on the target, the shared one in both calendars.
    assert_eq!(stored_names(&dst.collection_dir("alice/a")).len(), 1);
    assert_eq!(
        stored_names(&dst.collection_dir("alice/b")),
        vec!["shared.ics"]
    );
    assert_eq!(
        stored_names(&dst.collection_dir("alice/old")),
        vec!["elsewhere.ics"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_server_url_finds_the_users_homes_by_rfc_6764_discovery() {
    let src = seeded_source().await;
    let dst = Radicale::start();
    let state = tempfile::tempdir().unwrap();
    for (kind, scheme, copied) in [("calendars", "caldav", 6), ("contacts", "carddav", 2)] {
        let (s, t) = (src.url(scheme, "/"), dst.url(scheme, "/"));
        let (code, rep) = migrate(kind, &s, &t, state.path());
        assert_eq!(code, 0, "{rep:#}");
        assert_eq!(rep["copied"], copied, "{rep:#}");
        let (code, v) = verify(kind, &s, &t);
        assert_eq!(code, 0, "{v:#}");
    }
    for c in ["alice/work", "alice/tasks", "alice/people"] {
        assert_same(&src, &dst, c).await;
    }
}

/// `request` sent on to the server on `upstream` over a connection of its own; its whole answer.
fn forward(upstream: u16, request: &tenantry_testkit::hostile::HttpRequest) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method,
        request.path,
        request.body.len()
    );
    for (k, v) in &request.headers {
        if !["host", "connection", "content-length", "transfer-encoding"]
            .contains(&k.to_ascii_lowercase().as_str())
        {
            head += &format!("{k}: {v}\r\n");
        }
    }
    let mut server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    server.write_all(head.as_bytes()).unwrap();
    server.write_all(b"\r\n").unwrap();
    server.write_all(&request.body).unwrap();
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).unwrap();
    answer
}

/// An event edited twice around a crash: the first edit reaches the target but its record
/// never follows (the run dies between the target's answer and the record; here the answer is
/// lost and the run gives up), then the source is edited again. The re-run finds the target
/// holding a version the record does not know: its own unrecorded write (the state marked it
/// pending before sending), so the last version goes over it, once. Before, the target's copy
/// was taken for someone's edit and the object reported as "changed on the target" on every
/// run, the target stuck on the middle version.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_edited_twice_around_a_crash_ends_as_the_last_version_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tenantry_testkit::hostile::{HttpServer, Then};

    let src = Radicale::start();
    let dst = Radicale::start();
    let http = Http::default();
    http.mkcalendar(
        &src.http("/alice/work/"),
        "W",
        "#111111FF",
        "w",
        &["VEVENT"],
    )
    .await;
    let event_url = src.http("/alice/work/edited.ics");
    http.put(&event_url, &event("edited", "first")).await;
    // The target behind a relay that can lose the answer to one update (If-Match).
    let lose_next_update = Arc::new(AtomicBool::new(false));
    let lose = lose_next_update.clone();
    let upstream = dst.port;
    let relay = HttpServer::start(move |req, w| {
        let answer = forward(upstream, req);
        let update = req.method == "PUT" && req.header("If-Match").is_some();
        if update && lose.swap(false, Ordering::SeqCst) {
            return Ok(Then::Close); // the target took it; the client never hears
        }
        w.write_all(&answer)?;
        Ok(Then::Close)
    });
    let state = tempfile::tempdir().unwrap();
    let s = src.url("caldav", "/alice/work/");
    let t = format!("caldav://{USER}@127.0.0.1:{}/alice/work/", relay.port());
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!((code, rep["copied"].as_u64()), (0, Some(1)), "{rep:#}");

    http.put(&event_url, &event("edited", "second")).await;
    lose_next_update.store(true, Ordering::SeqCst);
    let (code, rep) = migrate_with("calendars", &s, &t, state.path(), &["--retries", "1"]);
    assert_eq!(code, 1, "{rep:#}");
    let target_copy = dst.http("/alice/work/edited.ics");
    let middle = String::from_utf8(http.get(&target_copy).await.unwrap()).unwrap();
    assert!(middle.contains("SUMMARY:second"), "{middle}");

    http.put(&event_url, &event("edited", "third")).await;
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        http.get(&target_copy).await,
        http.get(&event_url).await,
        "the target holds the last version"
    );
    assert_eq!(
        stored_names(&dst.collection_dir("alice/work")),
        ["edited.ics"],
        "once"
    );
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["reconciled"].as_u64()),
        (Some(0), Some(0)),
        "{rep:#}"
    );
}
