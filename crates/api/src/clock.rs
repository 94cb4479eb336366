//! The server's clock. In test mode (`serve --test-clock`) an operator can move it forward, so
//! that subscription lifecycles (30/90-day periods) can be exercised end to end.

use std::sync::atomic::{AtomicI64, Ordering};
use tenantry_ledger::Timestamp;

pub struct Clock {
    offset_secs: AtomicI64,
    pub adjustable: bool,
}

impl Clock {
    pub fn system() -> Clock {
        Clock {
            offset_secs: AtomicI64::new(0),
            adjustable: false,
        }
    }

    pub fn adjustable() -> Clock {
        Clock {
            offset_secs: AtomicI64::new(0),
            adjustable: true,
        }
    }

    pub fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Timestamp(secs + self.offset_secs.load(Ordering::Relaxed))
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

/// RFC 3339 text of a timestamp, as Graph writes `createdDateTime`.
pub fn rfc3339(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.0)
        .ok()
        .and_then(|dt| {
            dt.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
