//! A hostile IMAP server must not be able to bring tenantry down: whatever it sends, the run
//! ends with an error message and a non-zero exit, never a crash.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use tenantry_testkit::faults::{kind, record};
use tenantry_testkit::hostile::ImapServer;

/// `tenantry-mail migrate` from `source` into a port where nothing listens (the source fails
/// first), with the given passwords in the environment.
fn migrate_from(source_port: u16) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_tenantry-mail"))
        .args([
            "migrate",
            "--source",
            &format!("imap://alice@127.0.0.1:{source_port}"),
            "--target",
            &format!("imap://alice@127.0.0.1:{source_port}"),
            "--quiet",
        ])
        .arg("--state-dir")
        .arg(tmp.path())
        .env("TENANTRY_SOURCE_PASSWORD", "pw")
        .env("TENANTRY_TARGET_PASSWORD", "pw")
        .output()
        .unwrap()
}

fn nested(n: usize) -> Vec<u8> {
    let mut v = vec![b'('; n];
    v.extend(std::iter::repeat_n(b')', n));
    v
}

#[test]
fn nested_lists_in_the_greeting_are_an_error_not_a_crash() {
    // About 40 KB before any password is sent: this aborted the process with a stack overflow.
    let server = ImapServer::start(|c| {
        let mut greeting = b"* OK [".to_vec();
        greeting.extend(nested(20_000));
        greeting.extend_from_slice(b"] hello\r\n");
        c.send(&greeting)
    });
    let out = migrate_from(server.port());
    assert_eq!(
        out.status.signal(),
        None,
        "killed by a signal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("nested deeper"), "{said}");
    record(
        kind::BAD_INPUT,
        "mail: IMAP greeting with lists nested 20,000 deep (stack overflow before the fix)",
        "a clear error and exit 1, no crash",
        0,
    );
}

#[test]
fn nested_lists_after_login_are_an_error_not_a_crash() {
    let server = ImapServer::start(|c| {
        c.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")?;
        c.serve(|tag, _| {
            let mut answer = b"* LIST ".to_vec();
            answer.extend(nested(100_000));
            answer.extend_from_slice(b" \"/\" INBOX\r\n");
            answer.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            answer
        })
    });
    let out = migrate_from(server.port());
    assert_eq!(
        out.status.signal(),
        None,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(server.connections() >= 1);
}
