//! What a run did, for people (text) and machines (`--json`).

use std::fmt::Write;

use serde::Serialize;

use crate::endpoint::{MtimeSupport, UploadChoice, UploadMode};
use crate::preflight::{Finding, Rename};

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct MigrationReport {
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    /// Pre-flight found problems and `--on-invalid fail` stopped the run before anything moved.
    pub refused_by_preflight: bool,
    pub source_files: u64,
    pub source_folders: u64,
    pub source_bytes: u64,
    pub planned_copies: u64,
    pub planned_bytes: u64,
    pub copied_files: u64,
    pub copied_bytes: u64,
    pub unchanged_files: u64,
    pub folders_created: u64,
    pub deleted: Vec<String>,
    pub stale_temporaries_removed: u64,
    pub findings: Vec<Finding>,
    pub skipped: Vec<String>,
    pub renames: Vec<Rename>,
    pub failures: Vec<Failure>,
    pub mtime: MtimeSupport,
    /// How uploads were made visible, and why (absent when nothing was uploaded).
    #[serde(flatten)]
    pub upload: Option<UploadChoice>,
    pub notes: Vec<String>,
    pub elapsed_secs: f64,
    pub megabytes_per_sec: f64,
}

impl MigrationReport {
    pub fn new(source: String, target: String, dry_run: bool) -> Self {
        Self {
            source,
            target,
            dry_run,
            refused_by_preflight: false,
            source_files: 0,
            source_folders: 0,
            source_bytes: 0,
            planned_copies: 0,
            planned_bytes: 0,
            copied_files: 0,
            copied_bytes: 0,
            unchanged_files: 0,
            folders_created: 0,
            deleted: Vec::new(),
            stale_temporaries_removed: 0,
            findings: Vec::new(),
            skipped: Vec::new(),
            renames: Vec::new(),
            failures: Vec::new(),
            mtime: MtimeSupport::Unknown,
            upload: None,
            notes: Vec::new(),
            elapsed_secs: 0.0,
            megabytes_per_sec: 0.0,
        }
    }

    pub fn ok(&self) -> bool {
        !self.refused_by_preflight && self.failures.is_empty()
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} -> {}{}",
            self.source,
            self.target,
            if self.dry_run { " (dry run)" } else { "" }
        );
        write_findings(&mut s, &self.findings);
        if self.refused_by_preflight {
            let _ = writeln!(
                s,
                "nothing moved: fix the names above, or re-run with --on-invalid skip|rename"
            );
            return for_terminal(&s);
        }
        let _ = writeln!(
            s,
            "source: {} files, {} folders, {:.1} MB",
            self.source_files,
            self.source_folders,
            self.source_bytes as f64 / 1e6
        );
        if self.dry_run {
            let _ = writeln!(
                s,
                "would copy {} files ({:.1} MB), create {} folders, delete {}; {} unchanged",
                self.planned_copies,
                self.planned_bytes as f64 / 1e6,
                self.folders_created,
                self.deleted.len(),
                self.unchanged_files
            );
        } else {
            let _ = writeln!(
                s,
                "copied {} files ({:.1} MB) in {:.1}s ({:.1} MB/s), {} unchanged, {} folders created, {} deleted",
                self.copied_files,
                self.copied_bytes as f64 / 1e6,
                self.elapsed_secs,
                self.megabytes_per_sec,
                self.unchanged_files,
                self.folders_created,
                self.deleted.len()
            );
        }
        if let Some(UploadChoice { mode, reason }) = &self.upload {
            let how = match mode {
                UploadMode::Direct => "direct to the final names",
                UploadMode::Staged => "under temporary names, then moved into place",
            };
            let _ = writeln!(s, "uploads: {how} ({reason})");
        }
        for r in &self.renames {
            let _ = writeln!(s, "renamed: {} -> {}", r.source, r.target);
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(
                s,
                "skipped {} entries refused by pre-flight",
                self.skipped.len()
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "{} files FAILED:", self.failures.len());
            for f in &self.failures {
                let _ = writeln!(s, "  {}: {}", f.path, f.error);
            }
        }
        for_terminal(&s)
    }
}

/// Text for a terminal: names and messages come from servers, so control characters (an
/// escape sequence could rewrite the screen) and bidirectional overrides (which could make a
/// name read as another) are shown escaped, as `\u{1b}`. Line breaks stay.
pub fn for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n') || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn write_findings(s: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "pre-flight: {} names or files SharePoint would refuse:",
        findings.len()
    );
    for f in findings {
        let why: Vec<String> = f.problems.iter().map(|p| p.describe()).collect();
        let _ = writeln!(s, "  {}: {}", f.path, why.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_shows_control_and_bidi_characters_escaped() {
        assert_eq!(
            for_terminal("a\u{1b}[2Jb\u{202e}c\td\n"),
            "a\\u{1b}[2Jb\\u{202e}c\\u{9}d\n"
        );
    }
}
