//! The command-line client against a real server.

mod support;

use std::process::{Command, Output};
use support::*;

fn tenantry(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("TENANTRY_SERVER", &server.base)
        .env("TENANTRY_TOKEN", token)
        .env_remove("TENANTRY_TENANT")
        .output()
        .expect("run tenantry")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_buys_assigns_and_reports_in_tables_and_json() {
    let s = Server::start();
    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "tenant",
            "create",
            "--name",
            "Fabrikam",
            "--domain",
            "fabrikam.onmicrosoft.com",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tenant: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = tenant["id"].as_str().unwrap();

    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "subscription",
            "create",
            "--tenant",
            t,
            "--sku",
            "ENTERPRISEPACK",
            "--quantity",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ENTERPRISEPACK"));
    assert!(stdout(&out).contains("Charged now:"));

    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "user",
            "create",
            "--tenant",
            t,
            "--upn",
            "megan@fabrikam.com",
            "--name",
            "Megan",
            "--location",
            "fr",
            "--json",
        ],
    );
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["usageLocation"], "FR");
    let u = user["id"].as_str().unwrap();

    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "license",
            "assign",
            "--tenant",
            t,
            "--user",
            u,
            "--sku",
            "ENTERPRISEPACK",
            "--disable",
            "TEAMS1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tenantry(
        &s,
        OPERATOR,
        &["license", "show", "--tenant", t, "--user", u],
    );
    assert!(stdout(&out).contains("TEAMS1"), "{}", stdout(&out));
    let out = tenantry(&s, OPERATOR, &["license", "summary", "--tenant", t]);
    let summary = stdout(&out);
    let row = summary
        .lines()
        .find(|l| l.starts_with("ENTERPRISEPACK"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["ENTERPRISEPACK", "Enabled", "1", "1", "0"]
    );

    // The next assignment has no seat: a clear message and a non-zero exit.
    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "user",
            "create",
            "--tenant",
            t,
            "--upn",
            "lee@fabrikam.com",
            "--name",
            "Lee",
            "--location",
            "US",
            "--json",
        ],
    );
    let lee: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "license",
            "assign",
            "--tenant",
            t,
            "--user",
            lee["id"].as_str().unwrap(),
            "--sku",
            "ENTERPRISEPACK",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no free licence of ENTERPRISEPACK"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("NoFreeSeat"));

    let out = tenantry(&s, OPERATOR, &["audit", "list", "--tenant", t]);
    assert!(stdout(&out).contains("user.licensesChanged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_transfer_explains_why_not_and_what_to_do() {
    let s = Server::start();
    let t = s.tenant("Contoso").await;
    let sub = s.subscription(&t, "ENTERPRISEPACK", 3).await;
    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "subscription",
            "transfer",
            "--tenant",
            &t,
            sub["id"].as_str().unwrap(),
            "--to",
            "other",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("cannot be transferred"), "{text}");
    assert!(text.contains("Volume Licensing Service Center"));
    assert!(text.contains("tenantry move plan"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_clear_and_exit_non_zero() {
    let s = Server::start();
    let out = tenantry(&s, "", &["tenant", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("TENANTRY_TOKEN"), "{}", stderr(&out));

    let out = tenantry(
        &s,
        OPERATOR,
        &["tenant", "list", "--server", "http://127.0.0.1:9"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the tenantry server"),
        "{}",
        stderr(&out)
    );

    let t = s.tenant("Errs").await;
    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "subscription",
            "create",
            "--tenant",
            &t,
            "--sku",
            "NOT_A_SKU",
            "--quantity",
            "1",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tenantry sku list"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_revokes_a_token() {
    let s = Server::start();
    let tenant = s.tenant("Revokers").await;
    let out = tenantry(
        &s,
        OPERATOR,
        &[
            "token",
            "create",
            "--tenant",
            &tenant,
            "--role",
            "GlobalReader",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (token, id) = (
        created["token"].as_str().unwrap(),
        created["id"].as_str().unwrap(),
    );
    assert!(tenantry(&s, token, &["tenant", "show", &tenant])
        .status
        .success());
    let out = tenantry(&s, OPERATOR, &["token", "revoke", "--tenant", &tenant, id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Revoked"));
    let refused = tenantry(&s, token, &["tenant", "show", &tenant]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not valid"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_move_reads_a_users_file_as_a_spreadsheet_writes_it() {
    let s = Server::start();
    let (source, target) = (s.tenant("Litware").await, s.tenant("Tailspin").await);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("users.csv");
    let create = |csv: &[u8]| {
        std::fs::write(&file, csv).unwrap();
        tenantry(
            &s,
            OPERATOR,
            &[
                "move",
                "create",
                "--source",
                &source,
                "--target",
                &target,
                "--path",
                "keep-source",
                "--users",
                file.to_str().unwrap(),
                "--json",
            ],
        )
    };
    // Excel's "CSV UTF-8" in a `;` locale: byte-order mark, header, quotes, CRLF.
    let out = create(
        b"\xEF\xBB\xBFSource UPN;Target UPN\r\n\"adele@litware.com\";adele@tailspin.com\r\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created["spec"]["users"],
        serde_json::json!([{"sourceUpn": "adele@litware.com", "targetUpn": "adele@tailspin.com"}])
    );

    // A bad row, and a file in a legacy code page: each named by its line.
    let out = create(b"a@litware.com,a@tailspin.com\n\nb@litware.com\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    let out = create(b"a@litware.com,a@tailspin.com\nb\xE9@litware.com,b@tailspin.com\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("users.csv: line 2: not valid UTF-8"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_move_names_caldav_and_carddav_servers_with_their_profiles() {
    let s = Server::start();
    let (source, target) = (s.tenant("Litware").await, s.tenant("Tailspin").await);
    let create = |extra: &[&str]| {
        let mut args = vec![
            "move",
            "create",
            "--source",
            &source,
            "--target",
            &target,
            "--path",
            "retire-source",
            "--json",
        ];
        args.extend_from_slice(extra);
        tenantry(&s, OPERATOR, &args)
    };
    let out = create(&[
        "--source-caldav",
        "caldavs://dav.litware.com/",
        "--source-caldav-profile",
        "litware-dav",
        "--target-caldav",
        "caldavs://dav.tailspin.com:8443/dav/",
        "--target-caldav-profile",
        "tailspin-dav",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created["spec"]["sourceCaldav"],
        serde_json::json!({"url": "caldavs://dav.litware.com/", "profile": "litware-dav"})
    );
    assert_eq!(created["spec"]["targetCaldav"]["profile"], "tailspin-dav");
    assert!(created["spec"].get("sourceCarddav").is_none());

    // A URL of another kind: the server's refusal, naming the field; a URL without its
    // profile: refused before anything is sent.
    let out = create(&[
        "--source-carddav",
        "https://dav.litware.com/",
        "--source-carddav-profile",
        "litware-dav",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sourceCarddav: the URL must start with carddavs://"),
        "{}",
        stderr(&out)
    );
    let out = create(&["--target-carddav", "carddavs://dav.tailspin.com/"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--target-carddav-profile"),
        "{}",
        stderr(&out)
    );
}
