//! SharePoint / OneDrive naming and size rules, checked before anything moves. Pure: no I/O.
//!
//! Sources: Microsoft's "Restrictions and limitations in OneDrive and SharePoint" and the
//! Migration Manager limits (see the shared research notes, m365-licensing-and-files.md, Part B).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::endpoint::{join, parent, Entry};

/// Characters SharePoint refuses in a name (`/` cannot occur inside a listed name).
pub const INVALID_CHARS: [char; 9] = ['"', '*', ':', '<', '>', '?', '/', '\\', '|'];
/// Longest decoded path SharePoint keeps, in characters.
pub const MAX_PATH_CHARS: usize = 400;
/// Largest file SharePoint takes: 250 GB.
pub const MAX_FILE_BYTES: u64 = 250 * 1024 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// `.`, `..` or an empty name: they name a folder (this one, its parent), not an entry.
    NotAName,
    InvalidCharacter {
        ch: char,
    },
    ReservedName,
    /// `_vti_` anywhere in a name.
    VtiInName,
    /// `~$` at the start: Office owner files.
    OfficeLockName,
    LeadingSpace,
    TrailingSpace,
    /// A folder whose name starts with `~`.
    FolderStartsWithTilde,
    /// A folder whose name ends in `.`: Graph's path addressing (`root:/a./b:`) cannot reach
    /// what is inside it, and SharePoint refuses it.
    FolderEndsWithDot,
    /// `forms` at the library root.
    FormsAtRoot,
    /// Another entry in the same folder has the same name but for case (SharePoint names are
    /// case-insensitive, so the second would overwrite the first).
    CaseCollision,
    PathTooLong {
        chars: usize,
    },
    FileTooLarge {
        bytes: u64,
    },
}

impl Problem {
    /// Whether renaming the entry cures it (too-long paths and too-large files cannot be fixed by
    /// a new name for this one entry).
    pub fn renamable(&self) -> bool {
        !matches!(
            self,
            Problem::NotAName | Problem::PathTooLong { .. } | Problem::FileTooLarge { .. }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            Problem::NotAName => "'.', '..' or empty: not a name".into(),
            Problem::InvalidCharacter { ch } => format!("contains '{ch}'"),
            Problem::ReservedName => "reserved name".into(),
            Problem::VtiInName => "contains _vti_".into(),
            Problem::OfficeLockName => "starts with ~$".into(),
            Problem::LeadingSpace => "leading space".into(),
            Problem::TrailingSpace => "trailing space".into(),
            Problem::FolderStartsWithTilde => "folder name starts with ~".into(),
            Problem::FolderEndsWithDot => "folder name ends with '.'".into(),
            Problem::FormsAtRoot => "folder 'forms' at the library root".into(),
            Problem::CaseCollision => "same name as another entry but for case".into(),
            Problem::PathTooLong { chars } => {
                format!("path is {chars} characters (limit {MAX_PATH_CHARS})")
            }
            Problem::FileTooLarge { bytes } => format!("file is {bytes} bytes (limit 250 GB)"),
        }
    }
}

fn is_reserved(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    matches!(
        n.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | ".LOCK" | "DESKTOP.INI"
    ) || ((n.starts_with("COM") || n.starts_with("LPT"))
        && n.len() == 4
        && n.as_bytes()[3].is_ascii_digit())
}

/// Problems of one name, by itself.
pub fn check_name(name: &str, is_dir: bool, at_root: bool) -> Vec<Problem> {
    if matches!(name, "" | "." | "..") {
        return vec![Problem::NotAName];
    }
    let mut p = Vec::new();
    let mut seen = HashSet::new();
    for ch in name.chars() {
        if INVALID_CHARS.contains(&ch) && seen.insert(ch) {
            p.push(Problem::InvalidCharacter { ch });
        }
    }
    if is_reserved(name) {
        p.push(Problem::ReservedName);
    }
    if name.to_ascii_lowercase().contains("_vti_") {
        p.push(Problem::VtiInName);
    }
    if name.starts_with("~$") {
        p.push(Problem::OfficeLockName);
    }
    if name.starts_with(' ') {
        p.push(Problem::LeadingSpace);
    }
    if name.ends_with(' ') {
        p.push(Problem::TrailingSpace);
    }
    if is_dir && name.starts_with('~') && !name.starts_with("~$") {
        p.push(Problem::FolderStartsWithTilde);
    }
    if is_dir && at_root && name.eq_ignore_ascii_case("forms") {
        p.push(Problem::FormsAtRoot);
    }
    if is_dir && name.ends_with('.') {
        p.push(Problem::FolderEndsWithDot);
    }
    p
}

/// A name SharePoint accepts, as close to the original as possible: refused characters become
/// their full-width look-alikes (as rclone and OneDrive do), reserved words get a `_` suffix.
pub fn rename_name(name: &str, is_dir: bool, at_root: bool) -> String {
    let mut s: String = name
        .chars()
        .map(|c| match c {
            '"' => '＂',
            '*' => '＊',
            ':' => '：',
            '<' => '＜',
            '>' => '＞',
            '?' => '？',
            '/' => '／',
            '\\' => '＼',
            '|' => '｜',
            c => c,
        })
        .collect();
    // Spaces at either end become no-break spaces: visible, reversible, accepted.
    let lead = s.len() - s.trim_start_matches(' ').len();
    let trail = s.len() - s.trim_end_matches(' ').len();
    if lead + trail > 0 && lead < s.len() {
        let core = s[lead..s.len() - trail].to_string();
        s = format!(
            "{}{}{}",
            "\u{a0}".repeat(lead),
            core,
            "\u{a0}".repeat(trail)
        );
    }
    if let Some(rest) = s.strip_prefix("~$") {
        s = format!("_${rest}");
    }
    if is_dir && s.starts_with('~') {
        s.replace_range(0..1, "_");
    }
    // After the `~` → `_` above, which can make one (`~vti_` → `_vti_`: found by fuzzing).
    while let Some(i) = s.to_ascii_lowercase().find("_vti_") {
        s.replace_range(i..i + 5, "-vti-");
    }
    // A folder's final dot becomes its full-width look-alike, like the characters above.
    if is_dir && s.ends_with('.') {
        s.pop();
        s.push('．');
    }
    if is_reserved(&s) || (is_dir && at_root && s.eq_ignore_ascii_case("forms")) {
        s.push('_');
    }
    if s.is_empty() || s.chars().all(|c| c == ' ') {
        s = "_".into();
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Stop before anything moves and list the problems.
    Fail,
    /// Leave the entries (and everything below a refused folder) out, and report them.
    Skip,
    /// Give them an accepted name, recorded so it can be reversed; unfixable ones are skipped.
    Rename,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Rename {
    pub source: String,
    pub target: String,
}

/// A source entry and the path it gets on the target.
#[derive(Clone, Debug)]
pub struct Mapped {
    pub entry: Entry,
    pub target_path: String,
}

#[derive(Debug, Default)]
pub struct Mapping {
    pub mapped: Vec<Mapped>,
    /// Every entry with a problem, whatever was done about it.
    pub findings: Vec<Finding>,
    /// Entries left out (with `skip`, or unfixable with `rename`), with their descendants.
    pub skipped: Vec<String>,
    pub renames: Vec<Rename>,
}

/// Checks every entry and decides its target path under `policy`. With `Fail` the mapping is
/// still complete (as `Skip`), and the caller refuses to run when `findings` is not empty.
pub fn map_entries(entries: &[Entry], policy: OnInvalid) -> Mapping {
    map_entries_under(entries, policy, 0)
}

/// [`map_entries`] for a target whose paths the service counts after `prefix_chars` characters
/// of its own (SharePoint's 400-character rule counts the site, the library and the folder:
/// `sites/Team/Shared Documents/Import/`).
pub fn map_entries_under(entries: &[Entry], policy: OnInvalid, prefix_chars: usize) -> Mapping {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    // Parents before children, so a folder's fate is known before its content.
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut m = Mapping::default();
    // Source folder path -> target folder path (`None`: skipped).
    let mut dirs: HashMap<String, Option<String>> = HashMap::new();
    dirs.insert(String::new(), Some(String::new()));
    // Names taken per folder (keyed by the source folder: its children share one target
    // folder), case-insensitive as SharePoint is.
    let mut taken: HashMap<String, HashSet<String>> = HashMap::new();
    // Names given out so far per folder (keyed the same way), to find case collisions.
    let mut assigned: HashMap<String, HashSet<String>> = HashMap::new();
    for e in &sorted {
        taken
            .entry(parent(&e.path).to_string())
            .or_default()
            .insert(e.name().to_lowercase());
    }
    for e in sorted {
        let src_parent = parent(&e.path);
        let Some(Some(tparent)) = dirs.get(src_parent).cloned() else {
            // Below a skipped folder.
            m.skipped.push(e.path.clone());
            if e.is_dir {
                dirs.insert(e.path.clone(), None);
            }
            continue;
        };
        let name = e.name();
        let at_root = src_parent.is_empty();
        let mut problems = check_name(name, e.is_dir, at_root);
        let assigned_here = assigned.entry(src_parent.to_string()).or_default();
        if assigned_here.contains(&name.to_lowercase()) {
            problems.push(Problem::CaseCollision);
        }
        let mut tname = name.to_string();
        if policy == OnInvalid::Rename && !problems.is_empty() {
            tname = rename_name(name, e.is_dir, at_root);
            let names = taken.entry(src_parent.to_string()).or_default();
            let free = |n: &str| {
                let l = n.to_lowercase();
                !assigned_here.contains(&l) && (n == name || !names.contains(&l))
            };
            if !free(&tname) || tname == name {
                let (stem, ext) = match tname.rfind('.') {
                    Some(i) if i > 0 && !e.is_dir => {
                        (tname[..i].to_string(), tname[i..].to_string())
                    }
                    _ => (tname.clone(), String::new()),
                };
                let mut n = 1;
                while !free(&format!("{stem} ({n}){ext}")) {
                    n += 1;
                }
                tname = format!("{stem} ({n}){ext}");
            }
            names.insert(tname.to_lowercase());
        }
        let tpath = join(&tparent, &tname);
        let chars = prefix_chars + tpath.chars().count();
        if chars > MAX_PATH_CHARS {
            problems.push(Problem::PathTooLong { chars });
        }
        if !e.is_dir && e.size > MAX_FILE_BYTES {
            problems.push(Problem::FileTooLarge { bytes: e.size });
        }
        let fixable = problems.iter().all(Problem::renamable);
        let keep = problems.is_empty() || (policy == OnInvalid::Rename && fixable);
        if !problems.is_empty() {
            m.findings.push(Finding {
                path: e.path.clone(),
                problems,
            });
        }
        if keep {
            assigned
                .entry(src_parent.to_string())
                .or_default()
                .insert(tname.to_lowercase());
            if tname != name {
                m.renames.push(Rename {
                    source: e.path.clone(),
                    target: tpath.clone(),
                });
            }
            if e.is_dir {
                dirs.insert(e.path.clone(), Some(tpath.clone()));
            }
            m.mapped.push(Mapped {
                entry: e.clone(),
                target_path: tpath,
            });
        } else {
            m.skipped.push(e.path.clone());
            if e.is_dir {
                dirs.insert(e.path.clone(), None);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str) -> Entry {
        Entry {
            path: path.into(),
            is_dir: false,
            size: 1,
            mtime_ns: None,
            ..Entry::default()
        }
    }
    fn d(path: &str) -> Entry {
        Entry {
            is_dir: true,
            ..f(path)
        }
    }

    #[test]
    fn a_renamed_tilde_folder_does_not_become_a_vti_name() {
        // Found by the document_names fuzz target.
        let renamed = rename_name("~vti_vt\u{11}\0\0", true, false);
        assert_eq!(renamed, "-vti-vt\u{11}\0\0");
        assert!(check_name(&renamed, true, false).is_empty());
    }

    #[test]
    fn dot_names_are_not_names() {
        for bad in ["", ".", ".."] {
            let p = check_name(bad, true, false);
            assert_eq!(p, vec![Problem::NotAName], "{bad:?}");
            assert!(!p[0].renamable());
        }
        // A name of dots is a name; as a folder it ends in a dot, which SharePoint refuses.
        assert!(check_name("...", false, false).is_empty());
        assert_eq!(
            check_name("...", true, false),
            vec![Problem::FolderEndsWithDot]
        );
    }

    #[test]
    fn every_documented_rule_is_caught() {
        for bad in ["a\"b", "a*b", "a:b", "a<b", "a>b", "a?b", "a\\b", "a|b"] {
            assert!(
                matches!(
                    check_name(bad, false, false)[..],
                    [Problem::InvalidCharacter { .. }]
                ),
                "{bad}"
            );
        }
        for bad in [
            "CON",
            "prn",
            "Aux",
            "NUL",
            "COM0",
            "com9",
            "LPT1",
            ".lock",
            "desktop.ini",
            "Desktop.INI",
        ] {
            assert_eq!(
                check_name(bad, false, false),
                vec![Problem::ReservedName],
                "{bad}"
            );
        }
        assert_eq!(
            check_name("a_vti_b", false, false),
            vec![Problem::VtiInName]
        );
        assert_eq!(
            check_name("~$report.docx", false, false),
            vec![Problem::OfficeLockName]
        );
        assert_eq!(check_name(" a", false, false), vec![Problem::LeadingSpace]);
        assert_eq!(check_name("a ", false, false), vec![Problem::TrailingSpace]);
        assert_eq!(
            check_name("v1.", true, false),
            vec![Problem::FolderEndsWithDot]
        );
        assert!(
            check_name("v1.", false, false).is_empty(),
            "files keep their dot"
        );
        assert_eq!(rename_name("v1.", true, false), "v1．");
        assert!(check_name(&rename_name("v1.", true, false), true, false).is_empty());
        assert_eq!(
            check_name("~tmp", true, false),
            vec![Problem::FolderStartsWithTilde]
        );
        assert_eq!(check_name("forms", true, true), vec![Problem::FormsAtRoot]);
        for ok in [
            "CONTRACT.docx",
            "COM10",
            "con.txt",
            "a b",
            "Grüße.txt",
            "forms",
            "~file",
            "lock",
        ] {
            assert!(check_name(ok, false, false).is_empty(), "{ok}");
        }
        assert!(check_name("forms", true, false).is_empty());
    }

    #[test]
    fn long_paths_and_huge_files_are_found() {
        let long = format!("{}/{}", "a".repeat(200), "b".repeat(201));
        let mut big = f("big.iso");
        big.size = MAX_FILE_BYTES + 1;
        let m = map_entries(&[d(&"a".repeat(200)), f(&long), big], OnInvalid::Rename);
        assert_eq!(m.findings.len(), 2);
        assert_eq!(m.skipped.len(), 2, "unfixable even with rename");
        assert_eq!(m.mapped.len(), 1);
    }

    #[test]
    fn the_target_prefix_counts_towards_the_path_limit() {
        // 390 characters fit alone, not below `sites/Team/Shared Documents/Import/` (35).
        let path = format!("{}/{}", "a".repeat(200), "b".repeat(189));
        let entries = [d(&"a".repeat(200)), f(&path)];
        assert!(map_entries(&entries, OnInvalid::Fail).findings.is_empty());
        let prefix = "sites/Team/Shared Documents/Import/".chars().count();
        let m = map_entries_under(&entries, OnInvalid::Fail, prefix);
        assert_eq!(m.findings.len(), 1);
        assert_eq!(m.findings[0].path, path);
        assert_eq!(
            m.findings[0].problems,
            vec![Problem::PathTooLong {
                chars: 390 + prefix
            }]
        );
    }

    #[test]
    fn renames_are_valid_recorded_and_apply_to_children() {
        let es = [
            d("Q3: plan"),
            f("Q3: plan/x.txt"),
            f("CON"),
            f("a?.txt"),
            f("a？.txt"),
        ];
        let m = map_entries(&es, OnInvalid::Rename);
        assert!(m.skipped.is_empty());
        let t: HashMap<_, _> = m
            .mapped
            .iter()
            .map(|x| (x.entry.path.as_str(), x.target_path.as_str()))
            .collect();
        assert_eq!(t["Q3: plan/x.txt"], "Q3： plan/x.txt");
        assert_eq!(t["CON"], "CON_");
        assert_eq!(t["a？.txt"], "a？.txt");
        assert_eq!(
            t["a?.txt"], "a？ (1).txt",
            "collision with an existing name avoided"
        );
        assert_eq!(m.renames.len(), 3);
        for x in &m.mapped {
            for (i, seg) in x.target_path.split('/').enumerate() {
                assert!(check_name(seg, x.entry.is_dir, i == 0).is_empty(), "{seg}");
            }
        }
    }

    #[test]
    fn case_collisions_are_found_and_renamed_apart() {
        let es = [
            f("Report.docx"),
            f("report.DOCX"),
            d("Dir"),
            d("dir"),
            f("dir/x"),
        ];
        let m = map_entries(&es, OnInvalid::Skip);
        assert_eq!(m.findings.len(), 2, "{:?}", m.findings);
        assert!(m
            .findings
            .iter()
            .all(|f| f.problems == vec![Problem::CaseCollision]));
        assert_eq!(m.skipped.len(), 3);
        let m = map_entries(&es, OnInvalid::Rename);
        let t: Vec<_> = m.mapped.iter().map(|x| x.target_path.as_str()).collect();
        assert_eq!(
            t,
            vec![
                "Dir",
                "Report.docx",
                "dir (1)",
                "dir (1)/x",
                "report (1).DOCX"
            ]
        );
    }

    #[test]
    fn skip_leaves_out_folders_with_their_content() {
        let es = [
            d("ok"),
            f("ok/a"),
            d("bad|dir"),
            f("bad|dir/x"),
            d("bad|dir/sub"),
            f("desktop.ini"),
        ];
        let m = map_entries(&es, OnInvalid::Skip);
        assert_eq!(m.mapped.len(), 2);
        assert_eq!(m.skipped.len(), 4);
        assert_eq!(
            m.findings.len(),
            2,
            "children of a refused folder are not findings themselves"
        );
        assert!(m.renames.is_empty());
    }

    #[test]
    fn rename_handles_spaces_and_odd_cases_without_panicking() {
        assert_eq!(rename_name(" a ", false, false), "\u{a0}a\u{a0}");
        assert_eq!(rename_name("x_VTI_y", false, false), "x-vti-y");
        assert_eq!(rename_name("~$a", false, false), "_$a");
        assert_eq!(rename_name("~d", true, false), "_d");
        assert_eq!(rename_name("forms", true, true), "forms_");
        assert_eq!(rename_name("   ", false, false), "_");
        for name in ["", " ", "é ", " ~$:", "COM1"] {
            let r = rename_name(name, true, true);
            assert!(check_name(&r, true, true).is_empty(), "{name:?} -> {r:?}");
        }
    }
}
