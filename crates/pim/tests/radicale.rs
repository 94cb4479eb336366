//! Calendars and contacts between two real Radicale servers: byte identity, collection
//! properties, incremental changes, duplicate UIDs, and a kill -9 at any moment.

mod support;

use support::*;

const HOME: &str = "/alice/";

/// A source home with a calendar, a task list and an address book, filled with the corpus.
async fn seeded_source() -> Radicale {
    let src = Radicale::start();
    let http = Http::default();
    http.mkcalendar(
        &src.http("/alice/work/"),
        "Arbeit – Büro",
        "#FF8800FF",
        "Termine &amp; Treffen",
        &["VEVENT"],
    )
    .await;
    http.mkcalendar(
        &src.http("/alice/tasks/"),
        "Aufgaben",
        "#00AA00FF",
        "To-dos und Journal",
        &["VTODO", "VJOURNAL"],
    )
    .await;
    http.mkaddressbook(&src.http("/alice/people/"), "Kontakte", "Alle Leute")
        .await;
    for (name, body) in events() {
        http.put(
            &src.http(&format!("/alice/work/{}", name.replace('@', "%40"))),
            &body,
        )
        .await;
    }
    for (name, body) in tasks() {
        http.put(&src.http(&format!("/alice/tasks/{name}")), &body)
            .await;
    }
    for (name, body) in contacts() {
        http.put(&src.http(&format!("/alice/people/{name}")), &body)
            .await;
    }
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
