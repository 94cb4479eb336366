//! What a run did, for people (text) and machines (`--json`), and the progress line.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tenantry_files::endpoint::RefusedEntry;
use tenantry_files::progress::{print_progress, ProgressGuard};

use crate::kind::Kind;

/// A server's text made safe for a terminal: control characters (escape sequences, newlines
/// that would forge report lines) are shown escaped.
pub fn for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// An object that was not copied (or not deleted), with the reason.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The source collection's name (or URL path for a single collection).
    pub collection: String,
    /// The resource name.
    pub object: String,
    pub uid: Option<String>,
    /// HTTP status from the target, when it refused.
    pub status: Option<u16>,
    pub error: String,
}

/// A UID seen twice, and what was done about it.
#[derive(Clone, Debug, Serialize)]
pub struct Duplicate {
    pub collection: String,
    pub object: String,
    pub uid: String,
    /// Where the UID also is.
    pub also_in: String,
    /// Whether this object was copied anyway.
    pub copied: bool,
    pub action: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CollectionSummary {
    pub source: String,
    pub target: String,
    /// `created`, `existing`, or `missing` (dry run).
    pub target_state: String,
    /// How changes were found: `sync-token` (incremental), `sync-full`, or `etags`.
    pub listing: String,
    pub objects: u64,
}

#[derive(Debug, Serialize)]
pub struct MigrationReport {
    pub kind: Kind,
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    pub collections: Vec<CollectionSummary>,
    pub copied: u64,
    pub copied_bytes: u64,
    pub unchanged: u64,
    pub deleted: u64,
    /// Objects a killed run had already written, found on the target by name and UID.
    pub reconciled: u64,
    pub duplicates: Vec<Duplicate>,
    pub failures: Vec<Failure>,
    /// Hrefs from a server that could not be used safely.
    pub refused: Vec<RefusedEntry>,
    pub notes: Vec<String>,
    pub elapsed_secs: f64,
}

impl MigrationReport {
    pub fn new(kind: Kind, source: String, target: String, dry_run: bool) -> Self {
        Self {
            kind,
            source,
            target,
            dry_run,
            collections: Vec::new(),
            copied: 0,
            copied_bytes: 0,
            unchanged: 0,
            deleted: 0,
            reconciled: 0,
            duplicates: Vec::new(),
            failures: Vec::new(),
            refused: Vec::new(),
            notes: Vec::new(),
            elapsed_secs: 0.0,
        }
    }

    /// Everything the source holds is on the target (duplicates copied anyway are fine).
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
            && self.refused.is_empty()
            && self.duplicates.iter().all(|d| d.copied)
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} -> {}{}",
            self.kind.name(),
            self.source,
            self.target,
            if self.dry_run { " (dry run)" } else { "" }
        );
        for c in &self.collections {
            let _ = writeln!(
                s,
                "  {} -> {} ({}, {} objects listed, {})",
                for_terminal(&c.source),
                for_terminal(&c.target),
                c.target_state,
                c.objects,
                c.listing
            );
        }
        let verb = if self.dry_run { "would copy" } else { "copied" };
        let _ = writeln!(
            s,
            "{verb} {} objects ({:.1} MB) in {:.1}s, {} unchanged, {} deleted, {} found already on the target",
            self.copied,
            self.copied_bytes as f64 / 1e6,
            self.elapsed_secs,
            self.unchanged,
            self.deleted,
            self.reconciled
        );
        for d in &self.duplicates {
            let _ = writeln!(
                s,
                "duplicate UID {}: {}/{} (also {}): {}",
                for_terminal(&d.uid),
                for_terminal(&d.collection),
                for_terminal(&d.object),
                for_terminal(&d.also_in),
                d.action
            );
        }
        for r in &self.refused {
            let _ = writeln!(s, "refused href {}: {}", for_terminal(&r.path), r.reason);
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {}", for_terminal(n));
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "{} objects NOT copied:", self.failures.len());
            for f in &self.failures {
                let _ = writeln!(
                    s,
                    "  {}/{}{}: {}",
                    for_terminal(&f.collection),
                    for_terminal(&f.object),
                    f.uid
                        .as_ref()
                        .map(|u| format!(" (UID {})", for_terminal(u)))
                        .unwrap_or_default(),
                    for_terminal(&f.error)
                );
            }
        }
        s
    }
}

/// Objects handled so far, printed on stderr: a redrawn line on a terminal, a plain line every
/// 10 s otherwise.
#[derive(Default)]
pub struct Progress {
    pub listed: AtomicU64,
    pub done: AtomicU64,
    pub bytes: AtomicU64,
}

impl Progress {
    fn line(&self, start: Instant) -> String {
        format!(
            "{}/{} objects, {:.1} MB, {:.0}s",
            self.done.load(Ordering::Relaxed),
            self.listed.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            start.elapsed().as_secs_f64()
        )
    }

    /// Starts printing (`tenantry_files::progress::print_progress`); the guard stops it when
    /// dropped.
    pub fn spawn(self: &Arc<Self>) -> ProgressGuard {
        let p = self.clone();
        let start = Instant::now();
        print_progress(move || p.line(start))
    }
}
