//! A deterministic mail corpus: mostly short and medium text messages, a few with an
//! attachment, spread over folders and flags — and small enough that 2,000 messages stay below
//! one mailbox's upload budget, so the run measures the engine against the concurrency limit
//! rather than a 5-minute wait both sides must make.

use base64::Engine;

/// IMAP folder (source side) and the Exchange folder it becomes: a well-known name or a
/// folder created below the top of the mailbox.
pub const FOLDERS: &[(&str, &str)] = &[
    ("INBOX", "inbox"),
    ("INBOX", "inbox"),
    ("INBOX", "inbox"),
    ("Sent", "sentitems"),
    ("Archive/2024", "Archive 2024"),
    ("Projekte/Übersicht", "Projekte Übersicht"),
];

pub const FLAGS: &[&str] = &[
    "",
    "\\Seen",
    "\\Seen \\Answered",
    "\\Seen \\Flagged",
    "\\Seen $Label1",
];

pub struct Message {
    /// Index into [`FOLDERS`].
    pub folder: usize,
    pub flags: &'static str,
    pub date: String,
    pub data: Vec<u8>,
}

/// Deterministic pseudo-random numbers (xorshift), so every run has the same corpus.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn text(rng: &mut Rng, len: usize) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789     ";
    let mut s = String::with_capacity(len + len / 38);
    while s.len() < len {
        for _ in 0..76 {
            s.push(ALPHA[rng.below(ALPHA.len() as u64) as usize] as char);
        }
        s.push_str("\r\n");
    }
    s
}

/// 80% 2–25 KB, 17% 25–150 KB, 3% a text and an attachment of 50–600 KB.
pub fn generate(n: usize) -> Vec<Message> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let head = format!(
                "Received: from mx.example.org by mail.example.org; Tue, 5 Mar 2024 09:{m:02}:00 +0100\r\n\
                 From: User {i} <u{i}@example.org>\r\nTo: Team <team@example.org>\r\n\
                 Subject: Report {i} – Übersicht\r\nDate: Tue, 5 Mar 2024 09:{m:02}:00 +0100\r\n\
                 Message-ID: <bench.{i}@example.org>\r\nMIME-Version: 1.0\r\n",
                m = i % 60
            );
            let roll = rng.below(100);
            let body = if roll < 97 {
                let len = if roll < 80 {
                    2_000 + rng.below(23_000)
                } else {
                    25_000 + rng.below(125_000)
                };
                format!(
                    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}",
                    text(&mut rng, len as usize)
                )
            } else {
                let att: Vec<u8> = (0..50_000 + rng.below(550_000))
                    .map(|_| rng.next() as u8)
                    .collect();
                let b64 = base64::engine::general_purpose::STANDARD.encode(att);
                let lines: Vec<&str> = b64
                    .as_bytes()
                    .chunks(76)
                    .map(|c| std::str::from_utf8(c).unwrap_or_default())
                    .collect();
                format!(
                    "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n--b{i}\r\n\
                     Content-Type: application/pdf; name=\"report-{i}.pdf\"\r\n\
                     Content-Disposition: attachment; filename=\"report-{i}.pdf\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b{i}--\r\n",
                    text(&mut rng, 1_500),
                    lines.join("\r\n")
                )
            };
            Message {
                folder: rng.below(FOLDERS.len() as u64) as usize,
                flags: FLAGS[rng.below(FLAGS.len() as u64) as usize],
                date: format!("{:02}-Mar-2024 {:02}:{:02}:00 +0100", 1 + i % 28, i % 24, i % 60),
                data: (head + &body).into_bytes(),
            }
        })
        .collect()
}
