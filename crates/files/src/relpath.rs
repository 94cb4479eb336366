//! Relative paths as the engine passes them around, checked before they reach a file system or
//! a URL.
//!
//! Every path an endpoint lists comes from a server tenantry does not control: a hostile source
//! could list `..`, `a/../..` or `%2e%2e` and, joined onto a local target's root, make a run
//! write anywhere its user may. So a path is a list of segments, each of which is a plain name:
//! not empty, not `.` or `..`, without `/` or NUL. Listings refuse entries that fail this
//! (reported by name, the rest goes on), and every endpoint checks again before it acts.

use std::fmt;

/// Why a path from a server was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafePath {
    /// The path as it arrived (shown escaped: it may hold control characters).
    pub path: String,
    pub reason: &'static str,
}

impl fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused path {:?}: {}", self.path, self.reason)
    }
}

impl std::error::Error for UnsafePath {}

/// Checks one decoded name.
pub fn check_segment(segment: &str) -> Result<(), &'static str> {
    match segment {
        "" => Err("it has an empty segment"),
        "." | ".." => Err("it has a `.` or `..` segment, which would leave its folder"),
        s if s.contains('/') => Err("a name holds a `/` (encoded as %2F)"),
        s if s.contains('\0') => Err("a name holds a NUL character"),
        _ => Ok(()),
    }
}

/// Checks a relative, `/`-separated, decoded path (`""` is the root).
pub fn check(path: &str) -> Result<(), UnsafePath> {
    if path.is_empty() {
        return Ok(());
    }
    let refuse = |reason| UnsafePath {
        path: path.to_string(),
        reason,
    };
    if path.starts_with('/') {
        return Err(refuse("it is absolute"));
    }
    path.split('/').try_for_each(check_segment).map_err(refuse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for p in [
            "",
            "a",
            "a/b",
            "Grüße/résumé #2.docx",
            "...",
            "a..b/.hidden",
            "a\\b",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn traversal_and_oddities_are_refused() {
        for p in [
            "..",
            ".",
            "../x",
            "a/../../x",
            "a/..",
            "a/./b",
            "/etc/passwd",
            "a//b",
            "a/",
            "a\0b",
        ] {
            let e = check(p).unwrap_err();
            assert_eq!(e.path, p);
            assert!(e.to_string().contains("refused path"), "{e}");
        }
    }
}
