//! Why a credential was refused or a JWT not issued: [`AuthError`], the one
//! error of the [`Authenticator`](crate::Authenticator). Each variant is one
//! answer a client may see; the HTTP layer gives each its status and body
//! (stamps-http's `ApiError` has `From<AuthError>`).

use stamps_store::StoreError;

use crate::credentials::MalformedCredentials;
use crate::throttle::Throttled;

/// A refusal, as the client is told it. One `InvalidToken` for every
/// reason a credential grants nothing (unknown, wrong, revoked, disabled):
/// the reason is for operators ([`AuthReason`](crate::AuthReason)), never
/// for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials of a scheme the request could be authenticated with
    /// (401 `not_authenticated`).
    #[error("no credentials")]
    NotAuthenticated,
    /// A correctly signed JWT past its expiry (401 `token_expired`).
    #[error("the token has expired")]
    TokenExpired,
    /// A credential that does not (or no longer) grant access
    /// (401 `invalid_token`).
    #[error("invalid token")]
    InvalidToken,
    /// A live static token asked for a merchant it was not issued for
    /// (403 `merchant_forbidden`).
    #[error("the token is not valid for this merchant")]
    MerchantForbidden,
    /// Over a failure limit, the argon2 queue's bound or the issuance quota
    /// (429 `throttled`, with `Retry-After`).
    #[error("throttled for {} s", .0.retry_after)]
    Throttled(Throttled),
    /// The store could not answer in time, or is full
    /// (503 `store_unavailable`).
    #[error("the store is unavailable")]
    StoreUnavailable,
    /// Anything unexpected (500 `internal_error`); the cause is logged
    /// where it happened.
    #[error("internal error")]
    Internal,
}

impl From<Throttled> for AuthError {
    fn from(throttled: Throttled) -> Self {
        AuthError::Throttled(throttled)
    }
}

impl From<MalformedCredentials> for AuthError {
    /// A known scheme with no readable credential is a wrong one.
    fn from(_: MalformedCredentials) -> Self {
        AuthError::InvalidToken
    }
}

impl From<StoreError> for AuthError {
    /// A store that cannot be reached, is full or is locked is
    /// `StoreUnavailable`; anything else `Internal`. Both are logged here,
    /// with the cause, which the client never sees.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(_) | StoreError::Full(_) | StoreError::Locked { .. } => {
                tracing::error!(error = %e, "store unavailable");
                AuthError::StoreUnavailable
            }
            other => {
                tracing::error!(error = %other, "store error");
                AuthError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_unavailable_and_anything_else_internal() {
        let unavailable = [
            StoreError::Backend("connection refused".into()),
            StoreError::Full("the file system is full".into()),
            StoreError::Locked {
                path: "/var/lib/stamps/db".into(),
            },
        ];
        for e in unavailable {
            assert_eq!(AuthError::from(e), AuthError::StoreUnavailable);
        }
        assert_eq!(
            AuthError::from(StoreError::Corrupt {
                tree: "tokens".into(),
                reason: "bad record".into(),
            }),
            AuthError::Internal
        );
    }
}
