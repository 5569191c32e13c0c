//! An import into an empty store: all or nothing, without one giant
//! transaction, and each tree written in its keys' order.

use stamps_store::{Result, Snapshot, SnapshotSummary, StoreError};

use super::{IMPORT_PENDING_KEY, SledStore, encode};
use crate::error::sled_error;

impl SledStore {
    /// [`stamps_store::Store::restore`] on sled.
    pub(super) fn import(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        if !self.is_empty() {
            return Err(StoreError::NotEmpty);
        }
        // All or nothing without one giant transaction (which for a million
        // tokens holds gigabytes in memory): mark the import pending, write,
        // unmark. A failure, or a crash seen at the next open, empties the
        // store again.
        self.meta
            .insert(IMPORT_PENDING_KEY, &[1])
            .map_err(sled_error)?;
        self.flush()?;
        match self.write_snapshot(snapshot) {
            Ok(()) => {
                self.meta.remove(IMPORT_PENDING_KEY).map_err(sled_error)?;
                self.flush()?;
                Ok(snapshot.summary())
            }
            Err(e) => {
                // Best effort; if this fails too, the next open finishes it.
                let _ = self.undo_import();
                Err(e)
            }
        }
    }

    /// Writes an import tree by tree, each in its keys' order. sled is a
    /// log-structured B-tree: keys inserted in random order (an export of
    /// another deployment's tokens) split and rewrite nodes all over the
    /// tree, and the garbage left behind is collected by sled's flusher
    /// after the next open's first write, which pulls the whole store
    /// through the cache: 1 M tokens took the server from 45 to 105 MiB,
    /// kept until a restart. In key order the nodes fill one after the
    /// other, with nothing left to collect (docs/PERFORMANCE.md, "Memory
    /// and lookups").
    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        for m in in_key_order(&snapshot.merchants, |m| m.id) {
            self.merchants
                .insert(m.id.to_be_bytes(), encode(m)?)
                .map_err(sled_error)?;
        }
        for u in in_key_order(&snapshot.users, |u| u.id) {
            self.users
                .insert(u.id.to_be_bytes(), encode(u)?)
                .map_err(sled_error)?;
        }
        for t in in_key_order(&snapshot.tokens, |t| t.id.as_str()) {
            self.tokens
                .insert(t.id.as_str(), encode(t)?)
                .map_err(sled_error)?;
        }
        let mut lookups: Vec<(&[u8; 32], &str)> = (snapshot.tokens.iter())
            .filter_map(|t| Some((t.lookup.as_ref()?.as_bytes(), t.id.as_str())))
            .collect();
        lookups.sort_unstable();
        for (lookup, id) in lookups {
            self.imported.insert(lookup, id).map_err(sled_error)?;
        }
        self.flush()
    }

    /// Empties the store after an import that did not finish.
    pub(super) fn undo_import(&self) -> Result<()> {
        for tree in [&self.merchants, &self.users, &self.tokens, &self.imported] {
            tree.clear().map_err(sled_error)?;
        }
        self.meta.remove(IMPORT_PENDING_KEY).map_err(sled_error)?;
        self.flush()
    }
}

/// `items` sorted by `key`, which is the order of their keys in a tree
/// (ids are stored big-endian, token ids as their text).
fn in_key_order<'a, T, K: Ord>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut sorted: Vec<&'a T> = items.iter().collect();
    sorted.sort_unstable_by_key(|item| key(item));
    sorted
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::in_key_order;

    proptest! {
        // An import writes each tree in its keys' order: every item once,
        // sorted, whatever order the export listed them in.
        #[test]
        fn in_key_order_sorts_every_item_once(mut ids in proptest::collection::vec(any::<u64>(), 0..64)) {
            let sorted: Vec<u64> = in_key_order(&ids, |id| id.to_be_bytes()).into_iter().copied().collect();
            ids.sort_unstable();
            prop_assert_eq!(sorted, ids);
        }
    }
}
