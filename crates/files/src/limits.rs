//! How much a server may make a run hold or wait for. Every value bounds what a broken or
//! hostile server can cost (memory, time), and is far above what a real library needs; see
//! ARCHITECTURE.md ("Limits and deadlines") for why each is what it is.

use std::time::Duration;

/// Entries (files and folders) one listing may hold: a few million files is a large real
/// library; at about 200 bytes an entry the cap is about 2 GB of listing in memory.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;

/// Folder levels a listing descends: SharePoint's 400-character path limit allows at most 200,
/// so a deeper tree cannot be migrated anyway, and a server that invents ever-deeper folders
/// is stopped.
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// Bytes of one `207 Multi-Status` body: at about 500 bytes an entry this is a single folder of
/// two million files, beyond what any server we know lists in one folder.
pub const MAX_LISTING_BYTES: u64 = 1 << 30;

/// Bytes of one XML event (a tag or a text) in a listing, which the reader holds whole: real
/// ones are a few hundred bytes (the longest is an href of a 400-character path, encoded).
pub const MAX_XML_EVENT_BYTES: u64 = 1 << 20;

/// The limits of one endpoint. `Default` gives the values the CLI uses; tests shorten the
/// deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries in a whole listing (`--max-entries`).
    pub max_entries: u64,
    /// Folder levels below the root (`--max-depth`).
    pub max_depth: usize,
    /// Bytes of one listing answer.
    pub max_listing_bytes: u64,
    /// One listing request, answer read to its end.
    pub listing_deadline: Duration,
    /// Any request, answer read to its end; a transfer gets this plus its size at `min_rate`.
    pub request_deadline: Duration,
    /// The slowest transfer rate waited for, in bytes per second.
    pub min_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_listing_bytes: MAX_LISTING_BYTES,
            // A listing of the largest folder above at about 1 MB/s.
            listing_deadline: Duration::from_secs(30 * 60),
            request_deadline: Duration::from_secs(5 * 60),
            // 64 KiB/s: a slow uplink still finishes (1 GB in under 5 hours); a server trickling
            // bytes to hold a run does not.
            min_rate: 64 * 1024,
        }
    }
}

impl Limits {
    /// How long a transfer of `size` bytes may take, request and whole body.
    pub fn transfer_deadline(&self, size: u64) -> Duration {
        self.request_deadline
            .saturating_add(Duration::from_secs(size / self.min_rate.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_deadline_grows_with_size() {
        let l = Limits::default();
        assert_eq!(l.transfer_deadline(0), l.request_deadline);
        assert_eq!(
            l.transfer_deadline(1 << 30) - l.request_deadline,
            Duration::from_secs(16384)
        );
        assert_eq!(
            l.transfer_deadline(u64::MAX),
            l.request_deadline + Duration::from_secs(u64::MAX / 65536)
        );
    }
}
