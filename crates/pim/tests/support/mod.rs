//! Test support for the calendar and contact engine: a corpus of real-world-shaped objects,
//! seeding a Radicale server over HTTP, and running the `tenantry-pim` binary.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use tenantry_testkit::radicale::Radicale;
pub use tenantry_testkit::{PASSWORD, USER};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenantry-pim"))
}

/// Runs `tenantry-pim` with both passwords in the environment.
pub fn cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
        .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

/// Runs `<kind> migrate --json`; returns the exit code and the report.
pub fn migrate(kind: &str, source: &str, target: &str, state: &Path) -> (i32, serde_json::Value) {
    migrate_with(kind, source, target, state, &[])
}

/// `migrate` with extra arguments (`--dry-run`, ...).
pub fn migrate_with(
    kind: &str,
    source: &str,
    target: &str,
    state: &Path,
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let mut args = vec![
        kind,
        "migrate",
        "--source",
        source,
        "--target",
        target,
        "--state-dir",
        state.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    json_of(cli(&args))
}

pub fn verify(kind: &str, source: &str, target: &str) -> (i32, serde_json::Value) {
    json_of(cli(&[
        kind, "verify", "--source", source, "--target", target, "--json",
    ]))
}

fn json_of(out: Output) -> (i32, serde_json::Value) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(PASSWORD), "password leaked: {stderr}");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {} stderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// A small HTTP client for fixtures and checks, as the test user.
pub struct Http {
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            client: reqwest::Client::new(),
        }
    }
}

impl Http {
    pub async fn send(&self, method: &str, url: &str, body: &str, ctype: &str) -> (u16, Vec<u8>) {
        let r = self
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", ctype)
            .header("Depth", "1")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, r.bytes().await.unwrap().to_vec())
    }

    pub async fn mkcalendar(&self, url: &str, name: &str, color: &str, desc: &str, comps: &[&str]) {
        let comps: String = comps
            .iter()
            .map(|c| format!(r#"<C:comp name="{c}"/>"#))
            .collect();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop><D:displayname>{name}</D:displayname><A:calendar-color>{color}</A:calendar-color><C:calendar-description>{desc}</C:calendar-description><C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"#
        );
        let (st, b) = self.send("MKCALENDAR", url, &body, "application/xml").await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    }

    pub async fn mkaddressbook(&self, url: &str, name: &str, desc: &str) {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>{name}</D:displayname><CR:addressbook-description>{desc}</CR:addressbook-description></D:prop></D:set></D:mkcol>"#
        );
        let (st, b) = self.send("MKCOL", url, &body, "application/xml").await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    }

    pub async fn put(&self, url: &str, body: &str) {
        let ctype = if body.starts_with("BEGIN:VCARD") {
            "text/vcard"
        } else {
            "text/calendar"
        };
        let (st, b) = self.send("PUT", url, body, ctype).await;
        assert!(
            st == 201 || st == 204,
            "PUT {url}: {st} {}",
            String::from_utf8_lossy(&b)
        );
    }

    pub async fn get(&self, url: &str) -> Option<Vec<u8>> {
        let (st, b) = self.send("GET", url, "", "text/plain").await;
        (st == 200).then_some(b)
    }

    pub async fn delete(&self, url: &str) {
        let (st, _) = self.send("DELETE", url, "", "text/plain").await;
        assert!(st == 200 || st == 204, "DELETE {url}: {st}");
    }

    /// The PROPFIND body of a collection (Depth 0), as text.
    pub async fn props(&self, url: &str) -> String {
        let body = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav" xmlns:A="http://apple.com/ns/ical/"><D:prop><D:displayname/><A:calendar-color/><C:calendar-description/><CR:addressbook-description/><C:supported-calendar-component-set/><D:resourcetype/></D:prop></D:propfind>"#;
        let r = self
            .client
            .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), url)
            .basic_auth(USER, Some(PASSWORD))
            .header("Depth", "0")
            .header("Content-Type", "application/xml") // Xandikos refuses a body without it
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 207, "PROPFIND {url}");
        // Hrefs differ between servers only by port: drop them.
        let t = r.text().await.unwrap();
        let re_start = t.find("<href>").map(|i| i + 6).unwrap_or(0);
        let re_end = t.find("</href>").unwrap_or(0);
        format!("{}{}", &t[..re_start], &t[re_end..])
    }
}

/// Fills a home with the corpus: calendar `work` (events), task list `tasks` (VTODO and
/// VJOURNAL) below `cal_home`, address book `people` below `card_home` (both `http://…/`).
pub async fn seed_home(cal_home: &str, card_home: &str) {
    let http = Http::default();
    http.mkcalendar(
        &format!("{cal_home}work/"),
        "Arbeit – Büro",
        "#FF8800FF",
        "Termine &amp; Treffen",
        &["VEVENT"],
    )
    .await;
    http.mkcalendar(
        &format!("{cal_home}tasks/"),
        "Aufgaben",
        "#00AA00FF",
        "To-dos und Journal",
        &["VTODO", "VJOURNAL"],
    )
    .await;
    http.mkaddressbook(&format!("{card_home}people/"), "Kontakte", "Alle Leute")
        .await;
    for (name, body) in events() {
        let name = name.replace('@', "%40");
        http.put(&format!("{cal_home}work/{name}"), &body).await;
    }
    for (name, body) in tasks() {
        http.put(&format!("{cal_home}tasks/{name}"), &body).await;
    }
    for (name, body) in contacts() {
        http.put(&format!("{card_home}people/{name}"), &body).await;
    }
}

/// An iCalendar or vCard object with what a re-serialising server may change taken out: lines
/// unfolded, each component's properties and subcomponents sorted, a line [`respelled`]. Every
/// property with its parameters and value stays, in the component it belongs to.
pub fn normalised(object: &[u8]) -> String {
    // Unfolded as bytes: a fold may split a multi-byte character.
    let mut unfolded = Vec::with_capacity(object.len());
    let mut i = 0;
    while i < object.len() {
        if object[i..].starts_with(b"\r\n ") || object[i..].starts_with(b"\r\n\t") {
            i += 3;
        } else {
            unfolded.push(object[i]);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&unfolded);
    // A stack of open components: (BEGIN line, properties, rendered subcomponents).
    let mut stack: Vec<(String, Vec<String>, Vec<String>)> = vec![(String::new(), vec![], vec![])];
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("BEGIN:") {
            stack.push((line.to_string(), vec![], vec![]));
        } else if line.starts_with("END:") && stack.len() > 1 {
            let (begin, mut props, mut subs) = stack.pop().unwrap();
            props.sort();
            subs.sort();
            let rendered = format!("{begin}\n{}{}{line}\n", props.join(""), subs.join(""));
            stack.last_mut().unwrap().2.push(rendered);
        } else {
            stack
                .last_mut()
                .unwrap()
                .1
                .push(format!("{}\n", respelled(line)));
        }
    }
    let (_, props, subs) = stack.pop().unwrap();
    props.concat() + &subs.concat()
}

/// What Xandikos changes inside a line, undone: `CN="Anna Müller"` (quotes a parameter value
/// with a space) and the order of an RRULE's parts (it writes `BYDAY` before `BYMONTH`).
fn respelled(line: &str) -> String {
    if let Some(rule) = line.strip_prefix("RRULE:") {
        let mut parts: Vec<&str> = rule.split(';').collect();
        parts.sort();
        return format!("RRULE:{}", parts.join(";"));
    }
    unquoted(line)
}

/// `;NAME="value"` → `;NAME=value` when the value holds no `:`, `;` or `,`.
fn unquoted(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("=\"") {
        let Some(len) = rest[i + 2..].find('"') else {
            break;
        };
        let inner = &rest[i + 2..i + 2 + len];
        out.push_str(&rest[..=i]);
        if inner.contains([':', ';', ',']) {
            out.push_str(&format!("\"{inner}\""));
        } else {
            out.push_str(inner);
        }
        rest = &rest[i + 3 + len..];
    }
    out + rest
}

const BERLIN: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";
const NEW_YORK: &str = "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nTZNAME:EDT\r\nDTSTART:19700308T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nTZNAME:EST\r\nDTSTART:19701101T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

fn cal(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tenantry//corpus//EN\r\n{body}END:VCALENDAR\r\n")
}

/// A weekly meeting in Berlin time with organiser, attendees and an alarm, one cancelled
/// instance (EXDATE) and one moved instance (RECURRENCE-ID) whose summary is `exception`.
pub fn recurring(exception: &str) -> String {
    cal(&format!(
        "{BERLIN}BEGIN:VEVENT\r\nUID:weekly-1@tenantry.test\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20240108T100000\r\nDTEND;TZID=Europe/Berlin:20240108T110000\r\nRRULE:FREQ=WEEKLY;COUNT=20\r\nEXDATE;TZID=Europe/Berlin:20240115T100000\r\nSUMMARY:Wöchentliche Abstimmung\r\nORGANIZER;CN=Anna Müller:mailto:anna@example.com\r\nATTENDEE;CN=Bob;PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:bob@example.com\r\nATTENDEE;CN=Zoë;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:zoe@example.com\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:weekly-1@tenantry.test\r\nDTSTAMP:20240101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20240122T100000\r\nDTSTART;TZID=Europe/Berlin:20240122T140000\r\nDTEND;TZID=Europe/Berlin:20240122T150000\r\nSUMMARY:{exception}\r\nORGANIZER;CN=Anna Müller:mailto:anna@example.com\r\nATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.com\r\nEND:VEVENT\r\n"
    ))
}

/// `(resource name, body)` of the calendar corpus: events for a VEVENT calendar.
pub fn events() -> Vec<(String, String)> {
    vec![
        ("weekly-1@tenantry.test.ics".into(), recurring("Verschoben — moved")),
        (
            "allday-1.ics".into(),
            cal("BEGIN:VEVENT\r\nUID:allday-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;VALUE=DATE:20240301\r\nDTEND;VALUE=DATE:20240302\r\nSUMMARY:Betriebsausflug 🚌\r\nEND:VEVENT\r\n"),
        ),
        (
            "floating-1.ics".into(),
            cal("BEGIN:VEVENT\r\nUID:floating-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240305T090000\r\nDTEND:20240305T093000\r\nSUMMARY:Floating: 9am wherever you are\r\nEND:VEVENT\r\n"),
        ),
        (
            "ny-1.ics".into(),
            cal(&format!("{NEW_YORK}{BERLIN}BEGIN:VEVENT\r\nUID:ny-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;TZID=America/New_York:20240310T013000\r\nDTEND;TZID=Europe/Berlin:20240310T100000\r\nSUMMARY:Across two zones, over a DST change\r\nDESCRIPTION:Ein langer Text mit Umlauten äöü und einem Zeilenumbruch\\nzweite Zeile, die so lang ist, dass sie gefaltet werden muss, damit sie passt.\r\nEND:VEVENT\r\n")),
        ),
    ]
}

/// Tasks and journal entries, for a VTODO/VJOURNAL list.
pub fn tasks() -> Vec<(String, String)> {
    vec![
        (
            "todo-1.ics".into(),
            cal("BEGIN:VTODO\r\nUID:todo-1\r\nDTSTAMP:20240101T000000Z\r\nDUE;VALUE=DATE:20240401\r\nSUMMARY:Überprüfen – 日本語のタスク\r\nPRIORITY:1\r\nSTATUS:NEEDS-ACTION\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:due\r\nTRIGGER;RELATED=END:-P1D\r\nEND:VALARM\r\nEND:VTODO\r\n"),
        ),
        (
            "journal-1.ics".into(),
            cal("BEGIN:VJOURNAL\r\nUID:journal-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;VALUE=DATE:20240102\r\nSUMMARY:Protokoll\r\nDESCRIPTION:Notizen zum Treffen\r\nEND:VJOURNAL\r\n"),
        ),
    ]
}

/// Base64 of `n` pseudo-random bytes, folded for a vCard.
fn photo(n: usize, seed: u8) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A vCard 3 and a vCard 4, both with photos (the second large).
pub fn contacts() -> Vec<(String, String)> {
    vec![
        (
            "anna.vcf".into(),
            format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:anna-1\r\nFN:Anna Müller\r\nN:Müller;Anna;;;\r\nEMAIL;TYPE=INTERNET:anna@example.com\r\nTEL;TYPE=CELL:+49 170 1234567\r\nADR;TYPE=WORK:;;Königstraße 1;Stuttgart;;70173;Deutschland\r\nNOTE:Zoë's Kollegin\r\nPHOTO;ENCODING=b;TYPE=JPEG:{}\r\nEND:VCARD\r\n", photo(3000, 1)),
        ),
        (
            "kenji.vcf".into(),
            format!("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r\nFN:山田 健二\r\nN:山田;健二;;;\r\nEMAIL;TYPE=work:kenji@example.jp\r\nPHOTO:data:image/jpeg;base64,{}\r\nEND:VCARD\r\n", photo(200_000, 7)),
        ),
    ]
}

/// Every `.ics`/`.vcf` resource name in a Radicale collection folder.
pub fn stored_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn event(uid: &str, summary: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tenantry//corpus//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240110T100000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
}

/// The kill tests' source: a calendar `/alice/big/` of `n` small events `ev-NNNN.ics`.
pub async fn seed_big_calendar(src: &Radicale, n: usize) {
    use futures_util::StreamExt;
    let http = Http::default();
    http.mkcalendar(
        &src.http("/alice/big/"),
        "Big",
        "#123456FF",
        "many events",
        &["VEVENT"],
    )
    .await;
    let puts = (0..n).map(|i| {
        let http = &http;
        let url = src.http(&format!("/alice/big/ev-{i:04}.ics"));
        async move {
            http.put(
                &url,
                &event(&format!("ev-{i:04}"), &format!("Termin Nr. {i} – ü")),
            )
            .await
        }
    });
    // A few at a time: Radicale's listen backlog is small.
    futures_util::stream::iter(puts)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

/// Runs `calendars migrate` once per kill point and kills it (SIGKILL) as soon as `landed()`
/// (the objects on the target) reaches the point, the run ends, or two minutes pass.
pub fn migrate_killed_at(
    source: &str,
    target: &str,
    state: &Path,
    points: &[usize],
    landed: impl Fn() -> usize,
) {
    for &kill_at in points {
        let mut child = Command::new(bin())
            .args([
                "calendars",
                "migrate",
                "--source",
                source,
                "--target",
                target,
                "--state-dir",
                state.to_str().unwrap(),
                "--json",
                "--parallel",
                "4",
            ])
            .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
            .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while landed() < kill_at
            && std::time::Instant::now() < deadline
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
}
