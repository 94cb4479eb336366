//! Command encoding: arguments become text or literals; the session decides how to send literals.

/// A command is a sequence of parts; a literal is sent as `{n}` (or `{n+}`) then raw bytes.
#[derive(Debug, Default)]
pub struct Command {
    pub parts: Vec<Part>,
}

#[derive(Debug)]
pub enum Part {
    Text(Vec<u8>),
    /// Shared so a body can go into a MULTIAPPEND and, if that fails, into single APPENDs
    /// without a copy.
    Literal(std::sync::Arc<Vec<u8>>),
}

impl Command {
    pub fn new(text: &str) -> Self {
        Command {
            parts: vec![Part::Text(text.as_bytes().to_vec())],
        }
    }
    pub fn text(mut self, t: &str) -> Self {
        match self.parts.last_mut() {
            Some(Part::Text(v)) => v.extend_from_slice(t.as_bytes()),
            _ => self.parts.push(Part::Text(t.as_bytes().to_vec())),
        }
        self
    }
    /// Appends an astring argument: quoted when safe, a literal otherwise (8-bit, CR/LF, long).
    pub fn string(self, s: &[u8]) -> Self {
        if s.len() < 1000 && s.iter().all(|&c| (0x20..0x7f).contains(&c)) {
            let mut q = String::with_capacity(s.len() + 2);
            q.push('"');
            for &c in s {
                if c == b'"' || c == b'\\' {
                    q.push('\\');
                }
                q.push(c as char);
            }
            q.push('"');
            self.text(&q)
        } else {
            self.literal(s.to_vec())
        }
    }
    pub fn literal(self, bytes: Vec<u8>) -> Self {
        self.literal_shared(std::sync::Arc::new(bytes))
    }
    pub fn literal_shared(mut self, bytes: std::sync::Arc<Vec<u8>>) -> Self {
        self.parts.push(Part::Literal(bytes));
        self
    }
    /// What the command looks like in logs: literals replaced by their size.
    pub fn redacted(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Part::Literal(l) => format!("{{{} bytes}}", l.len()),
            })
            .collect()
    }
}

/// A flag list `(\Seen $Label)`; `\Recent` is never sent (the server alone sets it).
pub fn flag_list(flags: &[String]) -> String {
    let kept: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && is_flag(f))
        .collect();
    format!("({})", kept.join(" "))
}

/// A flag we can send back: a system flag or a keyword atom (no specials that would break
/// the command line).
pub fn is_flag(f: &str) -> bool {
    let body = f.strip_prefix('\\').unwrap_or(f);
    !body.is_empty()
        && body.bytes().all(|c| {
            c > 0x20
                && c < 0x7f
                && !matches!(c, b'(' | b')' | b'{' | b'"' | b'\\' | b'%' | b'*' | b']')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let c = Command::new("LOGIN ")
            .string(b"al\"ice")
            .text(" ")
            .string("pässword".as_bytes());
        assert_eq!(c.redacted(), "LOGIN \"al\\\"ice\" {9 bytes}");
    }

    #[test]
    fn flags_drop_recent() {
        let f = vec![
            "\\Seen".to_string(),
            "\\Recent".into(),
            "$Label1".into(),
            "bad(".into(),
        ];
        assert_eq!(flag_list(&f), "(\\Seen $Label1)");
    }
}
