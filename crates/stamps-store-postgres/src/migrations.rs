//! Versioned schema migrations, applied at open under an advisory lock:
//! replicas starting at once wait for each other, and each migration runs
//! once, in its own transaction with its version row.

use postgres::Client;
use stamps_store::{Result, StoreError};

use crate::backend;

/// The migrations, in order: (version, SQL). A released migration never
/// changes; a schema change is a new entry.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (
        2,
        include_str!("../migrations/0002_token_expiry_and_last_use.sql"),
    ),
    (3, include_str!("../migrations/0003_imported_tokens.sql")),
];

/// The schema version this build writes: the last migration's.
pub const SCHEMA_VERSION: i32 = 3;

/// Held while migrating, so concurrent starts migrate once.
const MIGRATION_LOCK: i64 = 0x5354_4d50_0000_0001;

/// Brings the database's schema to [`SCHEMA_VERSION`].
pub(crate) fn apply(client: &mut Client) -> Result<()> {
    // The lock goes with the transaction, whatever happens to this process.
    let mut tx = client.transaction().map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(backend)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(backend)?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .map_err(backend)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: "the PostgreSQL database".to_owned(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: u32::try_from(SCHEMA_VERSION).unwrap_or(u32::MAX),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .map_err(backend)?;
        tracing::info!(version, "applied store migration");
    }
    tx.commit().map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one_and_end_at_the_schema_version() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(*version).unwrap(), i + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
