//! What a run did, for people (text) and for machines (JSON). One reporter for migrate and verify.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// A server's text made safe for a terminal: control characters (escape sequences, carriage
/// returns, newlines that would forge report lines) are shown escaped, e.g. `\u{1b}`. Only the
/// text output uses it; the JSON report keeps exact values.
pub fn for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        // Bidi embeddings, overrides and isolates reorder what follows them on screen: a
        // folder name could make a line read differently from what it says.
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub folder: String,
    pub uid: u32,
    pub size: u64,
    pub reason: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FolderReport {
    pub source: String,
    pub target: String,
    pub copied: u64,
    pub bytes: u64,
    /// Messages found already on the target (matched by content) instead of copied.
    pub matched: u64,
    pub flags_updated: u64,
    /// Dry run: what a real run would copy.
    pub would_copy: u64,
    /// Dry run: items a real run would import again as updates (changed on the source since
    /// they were copied; Exchange → Exchange).
    pub would_update: u64,
    pub unchanged: bool,
    /// Messages deleted on the source between listing and copying: nothing left to copy.
    pub expunged: u64,
    /// Items copied by an earlier run and deleted on the source since (Exchange → Exchange,
    /// from the item delta): their copies stay in the target.
    pub deleted_on_source: u64,
    pub failures: Vec<Failure>,
    /// Flags the target does not keep (not in its PERMANENTFLAGS), dropped.
    pub refused_flags: Vec<String>,
    pub note: Option<String>,
    pub error: Option<String>,
    /// Reconnects needed for this folder (dropped connections, throttling).
    pub retries: u32,
    /// Messages and bytes this attempt added to the progress total and has neither copied nor
    /// counted out yet: taken back out when the attempt fails (the next one lists them again).
    #[serde(skip)]
    pub in_total: (u64, u64),
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MailboxReport {
    pub source: String,
    pub target: String,
    pub folders: Vec<FolderReport>,
    pub error: Option<String>,
    /// The error behind `error`, typed (an `ImapError` when a server caused it), so a caller
    /// can tell a refused login from a dropped connection.
    #[serde(skip)]
    pub cause: Option<std::sync::Arc<anyhow::Error>>,
    pub elapsed_secs: f64,
    /// Throttled answers (Exchange's "Suggested Backoff Time") waited out during the run.
    pub throttled: u64,
}

impl MailboxReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self
                .folders
                .iter()
                .all(|f| f.error.is_none() && f.failures.is_empty())
    }
    pub fn copied(&self) -> u64 {
        self.folders.iter().map(|f| f.copied).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.folders.iter().map(|f| f.bytes).sum()
    }
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.error {
            out.push(format!("{} -> {}: {e}", self.source, self.target));
        }
        for f in &self.folders {
            if let Some(e) = &f.error {
                out.push(format!(
                    "{} -> {}: folder {}: {e}",
                    self.source, self.target, f.source
                ));
            }
            for x in &f.failures {
                out.push(format!(
                    "{} -> {}: folder {} uid {} ({} bytes) not copied: {}",
                    self.source, self.target, x.folder, x.uid, x.size, x.reason
                ));
            }
        }
        out
    }
}

#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    pub mailboxes: Vec<MailboxReport>,
    pub dry_run: bool,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.mailboxes.iter().all(MailboxReport::ok)
    }
    pub fn text(&self) -> String {
        let mut s = String::new();
        for m in &self.mailboxes {
            let matched: u64 = m.folders.iter().map(|f| f.matched).sum();
            let flags: u64 = m.folders.iter().map(|f| f.flags_updated).sum();
            if self.dry_run {
                let would: u64 = m.folders.iter().map(|f| f.would_copy).sum();
                let updates: u64 = m.folders.iter().map(|f| f.would_update).sum();
                s += &format!(
                    "{} -> {}: dry run, would copy {would} messages{}\n",
                    m.source,
                    m.target,
                    if updates > 0 {
                        format!(" and update {updates}")
                    } else {
                        String::new()
                    }
                );
                for f in m
                    .folders
                    .iter()
                    .filter(|f| f.would_copy > 0 || f.would_update > 0)
                {
                    s += &format!(
                        "  {} -> {}: {}{}\n",
                        for_terminal(&f.source),
                        for_terminal(&f.target),
                        f.would_copy,
                        if f.would_update > 0 {
                            format!(", {} updated", f.would_update)
                        } else {
                            String::new()
                        }
                    );
                }
            } else {
                s += &format!(
                    "{} -> {}: {} messages copied ({:.1} MB), {matched} already there, {flags} flag updates, {} folders, {:.1}s{}\n",
                    m.source,
                    m.target,
                    m.copied(),
                    m.bytes() as f64 / 1e6,
                    m.folders.len(),
                    m.elapsed_secs,
                    if m.ok() { "" } else { " — INCOMPLETE" }
                );
            }
            if m.throttled > 0 {
                s += &format!(
                    "  note: {} throttled answer(s) waited out as the server suggested\n",
                    m.throttled
                );
            }
            for f in &m.folders {
                if let Some(n) = &f.note {
                    s += &format!("  note: {}\n", for_terminal(n));
                }
                if f.expunged > 0 {
                    s += &format!(
                        "  note: folder {}: {} message(s) deleted on the source during the run, not copied\n",
                        for_terminal(&f.source),
                        f.expunged
                    );
                }
                if f.deleted_on_source > 0 {
                    s += &format!(
                        "  note: folder {}: {} item(s) deleted on the source since the last run; their copies stay in the target\n",
                        for_terminal(&f.source),
                        f.deleted_on_source
                    );
                }
                if !f.refused_flags.is_empty() {
                    s += &format!(
                        "  note: target folder {} does not keep flags {}: not carried\n",
                        for_terminal(&f.target),
                        for_terminal(&f.refused_flags.join(" "))
                    );
                }
            }
        }
        let problems: Vec<String> = self
            .mailboxes
            .iter()
            .flat_map(MailboxReport::problems)
            .collect();
        if !problems.is_empty() {
            s += &format!("{} problem(s):\n", problems.len());
            for p in problems {
                s += &format!("  {}\n", for_terminal(&p));
            }
        }
        s
    }
}

/// Live counters shared by the workers; a ticker renders them.
#[derive(Default)]
pub struct Progress {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Messages and bytes to copy, as far as listed: grows folder by folder.
    pub messages_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub folder: Mutex<String>,
    /// Not a terminal: print one plain line per finished folder (for logs).
    pub plain_lines: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Messages a folder's listing found to copy.
    pub fn add_total(&self, messages: u64, bytes: u64) {
        self.messages_total.fetch_add(messages, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Messages counted in the total that will not be copied after all (gone from the source,
    /// or listed again by the folder's next attempt).
    pub fn retract_total(&self, messages: u64, bytes: u64) {
        let less = |total: &AtomicU64, n: u64| {
            let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(n))
            });
        };
        less(&self.messages_total, messages);
        less(&self.bytes_total, bytes);
    }
    pub fn folder_done(&self, mailbox: &str, f: &FolderReport) {
        if !self.plain_lines.load(Ordering::Relaxed) || f.unchanged {
            return;
        }
        let status = match (&f.error, f.failures.len()) {
            (Some(e), _) => format!(", ERROR: {e}"),
            (None, 0) => String::new(),
            (None, n) => format!(", {n} not copied"),
        };
        eprintln!(
            "{mailbox}: folder {} -> {}: {} copied ({:.1} MB), {} flag updates{}",
            for_terminal(&f.source),
            for_terminal(&f.target),
            f.copied,
            f.bytes as f64 / 1e6,
            f.flags_updated,
            for_terminal(&status)
        );
    }
    pub fn set_folder(&self, name: &str) {
        if let Ok(mut f) = self.folder.lock() {
            name.clone_into(&mut f);
        }
    }
}

/// Shows progress on stderr: a rewritten line on a terminal, a plain line every 10 s otherwise.
/// Returns a handle; abort it when the run ends.
pub fn spawn_ticker(p: Arc<Progress>, quiet: bool) -> Option<tokio::task::JoinHandle<()>> {
    if quiet {
        return None;
    }
    let tty = std::io::stderr().is_terminal();
    p.plain_lines.store(!tty, Ordering::Relaxed);
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    Some(tokio::spawn(async move {
        let start = std::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let m = p.messages.load(Ordering::Relaxed);
            let b = p.bytes.load(Ordering::Relaxed) as f64 / 1e6;
            let folder = p
                .folder
                .lock()
                .map(|f| for_terminal(&f))
                .unwrap_or_default();
            let secs = start.elapsed().as_secs_f64().max(0.001);
            let line = format!(
                "{m} messages, {b:.1} MB ({:.1} MB/s), folder {folder}",
                b / secs
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("progress: {line}");
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_texts_reach_a_terminal_escaped_and_json_exact() {
        let evil = "Inbox\x1b]0;owned\x07\r\nfake line\u{9b}2J";
        let report = RunReport {
            mailboxes: vec![MailboxReport {
                folders: vec![FolderReport {
                    source: evil.into(),
                    note: Some(evil.into()),
                    failures: vec![Failure {
                        folder: evil.into(),
                        uid: 1,
                        size: 2,
                        reason: evil.into(),
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dry_run: false,
        };
        let text = report.text();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("Inbox\\u{1b}]0;owned\\u{7}\\u{d}\\u{a}fake line"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("fake line")));
        let json = serde_json::to_string(&report).unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["mailboxes"][0]["folders"][0]["source"], evil);
    }

    #[test]
    fn bidi_controls_are_escaped_for_a_terminal() {
        // "Inbox\u{202e}txt.exe" shows as "Inboxexe.txt"; isolates reorder text the same way.
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ] {
            let shown = for_terminal(&format!("Inbox{c}txt.exe"));
            assert!(!shown.contains(c), "{shown:?}");
            assert_eq!(shown, format!("Inbox{}txt.exe", c.escape_unicode()));
        }
        assert_eq!(for_terminal("Überfällig ✓"), "Überfällig ✓");
    }
}
