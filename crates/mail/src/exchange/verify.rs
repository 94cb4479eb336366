//! Compares an IMAP source with its Exchange copy, trusting no state: per folder, each source
//! message is paired with the Exchange message carrying its SourceSha256, and what Exchange
//! shows is compared with what the source says it should be — received (not a draft), delivery
//! time, read state, flag, categories, every header line, every attachment byte. Each
//! difference is named.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::Value;

use super::mailbox::{property, Mailbox};
use super::message::{
    flag_state, prepare, PR_MESSAGE_DELIVERY_TIME, PR_TRANSPORT_MESSAGE_HEADERS, SOURCE_SHA256,
};
use super::sync::FolderResolver;
use crate::folders;
use crate::protocol::parse_internaldate;
use crate::session::{Endpoint, Session};
use crate::sync::{batches, fetch_bodies, fetch_meta, listing_cap, sha_hex, Options};
use crate::verify::{FolderCheck, VerifyReport};

pub async fn verify_mailbox(src: &Endpoint, mbx: &Mailbox, opts: &Options) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        source: src.describe(),
        target: mbx.describe(),
        ..Default::default()
    };
    let mut s = Session::connect_with(src, &opts.limits()).await?;
    let mut list = folders::list(&mut s).await?;
    list.retain(|f| f.selectable && !folders::excluded(f, &opts.exclude));
    let mut resolver = FolderResolver::new(mbx, &list, false);
    for f in &list {
        let name = f.display();
        let sel = s.select(&f.wire, true).await?;
        let metas = fetch_meta(&mut s, "1:*", None, listing_cap(sel.exists)).await?;
        let Some(target) = resolver.resolve(&f.path).await? else {
            if !metas.is_empty() {
                report.differences.push(format!(
                    "{name}: no such folder in Exchange ({} messages)",
                    metas.len()
                ));
            }
            continue;
        };
        let on_target = mbx.list_messages(&target).await?;
        let mut by_sha: HashMap<String, Vec<&Value>> = HashMap::new();
        for m in &on_target {
            let sha = property(m, SOURCE_SHA256).unwrap_or("").to_string();
            by_sha.entry(sha).or_default().push(m);
        }
        report.folders.push(FolderCheck {
            source: name.clone(),
            target: f.path.join("/"),
            source_count: metas.len(),
            target_count: on_target.len(),
            source_bytes: metas.iter().map(|m| m.size).sum(),
        });
        for batch in batches(&metas, |m| m.size, opts.batch_bytes.max(1 << 22), 200) {
            let bodies = fetch_bodies(&mut s, batch).await?;
            for m in batch {
                let Some(body) = bodies.map.get(&m.uid) else {
                    continue;
                };
                let sha = sha_hex(body);
                let Some(t) = by_sha.get_mut(&sha).and_then(|v| v.pop()) else {
                    report
                        .differences
                        .push(format!("{name}: UID {}: missing in Exchange", m.uid));
                    continue;
                };
                let date = m.date.as_deref().and_then(parse_internaldate);
                let expected = prepare(body, &m.flags, date, &sha).json;
                for d in compare(&expected, t, &m.flags) {
                    report
                        .differences
                        .push(format!("{name}: UID {}: {d}", m.uid));
                }
                if let Some(want) = expected["attachments"].as_array().filter(|a| !a.is_empty()) {
                    let id = t["id"].as_str().unwrap_or_default();
                    let got = mbx.attachments(id).await?;
                    let key = |a: &Value| (a["name"].clone(), a["contentBytes"].clone());
                    let mut w: Vec<_> = want.iter().map(key).collect();
                    let mut g: Vec<_> = got.iter().map(key).collect();
                    w.sort_by_key(|k| k.0.to_string());
                    g.sort_by_key(|k| k.0.to_string());
                    if w != g {
                        report.differences.push(format!(
                            "{name}: UID {}: attachments differ ({} expected, {} in Exchange, or their bytes)",
                            m.uid,
                            w.len(),
                            g.len()
                        ));
                    }
                }
            }
        }
        let extra: usize = by_sha.values().map(Vec::len).sum();
        if extra > 0 {
            report.differences.push(format!(
                "{name}: {extra} message(s) in Exchange not on the source"
            ));
        }
    }
    s.logout().await;
    Ok(report)
}

/// Differences between what a source message should be in Exchange and what Exchange shows.
fn compare(expected: &Value, got: &Value, flags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let (read, flagged, cats, draft) = flag_state(flags);
    if got["isDraft"].as_bool() != Some(draft) {
        out.push(format!("isDraft is {} (expected {draft})", got["isDraft"]));
    }
    if got["isRead"].as_bool() != Some(read) {
        out.push(format!("isRead is {} (expected {read})", got["isRead"]));
    }
    let is_flagged = got["flag"]["flagStatus"].as_str() == Some("flagged");
    if is_flagged != flagged {
        out.push(format!("flagged is {is_flagged} (expected {flagged})"));
    }
    let mut got_cats: Vec<String> = got["categories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    got_cats.sort();
    if got_cats != cats {
        out.push(format!("categories are {got_cats:?} (expected {cats:?})"));
    }
    let want_time = property(expected, PR_MESSAGE_DELIVERY_TIME);
    let got_time = got["receivedDateTime"].as_str();
    if want_time.is_some() && !same_instant(want_time, got_time) {
        out.push(format!(
            "received {} (expected {})",
            got_time.unwrap_or("-"),
            want_time.unwrap_or("-")
        ));
    }
    if property(expected, PR_TRANSPORT_MESSAGE_HEADERS)
        != property(got, PR_TRANSPORT_MESSAGE_HEADERS)
    {
        out.push("the header lines differ".into());
    }
    if expected["body"]["content"] != got["body"]["content"] {
        out.push("the text differs".into());
    }
    out
}

fn same_instant(a: Option<&str>, b: Option<&str>) -> bool {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    };
    matches!((a.and_then(parse), b.and_then(parse)), (Some(x), Some(y)) if x == y)
}
