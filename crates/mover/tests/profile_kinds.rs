//! A connection profile's secret goes only to the kind of place it was made for: one check,
//! `InvalidProfileKind`, whichever place asks (IMAP, CalDAV/CardDAV, WebDAV library, Graph).

use std::sync::Arc;
use tenantry_ledger::Timestamp;
use tenantry_mover::engines::NoData;
use tenantry_mover::gather::Mover;
use tenantry_mover::graph_profile::GraphProfile;
use tenantry_mover::secrets::Sealer;
use tenantry_moves::model::{DavServer, MailServer};
use tenantry_store::StoreError;

const NOW: Timestamp = Timestamp(1_800_000_000);

fn refused<T>(result: Result<T, StoreError>, what: &str) -> String {
    match result {
        Err(StoreError::Ledger(e)) => {
            assert_eq!(e.code, "InvalidProfileKind", "{what}: {}", e.detail);
            e.detail
        }
        Err(e) => panic!("{what}: {e:?}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[tokio::test]
async fn a_profile_is_refused_by_kind_wherever_it_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mover = Mover {
        store: tenantry_store::open(&url).await.unwrap(),
        engines: Arc::new(NoData),
        sealer: Sealer::from_key([7; 32]),
        data_dir: dir.path().join("data"),
    };
    mover
        .create_profile("imap", "imap", "admin", "imap-password-1", NOW)
        .await
        .unwrap();
    let app = GraphProfile::new("t", "c", Some("graph-secret-1"), None, None, None).unwrap();
    mover.create_graph_profile("app", &app, NOW).await.unwrap();

    let detail = refused(
        mover.graph_profile("imap").await,
        "graph from an imap profile",
    );
    assert!(detail.contains("profile imap is of kind imap"), "{detail}");
    let dav = DavServer {
        url: "caldav://127.0.0.1/".into(),
        profile: "app".into(),
    };
    let mail = MailServer {
        url: "imap://127.0.0.1".into(),
        profile: "app".into(),
    };
    for detail in [
        refused(mover.dav_access(&dav).await, "dav from a graph profile"),
        refused(mover.mail_access(&mail).await, "imap from a graph profile"),
    ] {
        assert!(detail.contains("of kind graph"), "{detail}");
        assert!(!detail.contains("graph-secret-1"), "{detail}");
    }
    // The right kinds open.
    assert_eq!(mover.graph_profile("app").await.unwrap().client_id, "c");
    let mail = MailServer {
        url: "imap://127.0.0.1".into(),
        profile: "imap".into(),
    };
    let access = mover.mail_access(&mail).await.unwrap();
    assert_eq!(access.password.0, "imap-password-1");
}
