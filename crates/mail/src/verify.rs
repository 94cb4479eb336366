//! Independent check of a migration: reads both sides and compares, folder by folder, the
//! multiset of (body SHA-256, INTERNALDATE, flags). It trusts nothing in the state store.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::folders::{self, Mapping};
use crate::protocol::parse_internaldate;
use crate::session::{Endpoint, Selected, Session};
use crate::sync::{canonical_flags, fetch_meta, hash_bodies, listing_cap, Options};

/// One message as compared: body digest, date in epoch seconds, canonical flags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MessageDigest {
    pub sha: String,
    pub date: Option<i64>,
    pub flags: String,
}

#[derive(Debug, Default, Serialize)]
pub struct FolderCheck {
    pub source: String,
    pub target: String,
    pub source_count: usize,
    pub target_count: usize,
    pub source_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub source: String,
    pub target: String,
    pub folders: Vec<FolderCheck>,
    pub differences: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Digests every message of a folder; `accept` filters flags to what a target keeps.
pub async fn folder_digest(
    s: &mut Session,
    folder: &str,
    accept: Option<&Selected>,
    read_only: bool,
    opts: &Options,
) -> Result<(Vec<MessageDigest>, u64)> {
    let sel = s.select(folder, read_only).await?;
    if sel.exists == 0 {
        return Ok((Vec::new(), 0));
    }
    let metas = fetch_meta(s, "1:*", None, listing_cap(sel.exists)).await?;
    let hashes = hash_bodies(s, &metas, opts).await?;
    let mut out = Vec::with_capacity(metas.len());
    let mut bytes = 0;
    for m in &metas {
        let Some(sha) = hashes.get(&m.uid) else {
            continue;
        };
        bytes += m.size;
        out.push(MessageDigest {
            sha: sha.clone(),
            date: m.date.as_deref().and_then(parse_internaldate),
            flags: canonical_flags(&m.flags, accept).0,
        });
    }
    out.sort();
    Ok((out, bytes))
}

pub async fn verify_mailbox(
    src: &Endpoint,
    tgt: &Endpoint,
    opts: &Options,
) -> Result<VerifyReport> {
    let limits = opts.limits();
    let (mut s, mut t) = tokio::try_join!(
        Session::connect_with(src, &limits),
        Session::connect_with(tgt, &limits)
    )?;
    let (mut sf, tf) = (folders::list(&mut s).await?, folders::list(&mut t).await?);
    sf.retain(|f| !folders::excluded(f, &opts.exclude));
    let delim = tf.iter().find_map(|f| f.delimiter);
    let mut plan = folders::plan(&sf, &tf, delim, &opts.folder_map);
    if opts.exchange_target {
        folders::exchange_names(&mut plan, &tf, delim);
    }
    let mut rep = VerifyReport {
        source: src.describe(),
        target: tgt.describe(),
        ..Default::default()
    };
    for m in &plan {
        check_folder(&mut s, &mut t, m, &tf, opts, &mut rep).await?;
    }
    s.logout().await;
    t.logout().await;
    Ok(rep)
}

async fn check_folder(
    s: &mut Session,
    t: &mut Session,
    m: &Mapping,
    tf: &[folders::Folder],
    opts: &Options,
    rep: &mut VerifyReport,
) -> Result<()> {
    let name = m.source.display();
    let tname = crate::protocol::utf7::decode(&m.target);
    // A \Noselect parent holds no messages; the target needs it only as a hierarchy level.
    if !m.target_exists && m.source.selectable {
        rep.differences.push(format!(
            "folder '{name}': missing on target (expected '{tname}')"
        ));
        return Ok(());
    }
    let tinfo = tf.iter().find(|f| f.wire == m.target);
    if m.source.subscribed && !tinfo.is_some_and(|f| f.subscribed) {
        rep.differences.push(format!(
            "folder '{name}': subscribed on source, not on target '{tname}'"
        ));
    }
    if !m.source.selectable {
        return Ok(());
    }
    let mut tsel = t.select(&m.target, false).await?;
    if opts.exchange_target {
        tsel.permanent_flags = Some(
            crate::sync::EXCHANGE_PERMANENT_FLAGS
                .iter()
                .map(|f| f.to_string())
                .collect(),
        );
    }
    let (src, bytes) = folder_digest(s, &m.source.wire, Some(&tsel), true, opts).await?;
    let (dst, _) = folder_digest(t, &m.target, None, false, opts).await?;
    rep.folders.push(FolderCheck {
        source: name.clone(),
        target: tname.clone(),
        source_count: src.len(),
        target_count: dst.len(),
        source_bytes: bytes,
    });
    let mut count: BTreeMap<&MessageDigest, i64> = BTreeMap::new();
    for d in &src {
        *count.entry(d).or_default() += 1;
    }
    for d in &dst {
        *count.entry(d).or_default() -= 1;
    }
    let mut missing: Vec<&MessageDigest> = Vec::new();
    let mut extra: Vec<&MessageDigest> = Vec::new();
    for (d, n) in count {
        for _ in 0..n.max(0) {
            missing.push(d);
        }
        for _ in 0..(-n).max(0) {
            extra.push(d);
        }
    }
    // Same body on both sides but different flags or date: say so rather than missing+extra.
    for d in missing {
        let short = &d.sha[..12.min(d.sha.len())];
        if let Some(pos) = extra.iter().position(|e| e.sha == d.sha) {
            let e = extra.remove(pos);
            rep.differences.push(format!(
                "folder '{name}': message {short}: source flags ({}) date {:?}, target flags ({}) date {:?}",
                d.flags, d.date, e.flags, e.date
            ));
        } else {
            rep.differences.push(format!(
                "folder '{name}': message {short} (flags ({}), date {:?}) missing on target '{tname}'",
                d.flags, d.date
            ));
        }
    }
    for e in extra {
        rep.differences.push(format!(
            "folder '{name}': target '{tname}' has an extra message {} (flags ({}))",
            &e.sha[..12.min(e.sha.len())],
            e.flags
        ));
    }
    Ok(())
}
