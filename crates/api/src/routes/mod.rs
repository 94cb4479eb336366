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
