//! Servers that refuse or misbehave, scripted with `tenantry_testkit::hostile::HttpServer`:
//! every refusal is listed with the server's reason and the rest goes on; hrefs that would
//! leave the collection are refused; nothing is sent that could schedule.

mod support;

use std::io::Write;

use support::*;
use tenantry_testkit::hostile::{
    repeat_body, respond, respond_head, HttpRequest, HttpServer, Then,
};

fn event(uid: &str, extra: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240110T100000Z\r\nSUMMARY:x{extra}\r\nORGANIZER:mailto:boss@example.com\r\nATTENDEE:mailto:everyone@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
}

const SOURCE_OBJECTS: [&str; 6] = [
    "ok.ics",
    "forbidden.ics",
    "quota.ics",
    "taken.ics",
    "big.ics",
    "garbage.ics",
];

fn source_body(name: &str) -> String {
    match name {
        "garbage.ics" => "this is not a calendar\r\n".into(),
        "big.ics" => event("big", &"y".repeat(5000)),
        n => event(n.trim_end_matches(".ics"), ""),
    }
}

fn collection(path: &str, max_size: Option<u64>, members: &[&str]) -> String {
    let max = max_size
        .map(|m| format!("<C:max-resource-size>{m}</C:max-resource-size>"))
        .unwrap_or_default();
    let mut s = format!(
        r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:response><D:href>{path}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/><C:calendar/></D:resourcetype><D:displayname>Hostile</D:displayname>{max}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"#
    );
    for m in members {
        s += &format!(
            r#"<D:response><D:href>{m}</D:href><D:propstat><D:prop><D:resourcetype/><D:getetag>"e-{}"</D:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"#,
            m.len()
        );
    }
    s + "</D:multistatus>"
}

fn handle(req: &HttpRequest, w: &mut dyn Write) -> std::io::Result<Then> {
    let xml = [("Content-Type", "application/xml")];
    match (req.method.as_str(), req.path.as_str()) {
        ("PROPFIND", "/src/") => {
            let mut members: Vec<String> = SOURCE_OBJECTS.iter().map(|n| format!("/src/{n}")).collect();
            members.push("/src/../etc/passwd.ics".into());
            members.push("/elsewhere/x.ics".into());
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            respond(w, 207, &xml, collection("/src/", None, &members).as_bytes())
        }
        ("GET", p) if p.starts_with("/src/") => {
            respond(w, 200, &[("ETag", "\"s\"")], source_body(&p[5..]).as_bytes())
        }
        ("PROPFIND", "/dst/") => respond(w, 207, &xml, collection("/dst/", Some(3000), &[]).as_bytes()),
        ("REPORT", "/dst/") => respond(w, 207, &xml, collection("/dst/", Some(3000), &[]).as_bytes()),
        ("PUT", "/dst/ok.ics") => respond(w, 201, &[("ETag", "\"t1\"")], b""),
        ("PUT", "/dst/forbidden.ics") => respond(
            w,
            403,
            &xml,
            br#"<?xml version="1.0"?><D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:valid-calendar-data/></D:error>"#,
        ),
        ("PUT", "/dst/quota.ics") => respond(w, 507, &[("Content-Type", "text/plain")], b"Quota exceeded for alice\r\n\x1b[2J"),
        ("PUT", "/dst/taken.ics") => respond(w, 412, &[], b""),
        ("GET", "/dst/taken.ics") => respond(w, 200, &[("ETag", "\"t9\"")], event("someone-else", "").as_bytes()),
        _ => respond(w, 404, &[], b""),
    }
}

#[test]
fn a_refusing_target_gets_every_refusal_listed_with_its_reason_and_the_rest_goes_on() {
    let server = HttpServer::start(handle);
    let state = tempfile::tempdir().unwrap();
    let (s, t) = (
        format!("caldav://127.0.0.1:{}/src/", server.port()),
        format!("caldav://127.0.0.1:{}/dst/", server.port()),
    );
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(rep["copied"], 1, "{rep:#}");
    let failures = rep["failures"].as_array().unwrap();
    let reason = |name: &str| {
        let f = failures
            .iter()
            .find(|f| f["object"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {rep:#}"));
        (
            f["status"].as_u64(),
            f["error"].as_str().unwrap().to_string(),
        )
    };
    let (st, e) = reason("forbidden.ics");
    assert_eq!(st, Some(403));
    assert!(e.contains("valid-calendar-data"), "{e}");
    let (st, e) = reason("quota.ics");
    assert_eq!(st, Some(507));
    assert!(
        e.contains("Quota exceeded for alice") && !e.contains('\x1b'),
        "{e:?}"
    );
    let (st, e) = reason("taken.ics");
    assert_eq!(st, Some(412));
    assert!(e.contains("another object (UID someone-else)"), "{e}");
    let (_, e) = reason("big.ics");
    assert!(e.contains("over the target's limit of 3000 bytes"), "{e}");
    let (_, e) = reason("garbage.ics");
    assert!(e.contains("unparsable"), "{e}");
    assert_eq!(failures.len(), 5, "{rep:#}");
    // Hrefs outside the collection are refused by name, never fetched.
    let refused = rep["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{rep:#}");

    let reqs = server.requests();
    for r in &reqs {
        assert!(
            r.path.starts_with("/src/") || r.path.starts_with("/dst/"),
            "request outside the collections: {} {}",
            r.method,
            r.path
        );
        assert!(
            !r.path.contains("passwd") && !r.path.contains("elsewhere"),
            "{}",
            r.path
        );
    }
    let puts: Vec<&HttpRequest> = reqs.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(
        puts.len(),
        4,
        "no PUT for the unparsable or oversized objects"
    );
    for p in &puts {
        assert_eq!(p.header("Schedule-Reply"), Some("F"), "{}", p.path);
        assert_eq!(p.header("If-None-Match"), Some("*"), "{}", p.path);
        // Byte for byte what the source served.
        assert_eq!(p.body, source_body(&p.path[5..]).as_bytes(), "{}", p.path);
    }
    // Nothing overwrote the object that belongs to someone else.
    assert!(!puts
        .iter()
        .any(|p| p.path == "/dst/taken.ics" && p.header("If-Match").is_some()));
}

/// One `response` with the given resourcetype children.
fn entry(href: &str, types: &str) -> String {
    format!(
        r#"<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>{types}</D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"#
    )
}

fn multistatus(entries: &[String]) -> String {
    format!(
        r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav">{}</D:multistatus>"#,
        entries.concat()
    )
}

fn home(req: &HttpRequest, w: &mut dyn Write) -> std::io::Result<Then> {
    let xml = [("Content-Type", "application/xml")];
    let body = match (req.method.as_str(), req.path.as_str()) {
        // The home lists a calendar, scheduling boxes (even claiming to be calendars) and an
        // address book.
        ("PROPFIND", "/home/") => multistatus(&[
            entry("/home/", "<D:principal/>"),
            entry("/home/cal/", "<C:calendar/>"),
            entry("/home/inbox/", "<C:calendar/><C:schedule-inbox/>"),
            entry("/home/outbox/", "<C:calendar/><C:schedule-outbox/>"),
            entry("/home/book/", "<CR:addressbook/>"),
        ]),
        ("PROPFIND", "/dsthome/") => multistatus(&[entry("/dsthome/", "<D:principal/>")]),
        ("PROPFIND", "/dsthome/cal/") => multistatus(&[entry("/dsthome/cal/", "<C:calendar/>")]),
        ("PROPFIND", "/home/cal/") => {
            return respond(
                w,
                207,
                &xml,
                collection("/home/cal/", None, &["/home/cal/a.ics"]).as_bytes(),
            )
        }
        ("GET", "/home/cal/a.ics") => return respond(w, 200, &[], event("a", "").as_bytes()),
        ("MKCALENDAR", "/dsthome/cal/") | ("PUT", "/dsthome/cal/a.ics") => {
            return respond(w, 201, &[], b"")
        }
        ("REPORT", _) => multistatus(&[]),
        _ => return respond(w, 404, &[], b""),
    };
    respond(w, 207, &xml, body.as_bytes())
}

#[test]
fn scheduling_inboxes_outboxes_and_other_kinds_are_never_touched() {
    let server = HttpServer::start(home);
    let state = tempfile::tempdir().unwrap();
    let (s, t) = (
        format!("caldav://127.0.0.1:{}/home/", server.port()),
        format!("caldav://127.0.0.1:{}/dsthome/", server.port()),
    );
    let (code, rep) = migrate("calendars", &s, &t, state.path());
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["copied"], 1, "{rep:#}");
    assert_eq!(rep["collections"].as_array().unwrap().len(), 1, "{rep:#}");
    for r in server.requests() {
        for never in ["inbox", "outbox", "book"] {
            assert!(!r.path.contains(never), "{} {}", r.method, r.path);
        }
    }
    // Sync tokens (a server like Radicale computes each over every object of its collection)
    // are asked at Depth 0 of the source's location and of its calendar only: never in the
    // listing of the home, which would have the address book's computed too, never of the
    // target.
    let asked: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PROPFIND" && String::from_utf8_lossy(&r.body).contains("sync-token")
        })
        .map(|r| format!("Depth {} {}", r.header("Depth").unwrap_or("-"), r.path))
        .collect();
    assert_eq!(asked, ["Depth 0 /home/", "Depth 0 /home/cal/"]);
}

#[test]
fn a_deletion_answered_412_counts_as_done_only_when_the_object_is_gone() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    for still_there in [false, true] {
        let deleted_on_source = Arc::new(AtomicBool::new(false));
        let flag = deleted_on_source.clone();
        let server = HttpServer::start(move |req: &HttpRequest, w: &mut dyn Write| {
            let xml = [("Content-Type", "application/xml")];
            let members: &[&str] = if flag.load(Ordering::SeqCst) {
                &[]
            } else {
                &["/src/a.ics"]
            };
            match (req.method.as_str(), req.path.as_str()) {
                ("PROPFIND", "/src/") => {
                    respond(w, 207, &xml, collection("/src/", None, members).as_bytes())
                }
                ("GET", "/src/a.ics") => respond(w, 200, &[], event("a", "").as_bytes()),
                ("PROPFIND", "/dst/") => {
                    respond(w, 207, &xml, collection("/dst/", None, &[]).as_bytes())
                }
                ("REPORT", "/dst/") => {
                    respond(w, 207, &xml, collection("/dst/", None, &[]).as_bytes())
                }
                ("PUT", "/dst/a.ics") => respond(w, 201, &[("ETag", "\"t1\"")], b""),
                // A server that checks If-Match before existence.
                ("DELETE", "/dst/a.ics") => respond(w, 412, &[], b""),
                ("GET", "/dst/a.ics") if still_there => respond(
                    w,
                    200,
                    &[("ETag", "\"t2\"")],
                    event("a", " edited on the target").as_bytes(),
                ),
                _ => respond(w, 404, &[], b""),
            }
        });
        let state = tempfile::tempdir().unwrap();
        let (s, t) = (
            format!("caldav://127.0.0.1:{}/src/", server.port()),
            format!("caldav://127.0.0.1:{}/dst/", server.port()),
        );
        let (code, rep) = migrate("calendars", &s, &t, state.path());
        assert_eq!((code, rep["copied"].as_u64()), (0, Some(1)), "{rep:#}");
        deleted_on_source.store(true, Ordering::SeqCst);
        let (code, rep) = migrate("calendars", &s, &t, state.path());
        if still_there {
            assert_eq!((code, rep["deleted"].as_u64()), (1, Some(0)), "{rep:#}");
            let e = rep["failures"][0]["error"].as_str().unwrap();
            assert!(e.contains("changed on the target"), "{e}");
        } else {
            assert_eq!((code, rep["deleted"].as_u64()), (0, Some(1)), "{rep:#}");
            // And the record is gone: a further run has nothing to delete.
            let (code, rep) = migrate("calendars", &s, &t, state.path());
            assert_eq!((code, rep["deleted"].as_u64()), (0, Some(0)), "{rep:#}");
        }
    }
}

/// A source whose one object never ends, beside one that is fine.
fn endless_object(req: &HttpRequest, w: &mut dyn Write) -> std::io::Result<Then> {
    let xml = [("Content-Type", "application/xml")];
    match (req.method.as_str(), req.path.as_str()) {
        ("PROPFIND", "/src/") => respond(
            w,
            207,
            &xml,
            collection("/src/", None, &["/src/ok.ics", "/src/endless.ics"]).as_bytes(),
        ),
        ("GET", "/src/ok.ics") => respond(w, 200, &[], event("ok", "").as_bytes()),
        ("GET", "/src/endless.ics") => {
            respond_head(w, 200, &[("Content-Type", "text/calendar")])?;
            // 128 MiB, past the 100 MiB any one object may have.
            repeat_body(w, &[b'x'; 64 * 1024], 2048)
        }
        ("PROPFIND", "/dst/") | ("REPORT", "/dst/") => {
            respond(w, 207, &xml, collection("/dst/", None, &[]).as_bytes())
        }
        ("PUT", "/dst/ok.ics") => respond(w, 201, &[("ETag", "\"t1\"")], b""),
        _ => respond(w, 404, &[], b""),
    }
}

#[test]
fn an_endless_object_is_listed_and_never_held_whole() {
    let server = HttpServer::start(endless_object);
    let state = tempfile::tempdir().unwrap();
    let (code, rep) = migrate(
        "calendars",
        &format!("caldav://127.0.0.1:{}/src/", server.port()),
        &format!("caldav://127.0.0.1:{}/dst/", server.port()),
        state.path(),
    );
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(rep["copied"], 1, "{rep:#}");
    let failures = rep["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{rep:#}");
    assert_eq!(failures[0]["object"], "endless.ics", "{rep:#}");
    let e = failures[0]["error"].as_str().unwrap();
    assert!(e.contains("larger than 104857600 bytes"), "{e}");
}

#[test]
fn a_listing_that_announces_a_terabyte_is_refused_before_it_is_read() {
    let server = HttpServer::start(|req, w| {
        if req.method == "PROPFIND" && req.path == "/src/" {
            w.write_all(b"HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\nContent-Length: 1099511627776\r\n\r\n<?xml")?;
            return Ok(Then::Close);
        }
        respond(w, 404, &[], b"")
    });
    let state = tempfile::tempdir().unwrap();
    let out = cli(&[
        "calendars",
        "migrate",
        "--source",
        &format!("caldav://127.0.0.1:{}/src/", server.port()),
        "--target",
        &format!("caldav://127.0.0.1:{}/dst/", server.port()),
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("larger than"), "{stderr}");
}
