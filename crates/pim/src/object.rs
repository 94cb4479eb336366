//! Pure inspection of one calendar object (iCalendar, RFC 5545) or contact (vCard 3 / 4): is it
//! well formed enough to store, and what is its UID. Nothing here changes a byte: objects are
//! sent as the source served them, and this only decides whether and where.

use crate::kind::Kind;

/// What the engine needs to know about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub uid: String,
    /// The component holding the UID: `VEVENT`, `VTODO`, `VJOURNAL`, `VFREEBUSY` or `VCARD`.
    pub component: String,
}

/// Content lines with folding undone (RFC 5545 §3.1, RFC 6350 §3.2). Invalid UTF-8 is read
/// lossily: it only matters for the names and UIDs looked at here.
fn unfolded(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match (line.strip_prefix([' ', '\t']), out.last_mut()) {
            (Some(rest), Some(prev)) => prev.push_str(rest),
            _ if line.is_empty() => {}
            _ => out.push(line.to_string()),
        }
    }
    out
}

/// Splits a content line into its upper-cased name (group prefix dropped) and its value; the
/// value starts at the first `:` outside a quoted parameter.
fn split_line(line: &str) -> Option<(String, &str)> {
    let mut quoted = false;
    let mut name_end = None;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if name_end.is_none() && !quoted => name_end = Some(i),
            ':' if !quoted => {
                let name = &line[..name_end.unwrap_or(i)];
                let name = name.rsplit('.').next().unwrap_or(name);
                return Some((name.to_ascii_uppercase(), &line[i + 1..]));
            }
            _ => {}
        }
    }
    None
}

/// Checks the object's structure and finds its UID.
pub fn inspect(kind: Kind, bytes: &[u8]) -> Result<ObjectInfo, String> {
    let lines = unfolded(bytes);
    let outer = match kind {
        Kind::Calendars => "VCALENDAR",
        Kind::Contacts => "VCARD",
    };
    let mut stack: Vec<String> = Vec::new();
    let mut outers = 0;
    let mut found: Option<ObjectInfo> = None;
    for line in &lines {
        let (name, value) =
            split_line(line).ok_or_else(|| format!("a line without a value: {:.40?}", line))?;
        let value = value.trim();
        match name.as_str() {
            "BEGIN" => {
                let comp = value.to_ascii_uppercase();
                if stack.is_empty() {
                    if comp != outer {
                        return Err(format!("starts with BEGIN:{comp:.20}, not BEGIN:{outer}"));
                    }
                    outers += 1;
                    if outers > 1 {
                        return Err(format!("more than one {outer} in one object"));
                    }
                }
                stack.push(comp);
            }
            "END" => match stack.pop() {
                Some(open) if open.eq_ignore_ascii_case(value) => {}
                Some(open) => return Err(format!("END:{value:.20} closes {open}")),
                None => return Err(format!("END:{value:.20} without BEGIN")),
            },
            _ if stack.is_empty() => return Err(format!("{name:.20} outside {outer}")),
            "METHOD" if kind == Kind::Calendars && stack.len() == 1 => {
                return Err("it has a METHOD: an iTIP message, not a stored calendar object".into())
            }
            "UID" => {
                let holder = stack.last().map(String::as_str).unwrap_or("");
                let top_level = match kind {
                    Kind::Calendars => {
                        stack.len() == 2
                            && matches!(holder, "VEVENT" | "VTODO" | "VJOURNAL" | "VFREEBUSY")
                    }
                    Kind::Contacts => stack.len() == 1,
                };
                if !top_level {
                    continue;
                }
                match &found {
                    Some(f) if f.uid != value => {
                        return Err(format!(
                            "components with different UIDs ({:.60} and {value:.60})",
                            f.uid
                        ))
                    }
                    Some(_) => {}
                    None => {
                        found = Some(ObjectInfo {
                            uid: value.to_string(),
                            component: holder.to_string(),
                        })
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("BEGIN:{open} is never closed"));
    }
    if outers == 0 {
        return Err(format!("no {outer} in it"));
    }
    match found {
        Some(f) if !f.uid.is_empty() => Ok(f),
        _ => Err("it has no UID".into()),
    }
}

/// Whether a target's copy says what the source's object says: the same bytes, or, from a
/// target that re-serialises what it stores, the same [`canonical`] form. The one judgement of
/// `verify`, of a run taking over a copy a killed run wrote, and of a move whose restored state
/// missed a later copy.
pub fn same_content(source: &[u8], target: &[u8]) -> bool {
    source == target || canonical(source) == canonical(target)
}

/// A fingerprint of the content (BLAKE3 of the [`canonical`] form, `blake3c:<hex>`): equal for
/// two objects exactly when [`same_content`] is (barring a collision), so the state store can
/// recognise a target's copy of bytes it no longer holds.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("blake3c:{}", blake3::hash(&canonical(bytes)).to_hex())
}

/// The object's content without what a server may change when it re-serialises what it stores
/// (Xandikos does): line folding and line ends, the order of a component's properties and
/// subcomponents, optional quotes around a parameter value, the order of a recurrence rule's
/// parts (`canonical_line`). Every property keeps its name, parameters and value as bytes, inside the
/// component it belongs to, so two objects with the same canonical form say the same thing.
/// An object whose BEGIN/END do not balance has no canonical form beyond its own bytes.
pub fn canonical(bytes: &[u8]) -> Vec<u8> {
    // Unfolded as bytes: a fold may split a multi-byte character.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for raw in bytes.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        match (line.first(), lines.last_mut()) {
            (Some(b' ' | b'\t'), Some(prev)) => prev.extend_from_slice(&line[1..]),
            _ if line.is_empty() => {}
            _ => lines.push(line.to_vec()),
        }
    }
    // Open components: (BEGIN line, property lines, rendered subcomponents).
    type Open = (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>);
    let mut stack: Vec<Open> = vec![(Vec::new(), Vec::new(), Vec::new())];
    for line in lines {
        if line.starts_with(b"BEGIN:") {
            stack.push((line, Vec::new(), Vec::new()));
        } else if line.starts_with(b"END:") {
            let Some((begin, mut props, mut subs)) = stack.pop().filter(|o| !o.0.is_empty()) else {
                return bytes.to_vec();
            };
            props.sort();
            subs.sort();
            let mut rendered = begin;
            for part in props.iter().chain(&subs) {
                rendered.push(b'\n');
                rendered.extend_from_slice(part);
            }
            rendered.push(b'\n');
            rendered.extend_from_slice(&line);
            stack.last_mut().expect("the root stays").2.push(rendered);
        } else {
            stack
                .last_mut()
                .expect("the root stays")
                .1
                .push(canonical_line(&line));
        }
    }
    match stack.pop() {
        Some((_, props, subs)) if stack.is_empty() && props.is_empty() => subs.join(&b'\n'),
        _ => bytes.to_vec(),
    }
}

/// One content line with the spellings RFC 5545 makes equal taken out: a parameter value quoted
/// without need (`CN="Anna Müller"`, §3.2: quotes are needed only around `:`, `;` or `,`), and
/// the order of an `RRULE`/`EXRULE`'s parts (§3.3.10: "not ordered in any particular sequence").
fn canonical_line(line: &[u8]) -> Vec<u8> {
    // Split at `;` and the first `:` outside quotes: name, parameters, value.
    let mut parts: Vec<&[u8]> = Vec::new();
    let (mut quoted, mut start, mut value) = (false, 0, None);
    for (i, b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                parts.push(&line[start..i]);
                start = i + 1;
            }
            b':' if !quoted => {
                parts.push(&line[start..i]);
                value = Some(&line[i + 1..]);
                break;
            }
            _ => {}
        }
    }
    let Some(value) = value else {
        return line.to_vec();
    };
    let mut out = parts[0].to_vec();
    for param in &parts[1..] {
        out.push(b';');
        match param.iter().position(|b| *b == b'=') {
            Some(eq) if needless_quotes(&param[eq + 1..]) => {
                out.extend_from_slice(&param[..=eq]);
                out.extend_from_slice(&param[eq + 2..param.len() - 1]);
            }
            _ => out.extend_from_slice(param),
        }
    }
    out.push(b':');
    if parts[0].eq_ignore_ascii_case(b"RRULE") || parts[0].eq_ignore_ascii_case(b"EXRULE") {
        let mut rule: Vec<&[u8]> = value.split(|b| *b == b';').collect();
        rule.sort();
        out.extend_from_slice(&rule.join(&b';'));
    } else {
        out.extend_from_slice(value);
    }
    out
}

/// A parameter value that is one quoted string with nothing inside that needs the quotes.
fn needless_quotes(v: &[u8]) -> bool {
    v.len() >= 2
        && v[0] == b'"'
        && v[v.len() - 1] == b'"'
        && !v[1..v.len() - 1]
            .iter()
            .any(|b| matches!(b, b'"' | b':' | b';' | b','))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:abc-\r\n 123@example.com\r\nSUMMARY:x\r\nBEGIN:VALARM\r\nUID:alarm-uid\r\nEND:VALARM\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:abc-123@example.com\r\nRECURRENCE-ID:20240101T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn finds_the_uid_of_a_recurring_event_with_overrides() {
        let i = inspect(Kind::Calendars, EVENT.as_bytes()).unwrap();
        assert_eq!(i.uid, "abc-123@example.com", "folded UID is unfolded");
        assert_eq!(i.component, "VEVENT");
    }

    #[test]
    fn vcards_3_and_4_with_groups_and_quoted_params() {
        let v3 = "BEGIN:VCARD\nVERSION:3.0\nFN:Zoë\nitem1.UID;X-A=\"a:b\":urn:uuid:1\nEND:VCARD\n";
        assert_eq!(
            inspect(Kind::Contacts, v3.as_bytes()).unwrap().uid,
            "urn:uuid:1"
        );
        let v4 = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u4\r\nPHOTO:data:image/jpeg;base64,AAAA\r\n BBBB\r\nEND:VCARD\r\n";
        assert_eq!(
            inspect(Kind::Contacts, v4.as_bytes()).unwrap().component,
            "VCARD"
        );
    }

    #[test]
    fn refuses_what_a_server_should_not_store() {
        for (kind, text, why) in [
            (Kind::Calendars, "garbage", "without a value"),
            (Kind::Calendars, "BEGIN:VCARD\nUID:x\nEND:VCARD\n", "not BEGIN:VCALENDAR"),
            (Kind::Calendars, "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VCALENDAR\n", "closes VEVENT"),
            (Kind::Calendars, "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VEVENT\n", "never closed"),
            (Kind::Calendars, "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n", "no UID"),
            (Kind::Calendars, "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:x\nEND:VEVENT\nEND:VCALENDAR\n", "iTIP"),
            (Kind::Calendars, "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a\nEND:VEVENT\nBEGIN:VTODO\nUID:b\nEND:VTODO\nEND:VCALENDAR\n", "different UIDs"),
            (Kind::Contacts, "BEGIN:VCARD\nFN:x\nEND:VCARD\nBEGIN:VCARD\nFN:y\nEND:VCARD\n", "more than one"),
            (Kind::Contacts, "", "no VCARD"),
        ] {
            let e = inspect(kind, text.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn canonical_form_ignores_order_and_folding_but_not_content_or_nesting() {
        let given = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:Wöchentlich\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        // As Xandikos stores it: properties reordered, a line folded inside "ö".
        let stored = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:W\xc3\r\n \xb6chentlich\r\nUID:a\r\nBEGIN:VALARM\r\nTRIGGER:-PT15M\r\nACTION:DISPLAY\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(canonical(given.as_bytes()), canonical(stored));
        let edited = given.replace("Wöchentlich", "Monatlich");
        assert_ne!(canonical(given.as_bytes()), canonical(edited.as_bytes()));
        // The same lines, but the trigger moved from the alarm to the event.
        let moved = given
            .replace("TRIGGER:-PT15M\r\n", "")
            .replace("UID:a\r\n", "UID:a\r\nTRIGGER:-PT15M\r\n");
        assert_ne!(canonical(given.as_bytes()), canonical(moved.as_bytes()));
        // Quotes without need and the order of a rule's parts are spelling, not content.
        let rule = "BEGIN:VEVENT\r\nORGANIZER;CN=Anna Müller:mailto:a@x\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:VEVENT\r\n";
        let respelled = "BEGIN:VEVENT\r\nORGANIZER;CN=\"Anna Müller\":mailto:a@x\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:VEVENT\r\n";
        assert_eq!(canonical(rule.as_bytes()), canonical(respelled.as_bytes()));
        // Quotes around a comma are content: one member, not two.
        let one = "BEGIN:VEVENT\r\nATTENDEE;MEMBER=\"a,b\":mailto:a@x\r\nEND:VEVENT\r\n";
        let two = "BEGIN:VEVENT\r\nATTENDEE;MEMBER=a,b:mailto:a@x\r\nEND:VEVENT\r\n";
        assert_ne!(canonical(one.as_bytes()), canonical(two.as_bytes()));
        let unbalanced = b"BEGIN:VCALENDAR\r\nUID:a\r\n";
        assert_eq!(canonical(unbalanced), unbalanced.to_vec());
    }
}
