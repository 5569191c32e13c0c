//! What a server needs of the database beyond the `Store` seam: a write
//! probe, its size, and the change feed replicas follow.

use stamps_store::{ChangeFeed, Result, ServedStore, Store};

use crate::{PgChangeFeed, PgStore, backend, from_bigint, to_bigint};

impl PgStore {
    /// Proves the database takes writes: rewrites one row of `meta` (the
    /// current time; no record changes). For readiness checks.
    pub fn probe_write(&self) -> Result<()> {
        self.connection()?
            .execute(
                "INSERT INTO meta (key, value) VALUES ('write_probe', $1)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&to_bigint(self.now())?],
            )
            .map_err(backend)?;
        Ok(())
    }

    /// The size of the database, in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        let row = self
            .connection()?
            .query_one("SELECT pg_database_size(current_database())", &[])
            .map_err(backend)?;
        from_bigint("meta", row.get(0))
    }

    /// A feed of the changes made from now on, by any process.
    pub fn change_feed(&self) -> Result<PgChangeFeed> {
        let row = self
            .connection()?
            .query_one("SELECT coalesce(max(seq), 0) FROM change_log", &[])
            .map_err(backend)?;
        Ok(PgChangeFeed::new(
            self.config.clone(),
            self.tls.clone(),
            from_bigint("change_log", row.get(0))?,
        ))
    }
}

/// The server's view of a shared database: replicas follow each other
/// through its change log.
impl ServedStore for PgStore {
    fn probe_write(&self) -> Result<()> {
        PgStore::probe_write(self)
    }

    fn size_on_disk(&self) -> Result<u64> {
        PgStore::size_on_disk(self)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        Ok(Some(Box::new(PgStore::change_feed(self)?)))
    }
}
