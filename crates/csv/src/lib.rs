//! The one reader of the CSV files operators bring: a move's user mapping and a mail batch.
//! They come out of spreadsheets, so a file may start with a UTF-8 byte-order mark, quote a
//! field that holds the separator, or use `;` (the list separator of many locales) instead of
//! `,`. Pure: bytes in, rows (each with its 1-based line) or a line-numbered error out; what the
//! columns mean is the caller's business.

use std::fmt;

/// One data row: its fields, trimmed, and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub fields: Vec<String>,
}

impl Row {
    /// Field `i`, `""` when the row is shorter.
    pub fn field(&self, i: usize) -> &str {
        self.fields.get(i).map(String::as_str).unwrap_or("")
    }
}

/// Why a file cannot be read, and where. The message never quotes the line: batch files hold
/// passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvError {
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for CsvError {}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The file as text, for callers that pass it on (to a server that runs [`read_rows`]): a
/// spreadsheet's UTF-16 or a legacy code page is refused here, with the line, instead of as an
/// unreadable file.
pub fn text(bytes: &[u8]) -> Result<&str, CsvError> {
    refuse_utf16(bytes)?;
    std::str::from_utf8(bytes).map_err(|e| CsvError {
        line: LineCounter::new(&lone_cr_to_lf(bytes)).at(e.valid_up_to() as u64),
        reason: NOT_UTF8.into(),
    })
}

const NOT_UTF8: &str = "not valid UTF-8: save the file as \"CSV UTF-8\"";

fn refuse_utf16(bytes: &[u8]) -> Result<(), CsvError> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(CsvError {
            line: 1,
            reason: "the file is UTF-16 (a spreadsheet's \"Unicode text\"): save it as \
                     \"CSV UTF-8\""
                .into(),
        });
    }
    Ok(())
}

/// Reads `bytes` as CSV: `,` or `;` (or tab) as separator, whichever the first data line has
/// most of; fields trimmed, `"` quoting as RFC 4180; lines starting with `#`, empty lines and
/// rows of empty fields (a spreadsheet's `;;`) skipped. The first row is a header, and
/// skipped, when `is_header` says so.
pub fn read_rows(bytes: &[u8], is_header: impl Fn(&Row) -> bool) -> Result<Vec<Row>, CsvError> {
    refuse_utf16(bytes)?;
    let bytes = lone_cr_to_lf(bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes));
    let bytes = bytes.as_ref();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(sniff_separator(bytes))
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut first = true;
    // The reader's own line count misses skipped lines; byte offsets are exact.
    let mut lines = LineCounter::new(bytes);
    for record in reader.records() {
        let record = record.map_err(|e| CsvError {
            line: lines.at(e.position().map(|p| p.byte()).unwrap_or(0)),
            reason: match e.kind() {
                csv::ErrorKind::Utf8 { .. } => NOT_UTF8.to_string(),
                _ => e.to_string(),
            },
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let row = Row {
            line: lines.at(record.position().map(|p| p.byte()).unwrap_or(0)),
            fields: record.iter().map(str::to_string).collect(),
        };
        if std::mem::take(&mut first) && is_header(&row) {
            continue;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Old Mac exports end lines with a lone CR; the reader's comments end only at LF, and so does
/// our line count: make every line end in LF.
fn lone_cr_to_lf(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let lone = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    if !(0..bytes.len()).any(lone) {
        return bytes.into();
    }
    (0..bytes.len())
        .map(|i| if lone(i) { b'\n' } else { bytes[i] })
        .collect::<Vec<u8>>()
        .into()
}

/// The 1-based line of a byte offset, for offsets that only grow.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the record the reader reports at `byte`: it reports where it started
    /// reading, before the empty and comment lines it skipped.
    fn at(&mut self, byte: u64) -> u64 {
        let mut to = (byte as usize).clamp(self.offset, self.bytes.len());
        loop {
            match self.bytes.get(to) {
                Some(b'\r' | b'\n') => to += 1,
                Some(b'#') => {
                    to += self.bytes[to..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(self.bytes.len() - to, |i| i + 1)
                }
                _ => break,
            }
        }
        self.line += self.bytes[self.offset..to]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.offset = to;
        self.line
    }
}

/// The separator of the first data line: the most frequent of `,`, `;` and tab outside
/// quotes, `,` when there is none (a one-column file).
fn sniff_separator(bytes: &[u8]) -> u8 {
    let first = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty() && !l.starts_with(b"#"))
        .unwrap_or(b"");
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for b in first {
        match b {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            _ => {
                for (sep, n) in counts.iter_mut() {
                    *n += usize::from(b == sep);
                }
            }
        }
    }
    // `max_by_key` keeps the last of equals: reverse, so a tie goes to `,`.
    counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| *n > 0)
        .map(|(sep, _)| *sep)
        .unwrap_or(b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_header(_: &Row) -> bool {
        false
    }

    fn fields(rows: &[Row]) -> Vec<Vec<&str>> {
        rows.iter()
            .map(|r| r.fields.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn plain_commas_with_spaces_comments_and_blank_lines() {
        let rows = read_rows(b"a@x, b@y\n\n# note\nc@x,d@y\n", no_header).unwrap();
        assert_eq!(fields(&rows), vec![vec!["a@x", "b@y"], vec!["c@x", "d@y"]]);
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn a_quoted_field_may_hold_the_separator_and_quotes() {
        let rows = read_rows(b"bob,\"pa,ss\"\"word\"\n", no_header).unwrap();
        assert_eq!(fields(&rows), vec![vec!["bob", "pa,ss\"word"]]);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_field() {
        let rows = read_rows(b"\xEF\xBB\xBFsourceUpn,targetUpn\na@x,b@y\n", |r| {
            r.field(0) == "sourceUpn"
        })
        .unwrap();
        assert_eq!(fields(&rows), vec![vec!["a@x", "b@y"]]);
        assert_eq!(rows[0].line, 2);
    }

    #[test]
    fn semicolons_are_sniffed_from_the_first_line() {
        // A German spreadsheet export: `;` between fields, `,` inside one, CRLF, empty rows.
        let text = "Quelle;Ziel;Passwort\r\na@x;b@y;\"1,5\"\r\n;;\r\nc@x;d@y;2,5\r\n";
        let rows = read_rows(text.as_bytes(), |r| !r.field(0).contains('@')).unwrap();
        assert_eq!(
            fields(&rows),
            vec![vec!["a@x", "b@y", "1,5"], vec!["c@x", "d@y", "2,5"]]
        );
        assert_eq!(rows[1].line, 4);
        let rows = read_rows(b"a;b\rc;d\r\r#x\re;f\r", no_header).unwrap();
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(
            lines,
            vec![1, 2, 5],
            "lone CR ends a line, as in old Mac exports"
        );
        assert_eq!(sniff_separator(b"a\tb\n"), b'\t');
        assert_eq!(sniff_separator(b"\"a;b\",c\n"), b',');
        assert_eq!(sniff_separator(b"one-column\n"), b',');
        assert_eq!(sniff_separator(b"a;b,c\n"), b',', "a tie goes to ','");
    }

    #[test]
    fn the_header_is_only_ever_the_first_row() {
        let rows = read_rows(b"source,target\nsource,target\n", |r| {
            r.field(0) == "source"
        })
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 2);
    }

    #[test]
    fn bad_bytes_are_reported_with_their_line() {
        let err = read_rows(b"a,b\nc,d\ne\xFF,f\n", no_header).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("UTF-8"), "{err}");
        assert_eq!(err.to_string().split(':').next(), Some("line 3"));
        assert_eq!(text(b"a,b\nc,d\ne\xFF,f\n").unwrap_err(), err);
        assert_eq!(text(b"a,b\n").unwrap(), "a,b\n");
        let err = read_rows(b"\xFF\xFEa\0,\0", no_header).unwrap_err();
        assert!(err.reason.contains("UTF-16"), "{err}");
        assert!(read_rows(b"", no_header).unwrap().is_empty());
    }

    /// Any bytes: no panic, and every line number is within the file and rows come in order.
    #[test]
    fn random_input_never_panics_and_lines_stay_in_the_file() {
        let pieces: &[&[u8]] = &[
            b"a",
            b"@",
            b",",
            b";",
            b"\t",
            b"\"",
            b"\n",
            b"\r\n",
            b"\r",
            b"#",
            b" ",
            b"\xEF\xBB\xBF",
            b"\xFF",
            b"\xC3\xA9",
            b"\xC3",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let bytes: Vec<u8> = (0..next() % 24)
                .flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].to_vec())
                .collect();
            let lines = 1 + lone_cr_to_lf(&bytes)
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            let header = next() % 2 == 0;
            match read_rows(&bytes, |_| header) {
                Ok(rows) => {
                    let mut last = 0;
                    for r in &rows {
                        assert!(r.line > last && r.line <= lines, "{bytes:?}: {rows:?}");
                        last = r.line;
                    }
                }
                Err(e) => assert!((1..=lines).contains(&e.line), "{bytes:?}: {e}"),
            }
            if let Err(e) = text(&bytes) {
                assert!((1..=lines).contains(&e.line), "{bytes:?}: {e}");
            }
        }
    }
}
