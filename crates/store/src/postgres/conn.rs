//! One open transaction on one pooled connection, driven synchronously: units of work are
//! synchronous closures ([`crate::LedgerTx`]), so they run on a blocking thread that waits for
//! each statement on the runtime's handle. Statements are prepared once per connection.

use crate::{Result, StoreError};
use deadpool_postgres::Transaction;
use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub struct PgConn<'a> {
    pub(super) tx: &'a Transaction<'a>,
    pub(super) rt: &'a Handle,
    /// Set when a statement failed with a serialization failure or a deadlock: the whole unit of
    /// work is then run again (its own error may be any, since the transaction is aborted).
    pub(super) must_retry: bool,
}

/// Whether PostgreSQL asks for the transaction to be run again.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

pub fn internal(e: tokio_postgres::Error) -> StoreError {
    // The server's message names the statement's problem, never the connection's password.
    match e.as_db_error() {
        Some(db) => {
            StoreError::Internal(format!("database: {} ({})", db.message(), db.code().code()))
        }
        None => StoreError::Internal(format!("database: {e}")),
    }
}

impl PgConn<'_> {
    fn fail(&mut self, e: tokio_postgres::Error) -> StoreError {
        if is_retryable(&e) {
            self.must_retry = true;
        }
        internal(e)
    }

    /// Runs one statement; `Err` keeps the driver's error so that callers can look at its code.
    pub fn try_query(
        &mut self,
        sql: &str,
        params: Params,
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let (tx, rt) = (self.tx, self.rt);
        let result = rt.block_on(async {
            let statement = tx.prepare_cached(sql).await?;
            tx.query(&statement, params).await
        });
        if let Err(e) = &result {
            if is_retryable(e) {
                self.must_retry = true;
            }
        }
        result
    }

    pub fn query(&mut self, sql: &str, params: Params) -> Result<Vec<Row>> {
        let (tx, rt) = (self.tx, self.rt);
        rt.block_on(async {
            let statement = tx.prepare_cached(sql).await?;
            tx.query(&statement, params).await
        })
        .map_err(|e| self.fail(e))
    }

    pub fn query_opt(&mut self, sql: &str, params: Params) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub fn execute(&mut self, sql: &str, params: Params) -> Result<u64> {
        let (tx, rt) = (self.tx, self.rt);
        rt.block_on(async {
            let statement = tx.prepare_cached(sql).await?;
            tx.execute(&statement, params).await
        })
        .map_err(|e| self.fail(e))
    }

    pub fn batch(&mut self, sql: &str) -> Result<()> {
        let (tx, rt) = (self.tx, self.rt);
        rt.block_on(tx.batch_execute(sql)).map_err(|e| self.fail(e))
    }
}

/// Decodes a stored identifier.
pub fn parse<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| StoreError::Internal(format!("bad identifier {text} in the database")))
}
