//! A move that carries calendars and address books beside the mailboxes: two Dovecot servers for
//! the mail, two Radicale servers for calendars, task lists and address books, each reached
//! through one service login (the move's `webdav` profiles) that finds every user's home by
//! RFC 6764 discovery (`/.well-known/caldav`, principals, `calendar-home-set`). Afterwards every
//! object is on the target byte for byte under its own name and UID, the final delta pass (a
//! re-run of every home) copied nothing, and a user without a calendar home on the source is a
//! notice of the report, not a failure of the move.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::mail::{assert_mailboxes_identical, dovecot, seed_mail};
use support::*;
use tenantry_testkit::radicale::{Radicale, SERVICE_USER};
use tenantry_testkit::PASSWORD as DAV_PASSWORD;

const USERS: [&str; 3] = ["adele", "bob", "cara"];
/// Has a mailbox but never used the source's calendar server: no home there.
const NO_HOME: &str = "cara";
/// Adele's calendar also holds this many plain events, so that her step runs long enough to be
/// killed in the middle.
const BULK: usize = 120;

/// One request to a Radicale server as `user`.
async fn dav(method: &str, url: &str, user: &str, body: &str, ctype: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .basic_auth(user, Some(DAV_PASSWORD))
        .header("Content-Type", ctype)
        .header("Depth", "1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

async fn created(method: &str, url: &str, user: &str, body: &str, ctype: &str) {
    let (status, answer) = dav(method, url, user, body, ctype).await;
    assert!(
        status == 201 || status == 204,
        "{method} {url}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
}

fn calendar(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tenantry//move test//EN\r\n{body}END:VCALENDAR\r\n")
}

const BERLIN: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

/// `(collection, resource name, UID, body)` of a user's source objects: a weekly meeting with
/// attendees, a moved instance and a cancelled one, in a time zone; an all-day event with
/// non-ASCII text; a task; a vCard 3 with a photo and a vCard 4.
fn corpus(user: &str) -> Vec<(&'static str, String, String, String)> {
    let uid = |what: &str| format!("{what}-{user}@fabrikam.com");
    let weekly = calendar(&format!(
        "{BERLIN}BEGIN:VEVENT\r\nUID:{}\r\nDTSTAMP:20240101T090000Z\r\nDTSTART;TZID=Europe/Berlin:20240108T100000\r\nDTEND;TZID=Europe/Berlin:20240108T110000\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nEXDATE;TZID=Europe/Berlin:20240122T100000\r\nSUMMARY:Weekly with {user}\r\nORGANIZER;CN=Adele:mailto:adele@fabrikam.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:{user}@fabrikam.com\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:{}\r\nDTSTAMP:20240101T090000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20240115T100000\r\nDTSTART;TZID=Europe/Berlin:20240115T140000\r\nDTEND;TZID=Europe/Berlin:20240115T150000\r\nSUMMARY:Weekly (moved)\r\nEND:VEVENT\r\n",
        uid("weekly"),
        uid("weekly")
    ));
    let holiday = calendar(&format!(
        "BEGIN:VEVENT\r\nUID:{}\r\nDTSTAMP:20240101T090000Z\r\nDTSTART;VALUE=DATE:20240501\r\nDTEND;VALUE=DATE:20240502\r\nSUMMARY:Maifeiertag – Grüße, 日本語\r\nEND:VEVENT\r\n",
        uid("holiday")
    ));
    let task = calendar(&format!(
        "BEGIN:VTODO\r\nUID:{}\r\nDTSTAMP:20240101T090000Z\r\nDUE:20240301T170000Z\r\nSUMMARY:Expense report of {user}\r\nSTATUS:NEEDS-ACTION\r\nEND:VTODO\r\n",
        uid("task")
    ));
    let photo = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let card3 = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{}\r\nFN:Zoë Ølsen\r\nN:Ølsen;Zoë;;;\r\nEMAIL;TYPE=WORK:zoe@example.org\r\nPHOTO;ENCODING=b;TYPE=PNG:{photo}\r\nEND:VCARD\r\n",
        uid("zoe")
    );
    let card4 = format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{}\r\nFN:Bob Builder\r\nTEL;VALUE=uri;TYPE=cell:tel:+49-30-1234567\r\nEND:VCARD\r\n",
        uid("builder")
    );
    let bulk = (0..if user == "adele" { BULK } else { 0 }).map(|n| {
        let id = uid(&format!("bulk-{n}"));
        let body = calendar(&format!(
            "BEGIN:VEVENT\r\nUID:{id}\r\nDTSTAMP:20240101T090000Z\r\nDTSTART:20240301T{:02}0000Z\r\nSUMMARY:Bulk {n}\r\nEND:VEVENT\r\n",
            n % 24
        ));
        ("work", format!("bulk-{n}.ics"), id, body)
    });
    let mut objects = vec![
        ("work", "weekly.ics".into(), uid("weekly"), weekly),
        ("work", "holiday.ics".into(), uid("holiday"), holiday),
        ("tasks", "task.ics".into(), uid("task"), task),
        ("contacts", "zoe.vcf".into(), uid("zoe"), card3),
        ("contacts", "builder.vcf".into(), uid("builder"), card4),
    ];
    objects.extend(bulk);
    objects
}

/// Each user (but [`NO_HOME`]) signs in to the source server and fills a calendar, a task
/// list and an address book.
async fn seed_homes(server: &Radicale) -> usize {
    let mut objects = 0;
    for u in USERS.iter().filter(|u| **u != NO_HOME) {
        let upn = format!("{u}@fabrikam.com");
        let home = server.http(&format!("/{upn}/"));
        for (name, comp, colour) in [
            ("work", "VEVENT", "#FF0000FF"),
            ("tasks", "VTODO", "#00FF00FF"),
        ] {
            let body = format!(
                r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop><D:displayname>{name} of {u}</D:displayname><A:calendar-color>{colour}</A:calendar-color><C:supported-calendar-component-set><C:comp name="{comp}"/></C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"#
            );
            created(
                "MKCALENDAR",
                &format!("{home}{name}/"),
                &upn,
                &body,
                "application/xml",
            )
            .await;
        }
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>Contacts of {u}</D:displayname></D:prop></D:set></D:mkcol>"#
        );
        created(
            "MKCOL",
            &format!("{home}contacts/"),
            &upn,
            &body,
            "application/xml",
        )
        .await;
        for (collection, name, _, body) in corpus(u) {
            let ctype = if name.ends_with(".vcf") {
                "text/vcard"
            } else {
                "text/calendar"
            };
            created(
                "PUT",
                &format!("{home}{collection}/{name}"),
                &upn,
                &body,
                ctype,
            )
            .await;
            objects += 1;
        }
    }
    objects
}

async fn wait_state(s: &Server, id: &str, until: impl Fn(&Value) -> bool, what: &str) -> Value {
    s.wait_move(id, what, Duration::from_secs(300), until).await
}

/// The names of a collection's objects, as the service login lists them.
async fn members(server: &Radicale, collection: &str) -> Vec<String> {
    let (status, body) = dav(
        "PROPFIND",
        &server.http(collection),
        SERVICE_USER,
        "",
        "application/xml",
    )
    .await;
    assert_eq!(
        status,
        207,
        "{collection}: {}",
        String::from_utf8_lossy(&body)
    );
    let text = String::from_utf8_lossy(&body);
    let mut names: Vec<String> = text
        .split("<href>")
        .skip(1)
        .filter_map(|h| h.split("</href>").next())
        .filter(|h| !h.ends_with('/'))
        .map(|h| h.rsplit('/').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_moves_mailboxes_carry_their_calendars_and_address_books() {
    let source_mail = dovecot(&USERS, "fabrikam.com", ("srcadmin", "srcadminpw"), false);
    let target_mail = dovecot(&USERS, "contoso.com", ("admin", "adminpw"), true);
    let messages = seed_mail(&source_mail, &USERS, "fabrikam.com").await;
    let upns =
        |domain: &str| -> Vec<String> { USERS.iter().map(|u| format!("{u}@{domain}")).collect() };
    let (source_names, target_names) = (upns("fabrikam.com"), upns("contoso.com"));
    let source_dav =
        Radicale::start_for_users(&source_names.iter().map(String::as_str).collect::<Vec<_>>());
    let target_dav =
        Radicale::start_for_users(&target_names.iter().map(String::as_str).collect::<Vec<_>>());
    let objects = seed_homes(&source_dav).await;
    // The target's users exist there (each signed in once, so each has a home).
    for upn in &target_names {
        let (status, _) = dav(
            "PROPFIND",
            &target_dav.http(&format!("/{upn}/")),
            upn,
            "",
            "application/xml",
        )
        .await;
        assert_eq!(status, 207);
    }

    let mut s = Server::start();
    let (source, target) = s.move_tenants(&USERS, 5, 5).await;
    s.profiles(&MAIL_PROFILES).await;
    s.profiles(&[
        ("src-dav", "webdav", SERVICE_USER, DAV_PASSWORD),
        ("dst-dav", "webdav", SERVICE_USER, DAV_PASSWORD),
        ("wrong-dav", "webdav", SERVICE_USER, "not-the-password"),
    ])
    .await;
    let server = |scheme: &str, dav: &Radicale, profile: &str| json!({"url": format!("{scheme}://127.0.0.1:{}/", dav.port), "profile": profile});
    let mut spec = json!({
        "sourceTenantId": source, "targetTenantId": target, "path": "retire-source",
        "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
        "sourceMail": {"url": source_mail.host_url(), "profile": "src-imap"},
        "targetMail": {"url": target_mail.host_url(), "profile": "dst-imap"},
        "sourceCaldav": server("caldav", &source_dav, "src-dav"),
        "targetCaldav": server("caldav", &target_dav, "dst-dav"),
        "sourceCarddav": server("carddav", &source_dav, "src-dav"),
        "targetCarddav": server("carddav", &target_dav, "dst-dav"),
    });

    // Bad servers are refused when the move is created, naming the field.
    for (field, url, code) in [
        ("targetCaldav", "https://127.0.0.1/", "InvalidDavServer"),
        ("sourceCarddav", "caldav://127.0.0.1/", "InvalidDavServer"),
        (
            "sourceCaldav",
            "caldav://svc:hunter2@127.0.0.1/",
            "CredentialsInUrl",
        ),
    ] {
        let mut bad = spec.clone();
        bad[field]["url"] = json!(url);
        let answer = s.post("/v1/moves", OPERATOR, bad).await;
        assert_problem(&answer, 422, code);
        let detail = answer.1["detail"].as_str().unwrap();
        assert!(
            detail.contains(field) && !detail.contains("hunter2"),
            "{detail}"
        );
    }
    // A profile that does not exist, or whose login the server refuses, blocks the plan (each
    // server is probed with its profile), naming the server and why.
    for (profile, why) in [
        ("no-such-profile", "no-such-profile"),
        ("wrong-dav", "authentication failed (HTTP 401)"),
    ] {
        let mut refused = spec.clone();
        refused["targetCarddav"]["profile"] = json!(profile);
        let m = s
            .ok(Method::POST, "/v1/moves", OPERATOR, Some(refused))
            .await;
        let (_, plan) = s
            .get(
                &format!("/v1/moves/{}/plan", m["id"].as_str().unwrap()),
                OPERATOR,
            )
            .await;
        assert_eq!(plan["runnable"], false, "{plan}");
        let finding = plan["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "EndpointUnavailable")
            .unwrap_or_else(|| panic!("{plan}"))
            .to_string();
        assert!(
            finding.contains("target contacts server carddav://") && finding.contains(why),
            "{finding}"
        );
        assert!(!finding.contains("not-the-password"), "{finding}");
    }

    spec["allowPurchase"] = json!(true);
    let m = s.ok(Method::POST, "/v1/moves", OPERATOR, Some(spec)).await;
    let id = m["id"].as_str().unwrap().to_string();
    let plan = s.runnable_plan(&id).await;
    // Cara has no home on the source: a warning per kind in the plan, before anything runs.
    let warned: Vec<&Value> = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "NoSourceHome")
        .collect();
    assert_eq!(warned.len(), 2, "{plan}");
    for (finding, kind) in warned.iter().zip(["calendars", "contacts"]) {
        assert_eq!(finding["severity"], "Warning");
        assert_eq!(finding["subject"], format!("{kind} {NO_HOME}@fabrikam.com"));
    }
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    for kind in ["migrateMailbox", "migrateCalendars", "migrateContacts"] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            USERS.len(),
            "{kinds:?}"
        );
    }

    s.run_move(&id).await;
    // Killed (SIGKILL) while adele's calendar is being copied, then restarted: the step runs
    // again from its state and takes over what the killed attempt had written.
    let deadline = Instant::now() + Duration::from_secs(240);
    let calendar = target_dav.http("/adele@contoso.com/work/");
    loop {
        let (status, listing) =
            dav("PROPFIND", &calendar, SERVICE_USER, "", "application/xml").await;
        let copied = String::from_utf8_lossy(&listing)
            .matches(".ics</href>")
            .count();
        if status == 207 && copied >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "adele's calendar never started moving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill();
    s.restart();
    wait_state(&s, &id, |m| m["state"] == "Completed", "completion").await;

    // Mail arrived as in every move.
    let copied = assert_mailboxes_identical(
        &source_mail,
        &target_mail,
        &USERS,
        ("fabrikam.com", "contoso.com"),
    )
    .await;
    assert_eq!(copied, messages);

    // Every object on the target byte for byte, under its name, with its UID; nothing else.
    let mut checked = 0;
    for u in USERS.iter().filter(|u| **u != NO_HOME) {
        let (from, to) = (format!("/{u}@fabrikam.com/"), format!("/{u}@contoso.com/"));
        let corpus = corpus(u);
        for collection in ["work", "tasks", "contacts"] {
            let mut expected: Vec<String> = corpus
                .iter()
                .filter(|(c, ..)| *c == collection)
                .map(|(_, name, ..)| name.clone())
                .collect();
            expected.sort();
            assert_eq!(
                members(&target_dav, &format!("{to}{collection}/")).await,
                expected,
                "{u} {collection}"
            );
            let (_, props) = dav(
                "PROPFIND",
                &target_dav.http(&format!("{to}{collection}/")),
                SERVICE_USER,
                "",
                "application/xml",
            )
            .await;
            let props = String::from_utf8_lossy(&props);
            assert!(
                props.contains(&format!("of {u}</")),
                "display name kept: {props}"
            );
        }
        for (collection, name, uid, _) in &corpus {
            let (a, source_bytes) = dav(
                "GET",
                &source_dav.http(&format!("{from}{collection}/{name}")),
                SERVICE_USER,
                "",
                "text/plain",
            )
            .await;
            let (b, target_bytes) = dav(
                "GET",
                &target_dav.http(&format!("{to}{collection}/{name}")),
                SERVICE_USER,
                "",
                "text/plain",
            )
            .await;
            assert_eq!((a, b), (200, 200), "{u} {collection}/{name}");
            assert_eq!(
                source_bytes, target_bytes,
                "{u} {collection}/{name} not byte-identical"
            );
            assert!(
                String::from_utf8_lossy(&target_bytes).contains(&format!("UID:{uid}")),
                "{name}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, objects);
    // Cara had nothing to move: her target home holds no calendars or address books.
    assert!(members(&target_dav, &format!("/{NO_HOME}@contoso.com/"))
        .await
        .is_empty());

    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    let steps = report["steps"].as_array().unwrap();
    let step = |key: &str| {
        steps
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no step {key}: {report}"))
    };
    // The kill landed inside adele's calendar step. Its next attempt did not start over: what
    // the killed attempt had recorded was unchanged, what it had written without recording was
    // found on the target and taken over (the exact member lists above show nothing twice).
    let adele = step("calendars:adele@fabrikam.com");
    assert!(adele["attempts"].as_u64() >= Some(2), "{adele}");
    let last = &adele["result"]["result"]["report"];
    let count = |k: &str| last[k].as_u64().unwrap();
    assert!(count("copied") < (3 + BULK) as u64, "{last}");
    assert!(count("unchanged") + count("reconciled") > 0, "{last}");
    for key in [
        "contacts:adele@fabrikam.com",
        "calendars:bob@fabrikam.com",
        "contacts:bob@fabrikam.com",
    ] {
        let run = &step(key)["result"]["result"];
        assert_eq!(run["outcome"], "migrated", "{key}: {run}");
    }
    // A user with no home on the source: the steps are done, the report says why nothing moved.
    let notices = report["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 2, "{notices:?}");
    for (notice, kind) in notices.iter().zip(["calendars", "contacts"]) {
        assert_eq!(notice["key"], format!("{kind}:{NO_HOME}@fabrikam.com"));
        assert_eq!(step(notice["key"].as_str().unwrap())["state"], "Done");
        let text = notice["notice"].as_str().unwrap();
        assert!(
            text.contains(&format!("no {kind} home on the source")),
            "{text}"
        );
    }
    // The final delta pass ran every home again: nothing copied, nothing taken over.
    let passes = step("final-delta")["result"]["passes"]
        .as_array()
        .unwrap()
        .clone();
    let homes: Vec<&Value> = passes
        .iter()
        .filter(|p| p.get("calendars").or(p.get("contacts")).is_some())
        .collect();
    assert_eq!(homes.len(), 2 * USERS.len(), "{passes:?}");
    for pass in homes {
        let run = &pass["result"];
        if run["outcome"] == "migrated" {
            assert_eq!(
                (
                    run["report"]["copied"].as_u64(),
                    run["report"]["reconciled"].as_u64()
                ),
                (Some(0), Some(0)),
                "{pass}"
            );
            assert!(run["report"]["unchanged"].as_u64().is_some(), "{pass}");
        } else {
            assert_eq!(run["outcome"], "noSourceHome", "{pass}");
        }
    }
    // Verification compared every home.
    let verified = step("verify")["result"]["verified"].to_string();
    for identical in [3 + BULK, 3, 2] {
        let field = format!("\"identical\":{identical}");
        assert!(
            verified.contains(&format!("{field},")) || verified.contains(&format!("{field}}}")),
            "{verified}"
        );
    }
}
