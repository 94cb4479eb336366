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
    round_each(client, start, saved, |_| {}).await
}

/// [`round`], showing each page's entries to `seen` as they arrive (raw: an id may come again
/// on a later page, and an entry may be `@removed`). After an expired token the pages of the
/// fresh start follow those of the expired round.
pub async fn round_each(
    client: &GraphClient,
    start: &str,
    saved: Option<&str>,
    mut seen: impl FnMut(&[Value]),
) -> Result<Round, GraphError> {
    let (page, reset) = match saved {
        None => (client.delta_each(start, &mut seen).await?, false),
        Some(link) => match client.delta_each(link, &mut seen).await {
            Ok(p) => (p, false),
            Err(e) if expired(&e) => (client.delta_each(start, &mut seen).await?, true),
            Err(e) => return Err(e),
        },
    };
    let (changed, removed) = last_state_of_each(page.items);
    Ok(Round {
        changed,
        removed,
        link: page.delta_link,
        reset,
    })
}

/// One entry per id, its last state in the round: an entry changed while a paged round was
/// read can come twice, and copied twice at once it would
/// be created twice on the target; changed then removed, it is removed.
fn last_state_of_each(items: Vec<Value>) -> (Vec<Value>, Vec<String>) {
    let mut last: Vec<(String, Value)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for v in items {
        let Some(id) = v["id"].as_str().map(str::to_string) else {
            continue;
        };
        match at.get(&id) {
            Some(&i) => last[i].1 = v,
            None => {
                at.insert(id.clone(), last.len());
                last.push((id, v));
            }
        }
    }
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    for (id, v) in last {
        if v.get("@removed").is_some() {
            removed.push(id);
        } else {
            changed.push(v);
        }
    }
    (changed, removed)
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
    fn each_id_once_in_its_last_state() {
        use serde_json::json;
        let (changed, removed) = last_state_of_each(vec![
            json!({"id": "a", "v": 1}),
            json!({"id": "b", "v": 1}),
            json!({"id": "a", "v": 2}),
            json!({"id": "c", "v": 1}),
            json!({"id": "c", "@removed": {"reason": "deleted"}}),
            json!({"no": "id"}),
        ]);
        assert_eq!(
            changed,
            vec![json!({"id": "a", "v": 2}), json!({"id": "b", "v": 1})]
        );
        assert_eq!(removed, vec!["c".to_string()]);
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
