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

/// Folder names Exchange Online's IMAP refuses or merges, renamed before CREATE (the new name
/// is the mapping's target, so the state keeps it, and the rename is the mapping's `note`,
/// so the report shows it):
///
/// - `Files` at the top: a hidden system folder; CREATE answers `NO Folder name is reserved`
///   (imapsync's FAQ.Office365; its `--office2` renames it too);
/// - leading or trailing spaces: Outlook trims folder names (a precaution: not seen refused
///   over IMAP, but a trimmed twin would merge);
/// - names equal but for case: Exchange's folder names are case-insensitive (`trash` next to
///   `Trash` gives "Mailbox already exists"), so the second would merge into the first — it
///   gets " (2)".
///
/// A name with the target's separator in a component is handled by `plan` for every server.
pub fn exchange_names(plan: &mut [Mapping], target: &[Folder], delim: Option<char>) {
    let d = delim.unwrap_or('/');
    // Names (lower case) this plan uses already, and the target's folders: a name is free if
    // no mapping claims it and the target has no folder of that name but for case (the folder
    // of exactly that name is this mapping's own from an earlier run).
    let mut claimed: std::collections::HashSet<String> = plan
        .iter()
        .filter(|m| m.target_exists)
        .map(|m| m.target.to_lowercase())
        .collect();
    let existing: std::collections::HashSet<&str> =
        target.iter().map(|t| t.wire.as_str()).collect();
    let existing_lower: std::collections::HashSet<String> =
        target.iter().map(|t| t.wire.to_lowercase()).collect();
    let taken = |claimed: &std::collections::HashSet<String>, wire: &str| {
        let lower = wire.to_lowercase();
        claimed.contains(&lower) || (existing_lower.contains(&lower) && !existing.contains(wire))
    };
    // In source-name order, so that which of two case twins keeps its name does not depend
    // on the order a server lists them in (and re-runs agree).
    let mut order: Vec<usize> = (0..plan.len())
        .filter(|&i| !plan[i].target_exists)
        .collect();
    order.sort_by(|&a, &b| plan[a].source.wire.cmp(&plan[b].source.wire));
    for i in order {
        let m = &mut plan[i];
        let mut reasons = Vec::new();
        let mut parts: Vec<String> = m.target.split(d).map(utf7::decode).collect();
        for (i, c) in parts.iter_mut().enumerate() {
            let trimmed = c.trim();
            if trimmed != c {
                reasons.push(format!("'{c}' has leading or trailing spaces"));
                *c = if trimmed.is_empty() {
                    "_".into()
                } else {
                    trimmed.into()
                };
            }
            if i == 0 && c.eq_ignore_ascii_case("Files") {
                reasons.push(format!("'{c}' is a name Exchange reserves"));
                *c = format!("{c} (migrated)");
            }
        }
        let encode = |parts: &[String]| {
            parts
                .iter()
                .map(|c| utf7::encode(c))
                .collect::<Vec<_>>()
                .join(&d.to_string())
        };
        let mut wire = encode(&parts);
        if taken(&claimed, &wire) {
            let base = parts.last().cloned().unwrap_or_default();
            let mut n = 2;
            while taken(&claimed, &wire) {
                if let Some(last) = parts.last_mut() {
                    *last = format!("{base} ({n})");
                }
                wire = encode(&parts);
                n += 1;
            }
            reasons.push("another folder has the same name but for case (Exchange's names are case-insensitive)".into());
        }
        claimed.insert(wire.to_lowercase());
        if reasons.is_empty() {
            continue;
        }
        let note = format!(
            "renamed for Exchange Online: '{}' -> '{}' ({})",
            utf7::decode(&m.target),
            utf7::decode(&wire),
            reasons.join("; ")
        );
        m.note = Some(match m.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
        m.target_exists = existing.contains(wire.as_str());
        m.target = wire;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn exchange_renames_what_it_refuses_or_merges() {
        let src = vec![
            folder("INBOX", '/', None),
            folder("Files", '/', None),
            folder("Work", '/', None),
            folder("work", '/', None),
            folder(" Plans ", '/', None),
            folder("Files/Old", '/', None),
            folder("Projects/Files", '/', None),
        ];
        let tgt = vec![folder("INBOX", '.', None), folder("Work", '.', None)];
        let mut m = plan(&src, &tgt, Some('.'), &BTreeMap::new());
        exchange_names(&mut m, &tgt, Some('.'));
        let names: Vec<&str> = m.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            names,
            [
                "INBOX",
                "Files (migrated)",
                "Work",
                "work (2)",
                "Plans",
                "Files (migrated).Old",
                "Projects.Files"
            ]
        );
        assert!(m[0].note.is_none() && m[2].note.is_none() && m[6].note.is_none());
        assert!(
            m[1].note.as_deref().unwrap().contains("reserves"),
            "{:?}",
            m[1].note
        );
        assert!(m[3].note.as_deref().unwrap().contains("case"));
        assert!(m[4].note.as_deref().unwrap().contains("spaces"));
        // A re-run finds its renamed folders under the same names.
        let mut tgt2 = tgt.clone();
        for n in &names[1..] {
            tgt2.push(folder(n, '.', None));
        }
        let mut again = plan(&src, &tgt2, Some('.'), &BTreeMap::new());
        exchange_names(&mut again, &tgt2, Some('.'));
        let names2: Vec<&str> = again.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(names2, names);
    }
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
