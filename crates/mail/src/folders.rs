//! Folder listing and the source → target name mapping (separators, modified UTF-7, roles).
//!
//! `plan` is pure: given both listings and the user's overrides it decides every target name,
//! so the mapping is unit-tested without a server.

use std::collections::{BTreeMap, HashMap};

use crate::protocol::command::Command;
use crate::protocol::{utf7, Response, Value};
use crate::session::{Result, Session};

/// RFC 6154 roles we map by meaning rather than by name.
pub const ROLES: &[&str] = &[
    "\\Sent",
    "\\Drafts",
    "\\Trash",
    "\\Junk",
    "\\Archive",
    "\\All",
    "\\Flagged",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// The name on the wire (modified UTF-7), as the server spells it.
    pub wire: String,
    /// Path components, decoded to UTF-8.
    pub path: Vec<String>,
    pub delimiter: Option<char>,
    pub role: Option<String>,
    pub selectable: bool,
    pub subscribed: bool,
}

impl Folder {
    pub fn is_inbox(&self) -> bool {
        self.path.len() == 1 && self.path[0].eq_ignore_ascii_case("INBOX")
    }
    /// The decoded name with the server's own delimiter, as users see it.
    pub fn display(&self) -> String {
        self.path
            .join(&self.delimiter.map(String::from).unwrap_or_default())
    }
}

/// Lists every folder with its role and subscription, in one command where the server allows.
pub async fn list(s: &mut Session) -> Result<Vec<Folder>> {
    let extended = s.has_cap("LIST-EXTENDED");
    let cmd = if extended && s.has_cap("SPECIAL-USE") {
        "LIST \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)"
    } else if extended {
        "LIST \"\" \"*\" RETURN (SUBSCRIBED)"
    } else {
        "LIST \"\" \"*\""
    };
    let (untagged, _) = s.run(Command::new(cmd)).await?;
    let mut folders: Vec<Folder> = untagged
        .into_iter()
        .filter_map(|r| match r {
            Response::Data(name, v) if name == "LIST" => parse_list(&v),
            _ => None,
        })
        .collect();
    if !extended {
        let (untagged, _) = s.run(Command::new("LSUB \"\" \"*\"")).await?;
        for r in untagged {
            if let Response::Data(name, v) = r {
                if let (true, Some(f)) = (name == "LSUB", parse_list(&v)) {
                    if let Some(x) = folders.iter_mut().find(|x| x.wire == f.wire) {
                        x.subscribed = true;
                    }
                }
            }
        }
    }
    // Servers without SPECIAL-USE attributes still use the usual names for top-level folders.
    if folders.iter().all(|f| f.role.is_none()) {
        for f in folders.iter_mut().filter(|f| f.path.len() == 1) {
            f.role = fallback_role(&f.path[0]);
        }
    }
    folders.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(folders)
}

fn parse_list(v: &[Value]) -> Option<Folder> {
    let attrs: Vec<String> = v
        .first()?
        .as_list()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let delimiter = match v.get(1)? {
        Value::Nil => None,
        d => d.as_str()?.chars().next(),
    };
    let wire = v.get(2)?.as_str()?;
    let has = |a: &str| attrs.iter().any(|x| x.eq_ignore_ascii_case(a));
    let path = match delimiter {
        Some(d) => wire.split(d).map(utf7::decode).collect(),
        None => vec![utf7::decode(&wire)],
    };
    Some(Folder {
        role: ROLES.iter().find(|r| has(r)).map(|r| r.to_string()),
        selectable: !has("\\Noselect") && !has("\\NonExistent"),
        subscribed: has("\\Subscribed"),
        path,
        wire,
        delimiter,
    })
}

/// Servers without SPECIAL-USE still have the usual names; imapsync keeps a similar list.
pub fn fallback_role(name: &str) -> Option<String> {
    let n = name.to_lowercase();
    let role = match n.as_str() {
        "sent" | "sent items" | "sent messages" | "sent mail" | "gesendete elemente"
        | "elementy wysłane" => "\\Sent",
        "drafts" | "entwürfe" => "\\Drafts",
        "trash" | "deleted items" | "deleted messages" | "gelöschte elemente" => "\\Trash",
        "junk" | "junk email" | "junk e-mail" | "spam" => "\\Junk",
        _ => return None,
    };
    Some(role.to_string())
}

/// Whether `--exclude` patterns leave a folder out: `NAME` matches that folder (case-insensitive,
/// decoded, source separator), `NAME/*` (with the source's separator) also its subfolders.
pub fn excluded(f: &Folder, patterns: &[String]) -> bool {
    let name = f.display().to_lowercase();
    let delim = f.delimiter.map(String::from).unwrap_or_default();
    patterns.iter().any(|p| {
        let p = p.to_lowercase();
        match p
            .strip_suffix(&format!("{delim}*"))
            .filter(|_| !delim.is_empty())
        {
            Some(base) => name == base || name.starts_with(&format!("{base}{delim}")),
            None => name == p,
        }
    })
}

/// One source folder's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub source: Folder,
    /// Target name on the wire.
    pub target: String,
    pub target_exists: bool,
    /// Set when a name component had to change (it contained the target's delimiter).
    pub note: Option<String>,
}

/// Decides every target name. `overrides` maps a source display name (decoded, source
/// delimiter) to a target display name (decoded, target delimiter).
pub fn plan(
    source: &[Folder],
    target: &[Folder],
    target_delim: Option<char>,
    overrides: &BTreeMap<String, String>,
) -> Vec<Mapping> {
    let by_role: HashMap<&str, &Folder> = target
        .iter()
        .filter_map(|f| Some((f.role.as_deref()?, f)))
        .collect();
    let delim = target_delim.unwrap_or('/');
    // Two source folders with one role (e.g. after a previous migration) must not merge.
    let mut used_roles = std::collections::HashSet::new();
    source
        .iter()
        .map(|f| {
            let mut note = None;
            let target_wire = if let Some(t) = overrides.get(&f.display()) {
                t.split(delim)
                    .map(utf7::encode)
                    .collect::<Vec<_>>()
                    .join(&delim.to_string())
            } else if f.is_inbox() {
                "INBOX".to_string()
            } else if let Some(t) = f
                .role
                .as_deref()
                .filter(|r| used_roles.insert(r.to_string()))
                .and_then(|r| by_role.get(r))
            {
                t.wire.clone()
            } else {
                let parts: Vec<String> = f
                    .path
                    .iter()
                    .map(|c| {
                        if c.contains(delim) {
                            let fixed = c.replace(delim, "_");
                            note = Some(format!(
                                "'{c}' contains the target's separator '{delim}': named '{fixed}'"
                            ));
                            utf7::encode(&fixed)
                        } else {
                            utf7::encode(c)
                        }
                    })
                    .collect();
                parts.join(&delim.to_string())
            };
            let target_exists = target.iter().any(|t| {
                t.wire == target_wire || (t.is_inbox() && target_wire.eq_ignore_ascii_case("INBOX"))
            });
            Mapping {
                source: f.clone(),
                target: target_wire,
                target_exists,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(wire: &str, delim: char, role: Option<&str>) -> Folder {
        let v = vec![
            Value::List(
                role.map(|r| Value::Atom(r.as_bytes().to_vec()))
                    .into_iter()
                    .collect(),
            ),
            Value::Str(delim.to_string().into_bytes()),
            Value::Str(wire.as_bytes().to_vec()),
        ];
        parse_list(&v).unwrap()
    }

    #[test]
    fn maps_separators_utf7_and_roles() {
        let src = vec![
            folder("INBOX", '/', None),
            folder("Archive/2024/Q1", '/', None),
            folder("Entw&APw-rfe/a.b", '/', None),
            folder("Sent", '/', Some("\\Sent")),
            folder("Projects", '/', None),
        ];
        let tgt = vec![
            folder("INBOX", '.', None),
            folder("Sent Items", '.', Some("\\Sent")),
        ];
        let mut over = BTreeMap::new();
        over.insert("Projects".to_string(), "Old.Projects".to_string());
        let m = plan(&src, &tgt, Some('.'), &over);
        let names: Vec<&str> = m.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            names,
            [
                "INBOX",
                "Archive.2024.Q1",
                "Entw&APw-rfe.a_b",
                "Sent Items",
                "Old.Projects"
            ]
        );
        assert!(m[2].note.is_some());
        assert!(m[0].target_exists && m[3].target_exists && !m[1].target_exists);
    }

    #[test]
    fn exclusions_match_names_and_subtrees() {
        let pats = vec!["Files".to_string(), "Calendar/*".to_string()];
        assert!(excluded(&folder("Files", '/', None), &pats));
        assert!(excluded(&folder("Calendar", '/', None), &pats));
        assert!(excluded(&folder("Calendar/Holidays", '/', None), &pats));
        assert!(!excluded(&folder("Files2", '/', None), &pats));
        assert!(!excluded(&folder("CalendarX", '/', None), &pats));
    }

    #[test]
    fn role_falls_back_to_common_names() {
        assert_eq!(fallback_role("Deleted Items").as_deref(), Some("\\Trash"));
        assert_eq!(fallback_role("Stuff"), None);
    }
}
