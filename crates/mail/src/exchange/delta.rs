//! One round of a Graph delta query, as the import/export API's folder and item deltas serve
//! it (<https://learn.microsoft.com/graph/api/mailboxfolder-delta>,
//! <https://learn.microsoft.com/graph/api/mailboxitem-delta>): from the `@odata.deltaLink` a
//! previous round ended with, or from the start; what was added or changed, what was removed
//! (`@removed`), and the link the next round starts from.
//!
//! A token the service no longer knows — 410 Gone (a synchronization reset) or a 40x with
//! `syncStateNotFound` (<https://learn.microsoft.com/graph/delta-query-overview>) — is not an
//! error: the round starts again from scratch, and `reset` says so, because a full round says
//! nothing about what was deleted meanwhile.

use serde_json::Value;
use tenantry_graph::{GraphClient, GraphError};

/// What one round found.
#[derive(Debug, Default)]
pub struct Round {
    /// Added or changed entries, as Graph sent them.
    pub changed: Vec<Value>,
    /// Ids of removed entries.
    pub removed: Vec<String>,
    /// Where the next round starts.
    pub link: String,
    /// The saved link had expired: this round listed everything again.
    pub reset: bool,
}

/// A round from `saved` (a previous round's link), else from `start` (the `/…/delta` path).
pub async fn round(
    client: &GraphClient,
    start: &str,
    saved: Option<&str>,
) -> Result<Round, GraphError> {
    let (page, reset) = match saved {
        None => (client.delta(start).await?, false),
        Some(link) => match client.delta(link).await {
            Ok(p) => (p, false),
            Err(e) if expired(&e) => (client.delta(start).await?, true),
            Err(e) => return Err(e),
        },
    };
    let mut out = Round {
        link: page.delta_link,
        reset,
        ..Default::default()
    };
    for v in page.items {
        let Some(id) = v["id"].as_str() else { continue };
        if v.get("@removed").is_some() {
            out.removed.push(id.to_string());
        } else {
            out.changed.push(v);
        }
    }
    Ok(out)
}

/// The service no longer knows the token.
fn expired(e: &GraphError) -> bool {
    e.status() == Some(410)
        || (e.status().is_some_and(|s| (400..500).contains(&s))
            && e.code().is_some_and(|c| {
                c.eq_ignore_ascii_case("syncStateNotFound")
                    || c.eq_ignore_ascii_case("resyncRequired")
            }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_graph::RequestIds;

    fn refused(status: u16, code: &str) -> GraphError {
        GraphError::Permanent {
            status,
            code: Some(code.into()),
            message: String::new(),
            ids: RequestIds::default(),
        }
    }

    #[test]
    fn an_expired_token_is_told_from_other_refusals() {
        assert!(expired(&refused(410, "whatever")));
        assert!(expired(&refused(400, "syncStateNotFound")));
        assert!(expired(&refused(404, "SyncStateNotFound")));
        assert!(!expired(&refused(404, "ErrorItemNotFound")));
        assert!(!expired(&refused(500, "syncStateNotFound")));
    }
}
