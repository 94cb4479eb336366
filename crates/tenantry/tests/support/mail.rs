//! Mailboxes on real Dovecot servers for the move tests: a source and a target server with the
//! movers' mailboxes, mail seeded in the source, and the check that every mailbox arrived
//! identical.

use tenantry_testkit::dovecot as mail;

/// Every mailbox's password.
pub const PASSWORD: &str = "userpw";

/// A Dovecot with a mailbox `alias@domain` for each alias and a master user: the source layout
/// ('/', "Sent") or the Exchange-like target ('.', "Sent Items").
pub fn dovecot(
    aliases: &[&str],
    domain: &str,
    master: (&'static str, &'static str),
    target: bool,
) -> mail::Dovecot {
    let users: Vec<(&'static str, &'static str)> = aliases
        .iter()
        .map(|u| {
            (
                &*Box::leak(format!("{u}@{domain}").into_boxed_str()),
                PASSWORD,
            )
        })
        .collect();
    let base = if target {
        mail::Config::target()
    } else {
        mail::Config::source()
    };
    mail::Dovecot::start(mail::Config {
        users,
        master: Some(master),
        ..base
    })
}

/// Fills each `alias@domain` mailbox: 30 messages and 5 more per alias before it, in INBOX and
/// Sent, with flags and keywords, plus an exact duplicate and a message without Message-ID.
/// Returns how many messages were stored.
pub async fn seed_mail(server: &mail::Dovecot, aliases: &[&str], domain: &str) -> usize {
    let mut total = 0;
    for (i, u) in aliases.iter().enumerate() {
        let mut s = server.session(&format!("{u}@{domain}"), PASSWORD).await;
        for n in 0..(30 + i * 5) {
            let body = mail::message(
                &format!("{u} message {n}"),
                "",
                40_000 + n * 3_000,
                n % 7 != 0,
            );
            let (folder, flags) = if n % 4 == 0 {
                ("Sent", "\\Seen")
            } else {
                ("INBOX", if n % 3 == 0 { "\\Flagged $Work" } else { "" })
            };
            mail::append(&mut s, folder, flags, "05-Mar-2021 10:00:00 +0100", &body).await;
            total += 1;
        }
        let dup = mail::message(&format!("{u} duplicate"), "", 2_000, true);
        mail::append(&mut s, "INBOX", "", "06-Mar-2021 10:00:00 +0100", &dup).await;
        mail::append(&mut s, "INBOX", "", "06-Mar-2021 10:00:00 +0100", &dup).await;
        total += 2;
    }
    total
}

/// Asserts each mailbox `alias@from` arrived identical in `alias@to` (bodies, flags, dates,
/// counts per folder); returns how many messages the targets hold.
pub async fn assert_mailboxes_identical(
    source: &mail::Dovecot,
    target: &mail::Dovecot,
    aliases: &[&str],
    (from, to): (&str, &str),
) -> usize {
    let mut copied = 0;
    for u in aliases {
        let src = source.endpoint(&format!("{u}@{from}"), PASSWORD);
        let mut tgt = target.endpoint(&format!("{u}@{to}"), PASSWORD);
        tgt.side = tenantry_mail::session::Side::Target;
        let report = tenantry_mail::verify::verify_mailbox(
            &src,
            &tgt,
            &tenantry_mail::sync::Options::default(),
        )
        .await
        .unwrap();
        assert!(report.ok(), "{u}: {:?}", report.differences);
        copied += report.folders.iter().map(|f| f.target_count).sum::<usize>();
    }
    copied
}
