//! Pure parsing of WebDAV `207 Multi-Status` bodies (RFC 4918 §14.16), and the href arithmetic
//! around them. No I/O here, so every server's quirks can be pinned by a unit test.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::relpath::check_segment;

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The body we send with PROPFIND: only what a listing needs.
pub const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>"#;

/// A PROPPATCH body setting `getlastmodified` (honoured by e.g. wsgidav with
/// `mutable_live_props`, refused by Apache mod_dav).
pub fn proppatch_mtime_body(secs: i64) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getlastmodified>{}</D:getlastmodified></D:prop></D:set></D:propertyupdate>"#,
        httpdate::fmt_http_date(when)
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DavEntry {
    pub href: String,
    pub is_collection: bool,
    pub size: Option<u64>,
    /// Seconds since the epoch.
    pub mtime: Option<i64>,
    pub etag: Option<String>,
    /// Status codes of the propstat blocks (PROPPATCH results live here).
    pub statuses: Vec<u16>,
}

#[derive(Default)]
struct Props {
    is_collection: bool,
    size: Option<u64>,
    mtime: Option<i64>,
    etag: Option<String>,
}

fn status_code(line: &str) -> Option<u16> {
    // "HTTP/1.1 200 OK"
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Bounds on one `207 Multi-Status` body, so a server cannot make a listing take unbounded
/// memory: the entries of one answer, and the bytes of one XML event (a tag or a text, which the
/// reader must hold whole). The body as a whole is bounded by the caller as it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultistatusCaps {
    pub max_entries: u64,
    pub max_event_bytes: u64,
}

impl Default for MultistatusCaps {
    fn default() -> Self {
        Self {
            max_entries: crate::limits::DEFAULT_MAX_ENTRIES,
            max_event_bytes: crate::limits::MAX_XML_EVENT_BYTES,
        }
    }
}

/// Parses a whole multistatus body held in memory (PROPPATCH answers, tests, fuzzing). Only
/// properties from `200` propstats are taken; prefixes are ignored (servers use `D:`, `d:`,
/// `lp1:` or none).
pub fn parse_multistatus(xml: &[u8]) -> Result<Vec<DavEntry>, String> {
    parse_multistatus_capped(xml, MultistatusCaps::default())
}

/// [`parse_multistatus`] within `caps`.
pub fn parse_multistatus_capped(
    xml: &[u8],
    caps: MultistatusCaps,
) -> Result<Vec<DavEntry>, String> {
    let mut r = Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut p = MultistatusParser::new(caps);
    let mut buf = Vec::new();
    loop {
        let before = r.buffer_position();
        let ev = r
            .read_event_into(&mut buf)
            .map_err(|e| format!("malformed multistatus XML: {e}"))?;
        p.check_event_size(r.buffer_position() - before)?;
        if !p.feed(ev)? {
            return Ok(p.entries);
        }
        buf.clear();
    }
}

/// Reads a multistatus body as it arrives, holding one XML event at a time (plus the entries).
/// `after_event` runs after each event with the number of entries read so far: the caller's
/// byte budget for one event starts again, and it may stop the reading with an error.
pub async fn read_multistatus<R: tokio::io::AsyncBufRead + Unpin>(
    body: R,
    caps: MultistatusCaps,
    mut after_event: impl FnMut(usize) -> Result<(), String>,
) -> Result<Vec<DavEntry>, String> {
    let mut r = Reader::from_reader(body);
    r.config_mut().trim_text(true);
    let mut p = MultistatusParser::new(caps);
    let mut buf = Vec::new();
    loop {
        let before = r.buffer_position();
        let ev = r
            .read_event_into_async(&mut buf)
            .await
            .map_err(|e| format!("malformed multistatus XML: {e}"))?;
        p.check_event_size(r.buffer_position() - before)?;
        if !p.feed(ev)? {
            return Ok(p.entries);
        }
        buf.clear();
        after_event(p.entries.len())?;
    }
}

/// Nesting a multistatus needs is 6 levels (multistatus/response/propstat/prop/resourcetype/
/// collection); servers add a few of their own. Deeper is an attack on the element stack.
const MAX_XML_DEPTH: usize = 64;

/// The state of a multistatus parse, fed one XML event at a time.
struct MultistatusParser {
    caps: MultistatusCaps,
    entries: Vec<DavEntry>,
    stack: Vec<String>,
    cur: Option<DavEntry>,
    props: Props,
    status: Option<u16>,
}

impl MultistatusParser {
    fn new(caps: MultistatusCaps) -> Self {
        Self {
            caps,
            entries: Vec::new(),
            stack: Vec::new(),
            cur: None,
            props: Props::default(),
            status: None,
        }
    }

    fn check_event_size(&self, bytes: u64) -> Result<(), String> {
        if bytes > self.caps.max_event_bytes {
            return Err(format!(
                "the listing holds an XML element or text of {bytes} bytes (at most {} are read)",
                self.caps.max_event_bytes
            ));
        }
        Ok(())
    }

    /// Takes one event; `false` at the end of the document.
    fn feed(&mut self, ev: Event<'_>) -> Result<bool, String> {
        match ev {
            Event::Start(e) => {
                if self.stack.len() >= MAX_XML_DEPTH {
                    return Err(format!(
                        "the listing nests XML elements more than {MAX_XML_DEPTH} deep"
                    ));
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match name.as_str() {
                    "response" => self.cur = Some(DavEntry::default()),
                    "propstat" => {
                        self.props = Props::default();
                        self.status = None;
                    }
                    "collection" if self.top() == "resourcetype" => self.props.is_collection = true,
                    _ => {}
                }
                self.stack.push(name);
            }
            Event::Empty(e)
                if e.local_name().as_ref() == b"collection" && self.top() == "resourcetype" =>
            {
                self.props.is_collection = true;
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| format!("bad XML text: {e}"))?;
                self.text(text.trim());
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                self.text(text.trim());
            }
            Event::End(_) => {
                let name = self.stack.pop().unwrap_or_default();
                match name.as_str() {
                    "propstat" => self.end_propstat(),
                    "response" => {
                        if let Some(c) = self.cur.take().filter(|c| !c.href.is_empty()) {
                            if self.entries.len() as u64 >= self.caps.max_entries {
                                return Err(format!(
                                    "the listing has more than {} entries (--max-entries)",
                                    self.caps.max_entries
                                ));
                            }
                            self.entries.push(c);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => return Ok(false),
            _ => {}
        }
        Ok(true)
    }

    fn top(&self) -> &str {
        self.stack.last().map(String::as_str).unwrap_or("")
    }

    fn end_propstat(&mut self) {
        let Some(c) = self.cur.as_mut() else { return };
        let st = self.status.unwrap_or(200);
        c.statuses.push(st);
        if st == 200 {
            let p = std::mem::take(&mut self.props);
            c.is_collection |= p.is_collection;
            c.size = c.size.or(p.size);
            c.mtime = c.mtime.or(p.mtime);
            c.etag = c.etag.take().or(p.etag);
        }
    }

    fn text(&mut self, text: &str) {
        let top = self.top().to_string();
        let in_propstat = self.stack.iter().any(|s| s == "propstat");
        let Some(c) = self.cur.as_mut() else { return };
        match top.as_str() {
            "href" if !in_propstat => c.href = text.to_string(),
            "status" if in_propstat => self.status = status_code(text),
            "getcontentlength" => self.props.size = text.parse().ok(),
            "getlastmodified" => {
                self.props.mtime = httpdate::parse_http_date(text).ok().and_then(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs() as i64)
                })
            }
            "getetag" => self.props.etag = Some(text.to_string()),
            _ => {}
        }
    }
}

/// Encodes a relative path for a URL, segment by segment; `dir` adds the trailing slash
/// collections need (Apache answers 301 without it).
pub fn encode_path(rel: &str, dir: bool) -> String {
    let mut s = rel
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|seg| utf8_percent_encode(seg, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/");
    if dir && !s.is_empty() {
        s.push('/');
    }
    s
}

/// The root of a WebDAV endpoint, against which the hrefs of its listings are resolved.
#[derive(Clone, Debug)]
pub struct HrefRoot {
    /// Lower-cased host of the root URL.
    host: String,
    /// Decoded segments of the root's path.
    segments: Vec<String>,
}

impl HrefRoot {
    pub fn new(root: &reqwest::Url) -> Result<Self, String> {
        let segments = decode_segments(root.path())
            .map_err(|reason| format!("the URL's path is not usable: {reason}"))?;
        Ok(Self {
            host: host_of(root),
            segments,
        })
    }

    /// The path an href names, relative to the root and decoded (`""` for the root itself).
    ///
    /// Decoding is per segment, so `%2F` cannot split a name and `%2e%2e` is seen as `..`;
    /// every segment must pass `relpath::check_segment`. An href on another host, or outside
    /// the root, is refused too: a listing names only what lies below the folder listed.
    /// Scheme and port may differ (a server behind TLS offload names itself `http://…`): only
    /// the path of an href is ever used, requests always go to the root's own origin.
    pub fn resolve(&self, href: &str) -> Result<String, &'static str> {
        let path = match href.find("://") {
            Some(i) => {
                let rest = &href[i + 3..];
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let origin = reqwest::Url::parse(&format!("{}://{authority}/", &href[..i]))
                    .map_err(|_| "it is not a valid URL")?;
                if host_of(&origin) != self.host {
                    return Err("it points to another host");
                }
                if path.is_empty() {
                    "/"
                } else {
                    path
                }
            }
            None if href.starts_with('/') => href,
            None => return Err("it is not an absolute path"),
        };
        let segments = decode_segments(path)?;
        let below = segments
            .strip_prefix(self.segments.as_slice())
            .ok_or("it lies outside the folder being listed")?;
        Ok(below.join("/"))
    }
}

fn host_of(url: &reqwest::Url) -> String {
    url.host_str().unwrap_or("").to_ascii_lowercase()
}

/// The decoded segments of an absolute URL path; one trailing slash (a collection) is allowed.
fn decode_segments(path: &str) -> Result<Vec<String>, &'static str> {
    let path = path.strip_prefix('/').ok_or("it is not an absolute path")?;
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Ok(Vec::new());
    }
    path.split('/')
        .map(|raw| {
            let seg = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| "a name is not valid UTF-8")?;
            check_segment(&seg)?;
            Ok(seg.into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APACHE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/dav/</D:href>
<D:propstat><D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype>
<lp1:getlastmodified>Tue, 03 Mar 2020 10:00:00 GMT</lp1:getlastmodified>
<lp1:getetag>"1000-5a0"</lp1:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getcontentlength/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:">
<D:href>/dav/Gr%c3%bc%c3%9fe%20und%20mehr/r%C3%A9sum%C3%A9%20%232.docx</D:href>
<D:propstat><D:prop><lp1:resourcetype/><lp1:getcontentlength>12345</lp1:getcontentlength>
<lp1:getlastmodified>Wed, 21 Oct 2015 07:28:00 GMT</lp1:getlastmodified>
<lp1:getetag>"3039-52297"</lp1:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
</D:response>
</D:multistatus>"#;

    #[test]
    fn parses_apache_listing() {
        let v = parse_multistatus(APACHE.as_bytes()).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].is_collection);
        assert_eq!(v[0].size, None, "404 propstat ignored");
        assert!(!v[1].is_collection);
        assert_eq!(v[1].size, Some(12345));
        assert_eq!(v[1].mtime, Some(1445412480));
        assert_eq!(v[1].etag.as_deref(), Some("\"3039-52297\""));
        let root = root("http://h/dav/");
        assert_eq!(
            root.resolve(&v[1].href).as_deref(),
            Ok("Grüße und mehr/résumé #2.docx")
        );
        assert_eq!(root.resolve(&v[0].href).as_deref(), Ok(""));
        assert_eq!(
            self::root("http://h/dav").resolve("/dav").as_deref(),
            Ok("")
        );
    }

    #[test]
    fn parses_unprefixed_absolute_hrefs_and_proppatch_statuses() {
        let xml = r#"<multistatus xmlns="DAV:"><response><href>http://h:8/a/b%20c/</href>
<propstat><prop><resourcetype><collection></collection></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat>
<propstat><prop><getlastmodified/></prop><status>HTTP/1.1 403 Forbidden</status></propstat></response></multistatus>"#;
        let v = parse_multistatus(xml.as_bytes()).unwrap();
        assert!(v[0].is_collection);
        assert_eq!(v[0].statuses, vec![200, 403]);
        let root = root("http://h:8/a");
        assert_eq!(root.resolve(&v[0].href).as_deref(), Ok("b c"));
        assert!(root.resolve("/other/x").is_err());
        assert!(root.resolve("/ab/x").is_err());
        assert_eq!(root.resolve("HTTP://H:8/a/x").as_deref(), Ok("x"));
    }

    fn root(url: &str) -> HrefRoot {
        HrefRoot::new(&reqwest::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn hostile_hrefs_are_refused() {
        let root = root("https://dav.example/dav/lib/");
        for href in [
            "/dav/lib/../../etc/passwd",
            "/dav/lib/a/../../../x",
            "/dav/lib/%2e%2e/%2E%2E/x",
            "/dav/lib/a%2F..%2F..%2Fx",
            "/dav/lib/..",
            "/dav/lib/./x",
            "/dav/lib//x",
            "/dav/lib/a%00b",
            "/dav/lib/%ff",
            "/dav/other",
            "/",
            "relative/x",
            "https://evil.example/dav/lib/x",
            "https://dav.example@evil.example/dav/lib/x",
        ] {
            assert!(root.resolve(href).is_err(), "{href} was accepted");
        }
        assert_eq!(
            root.resolve("https://DAV.example:443/dav/lib/a%20b/")
                .as_deref(),
            Ok("a b")
        );
        // Behind TLS offload the server names itself over plain HTTP, on its own port.
        assert_eq!(
            root.resolve("http://dav.example:8080/dav/lib/x").as_deref(),
            Ok("x")
        );
    }

    #[test]
    fn bad_xml_is_an_error_not_a_panic() {
        assert!(parse_multistatus(b"<a><b></a>").is_err());
        assert_eq!(parse_multistatus(b"").unwrap(), vec![]);
    }

    #[test]
    fn caps_bound_entries_event_size_and_nesting() {
        let caps = MultistatusCaps {
            max_entries: 1,
            max_event_bytes: 4096,
        };
        let err = parse_multistatus_capped(APACHE.as_bytes(), caps).unwrap_err();
        assert!(err.contains("more than 1 entries"), "{err}");
        let two = MultistatusCaps {
            max_entries: 2,
            ..caps
        };
        assert_eq!(
            parse_multistatus_capped(APACHE.as_bytes(), two)
                .unwrap()
                .len(),
            2
        );
        let long = format!(
            "<multistatus xmlns=\"DAV:\"><response><href>/{}</href></response></multistatus>",
            "a".repeat(5000)
        );
        let err = parse_multistatus_capped(long.as_bytes(), caps).unwrap_err();
        assert!(err.contains("XML element or text of"), "{err}");
        let deep = "<a>".repeat(100);
        let err = parse_multistatus(deep.as_bytes()).unwrap_err();
        assert!(err.contains("more than 64 deep"), "{err}");
    }

    #[tokio::test]
    async fn streamed_and_whole_parses_agree() {
        let mut resets = 0;
        let streamed = read_multistatus(APACHE.as_bytes(), MultistatusCaps::default(), |_| {
            resets += 1;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(streamed, parse_multistatus(APACHE.as_bytes()).unwrap());
        assert!(resets > 10, "the byte budget restarts after each event");
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(
            encode_path("Grüße und mehr/a#b?c%.txt", false),
            "Gr%C3%BC%C3%9Fe%20und%20mehr/a%23b%3Fc%25.txt"
        );
        assert_eq!(encode_path("d", true), "d/");
        assert_eq!(encode_path("", true), "");
    }

    #[test]
    fn proppatch_body_has_http_date() {
        assert!(proppatch_mtime_body(1445412480).contains("Wed, 21 Oct 2015 07:28:00 GMT"));
    }
}
