//! A state put back from an older snapshot (a worker on another machine resuming a mailbox from
//! the database): messages copied after the snapshot are in neither `map` nor `pending`. With
//! `restored_state` every unmapped message is looked up on the target first — no duplicate;
//! without it they are copied a second time (which is why the runner says so).

use std::path::Path;
use tenantry_mail::report::MailboxReport;
use tenantry_mail::session::{Endpoint, Side};
use tenantry_mail::sync::{migrate_mailbox, Options};
use tenantry_testkit::dovecot::{append, message, Config, Dovecot};

struct Setup {
    src: Dovecot,
    tgt: Dovecot,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            src: Dovecot::start(Config::source()),
            tgt: Dovecot::start(Config::target()),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("alice.sqlite")
    }
    fn endpoints(&self) -> (Endpoint, Endpoint) {
        let src = self.src.endpoint("alice", "alicepw");
        let mut tgt = self.tgt.endpoint("alice", "alicepw2");
        tgt.side = Side::Target;
        (src, tgt)
    }
    async fn seed(&self, range: std::ops::Range<usize>) {
        let mut s = self.src.session("alice", "alicepw").await;
        for n in range {
            let body = message(&format!("message {n}"), "", 3_000 + n * 100, true);
            append(
                &mut s,
                "INBOX",
                "\\Seen",
                "01-Jan-2024 00:00:00 +0000",
                &body,
            )
            .await;
        }
    }
    async fn run(&self, restored: bool) -> MailboxReport {
        let (src, tgt) = self.endpoints();
        let opts = Options {
            restored_state: restored,
            ..Options::default()
        };
        let report = migrate_mailbox(&src, &tgt, &self.state(), &opts, Default::default()).await;
        assert!(report.ok(), "{:?}", report.problems());
        report
    }
    async fn target_inbox(&self) -> u32 {
        let mut t = self.tgt.session("alice", "alicepw2").await;
        t.select("INBOX", true).await.unwrap().exists
    }
    /// A consistent copy of the state, as the runner saves it.
    fn snapshot(&self, to: &Path) {
        let db = rusqlite::Connection::open(self.state()).unwrap();
        db.execute("VACUUM INTO ?1", [to.to_str().unwrap()])
            .unwrap();
    }
    /// Puts an old snapshot in place of the state, as a worker with no newer file does.
    fn restore(&self, from: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.state().display()));
        }
        std::fs::copy(from, self.state()).unwrap();
    }
}

fn inbox(report: &MailboxReport) -> (u64, u64) {
    let f = report.folders.iter().find(|f| f.source == "INBOX").unwrap();
    (f.copied, f.matched)
}

/// Migrate 10, snapshot, migrate 5 more, restore the old snapshot, 2 more arrive: a restored
/// run copies the 2 and finds the 5 on the target.
async fn scenario(restored: bool) -> (Setup, MailboxReport) {
    let s = Setup::new();
    s.seed(0..10).await;
    assert_eq!(inbox(&s.run(false).await), (10, 0));
    let snapshot = s.dir.path().join("snapshot.sqlite");
    s.snapshot(&snapshot);
    s.seed(10..15).await;
    assert_eq!(inbox(&s.run(false).await).0, 5);
    assert_eq!(s.target_inbox().await, 15);
    s.restore(&snapshot);
    s.seed(15..17).await;
    let report = s.run(restored).await;
    (s, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_older_state_copies_nothing_twice() {
    let (s, report) = scenario(true).await;
    assert_eq!(inbox(&report), (2, 5), "5 found on the target, 2 copied");
    assert_eq!(s.target_inbox().await, 17, "no duplicate, nothing missing");
    let (src, tgt) = s.endpoints();
    let check = tenantry_mail::verify::verify_mailbox(&src, &tgt, &Options::default())
        .await
        .unwrap();
    assert!(check.ok(), "{:?}", check.differences);
    // The lookup is done once: the next run is an ordinary one.
    let again = s.run(false).await;
    assert_eq!(inbox(&again), (0, 0));
    assert_eq!(s.target_inbox().await, 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_restored_flag_an_older_state_duplicates() {
    let (s, report) = scenario(false).await;
    assert_eq!(inbox(&report), (7, 0), "the 5 are copied again");
    assert_eq!(s.target_inbox().await, 22);
}
