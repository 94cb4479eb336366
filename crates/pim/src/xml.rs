//! Pure XML for CalDAV/CardDAV: parsing `207 Multi-Status` answers (PROPFIND, REPORT
//! sync-collection) into the properties this engine uses, the request bodies it sends, and the
//! reason a server gives in an error body. No I/O, so every server's quirks can be pinned by a
//! unit test.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::kind::Kind;

/// The properties of a collection that travel with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CollectionProps {
    pub displayname: Option<String>,
    /// Apple's `calendar-color` (`#RRGGBBAA`), which most clients and servers use.
    pub color: Option<String>,
    /// `calendar-description` or `addressbook-description`.
    pub description: Option<String>,
    /// `supported-calendar-component-set` (VEVENT, VTODO, VJOURNAL...), calendars only.
    pub components: Option<Vec<String>>,
}

/// One `response` of a multistatus, with the properties of its `200` propstats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DavResponse {
    pub href: String,
    /// The response-level status (sync-collection reports removed members as 404 here).
    pub status: Option<u16>,
    /// Local names of the `resourcetype` children (`collection`, `calendar`, `addressbook`,
    /// `schedule-inbox`, `principal`...).
    pub types: Vec<String>,
    pub props: CollectionProps,
    pub etag: Option<String>,
    pub sync_token: Option<String>,
    pub max_resource_size: Option<u64>,
    /// `calendar-data` / `address-data` of a query report (whitespace-trimmed: for UIDs only,
    /// never for copying).
    pub data: Option<String>,
    /// `current-user-principal` (RFC 5397).
    pub principal: Option<String>,
    /// `calendar-home-set` or `addressbook-home-set`.
    pub home: Option<String>,
    /// The first href of `principal-collection-set` (RFC 3744 §5.8): where the server keeps
    /// its principals, for finding another user's principal than the logged-in one.
    pub principal_collection: Option<String>,
}

impl DavResponse {
    pub fn is(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Multistatus {
    pub responses: Vec<DavResponse>,
    /// The new token of a sync-collection report.
    pub sync_token: Option<String>,
}

fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

fn local(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

/// Parses a multistatus body. Namespace prefixes are ignored (servers pick their own); only
/// properties from `200` propstats are taken.
pub fn parse_multistatus(xml: &str) -> Result<Multistatus, String> {
    let mut r = Reader::from_str(xml);
    r.config_mut().trim_text(false);
    let mut out = Multistatus::default();
    let mut stack: Vec<String> = Vec::new();
    let mut cur: Option<DavResponse> = None;
    // The propstat being read, and its status.
    let mut ps = DavResponse::default();
    let mut ps_status: Option<u16> = None;
    let mut text = String::new();
    loop {
        let ev = r
            .read_event()
            .map_err(|e| format!("malformed multistatus XML: {e}"))?;
        match ev {
            Event::Start(e) => {
                let name = local(&e);
                if stack.last().map(String::as_str) == Some("resourcetype") {
                    ps.types.push(name.clone());
                } else if name == "response" {
                    cur = Some(DavResponse::default());
                } else if name == "propstat" {
                    ps = DavResponse::default();
                    ps_status = None;
                } else if name == "comp" {
                    push_comp(&mut ps, &e);
                }
                text.clear();
                stack.push(name);
            }
            Event::Empty(e) => {
                let name = local(&e);
                if stack.last().map(String::as_str) == Some("resourcetype") {
                    ps.types.push(name);
                } else if name == "comp" {
                    push_comp(&mut ps, &e);
                } else if name == "supported-calendar-component-set" {
                    ps.props.components.get_or_insert_with(Vec::new);
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| format!("bad XML text: {e}"))?;
                text.push_str(&s);
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let parent = stack.last().map(String::as_str).unwrap_or("");
                let value = std::mem::take(&mut text);
                let value = value.trim();
                match (name.as_str(), parent) {
                    ("href", "response") => {
                        if let Some(c) = cur.as_mut() {
                            c.href = value.to_string();
                        }
                    }
                    ("status", "response") => {
                        if let Some(c) = cur.as_mut() {
                            c.status = status_code(value);
                        }
                    }
                    ("status", "propstat") => ps_status = status_code(value),
                    ("sync-token", "multistatus") => out.sync_token = Some(value.to_string()),
                    ("sync-token", "prop") => ps.sync_token = Some(value.to_string()),
                    ("getetag", "prop") => ps.etag = Some(value.to_string()),
                    ("displayname", "prop") => ps.props.displayname = Some(value.to_string()),
                    ("calendar-color", "prop") => ps.props.color = Some(value.to_string()),
                    ("calendar-description" | "addressbook-description", "prop") => {
                        ps.props.description = Some(value.to_string())
                    }
                    ("max-resource-size", "prop") => ps.max_resource_size = value.parse().ok(),
                    ("calendar-data" | "address-data", "prop") => ps.data = Some(value.to_string()),
                    ("href", "current-user-principal") => ps.principal = Some(value.to_string()),
                    ("href", "calendar-home-set" | "addressbook-home-set") => {
                        ps.home = ps.home.take().or(Some(value.to_string()))
                    }
                    ("href", "principal-collection-set") => {
                        ps.principal_collection =
                            ps.principal_collection.take().or(Some(value.to_string()))
                    }
                    ("propstat", _) => {
                        if let (Some(c), Some(200) | None) = (cur.as_mut(), ps_status) {
                            merge(c, std::mem::take(&mut ps));
                        }
                    }
                    ("response", _) => {
                        if let Some(c) = cur.take() {
                            if !c.href.is_empty() {
                                out.responses.push(c);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn push_comp(ps: &mut DavResponse, e: &BytesStart<'_>) {
    if let Some(Ok(a)) = e
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"name")
        .map(|a| a.unescape_value().map(|v| v.into_owned()))
    {
        ps.props.components.get_or_insert_with(Vec::new).push(a);
    }
}

fn merge(c: &mut DavResponse, p: DavResponse) {
    c.types.extend(p.types);
    c.etag = c.etag.take().or(p.etag);
    c.sync_token = c.sync_token.take().or(p.sync_token);
    c.max_resource_size = c.max_resource_size.or(p.max_resource_size);
    c.data = c.data.take().or(p.data);
    c.principal = c.principal.take().or(p.principal);
    c.home = c.home.take().or(p.home);
    c.principal_collection = c.principal_collection.take().or(p.principal_collection);
    let (cp, pp) = (&mut c.props, p.props);
    cp.displayname = cp.displayname.take().or(pp.displayname);
    cp.color = cp.color.take().or(pp.color);
    cp.description = cp.description.take().or(pp.description);
    cp.components = cp.components.take().or(pp.components);
}

const NS: &str = r#"xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav" xmlns:A="http://apple.com/ns/ical/""#;

/// PROPFIND body for collections: their type, properties and size limit, and their sync
/// tokens when `sync_token` (a source's: a target's are never used, and a server may compute
/// one over every object of the collection, as Radicale does).
pub fn propfind_collections(sync_token: bool) -> String {
    let token = if sync_token { "<D:sync-token/>" } else { "" };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:propfind {NS}><D:prop><D:resourcetype/><D:displayname/><A:calendar-color/><C:calendar-description/><CR:addressbook-description/><C:supported-calendar-component-set/>{token}<C:max-resource-size/><CR:max-resource-size/></D:prop></D:propfind>"#
    )
}

/// PROPFIND body for discovery (RFC 6764 §6): the user's principal, where principals live,
/// and the home of the kind.
pub fn propfind_principal(kind: Kind) -> String {
    let home = match kind {
        Kind::Calendars => "<C:calendar-home-set/>",
        Kind::Contacts => "<CR:addressbook-home-set/>",
    };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:propfind {NS}><D:prop><D:current-user-principal/><D:principal-collection-set/>{home}</D:prop></D:propfind>"#
    )
}

/// PROPFIND body listing a collection's members with their ETags (servers without sync).
pub const PROPFIND_ETAGS: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/></D:prop></D:propfind>"#;

/// A sync-collection REPORT (RFC 6578): everything when `token` is empty, else what changed.
pub fn sync_collection(token: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>{}</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>"#,
        escape(token)
    )
}

/// A query REPORT returning every object's data (to learn the UIDs a target collection holds).
pub fn query_all(kind: Kind) -> String {
    match kind {
        Kind::Calendars => format!(
            r#"<?xml version="1.0" encoding="utf-8"?><C:calendar-query {NS}><D:prop><D:getetag/><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>"#
        ),
        Kind::Contacts => format!(
            r#"<?xml version="1.0" encoding="utf-8"?><CR:addressbook-query {NS}><D:prop><D:getetag/><CR:address-data/></D:prop></CR:addressbook-query>"#
        ),
    }
}

/// The `<D:prop>` content setting a collection's properties (empty when there are none).
fn set_props(kind: Kind, p: &CollectionProps, with_components: bool) -> String {
    let mut s = String::new();
    if let Some(v) = &p.displayname {
        s += &format!("<D:displayname>{}</D:displayname>", escape(v));
    }
    if let (Kind::Calendars, Some(v)) = (kind, &p.color) {
        s += &format!("<A:calendar-color>{}</A:calendar-color>", escape(v));
    }
    if let Some(v) = &p.description {
        s += &match kind {
            Kind::Calendars => format!(
                "<C:calendar-description>{}</C:calendar-description>",
                escape(v)
            ),
            Kind::Contacts => format!(
                "<CR:addressbook-description>{}</CR:addressbook-description>",
                escape(v)
            ),
        };
    }
    if let (Kind::Calendars, Some(comps), true) = (kind, &p.components, with_components) {
        s += "<C:supported-calendar-component-set>";
        for c in comps {
            s += &format!(r#"<C:comp name="{}"/>"#, escape(c));
        }
        s += "</C:supported-calendar-component-set>";
    }
    s
}

/// The body of MKCALENDAR (RFC 4791) or extended MKCOL (RFC 5689) with the source's properties.
pub fn create_collection(kind: Kind, p: &CollectionProps) -> String {
    let props = set_props(kind, p, true);
    match kind {
        Kind::Calendars => format!(
            r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar {NS}><D:set><D:prop>{props}</D:prop></D:set></C:mkcalendar>"#
        ),
        Kind::Contacts => format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol {NS}><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype>{props}</D:prop></D:set></D:mkcol>"#
        ),
    }
}

/// A PROPPATCH bringing an existing collection's properties in line with the source's (the
/// component set is fixed at creation on most servers, so it is left alone).
pub fn proppatch(kind: Kind, p: &CollectionProps) -> Option<String> {
    let props = set_props(kind, p, false);
    (!props.is_empty()).then(|| {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate {NS}><D:set><D:prop>{props}</D:prop></D:set></D:propertyupdate>"#
        )
    })
}

pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The reason a server gives in an error body: the preconditions of a `DAV:error` element
/// (`no-uid-conflict`, `max-resource-size`...), else the start of its text. Control characters
/// are dropped and the length is bounded: the text comes from a server we do not control.
pub fn error_reason(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    if body.starts_with('<') {
        let mut r = Reader::from_str(body);
        let mut depth_in_error = None;
        let mut depth = 0usize;
        let mut names = Vec::new();
        loop {
            match r.read_event() {
                Ok(Event::Start(e)) => {
                    depth += 1;
                    if local(&e) == "error" && depth_in_error.is_none() {
                        depth_in_error = Some(depth);
                    } else if depth_in_error == Some(depth - 1) {
                        names.push(local(&e));
                    }
                }
                Ok(Event::Empty(e)) if depth_in_error == Some(depth) => names.push(local(&e)),
                Ok(Event::End(_)) => depth = depth.saturating_sub(1),
                Ok(Event::Eof) | Err(_) => break,
                _ => {}
            }
        }
        if !names.is_empty() {
            return Some(clean(&names.join(", ")));
        }
    }
    Some(clean(body))
}

fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RADICALE_HOME: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav" xmlns:ICAL="http://apple.com/ns/ical/"><response><href>/alice/</href><propstat><prop><resourcetype><principal /><collection /></resourcetype><C:max-resource-size>10000000</C:max-resource-size></prop><status>HTTP/1.1 200 OK</status></propstat><propstat><prop><displayname /><ICAL:calendar-color /></prop><status>HTTP/1.1 404 Not Found</status></propstat></response><response><href>/alice/cal1/</href><propstat><prop><resourcetype><C:calendar /><collection /></resourcetype><displayname>Work &amp; é</displayname><ICAL:calendar-color>#FF0000FF</ICAL:calendar-color><C:calendar-description>desc</C:calendar-description><C:supported-calendar-component-set><C:comp name="VEVENT" /><C:comp name="VTODO" /></C:supported-calendar-component-set><sync-token>http://radicale.org/ns/sync/42</sync-token><getetag>"db7a"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat><propstat><prop><CR:addressbook-description /></prop><status>HTTP/1.1 404 Not Found</status></propstat></response></multistatus>"#;

    #[test]
    fn parses_a_radicale_home() {
        let m = parse_multistatus(RADICALE_HOME).unwrap();
        assert_eq!(m.responses.len(), 2);
        let home = &m.responses[0];
        assert!(home.is("principal") && home.is("collection") && !home.is("calendar"));
        assert_eq!(home.props.displayname, None, "404 propstat ignored");
        assert_eq!(home.max_resource_size, Some(10_000_000));
        let cal = &m.responses[1];
        assert!(cal.is("calendar"));
        assert_eq!(cal.props.displayname.as_deref(), Some("Work & é"));
        assert_eq!(cal.props.color.as_deref(), Some("#FF0000FF"));
        assert_eq!(cal.props.description.as_deref(), Some("desc"));
        assert_eq!(
            cal.props.components,
            Some(vec!["VEVENT".to_string(), "VTODO".to_string()])
        );
        assert_eq!(
            cal.sync_token.as_deref(),
            Some("http://radicale.org/ns/sync/42")
        );
        assert_eq!(cal.etag.as_deref(), Some("\"db7a\""));
    }

    #[test]
    fn parses_a_sync_report_with_removed_members() {
        let xml = r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/c/a.ics</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response><d:response><d:href>/c/gone.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response><d:sync-token>tok-2</d:sync-token></d:multistatus>"#;
        let m = parse_multistatus(xml).unwrap();
        assert_eq!(m.sync_token.as_deref(), Some("tok-2"));
        assert_eq!(m.responses[0].etag.as_deref(), Some("\"1\""));
        assert_eq!(m.responses[0].status, None);
        assert_eq!(m.responses[1].status, Some(404));
    }

    #[test]
    fn bodies_escape_values() {
        let p = CollectionProps {
            displayname: Some("a<b>&\"c".into()),
            color: Some("#00FF00FF".into()),
            description: None,
            components: Some(vec!["VTODO".into()]),
        };
        let b = create_collection(Kind::Calendars, &p);
        assert!(
            b.contains("<D:displayname>a&lt;b&gt;&amp;&quot;c</D:displayname>"),
            "{b}"
        );
        assert!(b.contains(r#"<C:comp name="VTODO"/>"#));
        // What we send parses back to what we meant.
        assert!(parse_multistatus(&b).is_ok());
        let b = create_collection(Kind::Contacts, &p);
        assert!(b.contains("<CR:addressbook/>") && !b.contains("calendar-color"));
        assert_eq!(proppatch(Kind::Contacts, &CollectionProps::default()), None);
        assert!(sync_collection("a&b").contains("a&amp;b"));
    }

    #[test]
    fn error_reasons_name_preconditions_or_quote_text() {
        let x = r#"<?xml version='1.0' encoding='utf-8'?><error xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:no-uid-conflict /></error>"#;
        assert_eq!(error_reason(x).as_deref(), Some("no-uid-conflict"));
        let x = r#"<d:error xmlns:d="DAV:"><c:max-resource-size xmlns:c="x"><d:href>/a</d:href></c:max-resource-size></d:error>"#;
        assert_eq!(error_reason(x).as_deref(), Some("max-resource-size"));
        assert_eq!(
            error_reason("Quota\r\n\x1b[31mexceeded").as_deref(),
            Some("Quota [31mexceeded")
        );
        assert_eq!(error_reason("  "), None);
        assert_eq!(error_reason(&"x".repeat(1000)).unwrap().len(), 200);
    }

    #[test]
    fn parses_principal_and_home_hrefs() {
        let x = r#"<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><response><href>/alice/</href><propstat><prop><current-user-principal><href>/principals/alice/</href></current-user-principal><C:calendar-home-set><href>/cal/alice/</href></C:calendar-home-set><principal-collection-set><href>/principals/</href><href>/groups/</href></principal-collection-set></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;
        let r = &parse_multistatus(x).unwrap().responses[0];
        assert_eq!(r.href, "/alice/");
        assert_eq!(r.principal.as_deref(), Some("/principals/alice/"));
        assert_eq!(r.home.as_deref(), Some("/cal/alice/"));
        assert_eq!(r.principal_collection.as_deref(), Some("/principals/"));
    }

    #[test]
    fn bad_xml_is_an_error_not_a_panic() {
        assert!(parse_multistatus("<a><b></a>").is_err());
        assert_eq!(parse_multistatus("").unwrap(), Multistatus::default());
    }
}
