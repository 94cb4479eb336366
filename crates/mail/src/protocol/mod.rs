//! IMAP wire format, without I/O: response parsing, command encoding, modified UTF-7, dates.
//!
//! Nothing here touches a socket, so every piece is unit-tested on byte strings. The session
//! layer frames responses (a line plus any `{n}` literals) and hands the complete bytes here.

pub mod command;
pub mod utf7;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed IMAP response: {0}")]
pub struct ParseError(pub String);

/// One token of a response: atoms and numbers stay raw bytes, strings are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Nil,
    Atom(Vec<u8>),
    Str(Vec<u8>),
    List(Vec<Value>),
    /// A literal of this many bytes that was read and thrown away because it exceeded the
    /// literal limit (an oversized message body; see `framer`).
    Discarded(u64),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(b) | Value::Str(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    /// An IMAP number (digits only); None for anything else, or above u64.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Atom(b) => parse_number(b),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Value::Atom(b) | Value::Str(b) => Some(b),
            _ => None,
        }
    }
    /// Case-insensitive comparison for atoms (IMAP keywords are case-insensitive).
    pub fn is_atom(&self, word: &str) -> bool {
        matches!(self, Value::Atom(b) if b.eq_ignore_ascii_case(word.as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

impl Status {
    fn parse(word: &[u8]) -> Option<Status> {
        Some(match word.to_ascii_uppercase().as_slice() {
            b"OK" => Status::Ok,
            b"NO" => Status::No,
            b"BAD" => Status::Bad,
            b"BYE" => Status::Bye,
            b"PREAUTH" => Status::PreAuth,
            _ => return None,
        })
    }
}

/// A status response's bracketed code (`[APPENDUID 1 2]`) and human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub status: Status,
    pub code: Vec<Value>,
    pub text: String,
}

impl StatusInfo {
    pub fn code_is(&self, name: &str) -> bool {
        self.code.first().is_some_and(|v| v.is_atom(name))
    }
    /// "[CODE] text", for error messages (cut to `MAX_SHOWN` characters: it is the server's).
    pub fn describe(&self) -> String {
        match self.code.first().and_then(Value::as_str) {
            Some(code) => clip(&format!("[{}] {}", clip(&code), self.text)),
            None => clip(&self.text),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`: the server waits for a literal or a SASL step.
    Continuation(Vec<u8>),
    /// `* OK/NO/BAD/BYE/PREAUTH [code] text`
    UntaggedStatus(StatusInfo),
    /// `* 3 EXISTS`, `* 1 FETCH (...)`: a leading number, then the name, then the rest.
    Numbered(u64, String, Vec<Value>),
    /// `* LIST ...`, `* CAPABILITY ...`, `* SEARCH ...`: name upper-cased, then the rest.
    Data(String, Vec<Value>),
    Tagged(String, StatusInfo),
}

/// Most characters of server-supplied text an error message carries: a server could otherwise
/// put megabytes into every failure of a report, its JSON and the serve database.
pub const MAX_SHOWN: usize = 200;

/// `s` cut to `MAX_SHOWN` characters, with "…" when something was cut.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// An IMAP number: ASCII digits only, within u64 (`+5`, `-1`, ` 5` and overflow are None).
pub fn parse_number(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A number the server sent for `what` that must fit `T`: refused, never read as 0, when it is
/// missing, not a number, or too large.
pub fn number<T: TryFrom<u64>>(v: Option<&Value>, what: &str) -> Result<T, ParseError> {
    let shown = || clip(&v.and_then(Value::as_str).unwrap_or_else(|| shown_value(v)));
    v.and_then(Value::as_u64)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| ParseError(format!("{what} {:?} is not a number in range", shown())))
}

/// A short description of a value that is no string: its kind, never its whole content.
fn shown_value(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(Value::Nil) => "NIL".into(),
        Some(Value::List(l)) => format!("a list of {} values", l.len()),
        Some(Value::Discarded(n)) => format!("a discarded {n}-byte literal"),
        Some(v) => clip(&format!("{v:?}")),
    }
}

/// If a line (without CRLF) ends with a literal announcement `{n}` / `{n+}` / `~{n}`,
/// returns n: the framer must read n more bytes before the response goes on.
pub fn literal_len(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&c| c == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Deepest list nesting accepted in a response. Real responses stay far below it (a
/// BODYSTRUCTURE of a message nested 20 multiparts deep is about 25 levels); the parser recurses
/// once per level, so without a bound a hostile server could exhaust the stack with a line of
/// parentheses and abort the whole process.
pub const MAX_NESTING: usize = 256;

/// Most values (atoms, strings, lists, literals) in one response. Each costs a `Value` and an
/// allocation, about 30 times the two bytes `a ` it takes on the wire; real responses hold a
/// few hundred (a FETCH with a long keyword list), so this keeps a response's parsed form
/// within a few MB whatever its text.
pub const MAX_VALUES: usize = 100_000;

struct Parser<'a> {
    /// The response's text; each literal's bytes are not in it but in `literals`.
    b: &'a [u8],
    i: usize,
    literals: std::vec::IntoIter<Vec<u8>>,
    /// Lists open at the current position.
    depth: usize,
    /// Values parsed so far (`MAX_VALUES`).
    values: usize,
    /// Which literals (by position) the framer discarded, with their announced sizes.
    discarded: std::collections::HashMap<usize, u64>,
    /// Literals consumed so far.
    literal_index: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, what: &str) -> Result<T, ParseError> {
        let start = self.i.saturating_sub(20);
        let end = (self.i + 20).min(self.b.len());
        Err(ParseError(format!(
            "{what} at byte {} near {:?}",
            self.i,
            String::from_utf8_lossy(&self.b[start..end])
        )))
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn at_end(&self) -> bool {
        self.i >= self.b.len() || self.b[self.i..].starts_with(b"\r\n")
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn word(&mut self) -> &'a [u8] {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\r' || c == b'\n' {
                break;
            }
            self.i += 1;
        }
        &self.b[start..self.i]
    }
    fn rest_text(&mut self) -> String {
        let start = self.i;
        let end = self.b[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(self.b.len(), |p| start + p);
        self.i = end;
        String::from_utf8_lossy(&self.b[start..end]).into_owned()
    }
    fn values_until_end(&mut self) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_spaces();
            if self.at_end() {
                return Ok(out);
            }
            out.push(self.value()?);
        }
    }
    fn value(&mut self) -> Result<Value, ParseError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return self.err(&format!("more than {MAX_VALUES} values in one response"));
        }
        match self.peek() {
            Some(b'(') => {
                if self.depth >= MAX_NESTING {
                    return self.err(&format!("lists nested deeper than {MAX_NESTING}"));
                }
                self.i += 1;
                self.depth += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.peek() {
                        Some(b')') => {
                            self.i += 1;
                            self.depth -= 1;
                            return Ok(Value::List(items));
                        }
                        None => return self.err("unterminated list"),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'~') if self.b.get(self.i + 1) == Some(&b'{') => {
                self.i += 1;
                self.literal()
            }
            Some(_) => self.atom(),
            None => self.err("expected a value"),
        }
    }
    fn quoted(&mut self) -> Result<Value, ParseError> {
        self.i += 1;
        let mut s = Vec::new();
        loop {
            match self.peek() {
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c) => s.push(c),
                        None => return self.err("unterminated quoted string"),
                    }
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Value::Str(s));
                }
                Some(b'\r') | None => return self.err("unterminated quoted string"),
                Some(c) => s.push(c),
            }
            self.i += 1;
        }
    }
    fn literal(&mut self) -> Result<Value, ParseError> {
        let close = match self.b[self.i..].iter().position(|&c| c == b'}') {
            Some(p) => self.i + p,
            None => return self.err("bad literal"),
        };
        let digits = &self.b[self.i + 1..close];
        let digits = digits.strip_suffix(b"+").unwrap_or(digits);
        let n: usize = match std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
        {
            Some(n) => n,
            None => return self.err("bad literal length"),
        };
        let start = close + 1;
        if !self.b[start..].starts_with(b"\r\n") {
            return self.err("literal announcement not at end of line");
        }
        self.i = start + 2;
        let index = self.literal_index;
        self.literal_index += 1;
        let data = self.literals.next();
        if let Some(&len) = self.discarded.get(&index) {
            return Ok(Value::Discarded(len));
        }
        // Moved, not copied: a 50 MB body exists once in memory.
        match data {
            Some(data) if data.len() == n => Ok(Value::Str(data)),
            _ => self.err("truncated literal"),
        }
    }
    /// An atom; `[...]` sections (BODY[HEADER.FIELDS (A B)]) belong to it, so `]` only ends
    /// an atom outside brackets (it closes a response code).
    fn atom(&mut self) -> Result<Value, ParseError> {
        let start = self.i;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'[' => depth += 1,
                b']' if depth == 0 => break,
                b']' => depth -= 1,
                b' ' | b'(' | b')' | b'\r' | b'\n' if depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        if self.i == start {
            return self.err("unexpected character");
        }
        let raw = &self.b[start..self.i];
        if raw.eq_ignore_ascii_case(b"NIL") {
            Ok(Value::Nil)
        } else {
            Ok(Value::Atom(raw.to_vec()))
        }
    }
    fn status_info(&mut self, status: Status) -> Result<StatusInfo, ParseError> {
        self.skip_spaces();
        let mut code = Vec::new();
        if self.peek() == Some(b'[') {
            self.i += 1;
            loop {
                self.skip_spaces();
                match self.peek() {
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    None | Some(b'\r') => return self.err("unterminated response code"),
                    _ => code.push(self.value()?),
                }
            }
            self.skip_spaces();
        }
        Ok(StatusInfo {
            status,
            code,
            text: self.rest_text(),
        })
    }
}

/// A response as read from the wire: its lines (each literal's `{n}` announcement included) and
/// the literals' bytes apart, so parsing can move them instead of copying.
#[derive(Debug, Default)]
pub struct Framed {
    pub text: Vec<u8>,
    pub literals: Vec<Vec<u8>>,
    /// Literals read and thrown away for their size: (position among `literals`, where each
    /// stands as an empty buffer; announced length).
    pub discarded: Vec<(usize, u64)>,
}

/// Splits raw bytes holding one complete response into `Framed` (for tests and fuzzing;
/// the session frames directly from the socket).
pub fn frame(raw: &[u8]) -> Result<Framed, ParseError> {
    let mut f = Framed::default();
    let mut i = 0;
    while i < raw.len() {
        let end = raw[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(raw.len(), |p| i + p + 2);
        let line = &raw[i..end];
        f.text.extend_from_slice(line);
        i = end;
        let bare = line.strip_suffix(b"\r\n").unwrap_or(line);
        match literal_len(bare) {
            Some(n) if line.ends_with(b"\r\n") => {
                let n = usize::try_from(n).map_err(|_| ParseError("literal too large".into()))?;
                let stop = i.checked_add(n).filter(|&s| s <= raw.len());
                let stop = stop.ok_or_else(|| ParseError("truncated literal".into()))?;
                f.literals.push(raw[i..stop].to_vec());
                i = stop;
            }
            _ => break,
        }
    }
    Ok(f)
}

/// Parses one complete response given as contiguous bytes (literals inline).
pub fn parse_response(b: &[u8]) -> Result<Response, ParseError> {
    parse_framed(frame(b)?)
}

/// Parses one framed response.
pub fn parse_framed(f: Framed) -> Result<Response, ParseError> {
    let b = &f.text[..];
    let mut p = Parser {
        b,
        i: 0,
        literals: f.literals.into_iter(),
        depth: 0,
        values: 0,
        discarded: f.discarded.into_iter().collect(),
        literal_index: 0,
    };
    let tag = p.word();
    if tag == b"+" || b.starts_with(b"+") {
        p.i = 1;
        p.skip_spaces();
        return Ok(Response::Continuation(p.rest_text().into_bytes()));
    }
    if tag.is_empty() {
        return p.err("empty response");
    }
    p.skip_spaces();
    let word = p.word();
    if tag == b"*" {
        if let Some(status) = Status::parse(word) {
            return Ok(Response::UntaggedStatus(p.status_info(status)?));
        }
        if !word.is_empty() && word.iter().all(u8::is_ascii_digit) {
            let Some(n) = parse_number(word) else {
                return p.err("message number out of range");
            };
            p.skip_spaces();
            let name = String::from_utf8_lossy(p.word()).to_ascii_uppercase();
            return Ok(Response::Numbered(n, name, p.values_until_end()?));
        }
        let name = String::from_utf8_lossy(word).to_ascii_uppercase();
        return Ok(Response::Data(name, p.values_until_end()?));
    }
    match Status::parse(word) {
        Some(status) => Ok(Response::Tagged(
            String::from_utf8_lossy(tag).into_owned(),
            p.status_info(status)?,
        )),
        None => match glued_throttle(word) {
            // Exchange Online has been seen to send "AV3 BADRequest is throttled. …" (no space
            // after BAD): read as the refusal it is, so its backoff is honoured.
            Some((status, head)) => {
                p.skip_spaces();
                let text = format!("{head} {}", p.rest_text());
                Ok(Response::Tagged(
                    String::from_utf8_lossy(tag).into_owned(),
                    StatusInfo {
                        status,
                        code: Vec::new(),
                        text,
                    },
                ))
            }
            None => p.err("tagged response without status"),
        },
    }
}

/// `BADRequest` / `NORequest`: a status glued to Exchange's throttling text.
fn glued_throttle(word: &[u8]) -> Option<(Status, String)> {
    let w = String::from_utf8_lossy(word);
    let (status, rest) = if w.starts_with("BADRequest") {
        (Status::Bad, &w[3..])
    } else if w.starts_with("NORequest") {
        (Status::No, &w[2..])
    } else {
        return None;
    };
    Some((status, rest.to_string()))
}

/// The attributes of one message from a FETCH response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchItem {
    pub uid: Option<u32>,
    pub flags: Option<Vec<String>>,
    pub internaldate: Option<String>,
    pub size: Option<u64>,
    pub modseq: Option<u64>,
    pub body: Option<Vec<u8>>,
    /// The body's announced size when it was too large to be read (`Value::Discarded`).
    pub discarded_body: Option<u64>,
}

/// Reads the attribute list of `* n FETCH (...)`; takes the values so bodies are moved, not copied.
/// A UID, size or MODSEQ that is not a number in range is an error, never a default; a body
/// sent as NIL (the server could not produce it) is no body.
pub fn parse_fetch(values: Vec<Value>) -> Result<FetchItem, ParseError> {
    let mut item = FetchItem::default();
    let Some(Value::List(list)) = values.into_iter().next() else {
        return Err(ParseError("FETCH without an attribute list".into()));
    };
    let mut it = list.into_iter();
    while let (Some(key), Some(val)) = (it.next(), it.next()) {
        let Value::Atom(k) = key else { continue };
        let k = k.to_ascii_uppercase();
        match k.as_slice() {
            b"UID" => item.uid = Some(number(Some(&val), "FETCH UID")?),
            b"FLAGS" => {
                item.flags = val
                    .as_list()
                    .map(|l| l.iter().filter_map(Value::as_str).collect())
            }
            b"INTERNALDATE" => item.internaldate = val.as_str(),
            b"RFC822.SIZE" => item.size = Some(number(Some(&val), "FETCH RFC822.SIZE")?),
            b"MODSEQ" => {
                let first = val.as_list().and_then(<[Value]>::first);
                item.modseq = Some(number(first, "FETCH MODSEQ")?)
            }
            _ if k.starts_with(b"BODY[")
                || k.starts_with(b"RFC822")
                || k.starts_with(b"BINARY[") =>
            {
                match val {
                    Value::Discarded(n) => item.discarded_body = Some(n),
                    val => item.body = val.into_bytes(),
                }
            }
            _ => {}
        }
    }
    Ok(item)
}

/// The UID in a FETCH attribute list, without taking it apart: lets a message whose other
/// attributes are malformed be named (and failed alone).
pub fn fetch_uid(values: &[Value]) -> Option<u32> {
    let list = values.first()?.as_list()?;
    let at = list.iter().step_by(2).position(|k| k.is_atom("UID"))?;
    number(list.get(at * 2 + 1), "FETCH UID").ok()
}

/// Parses an INTERNALDATE (`"01-Jan-2020 09:00:00 +0000"`) to seconds since the epoch, so dates
/// compare equal whatever time zone each server chose to present them in.
pub fn parse_internaldate(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let mut d = date.trim().split('-');
    let day: i64 = d.next()?.trim().parse().ok()?;
    let month = match d.next()?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let year: i64 = d.next()?.parse().ok().filter(|y| (1..=9999).contains(y))?;
    let mut t = time.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    let zone = zone.as_bytes();
    if zone.len() != 5 || !(zone[0] == b'+' || zone[0] == b'-') {
        return None;
    }
    let zh: i64 = std::str::from_utf8(&zone[1..3]).ok()?.parse().ok()?;
    let zm: i64 = std::str::from_utf8(&zone[3..5]).ok()?.parse().ok()?;
    // Every field in range before any arithmetic: a hostile server cannot make it overflow.
    if !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&sec)
        || !(0..=23).contains(&zh)
        || !(0..=59).contains(&zm)
    {
        return None;
    }
    let offset = (zh * 3600 + zm * 60) * if zone[0] == b'-' { -1 } else { 1 };
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset)
}

/// Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Compresses sorted UIDs into an IMAP sequence set: `1:3,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Expands a sequence set from a server (`APPENDUID 7 3:5,9`) that should name `expected`
/// UIDs; `*` is not valid there. None when it does not parse or names more: it is expanded
/// only up to one UID past `expected`, so a set of a million huge ranges costs nothing.
pub fn parse_uid_set(s: &str, expected: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                (a.min(b), a.max(b))
            }
            None => {
                let n = part.parse().ok()?;
                (n, n)
            }
        };
        let room = expected.checked_sub(out.len())?;
        if (hi - lo) as usize >= room {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_throttling_without_a_space_after_bad_is_a_refusal() {
        let r = parse_response(
            b"AV3 BADRequest is throttled. Suggested Backoff Time: 201317 milliseconds\r\n",
        )
        .unwrap();
        let Response::Tagged(tag, info) = r else {
            panic!("{r:?}")
        };
        assert_eq!(tag, "AV3");
        assert_eq!(info.status, Status::Bad);
        assert_eq!(
            crate::throttle::suggested_backoff(&info.text),
            Some(std::time::Duration::from_millis(201_317))
        );
        assert!(parse_response(b"t1 BADLY wrong\r\n").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 20,000 levels overflowed the stack (and aborted the process) before the bound; run it
        // on half the stack a tokio worker has, to be sure the bound holds there too.
        let t = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| {
                for n in [MAX_NESTING + 1, 20_000, 1_000_000] {
                    for prefix in [&b"* OK ["[..], b"* 1 FETCH ", b"* LIST "] {
                        let mut raw = prefix.to_vec();
                        raw.extend(std::iter::repeat_n(b'(', n));
                        raw.extend(std::iter::repeat_n(b')', n));
                        raw.extend_from_slice(b"\r\n");
                        let e = parse_response(&raw).unwrap_err();
                        assert!(e.0.contains("nested deeper"), "{e}");
                    }
                }
                let mut ok = b"* 1 FETCH ".to_vec();
                ok.extend(std::iter::repeat_n(b'(', MAX_NESTING));
                ok.extend(std::iter::repeat_n(b')', MAX_NESTING));
                ok.extend_from_slice(b"\r\n");
                assert!(parse_response(&ok).is_ok());
            })
            .unwrap();
        t.join().expect("parser thread");
    }

    #[test]
    fn parses_fetch_with_literal_body() {
        let raw = b"* 1 FETCH (UID 7 FLAGS (\\Seen $Foo) INTERNALDATE \"01-Jan-2020 09:00:00 +0000\" RFC822.SIZE 5 BODY[] {5}\r\nhe)lo)\r\n";
        let Response::Numbered(1, name, vals) = parse_response(raw).unwrap() else {
            panic!()
        };
        assert_eq!(name, "FETCH");
        let f = parse_fetch(vals).unwrap();
        assert_eq!(f.uid, Some(7));
        assert_eq!(f.flags.unwrap(), vec!["\\Seen", "$Foo"]);
        assert_eq!(f.size, Some(5));
        assert_eq!(f.body.unwrap(), b"he)lo");
    }

    #[test]
    fn parses_status_codes_and_lists() {
        let r = parse_response(b"a1 OK [APPENDUID 1795725777 3:4] Append completed.\r\n").unwrap();
        let Response::Tagged(tag, info) = r else {
            panic!()
        };
        assert_eq!(tag, "a1");
        assert!(info.code_is("APPENDUID"));
        assert_eq!(info.code[2].as_str().unwrap(), "3:4");
        let r =
            parse_response(b"* OK [PERMANENTFLAGS (\\Answered \\Seen \\*)] Flags permitted.\r\n")
                .unwrap();
        let Response::UntaggedStatus(info) = r else {
            panic!()
        };
        assert_eq!(info.code[1].as_list().unwrap().len(), 3);
        let r =
            parse_response(b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n").unwrap();
        let Response::Data(name, v) = r else { panic!() };
        assert_eq!(name, "LIST");
        assert_eq!(v[2].as_str().unwrap(), "Sent Items");
        let r = parse_response(b"* LIST () NIL {3}\r\na\"b\r\n").unwrap();
        let Response::Data(_, v) = r else { panic!() };
        assert_eq!(v[1], Value::Nil);
        assert_eq!(v[2].as_str().unwrap(), "a\"b");
        assert!(matches!(
            parse_response(b"+ \r\n").unwrap(),
            Response::Continuation(_)
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"* 1 FETCH (UID",
            b"* 1 FETCH (BODY[] {99}\r\nab",
            b"a1 WHAT",
            b"* OK [CODE",
            b"* LIST (\"unterminated",
            b"{",
            b"* 1 FETCH ({x}\r\n)",
        ] {
            let _ = parse_response(bad);
        }
        assert!(parse_response(b"* 1 FETCH (BODY[] {99}\r\nab").is_err());
    }

    #[test]
    fn random_input_never_panics() {
        // A cheap fuzzer: random splices of IMAP-looking fragments and raw bytes.
        const PIECES: &[&[u8]] = &[
            b"* ",
            b"a1 ",
            b"OK ",
            b"NO ",
            b"FETCH ",
            b"(",
            b")",
            b"[",
            b"]",
            b"{",
            b"}",
            b"{3}\r\n",
            b"\"",
            b"\\",
            b"NIL ",
            b"BODY[] ",
            b"UID 7 ",
            b"\r\n",
            b"+ ",
            b"1 ",
            b"~{2}\r\n",
            b"\xff",
        ];
        let mut x: u64 = 0x2545f4914f6cdd1d;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.extend_from_slice(PIECES[(x % PIECES.len() as u64) as usize]);
            }
            x = x.wrapping_add(0x9e3779b97f4a7c15);
            if let Ok(Response::Numbered(_, _, v)) = parse_response(&buf) {
                let _ = parse_fetch(v);
            }
            let _ = literal_len(&buf);
            let _ = parse_internaldate(&String::from_utf8_lossy(&buf));
            let _ = utf7::decode(&String::from_utf8_lossy(&buf));
        }
    }

    #[test]
    fn numbers_that_overflow_or_do_not_parse_are_refused() {
        let fetch = |attrs: &str| {
            let raw = format!("* 1 FETCH ({attrs})\r\n");
            let Response::Numbered(_, _, v) = parse_response(raw.as_bytes()).unwrap() else {
                panic!()
            };
            parse_fetch(v)
        };
        for bad in [
            "UID 4294967296",
            "UID -1",
            "UID +7",
            "UID x",
            "RFC822.SIZE 18446744073709551616",
            "RFC822.SIZE 12k",
            "MODSEQ (x)",
            "MODSEQ ()",
        ] {
            let e = fetch(bad).unwrap_err();
            assert!(e.0.contains("not a number in range"), "{bad}: {e}");
        }
        let ok = fetch("UID 4294967295 RFC822.SIZE 18446744073709551615 MODSEQ (7)").unwrap();
        assert_eq!(
            (ok.uid, ok.size, ok.modseq),
            (Some(u32::MAX), Some(u64::MAX), Some(7))
        );
        assert_eq!(fetch("UID 1 BODY[] NIL").unwrap().body, None);
        assert!(parse_response(b"* 18446744073709551616 EXISTS\r\n").is_err());
        let big = Value::Atom(b"4294967296".to_vec());
        assert!(number::<u32>(Some(&big), "UIDNEXT").is_err());
        assert_eq!(number::<u64>(Some(&big), "UIDNEXT"), Ok(4294967296));
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}"), Some(123));
        assert_eq!(literal_len(b"a APPEND x {5+}"), Some(5));
        assert_eq!(literal_len(b"* OK {not}"), None);
        assert_eq!(literal_len(b"* OK done"), None);
    }

    #[test]
    fn internaldate_compares_across_zones() {
        assert_eq!(
            parse_internaldate("01-Jan-2020 10:00:00 +0100"),
            parse_internaldate("01-Jan-2020 09:00:00 +0000")
        );
        assert_eq!(parse_internaldate(" 1-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_internaldate("garbage"), None);
        assert_eq!(
            parse_internaldate("01-Jan-2020 -9223372036854775808:00:00 +0000"),
            None
        );
        assert_eq!(parse_internaldate("01-Jan-2020 10:00:00 +9999"), None);
        assert_eq!(
            parse_internaldate("01-Jan-99999999999999 00:00:00 +0000"),
            None
        );
        assert!(parse_response(b"* 1 FETCH (BODY[] {18446744073709551615}\r\nx)").is_err());
    }

    #[test]
    fn a_response_of_many_tiny_values_is_refused() {
        let mut raw = b"* OK [ALERT".to_vec();
        raw.extend(std::iter::repeat_n(&b" a"[..], MAX_VALUES + 1).flatten());
        raw.extend_from_slice(b"]\r\n");
        let e = parse_response(&raw).unwrap_err();
        assert!(e.0.contains("more than 100000 values"), "{e}");
        let mut fine = b"* FLAGS (".to_vec();
        fine.extend(std::iter::repeat_n(&b" $k"[..], 10_000).flatten());
        fine.extend_from_slice(b")\r\n");
        assert!(parse_response(&fine).is_ok());
    }

    #[test]
    fn server_text_in_errors_is_clipped() {
        let raw = format!(
            "* 1 FETCH (UID {{300000}}\r\n{})\r\n",
            "9".repeat(299_999) + "x"
        );
        let Response::Numbered(_, _, v) = parse_response(raw.as_bytes()).unwrap() else {
            panic!()
        };
        let e = parse_fetch(v).unwrap_err();
        assert!(e.0.len() < 300, "{} bytes", e.0.len());
        assert!(e.0.contains("…"), "{e}");
        let info = StatusInfo {
            status: Status::No,
            code: vec![Value::Atom(b"ALERT".to_vec())],
            text: "é".repeat(1_000_000),
        };
        assert_eq!(info.describe().chars().count(), MAX_SHOWN + 1);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn the_uid_of_a_malformed_fetch_is_still_known() {
        let Response::Numbered(_, _, v) =
            parse_response(b"* 3 FETCH (FLAGS () UID 40 RFC822.SIZE 12k)\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(fetch_uid(&v), Some(40));
        assert!(parse_fetch(v).is_err());
    }

    #[test]
    fn uid_sets_round_trip() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(parse_uid_set("1:3,7", 4).unwrap(), vec![1, 2, 3, 7]);
        assert_eq!(parse_uid_set("7:5", 3).unwrap(), vec![5, 6, 7]);
        assert_eq!(parse_uid_set("x", 1), None);
        // More UIDs than messages appended: unusable, and never expanded.
        assert_eq!(parse_uid_set("1:3,7", 3), None);
        assert_eq!(parse_uid_set("1:4294967295", 2), None);
        let huge = vec!["1:10000000"; 100_000].join(",");
        assert_eq!(parse_uid_set(&huge, 500), None);
    }
}
