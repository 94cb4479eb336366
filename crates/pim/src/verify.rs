//! Re-reads both sides and compares: every source object must be on the target under its name
//! with exactly the bytes the source serves, and every collection with its display name, colour
//! and description. A target that re-serialises what it stores (Xandikos reorders and refolds
//! iCalendar lines) passes when its copy has the same canonical form (`object::canonical`: every
//! property, parameter and value in its component); such objects are counted apart. Changes
//! nothing.

use futures_util::StreamExt;
use serde::Serialize;

use crate::collections::{self, child_url};
use crate::dav::{Dav, DavError};
use crate::kind::Kind;
use crate::migrate::plan;
use crate::object::same_content;
use crate::report::for_terminal;

#[derive(Debug, Serialize)]
pub struct Difference {
    pub collection: String,
    /// The resource name (empty for the collection itself).
    pub object: String,
    pub problem: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub collections: u64,
    pub objects: u64,
    pub identical: u64,
    /// Objects whose bytes the target re-serialised (property order, folding) with every
    /// property, parameter and value kept.
    pub same_content: u64,
    /// Objects on the target that the source does not have (not an error: the target may
    /// have had its own).
    pub only_on_target: u64,
    pub differences: Vec<Difference>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} collections, {} objects compared: {} identical, {} re-serialised by the target \
             with the same content, {} only on the target\n",
            self.collections, self.objects, self.identical, self.same_content, self.only_on_target
        );
        for d in &self.differences {
            s += &format!(
                "  {}/{}: {}\n",
                for_terminal(&d.collection),
                for_terminal(&d.object),
                for_terminal(&d.problem)
            );
        }
        if self.ok() && self.same_content == 0 {
            s += "everything is on the target, byte for byte\n";
        } else if self.ok() {
            s += "everything is on the target (the re-serialised objects with every property)\n";
        }
        s
    }
}

pub async fn verify(
    kind: Kind,
    src: &Dav,
    dst: &Dav,
    parallel: usize,
) -> anyhow::Result<VerifyReport> {
    let plan = plan(kind, src, dst).await?;
    let mut rep = VerifyReport::default();
    for r in &plan.refused {
        rep.differences.push(Difference {
            collection: String::new(),
            object: r.path.clone(),
            problem: r.reason.clone(),
        });
    }
    for pair in &plan.pairs {
        rep.collections += 1;
        let cname = pair.source.name.clone();
        let diff = |object: &str, problem: String| Difference {
            collection: cname.clone(),
            object: object.to_string(),
            problem,
        };
        let Some(target) = &pair.target else {
            rep.differences
                .push(diff("", "the collection is missing on the target".into()));
            continue;
        };
        for (what, s, t) in [
            (
                "display name",
                &pair.source.props.displayname,
                &target.props.displayname,
            ),
            ("colour", &pair.source.props.color, &target.props.color),
            (
                "description",
                &pair.source.props.description,
                &target.props.description,
            ),
        ] {
            if s.is_some() && s != t {
                rep.differences.push(diff(
                    "",
                    format!("{what} differs: {s:?} on the source, {t:?} on the target"),
                ));
            }
        }
        let (sm, tm) = tokio::join!(
            collections::members(src, &pair.source.url, None),
            collections::members(dst, &target.url, None)
        );
        let sm = sm.map_err(|e| {
            anyhow::Error::new(e).context(format!("listing source collection {cname}"))
        })?;
        let tm = tm.map_err(|e| {
            anyhow::Error::new(e).context(format!("listing target collection {cname}"))
        })?;
        for r in sm.refused.iter().chain(&tm.refused) {
            rep.differences.push(diff(&r.path, r.reason.clone()));
        }
        let on_target: std::collections::HashSet<&str> =
            tm.present.iter().map(|m| m.name.as_str()).collect();
        let on_source: std::collections::HashSet<&str> =
            sm.present.iter().map(|m| m.name.as_str()).collect();
        rep.only_on_target += on_target.difference(&on_source).count() as u64;
        rep.objects += sm.present.len() as u64;
        let results: Vec<(String, Result<Match, String>)> = futures_util::stream::iter(&sm.present)
            .map(|m| async {
                let r = compare(
                    src,
                    dst,
                    &pair.source.url,
                    &target.url,
                    &m.name,
                    on_target.contains(m.name.as_str()),
                )
                .await;
                (m.name.clone(), r)
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        for (name, r) in results {
            match r {
                Ok(Match::Identical) => rep.identical += 1,
                Ok(Match::SameContent) => rep.same_content += 1,
                Ok(Match::Differs) => rep.differences.push(diff(
                    &name,
                    "the target's copy differs from the source's".into(),
                )),
                Err(e) => rep.differences.push(diff(&name, e)),
            }
        }
    }
    rep.differences
        .sort_by(|a, b| (&a.collection, &a.object).cmp(&(&b.collection, &b.object)));
    Ok(rep)
}

enum Match {
    Identical,
    SameContent,
    Differs,
}

async fn compare(
    src: &Dav,
    dst: &Dav,
    scoll: &reqwest::Url,
    tcoll: &reqwest::Url,
    name: &str,
    listed_on_target: bool,
) -> Result<Match, String> {
    if !listed_on_target {
        return Err("missing on the target".into());
    }
    let su = child_url(scoll, name, false).map_err(|e| e.to_string())?;
    let tu = child_url(tcoll, name, false).map_err(|e| e.to_string())?;
    let (s, t) = tokio::join!(src.get(&su), dst.get(&tu));
    let (s, _) = s.map_err(|e| format!("reading the source: {e}"))?;
    match t {
        Ok((t, _)) if s == t => Ok(Match::Identical),
        Ok((t, _)) if same_content(&s, &t) => Ok(Match::SameContent),
        Ok(_) => Ok(Match::Differs),
        Err(DavError::NotFound) => Err("missing on the target".into()),
        Err(e) => Err(format!("reading the target: {e}")),
    }
}
