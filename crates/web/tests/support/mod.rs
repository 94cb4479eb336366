//! Test harness: the real router (API + admin center) on a free loopback port, in this process,
//! on the database `TENANTRY_TEST_DATABASE` chooses (`tenantry_testkit::postgres`: a fresh
//! PostgreSQL database, or by default a temporary SQLite file).
#![allow(dead_code)]

pub mod webdriver;

use std::sync::Arc;
use tenantry_api::{clock::Clock, ensure_operator_token, router_with, AppState};
use tenantry_mover::gather::Mover;
use tenantry_mover::runner::Runner;
use tenantry_mover::secrets::Sealer;

pub const OPERATOR: &str = "op_web_test_token_for_this_run_only";

pub struct Server {
    pub base: String,
    pub app: AppState,
    /// The move worker's mover: tests start the worker when they want steps to run.
    pub mover: Arc<Mover>,
    /// The database's URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _database: Option<tenantry_testkit::postgres::TestDatabase>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(true).await
    }

    /// `moves`: whether the server has tenant moves enabled (`AppState::mover`).
    pub async fn start_with(moves: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = tenantry_testkit::postgres::database_from_env();
        let url = match &database {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("ledger.db").display()),
        };
        let mut server = Self::start_on(&url, dir.path(), moves).await;
        server._dir = Some(dir);
        server._database = database;
        server
    }

    /// Another server on this one's database, with nothing of this one in memory: what a
    /// restart (or a second process behind the same load balancer) sees.
    pub async fn restarted(&self) -> Server {
        let dir = self._dir.as_ref().map(|d| d.path().to_path_buf());
        Self::start_on(&self.url, &dir.unwrap_or_default(), true).await
    }

    async fn start_on(url: &str, dir: &std::path::Path, moves: bool) -> Server {
        let store: Arc<dyn tenantry_store::Store> =
            tenantry_store::open(url).await.expect("open the store");
        // Moves without data engines: ledger-only moves run, mail and libraries are refused.
        let mover = Arc::new(Mover {
            store: store.clone(),
            engines: Arc::new(tenantry_mover::engines::NoData),
            sealer: Sealer::from_key([7; 32]),
            data_dir: dir.join("data"),
        });
        let app = AppState::with_mover(store, Clock::adjustable(), moves.then(|| mover.clone()));
        ensure_operator_token(&app, Some(OPERATOR))
            .await
            .expect("operator token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let router = router_with(app.clone(), tenantry_web::routes());
        // The server's own accept loop: requests carry the client's address, as in `serve`.
        tokio::spawn(tenantry_api::server::serve(
            listener,
            router,
            tenantry_api::server::Limits::default(),
            std::future::pending(),
        ));
        Server {
            base: format!("http://{addr}"),
            app,
            mover,
            url: url.to_string(),
            _dir: None,
            _database: None,
        }
    }

    /// Starts the move worker (as `tenantry serve` does): running moves make progress from now.
    pub fn start_move_worker(&self) {
        let app = self.app.clone();
        Arc::new(Runner {
            mover: self.mover.clone(),
            worker: "web-test".into(),
            clock: Arc::new(move || app.clock.now()),
            limits: Default::default(),
        })
        .spawn();
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
