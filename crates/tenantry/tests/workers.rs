//! Three `tenantry worker` processes (the real binary, each with its own data directory) run one
//! move of 20 mailboxes (two Dovecot servers) and 3 libraries (local folders) on one PostgreSQL
//! database beside a `serve --no-worker`; one worker is killed with SIGKILL while it holds a
//! mailbox step. The move completes, every mailbox and library exactly once (counts per folder
//! equal, no duplicates; trees equal), the seats exact, and the step records show steps run by
//! more than one worker and more than one at a time.

mod support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fleet::*;
use support::*;
use tenantry_store::moves::StepState;
use tenantry_testkit::dovecot as mail;
use tenantry_testkit::tree::{fingerprint, sample_tree};

const MAILBOXES: usize = 20;
const LIBRARIES: usize = 3;
/// Short leases: the killed worker's step is taken over within seconds, not two minutes.
const LEASE_SECS: &str = "6";

fn now() -> tenantry_ledger::Timestamp {
    tenantry_ledger::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_run_a_move_at_once_and_survive_one_killed() {
    let Some(db) = tenantry_testkit::postgres::postgres_database() else {
        eprintln!("skipped: PostgreSQL is not installed (Debian package postgresql)");
        return;
    };
    let db = Arc::new(db);
    let source_mail = dovecot("fabrikam.com", ("srcadmin", "srcadminpw"), false, MAILBOXES);
    let target_mail = dovecot("contoso.com", ("admin", "adminpw"), true, MAILBOXES);
    let messages = seed_mail(&source_mail, MAILBOXES, |i| 10 + i).await;
    let folders = tempfile::tempdir().unwrap();
    let libraries: Vec<(std::path::PathBuf, std::path::PathBuf)> = (0..LIBRARIES)
        .map(|i| {
            let (src, dst) = (
                folders.path().join(format!("source-{i}")),
                folders.path().join(format!("target-{i}")),
            );
            sample_tree(&src);
            std::fs::create_dir_all(&dst).unwrap();
            (src, dst)
        })
        .collect();

    let s = Server::start_on_with_args(db.clone(), &["--no-worker"]);
    let store = tenantry_store::open(&db.url).await.unwrap();
    let library_specs: Vec<Value> = libraries
        .iter()
        .map(|(src, dst)| json!({"source": src, "target": dst}))
        .collect();
    let (id, source, target) = create_move(
        &s,
        MAILBOXES,
        &source_mail.host_url(),
        &target_mail.host_url(),
        library_specs,
    )
    .await;
    let move_id: uuid::Uuid = id.parse().unwrap();

    let work = tempfile::tempdir().unwrap();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| {
            Worker::start(
                &db.url,
                &s.key_file(),
                &work.path().join(format!("w{i}")),
                &[
                    "--concurrency",
                    "4",
                    "--per-server",
                    "8",
                    "--lease-secs",
                    LEASE_SECS,
                ],
            )
        })
        .collect();
    let started = Instant::now();
    s.run_move(&id).await;

    // Watch the step records: how many steps run at once, by whom; kill a worker holding a
    // mailbox step once the run is well under way.
    let mut most_at_once = 0;
    let mut most_mailboxes_at_once = 0;
    let mut killed: Option<(String, String)> = None;
    let mut dead = BTreeSet::new();
    let mut api_showed_workers = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let now = now();
        let steps = store.steps(move_id).await.unwrap();
        let live: Vec<_> = steps
            .iter()
            .filter(|st| st.state == StepState::Running && st.lease_until.is_some_and(|t| t >= now))
            .collect();
        most_at_once = most_at_once.max(live.len());
        most_mailboxes_at_once = most_mailboxes_at_once.max(
            live.iter()
                .filter(|st| st.key.starts_with("mailbox:"))
                .count(),
        );
        let done_mailboxes = steps
            .iter()
            .filter(|st| st.key.starts_with("mailbox:") && st.state == StepState::Done)
            .count();
        if killed.is_none() && done_mailboxes >= 3 && dead.len() < 2 {
            let victim = live.iter().find_map(|st| {
                let owner = st.lease_owner.as_deref()?;
                let index = workers
                    .iter()
                    .position(|w| w.name == owner && !dead.contains(&w.name))?;
                st.key
                    .starts_with("mailbox:")
                    .then_some((index, st.key.clone()))
            });
            if let Some((index, _)) = victim {
                let w = &mut workers[index];
                w.child.kill().unwrap();
                w.child.wait().unwrap();
                dead.insert(w.name.clone());
                // The step seen running may have finished between the look and the kill: take
                // one the dead worker still held. None (all finished in that instant): another
                // worker is killed on a later turn.
                let after = store.steps(move_id).await.unwrap();
                killed = after
                    .iter()
                    .find(|st| {
                        st.key.starts_with("mailbox:")
                            && st.state == StepState::Running
                            && st.lease_owner.as_deref() == Some(w.name.as_str())
                    })
                    .map(|st| (w.name.clone(), st.key.clone()));
            }
        }
        let (_, m) = s.get(&format!("/v1/moves/{id}"), OPERATOR).await;
        assert_ne!(m["state"], "Failed", "{m}");
        // The API shows each running step with the worker holding it and since when.
        for running in m["progress"]["running"].as_array().unwrap() {
            if workers.iter().any(|w| running["worker"] == w.name.as_str())
                && running["startedDateTime"].is_string()
            {
                api_showed_workers.insert(running["worker"].as_str().unwrap().to_string());
            }
        }
        if m["state"] == "Completed" {
            break;
        }
        assert!(Instant::now() < deadline, "the move did not complete: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let (killed_name, killed_step) =
        killed.expect("a worker was killed while it held a mailbox step");

    // The step records: every step done once; the killed worker's mailbox finished by another.
    let steps = store.steps(move_id).await.unwrap();
    assert!(steps.iter().all(|st| st.state == StepState::Done));
    let taken_over = steps.iter().find(|st| st.key == killed_step).unwrap();
    assert!(
        taken_over.attempts >= 2 && taken_over.claimed_by.as_deref() != Some(&killed_name),
        "{killed_step} resumed by another worker: {taken_over:?}"
    );
    let by_worker: BTreeMap<&str, usize> = steps.iter().fold(BTreeMap::new(), |mut acc, st| {
        *acc.entry(st.claimed_by.as_deref().unwrap_or("?"))
            .or_default() += 1;
        acc
    });
    let data_workers: BTreeSet<&str> = steps
        .iter()
        .filter(|st| st.key.starts_with("mailbox:") || st.key.starts_with("library:"))
        .filter_map(|st| st.claimed_by.as_deref())
        .collect();
    assert!(
        data_workers.len() >= 2,
        "steps ran on one worker only: {by_worker:?}"
    );
    assert!(
        most_at_once >= 2,
        "steps never ran at once (at most {most_at_once})"
    );
    assert!(
        api_showed_workers.len() >= 2,
        "the move's progress named the workers running its steps: {api_showed_workers:?}"
    );
    assert!(
        most_mailboxes_at_once <= 8,
        "the per-server cap held: {most_mailboxes_at_once} mailboxes at once"
    );

    // Seats: exactly what the 20 users need in the target; the source cancelled.
    let target_e3 = s.subscribed(&target, "ENTERPRISEPACK").await;
    assert_eq!(
        (
            target_e3["prepaidUnits"]["enabled"].as_u64(),
            target_e3["consumedUnits"].as_u64()
        ),
        (Some(MAILBOXES as u64), Some(MAILBOXES as u64))
    );
    let (_, users) = s
        .get(&format!("/v1/tenants/{target}/users?$top=100"), OPERATOR)
        .await;
    assert_eq!(users["value"].as_array().unwrap().len(), MAILBOXES);
    let (_, source_subs) = s
        .get(&format!("/v1/tenants/{source}/subscriptions"), OPERATOR)
        .await;
    assert_eq!(source_subs["value"][0]["status"], "Disabled");

    // Mail: per folder, the target holds as many messages as the source; none twice.
    let mut copied = 0;
    for i in 0..MAILBOXES {
        let src = source_mail.endpoint(&format!("user{i:02}@fabrikam.com"), "userpw");
        let mut tgt = target_mail.endpoint(&format!("user{i:02}@contoso.com"), "userpw");
        tgt.side = tenantry_mail::session::Side::Target;
        let report = tenantry_mail::verify::verify_mailbox(
            &src,
            &tgt,
            &tenantry_mail::sync::Options::default(),
        )
        .await
        .unwrap();
        assert!(report.ok(), "user{i:02}: {:?}", report.differences);
        for folder in &report.folders {
            assert_eq!(
                folder.source_count, folder.target_count,
                "user{i:02} {}: {folder:?}",
                folder.source
            );
        }
        copied += report.folders.iter().map(|f| f.target_count).sum::<usize>();
    }
    assert_eq!(copied, messages, "every message once, none twice");
    // Libraries: the same trees.
    for (src, dst) in &libraries {
        let (a, b) = (fingerprint(src), fingerprint(dst));
        assert_eq!(
            a.iter()
                .map(|(k, v)| (k.clone(), v.is_dir, v.sha256.clone()))
                .collect::<Vec<_>>(),
            b.iter()
                .map(|(k, v)| (k.clone(), v.is_dir, v.sha256.clone()))
                .collect::<Vec<_>>()
        );
    }
    eprintln!(
        "3 workers (one killed) moved {MAILBOXES} mailboxes ({messages} messages) and {LIBRARIES} libraries in {:.1} s; at most {most_at_once} steps at once; steps per worker {by_worker:?}",
        elapsed.as_secs_f64()
    );
}

#[test]
fn a_worker_refuses_a_sqlite_database_and_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let out = Command::new(binary())
        .args(["worker", "--database", &db])
        .env_remove("TENANTRY_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a PostgreSQL database"), "{err}");
    assert!(
        !dir.path().join("ledger.db").exists(),
        "refused before touching the database"
    );
    // Nothing listens there: refused before any connection, the password never shown.
    let out = Command::new(binary())
        .args([
            "worker",
            "--database",
            "postgres://t:hunter2@127.0.0.1:9/t",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("TENANTRY_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--secret-key-file") && !err.contains("hunter2"),
        "{err}"
    );
}

const SLOW_MESSAGES: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_hands_a_running_step_back_and_another_worker_takes_it_at_once() {
    let Some(db) = tenantry_testkit::postgres::postgres_database() else {
        eprintln!("skipped: PostgreSQL is not installed (Debian package postgresql)");
        return;
    };
    let db = Arc::new(db);
    let source_mail = dovecot("fabrikam.com", ("srcadmin", "srcadminpw"), false, MAILBOXES);
    let target_mail = dovecot("contoso.com", ("admin", "adminpw"), true, MAILBOXES);
    // One mailbox, slow to write: every chunk to the target waits 100 ms.
    let mut s0 = source_mail.session("user00@fabrikam.com", "userpw").await;
    for n in 0..SLOW_MESSAGES {
        let body = mail::message(&format!("slow {n}"), "", 3_000, true);
        mail::append(&mut s0, "INBOX", "", "05-Mar-2021 10:00:00 +0100", &body).await;
    }
    let slow = tenantry_testkit::faults::Proxy::start(
        target_mail.port,
        tenantry_testkit::faults::ProxyConfig {
            delay: Duration::from_millis(100),
            ..Default::default()
        },
    );
    let s = Server::start_on_with_args(db.clone(), &["--no-worker"]);
    let store = tenantry_store::open(&db.url).await.unwrap();
    let (id, _, _) = create_move(
        &s,
        1,
        &source_mail.host_url(),
        &format!("imap://127.0.0.1:{}", slow.port()),
        vec![],
    )
    .await;
    let move_id: uuid::Uuid = id.parse().unwrap();
    let work = tempfile::tempdir().unwrap();
    // The default lease (120 s): only a hand-back lets another worker in quickly.
    let mut first = Worker::start(
        &db.url,
        &s.key_file(),
        &work.path().join("first"),
        &["--grace-secs", "0"],
    );
    s.run_move(&id).await;
    let key = "mailbox:user00@fabrikam.com";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let steps = store.steps(move_id).await.unwrap();
        let step = steps.iter().find(|st| st.key == key).unwrap();
        assert_ne!(
            step.state,
            StepState::Done,
            "the mailbox finished before SIGTERM"
        );
        if step.state == StepState::Running {
            break;
        }
        assert!(Instant::now() < deadline, "the mailbox step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = Instant::now();
    let pid = first.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = first.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(30),
            "the worker did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a stopped worker exits 0: {status:?}");
    let handed = store
        .steps(move_id)
        .await
        .unwrap()
        .into_iter()
        .find(|st| st.key == key)
        .unwrap();
    assert_eq!(
        (handed.state, handed.lease_owner.as_deref(), handed.attempts),
        (StepState::Pending, None, 0),
        "handed back, the attempt not counted: {handed:?}"
    );

    let second = Worker::start(&db.url, &s.key_file(), &work.path().join("second"), &[]);
    let taken = Instant::now();
    loop {
        let steps = store.steps(move_id).await.unwrap();
        let step = steps.iter().find(|st| st.key == key).unwrap();
        if step.claimed_by.as_deref() == Some(&second.name) {
            break;
        }
        assert!(
            taken.elapsed() < Duration::from_secs(30),
            "the handed-back step waited as if for its lease: {step:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&s, &id, "Completed", Duration::from_secs(240)).await;
    // The interrupted mailbox is whole on the target, nothing twice.
    let src = source_mail.endpoint("user00@fabrikam.com", "userpw");
    let mut tgt = target_mail.endpoint("user00@contoso.com", "userpw");
    tgt.side = tenantry_mail::session::Side::Target;
    let report =
        tenantry_mail::verify::verify_mailbox(&src, &tgt, &tenantry_mail::sync::Options::default())
            .await
            .unwrap();
    assert!(report.ok(), "{:?}", report.differences);
    assert_eq!(
        report.folders.iter().map(|f| f.target_count).sum::<usize>(),
        SLOW_MESSAGES
    );
}
