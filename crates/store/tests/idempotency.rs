//! Idempotency keys on a real SQLite file: they expire by age, newer ones stay.

use tenantry_ledger::Timestamp;
use tenantry_store::{IdempotencyBegin, LedgerStore, SqliteStore, StoredResponse};

#[tokio::test]
async fn keys_older_than_the_cutoff_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("i.db")).unwrap();
    let day = 24 * 3600;
    for (key, at) in [("old", 1_000), ("new", 1_000 + day)] {
        let begin = store
            .idempotency_begin("operator".into(), key.into(), "h".into(), Timestamp(at))
            .await
            .unwrap();
        assert!(matches!(begin, IdempotencyBegin::Proceed));
        store
            .idempotency_finish(
                "operator".into(),
                key.into(),
                Some(StoredResponse {
                    status: 201,
                    body: "{}".into(),
                }),
            )
            .await
            .unwrap();
    }
    let removed = store
        .idempotency_expire(Timestamp(1_000 + day))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let later = Timestamp(1_000 + day + 1);
    // The old key starts afresh; the new one still replays.
    let old = store
        .idempotency_begin("operator".into(), "old".into(), "other".into(), later)
        .await
        .unwrap();
    assert!(matches!(old, IdempotencyBegin::Proceed));
    let new = store
        .idempotency_begin("operator".into(), "new".into(), "h".into(), later)
        .await
        .unwrap();
    assert!(matches!(new, IdempotencyBegin::Replay(r) if r.status == 201));
}
