//! Writing the change log (`feed.rs` follows it): every change replicas keep
//! in memory is a row written in the transaction that makes it, under one
//! advisory lock, so rows commit in sequence order, and `NOTIFY` wakes the
//! followers when it commits.

use postgres::Transaction;
use stamps_core::UnixTime;
use stamps_store::{Change, Result, StoreError};

use crate::rows::to_bigint;
use crate::{CHANGE_CHANNEL, backend};

/// Held (per transaction) by every writer of the change log.
const CHANGE_LOCK: i64 = 0x5354_4d50_0000_0002;

/// Serialises change-log writers; taken at the start of every transaction
/// that logs a change, so it also orders the change itself.
pub(crate) fn lock_changes(tx: &mut Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOCK])
        .map_err(backend)?;
    Ok(())
}

/// Logs `change` in the transaction (after [`lock_changes`]) and wakes the
/// followers when it commits.
pub(crate) fn log_change(tx: &mut Transaction<'_>, at: UnixTime, change: &Change) -> Result<()> {
    let text = serde_json::to_string(change).map_err(|e| StoreError::Backend(e.to_string()))?;
    tx.execute(
        "INSERT INTO change_log (at, change) VALUES ($1, $2)",
        &[&to_bigint(at)?, &text],
    )
    .map_err(backend)?;
    tx.execute("SELECT pg_notify($1, '')", &[&CHANGE_CHANNEL])
        .map_err(backend)?;
    Ok(())
}
