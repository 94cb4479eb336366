//! A fleet for whole-move runs on PostgreSQL: Dovecot servers with `n` users, seeded mailboxes,
//! `tenantry worker` processes, a retire-source move of them (shared by `tests/workers.rs` and
//! the move benchmark, `benches/moves.rs`).

use super::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tenantry_testkit::dovecot as mail;

pub fn users(domain: &str, mailboxes: usize) -> Vec<(&'static str, &'static str)> {
    (0..mailboxes)
        .map(|i| {
            (
                &*Box::leak(format!("user{i:02}@{domain}").into_boxed_str()),
                "userpw",
            )
        })
        .collect()
}

pub fn dovecot(
    domain: &str,
    master: (&'static str, &'static str),
    target: bool,
    mailboxes: usize,
) -> mail::Dovecot {
    let base = if target {
        mail::Config::target()
    } else {
        mail::Config::source()
    };
    mail::Dovecot::start(mail::Config {
        users: users(domain, mailboxes),
        master: Some(master),
        ..base
    })
}

/// `messages(i)` small messages in mailbox `i`, in INBOX and Sent, plus one exact duplicate
/// pair each; returns how many were appended.
pub async fn seed_mail(
    server: &mail::Dovecot,
    mailboxes: usize,
    messages: impl Fn(usize) -> usize,
) -> usize {
    let mut total = 0;
    for i in 0..mailboxes {
        let mut s = server
            .session(&format!("user{i:02}@fabrikam.com"), "userpw")
            .await;
        for n in 0..messages(i) {
            let body = mail::message(&format!("user{i} message {n}"), "", 1_500 + n * 200, true);
            let folder = if n % 3 == 0 { "Sent" } else { "INBOX" };
            mail::append(&mut s, folder, "", "05-Mar-2021 10:00:00 +0100", &body).await;
            total += 1;
        }
        let dup = mail::message(&format!("user{i} duplicate"), "", 800, true);
        mail::append(&mut s, "INBOX", "", "06-Mar-2021 10:00:00 +0100", &dup).await;
        mail::append(&mut s, "INBOX", "", "06-Mar-2021 10:00:00 +0100", &dup).await;
        total += 2;
    }
    total
}

/// A `tenantry worker` process and the name it claims steps under.
pub struct Worker {
    pub child: Child,
    pub name: String,
}

impl Worker {
    pub fn start(
        database: &str,
        key: &std::path::Path,
        data_dir: &std::path::Path,
        args: &[&str],
    ) -> Worker {
        let mut child = Command::new(binary())
            .args(["worker", "--database", database, "--secret-key-file"])
            .arg(key)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("TENANTRY_SECRET_KEY")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tenantry worker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = lines.next().expect("the worker prints its name").unwrap();
        let name = banner
            .strip_prefix("tenantry worker ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected banner: {banner}"))
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Worker { child, name }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two tenants, `users` licensed users in the source, the mail profiles, and a retire-source move
/// of them (Draft, plan runnable). Returns (move id, source tenant, target tenant).
pub async fn create_move(
    s: &Server,
    users: usize,
    source_mail: &str,
    target_mail: &str,
    libraries: Vec<Value>,
) -> (String, String, String) {
    let aliases: Vec<String> = (0..users).map(|i| format!("user{i:02}")).collect();
    let (source, target) = s.move_tenants(&aliases, users as u32 + 5, 3).await;
    s.profiles(&MAIL_PROFILES).await;
    let id = s
        .create_move(json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "retire-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "sourceMail": {"url": source_mail, "profile": "src-imap"},
            "targetMail": {"url": target_mail, "profile": "dst-imap"},
            "libraries": libraries,
        }))
        .await;
    s.runnable_plan(&id).await;
    (id, source, target)
}

/// Waits for the move to reach `state` (never Failed).
pub async fn wait_for(s: &Server, id: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, m) = s.get(&format!("/v1/moves/{id}"), OPERATOR).await;
        assert_ne!(m["state"], "Failed", "{m}");
        if m["state"] == state {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the move did not become {state}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
