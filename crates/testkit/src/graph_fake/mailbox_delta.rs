//! Delta queries of the mailbox import/export part: what changed in a mailbox's folders, or in
//! one folder's items, since a state token. Rules, from Microsoft's pages:
//!
//! - `GET /admin/exchange/mailboxes/{id}/folders/delta`
//!   (<https://learn.microsoft.com/graph/api/mailboxfolder-delta>) and
//!   `GET …/folders/{folderId}/items/delta`
//!   (<https://learn.microsoft.com/graph/api/mailboxitem-delta>): the first call of a round,
//!   without a token, returns every folder (item); pages are linked by `@odata.nextLink`
//!   (`$skiptoken`), the last one carries `@odata.deltaLink` (`$deltatoken`), and a later round
//!   from that link returns only what was added, changed or deleted since — deleted ones as
//!   `{"id": …, "@removed": {"reason": "deleted"}}`
//!   (<https://learn.microsoft.com/graph/delta-query-messages>).
//! - A token the service no longer knows: "the service should respond with a 40X-series error
//!   with error codes such as `syncStateNotFound`", and a reset is `410 Gone` with a
//!   **Location** header holding the initial request
//!   (<https://learn.microsoft.com/graph/delta-query-overview>, "Synchronization reset",
//!   "Token duration"). The fake answers 410 `syncStateNotFound` with that header for a token
//!   of an older generation (`FakeGraph::expire_delta_tokens`) or one it cannot read.
//! - Items per page: `FakeGraphOptions::page_size`.
//! - The folder delta returns every folder of the mailbox, nested ones included — unless
//!   `FakeGraphOptions::folder_delta_top_level`: Microsoft's page does not say whether nested
//!   folders are part of it (it also documents `…/folders/{id}/childFolders/delta`), so the fake
//!   can serve only the root and its children, and a client must find the rest through
//!   `childFolderCount` and `childFolders`.
//! - A folder changed (renamed) since the token comes as its full representation, or — with
//!   `FakeGraphOptions::sparse_folder_updates` — as its `id` and `displayName` only: "updated
//!   instances are represented by their id with at least the properties that have been
//!   updated" (<https://learn.microsoft.com/graph/delta-query-overview>).
//!
//! Tokens are the mailbox's change numbers: `$deltatoken={generation}.{upto}`,
//! `$skiptoken={generation}.{since}.{upto}.{after}` — a page continues after the change number
//! of the last entry sent, so a change made while a round is paged through cannot shift an
//! entry out of it (it moves past `upto`, into the next round).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::mailbox_export::ExportMailbox;
use super::{error, ok_json, query_param, World};

/// Where a round stands.
struct Cursor {
    since: u64,
    upto: u64,
    after: u64,
}

/// `GET …/folders/delta`.
pub(super) fn folders(w: &mut World, mbx: &str, query: &str) -> Response {
    let fresh = format!(
        "{}/v1.0/admin/exchange/mailboxes/{mbx}/folders/delta",
        w.base
    );
    let page_size = w.opts.page_size.max(1);
    let (top_only, sparse) = (w.opts.folder_delta_top_level, w.opts.sparse_folder_updates);
    w.stats.mailbox_delta_requests += 1;
    let m = &w.export_mailboxes[mbx];
    let cursor = match cursor(m, query) {
        Ok(c) => c,
        Err(()) => return gone(&fresh),
    };
    let mut entries: Vec<(u64, Value)> = m
        .folders
        .iter()
        .filter(|f| f.changed > cursor.since && f.changed <= cursor.upto)
        .filter(|f| !top_only || m.at_top(&f.id))
        .map(|f| {
            let json = if sparse && f.created <= cursor.since {
                json!({"id": f.id, "displayName": f.name})
            } else {
                m.folder_json(f)
            };
            (f.changed, json)
        })
        .collect();
    if cursor.since > 0 {
        entries.extend(
            m.removed_folders
                .iter()
                .filter(|(_, c, top)| *c > cursor.since && *c <= cursor.upto && (*top || !top_only))
                .map(|(id, c, _)| (*c, removed(id))),
        );
    }
    page(m, &fresh, cursor, entries, page_size)
}

/// `GET …/folders/{folder}/items/delta`.
pub(super) fn items(w: &mut World, mbx: &str, folder: &str, query: &str) -> Response {
    let page_size = w.opts.page_size.max(1);
    w.stats.mailbox_delta_requests += 1;
    let base = w.base.clone();
    let m = &w.export_mailboxes[mbx];
    let Some(folder) = m.folders.iter().find(|f| f.id == folder) else {
        return error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let fresh = format!(
        "{base}/v1.0/admin/exchange/mailboxes/{mbx}/folders/{}/items/delta",
        folder.id
    );
    let cursor = match cursor(m, query) {
        Ok(c) => c,
        Err(()) => return gone(&fresh),
    };
    let mut entries: Vec<(u64, Value)> = m
        .items
        .iter()
        .filter(|i| i.0.folder == folder.id && i.1 > cursor.since && i.1 <= cursor.upto)
        .map(|i| {
            (
                i.1,
                json!({"@odata.type": "#microsoft.graph.mailboxItem", "id": i.0.id,
                       "type": i.0.class, "size": i.0.data.len(), "changeKey": i.0.change_key}),
            )
        })
        .collect();
    if cursor.since > 0 {
        entries.extend(
            m.removed_items
                .iter()
                .filter(|(f, _, c)| *f == folder.id && *c > cursor.since && *c <= cursor.upto)
                .map(|(_, id, c)| (*c, removed(id))),
        );
    }
    page(m, &fresh, cursor, entries, page_size)
}

fn removed(id: &str) -> Value {
    json!({"id": id, "@removed": {"reason": "deleted"}})
}

/// The round a request continues (`$skiptoken`), starts from (`$deltatoken`) or begins (none);
/// `Err` for a token of another generation or none the fake wrote.
fn cursor(m: &ExportMailbox, query: &str) -> Result<Cursor, ()> {
    let numbers = |t: String, n: usize| -> Result<Vec<u64>, ()> {
        let v: Vec<u64> = t
            .split('.')
            .map(|p| p.parse().map_err(|_| ()))
            .collect::<Result<_, _>>()?;
        if v.len() != n || v[0] != m.token_generation {
            return Err(());
        }
        Ok(v[1..].to_vec())
    };
    if let Some(t) = query_param(query, "$skiptoken") {
        let v = numbers(t, 4)?;
        return Ok(Cursor {
            since: v[0],
            upto: v[1],
            after: v[2],
        });
    }
    let since = match query_param(query, "$deltatoken") {
        Some(t) => numbers(t, 2)?[0],
        None => 0,
    };
    Ok(Cursor {
        since,
        upto: m.changes,
        after: since,
    })
}

/// One page of `entries` (change number, JSON) after the cursor, with its next or delta link.
fn page(
    m: &ExportMailbox,
    fresh: &str,
    cursor: Cursor,
    mut entries: Vec<(u64, Value)>,
    page_size: usize,
) -> Response {
    entries.retain(|(c, _)| *c > cursor.after);
    entries.sort_by_key(|(c, _)| *c);
    let more = entries.len() > page_size;
    entries.truncate(page_size);
    let gen = m.token_generation;
    let mut body = json!({ "value": entries.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>() });
    match entries.last() {
        Some((last, _)) if more => {
            body["@odata.nextLink"] = json!(format!(
                "{fresh}?$skiptoken={gen}.{}.{}.{last}",
                cursor.since, cursor.upto
            ));
        }
        _ => {
            body["@odata.deltaLink"] = json!(format!("{fresh}?$deltatoken={gen}.{}", cursor.upto));
        }
    }
    ok_json(StatusCode::OK, body)
}

fn gone(fresh: &str) -> Response {
    let mut r = error(
        StatusCode::GONE,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    );
    if let Ok(v) = HeaderValue::from_str(fresh) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
