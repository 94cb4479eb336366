//! `--batch` files as spreadsheets write them: a byte-order mark, `;` between fields, a header,
//! quoted passwords holding `;` and `,`, CRLF. Run through the `tenantry-mail` binary.

use std::process::{Command, Output};

use tenantry_testkit::dovecot::{append, message, Config, Dovecot};

fn tenantry_mail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_spreadsheet_batch_file_is_read_and_a_bad_line_is_named() {
    let mut source = Config::source();
    source.users = vec![("alice", "se;cret,1")];
    let (src, tgt) = (Dovecot::start(source), Dovecot::start(Config::target()));
    let mut s = src.session("alice", "se;cret,1").await;
    append(
        &mut s,
        "INBOX",
        "",
        "01-Jan-2024 00:00:00 +0000",
        &message("from a spreadsheet", "", 500, true),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (src_url, tgt_url) = (src.host_url(), tgt.host_url());
    let run = |csv: &[u8]| {
        let batch = tmp.path().join("users.csv");
        std::fs::write(&batch, csv).unwrap();
        tenantry_mail(&[
            "migrate",
            "--source",
            &src_url,
            "--target",
            &tgt_url,
            "--batch",
            batch.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--quiet",
        ])
    };

    let out = run(
        b"\xEF\xBB\xBFSource user;Target user;Source password;Target password\r\n\
          alice;alice;\"se;cret,1\";alicepw2\r\n;;;\r\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut t = tgt.session("alice", "alicepw2").await;
    let inbox = t.select("INBOX", false).await.unwrap();
    assert_eq!(inbox.exists, 1);

    // Line 3 has one field: named by line, and the passwords on line 2 are not echoed.
    let out = run(b"source,target\nalice,alice,\"se;cret,1\",alicepw2\nbob\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("users.csv: line 3: expected source_user,target_user"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("se;cret") && !stderr.contains("alicepw2"),
        "{stderr}"
    );
}
