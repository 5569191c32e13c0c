//! [`ServedStore`]: what a server needs of its store beyond the [`Store`]
//! seam, so that the server never asks which backend it runs on.

use crate::Store;
use crate::changes::ChangeFeed;
use crate::error::Result;

/// A store a server runs on: the [`Store`] seam, plus the capabilities
/// the server uses to watch it, follow it, and stop cleanly. Each backend
/// the server can run on implements it.
///
/// ```
/// use stamps_store::{MemoryStore, ServedStore};
///
/// let store = MemoryStore::new();
/// store.probe_write()?;
/// assert!(store.is_open() && !store.is_shared());
/// assert!(store.change_feed()?.is_none());
/// # Ok::<(), stamps_store::StoreError>(())
/// ```
pub trait ServedStore: Store {
    /// Proves the store takes writes now: one small durable write through
    /// the path every write takes, no record changed. For readiness
    /// checks, which should call it rarely.
    fn probe_write(&self) -> Result<()>;

    /// The store's size in bytes (files on disk, or a database's size).
    /// May block (a query): call it off the async workers.
    fn size_on_disk(&self) -> Result<u64>;

    /// False while a storage failure keeps the store closed (it reopens
    /// itself); true for a store that never closes.
    fn is_open(&self) -> bool {
        true
    }

    /// True for a store several servers share (replicas): they sign with
    /// the keys it keeps when no `jwt.secret` is configured, and follow
    /// each other's changes through [`ServedStore::change_feed`].
    fn is_shared(&self) -> bool {
        false
    }

    /// The changes other processes make from now on, for a shared store;
    /// `None` for a store one server holds (every change goes through it).
    fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        Ok(None)
    }

    /// Makes every write so far durable, before the server stops.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

impl ServedStore for crate::MemoryStore {
    fn probe_write(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(0)
    }
}
