//! Route handlers, one module per area of the API.

pub mod audit;
pub mod billing;
pub mod directory;
pub mod moves;
pub mod ops;
pub mod platform;

use crate::dto::List;
use tenantry_store::Page;

/// A Graph-style list with the nextLink a client follows for the next page.
pub fn list<T, D>(
    page: Page<T>,
    path: &str,
    top: u32,
    extra_query: &str,
    map: impl FnMut(T) -> D,
) -> List<D> {
    List {
        next_link: page
            .next
            .map(|next| format!("{path}?$top={top}&$skiptoken={next}{extra_query}")),
        value: page.items.into_iter().map(map).collect(),
    }
}

/// Percent-encodes a query value for a nextLink.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
