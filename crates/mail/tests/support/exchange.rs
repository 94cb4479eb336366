//! The IMAP → Exchange tests' shared parts: a Dovecot source, the CLI pointed at the fake
//! Graph's mailbox, MIME messages with attachments.

use base64::Engine;
use tenantry_testkit::graph_fake::{CLIENT_ID, CLIENT_SECRET, TENANT};

use tenantry_testkit::graph_fake::FakeGraph;

use super::{cli, secret_file, Dovecot};

pub const UPN: &str = "alice@contoso.com";

pub fn attachment_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

pub fn with_attachment(subject: &str, att: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(att);
    let wrapped: Vec<String> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "Received: from mx.example.org by mail.example.org; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         From: Carol <carol@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 09:59:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\
         X-Custom: kept\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n\
         --XX\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--XX--\r\n",
        wrapped.join("\r\n")
    )
    .into_bytes()
}

pub struct Run {
    pub dove: Dovecot,
    pub tmp: tempfile::TempDir,
}

impl Run {
    pub fn args(&self, verb: &str, extra: &[&str]) -> Vec<String> {
        let d = self.tmp.path();
        let mut a: Vec<String> = vec![
            verb.into(),
            "--source".into(),
            self.dove.url("alice"),
            "--target".into(),
            format!("exchange://{UPN}"),
            "--source-password-file".into(),
            secret_file(d, "spw", "alicepw\n").display().to_string(),
            "--tenant-id".into(),
            TENANT.into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret-file".into(),
            secret_file(d, "secret", CLIENT_SECRET)
                .display()
                .to_string(),
            "--quiet".into(),
        ];
        if verb == "migrate" {
            a.push("--state-dir".into());
            a.push(d.join("state").display().to_string());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }
    pub async fn run(&self, verb: &str, extra: &[&str]) -> u8 {
        let a = self.args(verb, extra);
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
}

/// Each message of the mailbox exactly once (by SourceSha256), and none a draft.
pub fn assert_each_once(fake: &FakeGraph, expected: usize) {
    let msgs = fake.mail_messages(UPN);
    let mut shas: Vec<String> = msgs
        .iter()
        .map(|m| {
            m.property(tenantry_mail::exchange::message::SOURCE_SHA256)
                .unwrap()
                .to_string()
        })
        .collect();
    shas.sort();
    shas.dedup();
    assert_eq!(msgs.len(), expected, "every message");
    assert_eq!(shas.len(), expected, "none twice");
    assert!(
        msgs.iter().all(|m| !m.is_draft),
        "received mail, never drafts"
    );
}

/// A Graph client with the fake's app credentials (TENANTRY_GRAPH_URL / TENANTRY_AUTHORITY set).
pub fn fake_graph_client() -> tenantry_graph::GraphClient {
    tenantry_graph::GraphClient::new(
        tenantry_graph::GraphConfig::from_env(
            TENANT,
            CLIENT_ID,
            tenantry_graph::ClientSecret::new(CLIENT_SECRET),
        ),
        reqwest::Client::new(),
    )
}
