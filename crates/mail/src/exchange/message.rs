//! One MIME message (as fetched over IMAP) → the JSON body of
//! `POST /users/{upn}/mailFolders/{id}/messages`, made so that Exchange stores *received* mail.
//!
//! Graph creates a draft from MIME, and the draft state (MSGFLAG_UNSENT of PR_MESSAGE_FLAGS)
//! can only be set before the first save (MS-OXCMSG), so the message is created from JSON with
//! its MAPI properties set in the same request, as DavMail does
//! (<https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties>):
//!
//! | what | where |
//! |---|---|
//! | read state | `Integer 0x0E07` PR_MESSAGE_FLAGS: 0x1 from `\Seen`; 0x8 (unsent) only for `\Draft` |
//! | delivery time | `SystemTime 0x0E06` PR_MESSAGE_DELIVERY_TIME = IMAP INTERNALDATE |
//! | sent time | `SystemTime 0x0039` PR_CLIENT_SUBMIT_TIME = `Date:` (else INTERNALDATE) |
//! | every header line | `String 0x007D` PR_TRANSPORT_MESSAGE_HEADERS = the header block, byte for byte |
//! | threading | `String 0x1042` PR_IN_REPLY_TO_ID, `String 0x1039` PR_INTERNET_REFERENCES |
//! | answered | `Integer 0x1081` PR_LAST_VERB_EXECUTED = 102 (replied) from `\Answered` |
//! | identity | `String {GUID} Name SourceSha256` = SHA-256 of the source message (re-runs find it) |
//! | `\Flagged` | `flag.flagStatus = flagged` |
//! | keywords | `categories` |
//! | text | `body` (HTML part if any, else the text parts), decoded to UTF-8 |
//! | attachments | `attachments` as `fileAttachment`: every MIME attachment's bytes, decoded from their transfer encoding straight from the raw message (never re-encoded through a charset) |
//!
//! Not carried: `\Deleted` (Exchange has no such state; reported), headers beyond the
//! transport-headers property (Graph's `internetMessageHeaders` takes only `x-` headers).

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde_json::{json, Value};

pub const PR_MESSAGE_FLAGS: &str = "Integer 0x0E07";
pub const PR_MESSAGE_DELIVERY_TIME: &str = "SystemTime 0x0E06";
pub const PR_CLIENT_SUBMIT_TIME: &str = "SystemTime 0x0039";
pub const PR_TRANSPORT_MESSAGE_HEADERS: &str = "String 0x007D";
pub const PR_IN_REPLY_TO_ID: &str = "String 0x1042";
pub const PR_INTERNET_REFERENCES: &str = "String 0x1039";
pub const PR_LAST_VERB_EXECUTED: &str = "Integer 0x1081";
/// tenantry's named property: the SHA-256 of the source message (PS_PUBLIC_STRINGS-style
/// named property in tenantry's own property set).
pub const SOURCE_SHA256: &str = "String {6f1c2a57-9d1e-4c0b-8a53-7e2b1d9c4f60} Name SourceSha256";

const MSGFLAG_READ: u32 = 0x1;
const MSGFLAG_UNSENT: u32 = 0x8;
const VERB_REPLIED: u32 = 102;

/// A message ready to be created, and what of its source could not be carried.
#[derive(Debug)]
pub struct Prepared {
    pub json: Value,
    pub not_carried: Vec<String>,
}

/// What a message's flags become in Exchange: (isRead, flagged, categories, draft).
pub fn flag_state(flags: &[String]) -> (bool, bool, Vec<String>, bool) {
    let has = |f: &str| flags.iter().any(|x| x.eq_ignore_ascii_case(f));
    let mut cats: Vec<String> = flags
        .iter()
        .filter(|f| !f.starts_with('\\'))
        .cloned()
        .collect();
    cats.sort();
    cats.dedup();
    (has("\\Seen"), has("\\Flagged"), cats, has("\\Draft"))
}

/// The patch that brings a created message's read state, flag and categories to `flags`.
pub fn flags_patch(flags: &[String]) -> Value {
    let (read, flagged, cats, _) = flag_state(flags);
    json!({
        "isRead": read,
        "flag": {"flagStatus": if flagged { "flagged" } else { "notFlagged" }},
        "categories": cats,
    })
}

/// Seconds since the epoch → `2024-05-01T10:00:00Z`.
pub fn iso_utc(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The header block of a raw message: everything before the first empty line.
pub fn header_block(raw: &[u8]) -> &[u8] {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 1);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(raw.len()),
    };
    &raw[..end]
}

fn addresses(a: Option<&mail_parser::Address>) -> Vec<Value> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| {
                let addr = x.address()?;
                Some(json!({"emailAddress": {"address": addr, "name": x.name().unwrap_or(addr)}}))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn prop(id: &str, value: impl Into<String>) -> Value {
    json!({"id": id, "value": value.into()})
}

/// Decodes a part's body as its Content-Transfer-Encoding says, from the raw message bytes.
fn decode_transfer(encoding: &str, raw: &[u8]) -> Option<Vec<u8>> {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "base64" => {
            let clean: Vec<u8> = raw
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let trimmed: &[u8] = {
                let n = clean.iter().rev().take_while(|b| **b == b'=').count();
                &clean[..clean.len() - n]
            };
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .ok()
        }
        "quoted-printable" => Some(decode_qp(raw)),
        _ => Some(raw.to_vec()),
    }
}

fn decode_qp(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'=' if raw[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if raw[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < raw.len() => {
                match u8::from_str_radix(std::str::from_utf8(&raw[i + 1..i + 3]).unwrap_or("x"), 16)
                {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The raw body of a part, without the line break that belongs to the next boundary
/// (RFC 2046 §5.1.1: the CRLF before a delimiter is part of the delimiter).
fn raw_body<'a>(raw: &'a [u8], part: &mail_parser::MessagePart) -> &'a [u8] {
    let (s, e) = (
        part.raw_body_offset() as usize,
        part.raw_end_offset() as usize,
    );
    let mut b = raw.get(s..e.min(raw.len())).unwrap_or_default();
    if let Some(x) = b.strip_suffix(b"\r\n") {
        b = x;
    } else if let Some(x) = b.strip_suffix(b"\n") {
        b = x;
    }
    b
}

/// Builds the message. `internaldate` is the IMAP INTERNALDATE in epoch seconds.
pub fn prepare(raw: &[u8], flags: &[String], internaldate: Option<i64>, sha: &str) -> Prepared {
    let mut not_carried = Vec::new();
    let (read, flagged, categories, draft) = flag_state(flags);
    if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")) {
        not_carried.push("\\Deleted".to_string());
    }
    let headers = String::from_utf8_lossy(header_block(raw)).into_owned();
    let parsed = MessageParser::default().parse(raw);
    let delivered = internaldate.map(iso_utc);
    let mut msg_flags = if read { MSGFLAG_READ } else { 0 };
    if draft {
        msg_flags |= MSGFLAG_UNSENT;
    }
    let mut props = vec![
        prop(PR_MESSAGE_FLAGS, msg_flags.to_string()),
        prop(PR_TRANSPORT_MESSAGE_HEADERS, headers),
        prop(SOURCE_SHA256, sha),
    ];
    if let Some(d) = &delivered {
        props.push(prop(PR_MESSAGE_DELIVERY_TIME, d.clone()));
    }
    if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Answered")) {
        props.push(prop(PR_LAST_VERB_EXECUTED, VERB_REPLIED.to_string()));
    }
    let mut v = json!({
        "categories": categories,
        "flag": {"flagStatus": if flagged { "flagged" } else { "notFlagged" }},
    });
    if let Some(m) = &parsed {
        let submitted = m
            .date()
            .map(|d| iso_utc(d.to_timestamp()))
            .or(delivered.clone());
        if let Some(s) = submitted {
            props.push(prop(PR_CLIENT_SUBMIT_TIME, s));
        }
        for (name, id) in [
            ("In-Reply-To", PR_IN_REPLY_TO_ID),
            ("References", PR_INTERNET_REFERENCES),
        ] {
            if let Some(h) = m.header_raw(name) {
                props.push(prop(id, h.trim()));
            }
        }
        v["subject"] = json!(m.subject().unwrap_or(""));
        v["body"] = body(m);
        v["from"] = addresses(m.from())
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        if let Some(s) = addresses(m.sender()).into_iter().next() {
            v["sender"] = s;
        }
        v["toRecipients"] = json!(addresses(m.to()));
        v["ccRecipients"] = json!(addresses(m.cc()));
        v["bccRecipients"] = json!(addresses(m.bcc()));
        v["replyTo"] = json!(addresses(m.reply_to()));
        if let Some(id) = m.message_id() {
            v["internetMessageId"] = json!(format!("<{id}>"));
        }
        v["attachments"] = json!(attachments(raw, m, &mut not_carried));
        if v["from"].is_null() {
            v.as_object_mut().unwrap().remove("from");
        }
    }
    v["singleValueExtendedProperties"] = json!(props);
    Prepared {
        json: v,
        not_carried,
    }
}

/// The HTML part if there is one, else the text parts joined.
fn body(m: &mail_parser::Message) -> Value {
    let html: Vec<&str> = m
        .html_body
        .iter()
        .filter_map(|&i| match &m.parts.get(i as usize)?.body {
            PartType::Html(h) => Some(h.as_ref()),
            _ => None,
        })
        .collect();
    if !html.is_empty() {
        return json!({"contentType": "html", "content": html.concat()});
    }
    let text: Vec<&str> = m
        .text_body
        .iter()
        .filter_map(|&i| match &m.parts.get(i as usize)?.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect();
    json!({"contentType": "text", "content": text.concat()})
}

fn attachments(raw: &[u8], m: &mail_parser::Message, not_carried: &mut Vec<String>) -> Vec<Value> {
    let mut out = Vec::new();
    for (n, &i) in m.attachments.iter().enumerate() {
        let Some(part) = m.parts.get(i as usize) else {
            continue;
        };
        let encoding = part
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("Content-Transfer-Encoding"))
            .and_then(|h| h.value().as_text())
            .unwrap_or("7bit");
        let bytes = match decode_transfer(encoding, raw_body(raw, part)) {
            Some(b) => b,
            None => {
                not_carried.push(format!("attachment {}: its base64 does not decode", n + 1));
                part.contents().to_vec()
            }
        };
        let ctype = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(s) => format!("{}/{}", c.ctype(), s),
                None => c.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let name = part
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| {
                if matches!(part.body, PartType::Message(_)) {
                    format!("message-{}.eml", n + 1)
                } else {
                    format!("attachment-{}", n + 1)
                }
            });
        let mut a = json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": name,
            "contentType": ctype,
            "isInline": part.content_disposition().is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline")),
            "contentBytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
        });
        if let Some(cid) = part.content_id() {
            a["contentId"] = json!(cid);
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_not_draft_with_every_header_and_attachment_byte() {
        let att: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&att);
        let raw = format!(
            "Received: from a by b; Mon, 1 Jan 2024 10:00:00 +0000\r\nFrom: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: Hi\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\nIn-Reply-To: <m0@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello \u{e9}\r\n--b\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        let p = prepare(
            raw.as_bytes(),
            &["\\Seen".into(), "\\Flagged".into(), "Work".into()],
            Some(1_700_000_000),
            "abc",
        );
        let v = &p.json;
        let props = v["singleValueExtendedProperties"].as_array().unwrap();
        let get = |id: &str| {
            props
                .iter()
                .find(|x| x["id"] == id)
                .map(|x| x["value"].as_str().unwrap().to_string())
        };
        assert_eq!(
            get(PR_MESSAGE_FLAGS).as_deref(),
            Some("1"),
            "read, never unsent"
        );
        assert_eq!(
            get(PR_MESSAGE_DELIVERY_TIME).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            get(PR_CLIENT_SUBMIT_TIME).as_deref(),
            Some("2024-01-01T10:00:00Z")
        );
        let headers = get(PR_TRANSPORT_MESSAGE_HEADERS).unwrap();
        assert!(
            headers.starts_with("Received: from a by b;")
                && headers.ends_with("boundary=\"b\"\r\n"),
            "{headers}"
        );
        assert_eq!(get(PR_IN_REPLY_TO_ID).as_deref(), Some("<m0@example.org>"));
        assert_eq!(v["flag"]["flagStatus"], "flagged");
        assert_eq!(v["categories"], json!(["Work"]));
        assert_eq!(v["internetMessageId"], "<m1@example.org>");
        assert_eq!(
            v["body"]["content"].as_str().unwrap().trim_end(),
            "Hello \u{e9}"
        );
        let a = &v["attachments"][0];
        assert_eq!(a["name"], "x.bin");
        let got = base64::engine::general_purpose::STANDARD
            .decode(a["contentBytes"].as_str().unwrap())
            .unwrap();
        assert_eq!(got, att, "every attachment byte");
    }

    #[test]
    fn quoted_printable_and_drafts() {
        assert_eq!(decode_qp(b"a=3Db=\r\nc=E9"), b"a=bc\xe9");
        let p = prepare(b"Subject: x\r\n\r\nbody", &["\\Draft".into()], None, "s");
        let flags = p.json["singleValueExtendedProperties"][0]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(flags, "8", "a source draft stays a draft, unread");
    }
}
