//! The protocol: one JSON [`Request`] per line, one JSON [`Response`]
//! per line back.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use stamps_core::{LookupDigest, TokenId, UnixTime};

use crate::error::{Result, StoreError};
use crate::records::{AccountKind, AuditEvent, JwtRevocationTarget, TokenFilter, TokenRecord};
use crate::snapshot::Snapshot;

/// One call of a [`Store`](crate::Store) method, as sent over the admin socket: one
/// variant per required method but `hasher` and `now`, which are local to
/// each side. Borrowed on the client side (a `restore` is not copied),
/// owned once received.
///
/// # The admin socket protocol
///
/// Newline-delimited JSON over a Unix stream. The client writes one
/// [`Request`] per line; the server answers each with one [`Response`]
/// line, in order, until the client closes its end. A line longer than
/// [`MAX_LINE_BYTES`](crate::MAX_LINE_BYTES) (1 GiB: `restore` carries a whole export) is refused
/// rather than read forever.
///
/// ```text
/// → {"add_account":{"kind":"merchant","name":"My Merchant","id":1}}
/// ← {"ok":{"id":1,"name":"My Merchant","active":true,"created_at":1764340000}}
/// → {"revoke_token":{"id":"0123456789abcdef"}}
/// ← {"err":{"not_found":{"kind":"token","id":"0123456789abcdef"}}}
/// ```
///
/// Errors travel as the [`StoreError`] the server's store returned (it is
/// serialisable) and come back equal: same variant, same fields, same text.
///
/// No secret crosses the socket: [`Store::create_token`](crate::Store::create_token) runs in the
/// client, which hashes the new secret and sends only the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request<'a> {
    /// [`Store::add_account`](crate::Store::add_account).
    AddAccount {
        /// Merchant or user.
        kind: AccountKind,
        /// Its name.
        name: Cow<'a, str>,
        /// The id asked for, if any.
        id: Option<u64>,
    },
    /// [`Store::account`](crate::Store::account).
    Account {
        /// Merchant or user.
        kind: AccountKind,
        /// Its id.
        id: u64,
    },
    /// [`Store::accounts`](crate::Store::accounts).
    Accounts {
        /// Merchants or users.
        kind: AccountKind,
    },
    /// [`Store::set_account_active`](crate::Store::set_account_active).
    SetAccountActive {
        /// Merchant or user.
        kind: AccountKind,
        /// Its id.
        id: u64,
        /// Enabled or disabled.
        active: bool,
    },
    /// [`Store::insert_tokens`](crate::Store::insert_tokens).
    InsertTokens {
        /// The records (their hashes, never a secret).
        records: Cow<'a, [TokenRecord]>,
    },
    /// [`Store::record_last_used`](crate::Store::record_last_used).
    RecordLastUsed {
        /// (token id, when it last authenticated).
        uses: Cow<'a, [(TokenId, UnixTime)]>,
    },
    /// [`Store::imported_token`](crate::Store::imported_token).
    ImportedToken {
        /// The lookup digest.
        lookup: LookupDigest,
    },
    /// [`Store::has_imported_tokens`](crate::Store::has_imported_tokens).
    HasImportedTokens,
    /// [`Store::token`](crate::Store::token).
    Token {
        /// The public id.
        id: TokenId,
    },
    /// [`Store::tokens`](crate::Store::tokens).
    Tokens {
        /// Which tokens.
        filter: TokenFilter,
    },
    /// [`Store::revoke_token`](crate::Store::revoke_token).
    RevokeToken {
        /// The public id.
        id: TokenId,
    },
    /// [`Store::replace_token_hash`](crate::Store::replace_token_hash).
    ReplaceTokenHash {
        /// The public id.
        id: TokenId,
        /// The hash expected now.
        old_hash: Cow<'a, str>,
        /// Its replacement.
        new_hash: Cow<'a, str>,
    },
    /// [`Store::snapshot`](crate::Store::snapshot).
    Snapshot,
    /// [`Store::restore`](crate::Store::restore).
    Restore {
        /// Everything to load.
        snapshot: Cow<'a, Snapshot>,
    },
    /// [`Store::revoke_jwts`](crate::Store::revoke_jwts).
    RevokeJwts {
        /// What to revoke.
        target: JwtRevocationTarget,
    },
    /// [`Store::jwt_revocations`](crate::Store::jwt_revocations).
    JwtRevocations,
    /// [`Store::rotate_signing_key`](crate::Store::rotate_signing_key).
    RotateSigningKey {
        /// [`Store::rotate_signing_key_with`](crate::Store::rotate_signing_key_with)'s `drop_previous`.
        #[serde(default)]
        drop_previous: bool,
    },
    /// [`Store::signing_keys`](crate::Store::signing_keys) (the answer carries the keys: the socket is
    /// as private as the key file beside it).
    SigningKeys,
    /// [`Store::prune`](crate::Store::prune).
    Prune {
        /// Revocations and keys retired before this are removed.
        expired_before: UnixTime,
    },
    /// [`Store::append_audit`](crate::Store::append_audit).
    AppendAudit {
        /// The events, in order.
        events: Cow<'a, [AuditEvent]>,
    },
    /// [`Store::audit`](crate::Store::audit).
    Audit {
        /// From this time on.
        since: UnixTime,
    },
    /// [`Store::prune_audit`](crate::Store::prune_audit).
    PruneAudit {
        /// Events older than this are deleted.
        before: UnixTime,
        /// About this many at most.
        max_events: usize,
    },
}

/// The answer to one [`Request`]: the method's result, or its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response<T> {
    /// The method succeeded with this value.
    Ok(T),
    /// The method failed, with the store's error as it is.
    Err(StoreError),
}

impl<T> From<Result<T>> for Response<T> {
    fn from(result: Result<T>) -> Self {
        match result {
            Ok(value) => Response::Ok(value),
            Err(e) => Response::Err(e),
        }
    }
}

impl<T> Response<T> {
    /// The result the server's store gave.
    pub fn into_result(self) -> Result<T> {
        match self {
            Response::Ok(value) => Ok(value),
            Response::Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn every_error() -> Vec<StoreError> {
        vec![
            StoreError::NotFound {
                kind: "merchant".into(),
                id: "7".into(),
            },
            StoreError::NotFound {
                kind: "token".into(),
                id: "0123456789abcdef".into(),
            },
            StoreError::Duplicate {
                kind: "user".into(),
                id: "5870".into(),
            },
            StoreError::InvalidText {
                field: "label".into(),
                reason: "must not contain control characters".into(),
            },
            StoreError::InvalidText {
                field: "name".into(),
                reason: "must be at most 200 characters".into(),
            },
            StoreError::InvalidId {
                kind: "user".into(),
                id: 0,
            },
            StoreError::NotEmpty,
            StoreError::InvalidImport {
                line: 4,
                reason: "bad \"line\"\nwith a newline".into(),
            },
            StoreError::Locked {
                path: "/var/lib/stamps/db".into(),
            },
            StoreError::SchemaTooNew {
                path: "/d/db".into(),
                found: 9,
                supported: 1,
            },
            StoreError::Corrupt {
                tree: "tokens".into(),
                reason: "expected value at line 1".into(),
            },
            StoreError::Hash("bad params".into()),
            StoreError::Backend("disk full".into()),
            StoreError::Full("the file system is full".into()),
            StoreError::DataDir {
                path: "/d".into(),
                problem: "it has mode 0755".into(),
            },
        ]
    }

    #[test]
    fn errors_round_trip_through_json() {
        for error in every_error() {
            let line = serde_json::to_vec(&Response::<()>::from(Err(error.clone()))).unwrap();
            assert!(!line.contains(&b'\n'));
            let back: Response<()> = serde_json::from_slice(&line).unwrap();
            let back = back.into_result().unwrap_err();
            assert_eq!(back, error);
            assert_eq!(back.to_string(), error.to_string());
        }
    }

    #[test]
    fn words_a_newer_server_sends_are_kept() {
        let line = br#"{"err":{"not_found":{"kind":"widget","id":"3"}}}"#;
        let back: Response<()> = serde_json::from_slice(line).unwrap();
        assert_eq!(
            back.into_result().unwrap_err().to_string(),
            "no widget with id 3"
        );
    }

    #[test]
    fn requests_have_a_readable_form() {
        let request = Request::AddAccount {
            kind: AccountKind::Merchant,
            name: "My Merchant".into(),
            id: Some(1),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"add_account":{"kind":"merchant","name":"My Merchant","id":1}}"#
        );
        assert_eq!(serde_json::from_str::<Request<'_>>(&text).unwrap(), request);
        assert_eq!(
            serde_json::to_string(&Request::Snapshot).unwrap(),
            r#""snapshot""#
        );
    }
}
