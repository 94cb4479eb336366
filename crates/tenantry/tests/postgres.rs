//! `serve` on PostgreSQL: what a shared database asks of the command line, and two server
//! processes on one database keeping the ledger exact.

mod support;

use std::process::Command;
use std::sync::Arc;
use support::{assert_problem, binary, Server, E3, OPERATOR};

/// Runs `serve` with `args` and returns what it printed on stderr (it must exit at once).
fn refused(args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("serve")
        .args(args)
        .env_remove("TENANTRY_SECRET_KEY")
        .env_remove("TENANTRY_DATABASE")
        .output()
        .expect("run tenantry serve");
    assert!(!out.status.success(), "serve {args:?} must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_postgres_database_needs_a_data_dir_and_a_shared_key() {
    // Nothing listens there: the command line is refused before any connection is tried.
    let url = "postgres://tenantry:hunter2@127.0.0.1:9/tenantry";
    let dir = tempfile::tempdir().unwrap();
    let no_dir = refused(&["--database", url]);
    assert!(no_dir.contains("--data-dir"), "{no_dir}");
    let data = dir.path().to_str().unwrap();
    let no_key = refused(&["--database", url, "--data-dir", data]);
    assert!(
        no_key.contains("--secret-key-file") && no_key.contains("TENANTRY_SECRET_KEY"),
        "{no_key}"
    );
    let missing = dir.path().join("missing.key");
    let no_file = refused(&[
        "--database",
        url,
        "--data-dir",
        data,
        "--secret-key-file",
        missing.to_str().unwrap(),
    ]);
    assert!(no_file.contains("does not exist"), "{no_file}");
    for message in [no_dir, no_key, no_file] {
        assert!(
            !message.contains("hunter2"),
            "the password never shows: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_grant_exactly_the_free_seats() {
    let Some(db) = tenantry_testkit::postgres::postgres_database() else {
        eprintln!("skipped: PostgreSQL is not installed (Debian package postgresql)");
        return;
    };
    let db = Arc::new(db);
    let (a, b) = (
        Arc::new(Server::start_on(Some(db.clone()))),
        Arc::new(Server::start_on(Some(db.clone()))),
    );
    let t = a.tenant("Rush").await;
    a.subscription(&t, "ENTERPRISEPACK", 50).await;
    let admin = a.token(&t, "LicenseAdmin").await;
    let mut users = Vec::new();
    for i in 0..200 {
        users.push(a.user(&t, &format!("u{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, user) in users.into_iter().enumerate() {
        // Half the requests to each process: the database alone decides.
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (t, admin) = (t.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            s.assign(&t, &user, E3, &admin).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        let result = task.await.unwrap();
        match result.0.as_u16() {
            200 => ok += 1,
            409 => {
                assert_problem(&result, 409, "NoFreeSeat");
                refused += 1
            }
            other => panic!("unexpected {other}: {}", result.1),
        }
    }
    assert_eq!((ok, refused), (50, 150));
    for s in [&a, &b] {
        let sku = s.subscribed(&t, "ENTERPRISEPACK").await;
        assert_eq!(sku["consumedUnits"], 50, "both servers see the same ledger");
    }
    let (_, log) = b
        .get(
            &format!("/v1/tenants/{t}/auditLogs?action=user.licensesChanged&$top=1000"),
            OPERATOR,
        )
        .await;
    assert_eq!(log["value"].as_array().unwrap().len(), 50);
}
