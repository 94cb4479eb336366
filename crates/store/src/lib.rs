//! Ledger storage.
