//! The licence ledger domain core.
