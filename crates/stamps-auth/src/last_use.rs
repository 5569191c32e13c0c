//! The last use of static tokens (CONTRACT §2, `last_used_at`): each
//! successful authentication notes the time in memory, and the server writes
//! what was noted to the store in one batch every [`LAST_USE_FLUSH_EVERY`]
//! (and when it stops), never once per request. Several replicas each
//! report theirs; the store keeps the latest.

use crate::RecordMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use stamps_core::{TokenId, UnixTime};
use stamps_store::{Result as StoreResult, Store};

/// How often the noted uses are written: `last_used_at` is at most this
/// stale (plus the write), within the contract's minute.
pub const LAST_USE_FLUSH_EVERY: Duration = Duration::from_secs(30);

/// Uses noted since the last flush: one time per token, the latest. Memory
/// is bounded by the number of distinct tokens used in one interval.
///
/// ```
/// use stamps_auth::LastUse;
/// use stamps_store::{AccountKind, MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// store.add_account(AccountKind::Merchant, "M", Some(1))?;
/// store.add_account(AccountKind::User, "U", Some(5870))?;
/// let id = *store.create_token(5870, 1, None)?.token.id();
/// let uses = LastUse::default();
/// uses.note(id, 1_800_000_000);
/// uses.note(id, 1_800_000_007);
/// assert_eq!(uses.flush(&store)?, 1);
/// assert_eq!(store.token(&id)?.unwrap().last_used_at, Some(1_800_000_007));
/// assert_eq!(uses.flush(&store)?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct LastUse {
    pending: Mutex<RecordMap<TokenId, UnixTime>>,
}

impl LastUse {
    /// Notes that `id` authenticated at `at` (a map update under a short
    /// lock: no I/O).
    #[inline]
    pub fn note(&self, id: TokenId, at: UnixTime) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let last = pending.entry(id).or_insert(at);
        *last = (*last).max(at);
    }

    /// Writes the uses noted so far to `store`, in one call; returns how
    /// many tokens it reported. A failed write keeps them for the next
    /// flush (merged with what is noted meanwhile): nothing is lost to a
    /// store that is down for a while.
    pub fn flush(&self, store: &dyn Store) -> StoreResult<usize> {
        self.flush_with(|batch| store.record_last_used(batch))
    }

    /// [`LastUse::flush`] through `write`.
    fn flush_with(
        &self,
        write: impl FnOnce(&[(TokenId, UnixTime)]) -> StoreResult<()>,
    ) -> StoreResult<usize> {
        let batch: Vec<(TokenId, UnixTime)> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *pending).into_iter().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match write(&batch) {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                for (id, at) in batch {
                    self.note(id, at);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stamps_store::{AccountKind, MemoryStore, StoreError};

    #[test]
    fn a_failed_flush_keeps_the_uses_for_the_next() {
        let store = MemoryStore::new();
        store
            .add_account(AccountKind::Merchant, "M", Some(1))
            .unwrap();
        store
            .add_account(AccountKind::User, "U", Some(5870))
            .unwrap();
        let id = *store.create_token(5870, 1, None).unwrap().token.id();
        let uses = LastUse::default();
        uses.note(id, 10);
        let down = |_: &[(TokenId, UnixTime)]| Err(StoreError::Backend("down".into()));
        assert!(uses.flush_with(down).is_err());
        // Merged with a later (older) report: the latest time stays.
        uses.note(id, 5);
        assert_eq!(uses.flush(&store).unwrap(), 1);
        assert_eq!(store.token(&id).unwrap().unwrap().last_used_at, Some(10));
    }
}
