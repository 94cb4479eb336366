//! A step's progress on its way to the database: the engine's last counts are stored when it
//! ends, however soon; a worker that no longer holds the step stores nothing, and the engine's
//! outcome is never changed by progress.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{claimed_step, NOW};
use tenantry_app::progress::Counts;
use tenantry_app::Ledger;
use tenantry_mover::progress::{reporting, Target};

fn target(ledger: &Ledger, move_id: uuid::Uuid, key: &str, worker: &str) -> Target {
    Target {
        ledger: ledger.clone(),
        worker: worker.into(),
        clock: Arc::new(|| NOW),
        move_id,
        key: key.into(),
    }
}

fn counts(n: u64) -> Counts {
    Counts {
        items_done: n,
        items_total: Some(500),
        bytes_done: n * 1000,
        bytes_total: Some(500_000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_counts_are_stored_when_the_engine_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, id, key) = claimed_step(&dir).await;
    // Hundreds of reports well within the first second, then the end: the last is stored.
    let outcome = reporting(target(&ledger, id, &key, "w"), |sink| async move {
        for n in 1..=500 {
            sink.report(counts(n));
        }
        "engine done"
    })
    .await;
    assert_eq!(outcome, "engine done");
    let stored = ledger.store().step_progress(id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].items_done, stored[0].items_total),
        (500, Some(500))
    );
    assert_eq!(stored[0].bytes_done, 500_000);

    // A longer run: what is stored meanwhile is what the engine said last, at most a second ago.
    let dir2 = tempfile::tempdir().unwrap();
    let (ledger, id, key) = claimed_step(&dir2).await;
    let read = ledger.clone();
    reporting(target(&ledger, id, &key, "w"), |sink| async move {
        sink.report(counts(7));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let stored = read.store().step_progress(id).await.unwrap();
            if let Some(p) = stored.first() {
                assert_eq!(p.items_done, 7);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing stored while running"
            );
        }
        sink.report(counts(9));
    })
    .await;
    assert_eq!(
        ledger.store().step_progress(id).await.unwrap()[0].items_done,
        9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_lease_stores_nothing_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, id, key) = claimed_step(&dir).await;
    let outcome = reporting(
        target(&ledger, id, &key, "not-the-holder"),
        |sink| async move {
            sink.report(counts(3));
            Ok::<_, String>(42)
        },
    )
    .await;
    assert_eq!(outcome, Ok(42));
    assert!(ledger.store().step_progress(id).await.unwrap().is_empty());
}
