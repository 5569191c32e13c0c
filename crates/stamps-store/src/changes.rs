//! Changes that every server replica sharing one store must learn of, and
//! the feed that delivers them.
//!
//! A server keeps accounts, JWT revocations and signing keys in memory
//! (so JWTs are checked without a store read), and caches static tokens.
//! When several replicas share a database, a change made through one of
//! them, or through `stamps-admin`, reaches the others as a [`Change`] read
//! from a [`ChangeFeed`]. The embedded sled store has a single server, which
//! sees every change itself, so it has no feed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stamps_core::TokenId;

use crate::error::Result;
use crate::records::{Account, AccountKind, JwtRevocation};

/// One change to what servers keep in memory, in the order it was made.
/// Applying a change twice, or a change already seen, is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A merchant or user was added, enabled or disabled: as it now is.
    Account {
        /// Merchant or user.
        kind: AccountKind,
        /// The account after the change.
        account: Account,
    },
    /// A static token was revoked: forget it if cached.
    TokenRevoked {
        /// Its public id.
        id: TokenId,
    },
    /// Imported tokens were stored: a server that had none starts looking
    /// presented texts up.
    TokensImported,
    /// A JWT, or every JWT of a user or merchant, was revoked.
    JwtRevoked {
        /// The revocation as stored.
        revocation: JwtRevocation,
    },
    /// Signing keys were rotated or pruned, or revocations pruned: read the
    /// signing keys and revocations again.
    JwtStateChanged,
    /// The store was loaded from a snapshot: read everything again.
    Restored,
}

/// What a [`ChangeFeed`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The changes made since the last event, oldest first (maybe none).
    Changes(Vec<Change>),
    /// Changes may have been missed: read everything again.
    Resync,
}

/// An ordered source of the [`Change`]s made to a shared store, by any
/// process. Implemented by the PostgreSQL backend.
pub trait ChangeFeed: Send {
    /// Waits at most `wait` for changes made since the last call and
    /// returns them. An error (the database is unreachable) loses nothing:
    /// the next call resumes where the last good one stopped.
    fn next(&mut self, wait: Duration) -> Result<FeedEvent>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::JwtRevocationTarget;

    #[test]
    fn changes_round_trip_through_their_json() {
        let changes = [
            Change::Account {
                kind: AccountKind::User,
                account: Account {
                    id: 5870,
                    name: "user5870".into(),
                    active: false,
                    created_at: 1,
                },
            },
            Change::TokenRevoked {
                id: "0123456789abcdef".parse().unwrap(),
            },
            Change::JwtRevoked {
                revocation: JwtRevocation {
                    target: JwtRevocationTarget::Merchant { id: 1 },
                    revoked_at: 2,
                },
            },
            Change::JwtStateChanged,
            Change::TokensImported,
            Change::Restored,
        ];
        for change in changes {
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(
                serde_json::from_str::<Change>(&json).unwrap(),
                change,
                "{json}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Change::Restored).unwrap(),
            r#"{"change":"restored"}"#
        );
    }
}
