//! Test harness: the real router (API + admin center) on a temporary SQLite file and a free
//! loopback port, in this process.
#![allow(dead_code)]

pub mod webdriver;

use std::sync::Arc;
use tenantry_api::{clock::Clock, ensure_operator_token, router_with, AppState};

pub const OPERATOR: &str = "op_web_test_token_for_this_run_only";

pub struct Server {
    pub base: String,
    pub app: AppState,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let store: Arc<dyn tenantry_store::Store> =
            tenantry_store::open(&url).expect("open the store");
        let app = AppState::new(store, Clock::adjustable());
        ensure_operator_token(&app, Some(OPERATOR))
            .await
            .expect("operator token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let router = router_with(app.clone(), tenantry_web::routes());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Server {
            base: format!("http://{addr}"),
            app,
            _dir: dir,
        }
    }
}

/// Where screenshots go: `$TENANTRY_TEST_OUTPUT`, or `target/test-output/web/`.
pub fn output_dir() -> std::path::PathBuf {
    let dir = match std::env::var_os("TENANTRY_TEST_OUTPUT") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-output/web")
        }
    };
    std::fs::create_dir_all(&dir).expect("create the test output folder");
    dir
}
