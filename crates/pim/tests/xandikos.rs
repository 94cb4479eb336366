//! Calendars and contacts between Radicale and Xandikos, a second CalDAV/CardDAV server, both
//! ways: every object with its UID, a re-run that copies nothing, and an edit, a deletion and
//! an addition carried. Xandikos runs without authentication (see `tenantry_testkit::xandikos`),
//! so its locations name no user. It keeps vCards as given but re-serialises iCalendar objects
//! (property order, folding, parameter quotes, RRULE part order), and Radicale re-serialises
//! what Xandikos serves, so events and tasks are compared by [`normalised`] (UIDs included), not
//! byte for byte.

mod support;

use support::*;
use tenantry_testkit::xandikos::Xandikos;

const RADICALE_HOME: &str = "/alice/";
const XANDIKOS_CALENDARS: &str = "/alice/calendars/";
const XANDIKOS_CONTACTS: &str = "/alice/contacts/";
const NEW_CARD: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:neu-1\r\nFN:Ñandú Nuevo\r\nEND:VCARD\r\n";

/// Every object of a source collection is on the target under its name; with `bytes`, the
/// same bytes, else the same [`normalised`] content.
async fn assert_carried(src: &str, dst: &str, names: &[String], bytes: bool) {
    let http = Http::default();
    let mut differs = Vec::new();
    for name in names {
        let name = name.replace('@', "%40");
        let a = http
            .get(&format!("{src}{name}"))
            .await
            .expect("on the source");
        let b = http
            .get(&format!("{dst}{name}"))
            .await
            .unwrap_or_else(|| panic!("{dst}{name} missing on the target"));
        if bytes {
            assert!(a == b, "{name}: bytes differ");
        } else {
            let (a, b) = (normalised(&a), normalised(&b));
            let only = |x: &str, y: &str| -> Vec<String> {
                x.lines()
                    .filter(|l| !y.lines().any(|m| m == *l))
                    .map(String::from)
                    .collect()
            };
            if a != b {
                differs.push(format!(
                    "{name}: source {:?} target {:?}",
                    only(&a, &b),
                    only(&b, &a)
                ));
            }
        }
    }
    assert!(differs.is_empty(), "{differs:#?}");
}

fn names(objects: Vec<(String, String)>) -> Vec<String> {
    objects.into_iter().map(|(n, _)| n).collect()
}

/// Runs both kinds and checks the counts of copied and deleted objects; returns both reports.
fn migrate_both(
    cal: (&str, &str),
    card: (&str, &str),
    state: &std::path::Path,
    want: [u64; 4],
) -> [serde_json::Value; 2] {
    let (code, rep) = migrate("calendars", cal.0, cal.1, state);
    assert_eq!(code, 0, "{rep:#}");
    let (code2, rep2) = migrate("contacts", card.0, card.1, state);
    assert_eq!(code2, 0, "{rep2:#}");
    let got = [
        rep["copied"].as_u64().unwrap(),
        rep["deleted"].as_u64().unwrap(),
        rep2["copied"].as_u64().unwrap(),
        rep2["deleted"].as_u64().unwrap(),
    ];
    assert_eq!(
        got, want,
        "[cal copied, deleted, card copied, deleted]: {rep:#} {rep2:#}"
    );
    [rep, rep2]
}

/// Every collection of the reports was listed with the sync token of the run before.
fn listed_by_sync_token(reports: &[serde_json::Value]) {
    for rep in reports {
        let cols = rep["collections"].as_array().unwrap();
        assert!(
            !cols.is_empty() && cols.iter().all(|c| c["listing"] == "sync-token"),
            "{rep:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn radicale_to_xandikos_keeps_every_object_and_moves_only_changes() {
    let src = Radicale::start();
    seed_home(&src.http(RADICALE_HOME), &src.http(RADICALE_HOME)).await;
    let dst = Xandikos::start();
    let state = tempfile::tempdir().unwrap();
    let cal = (
        src.url("caldav", RADICALE_HOME),
        dst.url("caldav", XANDIKOS_CALENDARS),
    );
    let card = (
        src.url("carddav", RADICALE_HOME),
        dst.url("carddav", XANDIKOS_CONTACTS),
    );
    let (cal, card) = ((&*cal.0, &*cal.1), (&*card.0, &*card.1));

    migrate_both(cal, card, state.path(), [6, 0, 2, 0]);
    assert_carried(
        &src.http("/alice/work/"),
        &dst.http("/alice/calendars/work/"),
        &names(events()),
        false,
    )
    .await;
    assert_carried(
        &src.http("/alice/tasks/"),
        &dst.http("/alice/calendars/tasks/"),
        &names(tasks()),
        false,
    )
    .await;
    // Xandikos keeps vCards as given.
    assert_carried(
        &src.http("/alice/people/"),
        &dst.http("/alice/contacts/people/"),
        &names(contacts()),
        true,
    )
    .await;
    let http = Http::default();
    let props = http.props(&dst.http("/alice/calendars/work/")).await;
    for must in [
        "Arbeit – Büro",
        "#FF8800FF",
        "Termine &amp; Treffen",
        "VEVENT",
    ] {
        assert!(props.contains(must), "{must} lost: {props}");
    }

    // `verify` accepts the re-serialised events and tasks, and says how many there are.
    let (code, v) = verify("calendars", cal.0, cal.1);
    assert_eq!(code, 0, "{v:#}");
    let counts = (v["identical"].as_u64(), v["same_content"].as_u64());
    assert_eq!(counts, (Some(2), Some(4)), "4 of 6 re-serialised: {v:#}");
    let (code, v) = verify("contacts", card.0, card.1);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        (v["identical"].as_u64(), v["same_content"].as_u64()),
        (Some(2), Some(0)),
        "{v:#}"
    );

    // Nothing changed: nothing moves, and the source's sync tokens say so.
    listed_by_sync_token(&migrate_both(cal, card, state.path(), [0, 0, 0, 0]));

    // An edited exception, a deleted event, a new contact: exactly those move.
    http.put(
        &src.http("/alice/work/weekly-1%40tenantry.test.ics"),
        &recurring("Abgesagt? Nein: verlegt"),
    )
    .await;
    http.delete(&src.http("/alice/work/allday-1.ics")).await;
    http.put(&src.http("/alice/people/neu.vcf"), NEW_CARD).await;
    migrate_both(cal, card, state.path(), [1, 1, 1, 0]);
    let work: Vec<String> = names(events())
        .into_iter()
        .filter(|n| n != "allday-1.ics")
        .collect();
    assert_carried(
        &src.http("/alice/work/"),
        &dst.http("/alice/calendars/work/"),
        &work,
        false,
    )
    .await;
    assert!(
        http.get(&dst.http("/alice/calendars/work/allday-1.ics"))
            .await
            .is_none(),
        "deletion not carried"
    );
    assert_carried(
        &src.http("/alice/people/"),
        &dst.http("/alice/contacts/people/"),
        &["neu.vcf".to_string()],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn xandikos_to_radicale_keeps_every_object_and_moves_only_changes() {
    let src = Xandikos::start();
    seed_home(&src.http(XANDIKOS_CALENDARS), &src.http(XANDIKOS_CONTACTS)).await;
    let dst = Radicale::start();
    let state = tempfile::tempdir().unwrap();
    let cal = (
        src.url("caldav", XANDIKOS_CALENDARS),
        dst.url("caldav", RADICALE_HOME),
    );
    let card = (
        src.url("carddav", XANDIKOS_CONTACTS),
        dst.url("carddav", RADICALE_HOME),
    );
    let (cal, card) = ((&*cal.0, &*cal.1), (&*card.0, &*card.1));

    migrate_both(cal, card, state.path(), [6, 0, 2, 0]);
    // Radicale re-serialises what Xandikos serves (back to unquoted parameters).
    for (s, d, objects) in [
        ("/alice/calendars/work/", "/alice/work/", names(events())),
        ("/alice/calendars/tasks/", "/alice/tasks/", names(tasks())),
        (
            "/alice/contacts/people/",
            "/alice/people/",
            vec!["anna.vcf".into()],
        ),
    ] {
        assert_carried(&src.http(s), &dst.http(d), &objects, false).await;
    }
    assert_radicale_lost_the_vcard4_photo(&src, &dst).await;
    verify_flags_only_the_vcard4_photo(cal, card);

    // Nothing changed: nothing moves, and the source's sync tokens say so.
    listed_by_sync_token(&migrate_both(cal, card, state.path(), [0, 0, 0, 0]));

    // An edited exception, a deleted event, a new contact: exactly those move.
    let http = Http::default();
    http.put(
        &src.http("/alice/calendars/work/weekly-1%40tenantry.test.ics"),
        &recurring("Abgesagt? Nein: verlegt"),
    )
    .await;
    http.delete(&src.http("/alice/calendars/work/allday-1.ics"))
        .await;
    http.put(&src.http("/alice/contacts/people/neu.vcf"), NEW_CARD)
        .await;
    migrate_both(cal, card, state.path(), [1, 1, 1, 0]);
    let weekly = http
        .get(&dst.http("/alice/work/weekly-1%40tenantry.test.ics"))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&weekly).contains("SUMMARY:Abgesagt? Nein: verlegt"));
    assert!(
        http.get(&dst.http("/alice/work/allday-1.ics"))
            .await
            .is_none(),
        "deletion not carried"
    );
    verify_flags_only_the_vcard4_photo(cal, card);
}

/// Radicale 3 (vobject) keeps a vCard 4 `PHOTO:data:image/jpeg;base64,…` only up to the comma:
/// the photo is gone from what it stores, whoever sends it. Radicale → Radicale cannot show it
/// (both sides lost it the same way); Xandikos keeps the photo, so here the loss is visible.
async fn assert_radicale_lost_the_vcard4_photo(src: &Xandikos, dst: &Radicale) {
    let http = Http::default();
    let on_xandikos = http
        .get(&src.http("/alice/contacts/people/kenji.vcf"))
        .await
        .unwrap();
    let on_radicale = http
        .get(&dst.http("/alice/people/kenji.vcf"))
        .await
        .unwrap();
    assert!(on_xandikos.len() > 200_000, "Xandikos kept the photo");
    assert!(
        on_radicale.len() < 1_000,
        "Radicale kept the photo ({} bytes): drop this check and compare kenji.vcf",
        on_radicale.len()
    );
}

/// `verify` passes the calendars and reports the one contact Radicale changed.
fn verify_flags_only_the_vcard4_photo(cal: (&str, &str), card: (&str, &str)) {
    let (code, v) = verify("calendars", cal.0, cal.1);
    assert_eq!(code, 0, "{v:#}");
    let (code, v) = verify("contacts", card.0, card.1);
    assert_eq!(code, 1, "{v:#}");
    let flagged: Vec<&str> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["object"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, ["kenji.vcf"], "{v:#}");
}

/// Xandikos's `/.well-known/caldav` redirects to `/`, whose `current-user-principal` names the
/// principal with separate calendar and address book homes: a bare server URL finds both.
#[tokio::test(flavor = "multi_thread")]
async fn a_bare_xandikos_url_finds_both_homes_by_discovery() {
    let src = Xandikos::start();
    seed_home(&src.http(XANDIKOS_CALENDARS), &src.http(XANDIKOS_CONTACTS)).await;
    let dst = Radicale::start();
    let state = tempfile::tempdir().unwrap();
    for (kind, scheme, want) in [("calendars", "caldav", 6), ("contacts", "carddav", 2)] {
        let (code, rep) = migrate_with(
            kind,
            &src.url(scheme, "/"),
            &dst.url(scheme, RADICALE_HOME),
            state.path(),
            &["--dry-run"],
        );
        assert_eq!((code, rep["copied"].as_u64()), (0, Some(want)), "{rep:#}");
    }
}

/// The UIDs of the objects in a Xandikos collection folder (its git work tree), by file.
fn stored_uids(dir: &std::path::Path) -> Vec<String> {
    let mut uids: Vec<String> = stored_names(dir)
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).unwrap();
            let uid = text.lines().find_map(|l| l.strip_prefix("UID:"));
            uid.unwrap_or_else(|| panic!("{n} has no UID"))
                .trim()
                .to_string()
        })
        .collect();
    uids.sort();
    uids
}

/// kill -9 with Xandikos as the target, at three moments, then a re-run: every object once,
/// under its name, with its UID; with the state lost, every object meets the re-serialised copy
/// a run wrote and is taken over. The target collection does not exist before the first run:
/// Xandikos answers a PROPFIND there with a 207 holding a 404, which must read as missing (it
/// was taken for a home, and the calendar created inside itself: 409 on every run).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_into_xandikos_then_rerun_puts_every_object_there_exactly_once() {
    const N: usize = 240;
    let src = Radicale::start();
    seed_big_calendar(&src, N).await;
    let dst = Xandikos::start();
    let state = tempfile::tempdir().unwrap();
    let (s, t) = (
        src.url("caldav", "/alice/big/"),
        dst.url("caldav", "/alice/calendars/big/"),
    );
    let target_dir = dst.dir.path().join("data/alice/calendars/big");
    let count = || stored_names(&target_dir).len();
    migrate_killed_at(&s, &t, state.path(), &[0, 20, N / 2], count);
    let before = count();
    assert!(
        before < N,
        "the runs were not interrupted ({before} of {N} already there)"
    );

    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    let done = ["copied", "reconciled", "unchanged"]
        .iter()
        .map(|k| rep[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(done, N as u64, "{rep:#}");
    let names = stored_names(&target_dir);
    assert_eq!(names, stored_names(&src.collection_dir("alice/big")));
    let uids = stored_uids(&target_dir);
    let expected: Vec<String> = (0..N).map(|i| format!("ev-{i:04}")).collect();
    assert_eq!(uids, expected, "every object exactly once");
    let (code, v) = verify("calendars", &s, &t);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        v["identical"].as_u64().unwrap() + v["same_content"].as_u64().unwrap(),
        N as u64,
        "{v:#}"
    );

    // The records lost: every object is found on the target by name and UID.
    std::fs::remove_dir_all(state.path()).unwrap();
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["reconciled"].as_u64()),
        (Some(0), Some(N as u64)),
        "{rep:#}"
    );
    assert_eq!(stored_uids(&target_dir), expected);
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(
        (rep["copied"].as_u64(), rep["reconciled"].as_u64()),
        (Some(0), Some(0)),
        "{rep:#}"
    );
}
