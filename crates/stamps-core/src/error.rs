//! The errors of stamps-core, one enum per kind of failure.

use thiserror::Error;

/// Why a JWT was refused.
///
/// Callers usually need only one distinction, the one HTTP makes:
/// [`VerifyError::Expired`] (the client should fetch a new token) against
/// everything else ([`VerifyError::Invalid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// Occurs when a correctly signed token's `exp` lies in the past by more
    /// than the leeway.
    #[error("token expired")]
    Expired,
    /// Occurs when a token is not one this service issued, or not usable as
    /// an access token; the reason is for logs and metrics, not for clients.
    #[error("invalid token: {0}")]
    Invalid(InvalidReason),
}

impl VerifyError {
    /// True for [`VerifyError::Expired`].
    pub fn is_expired(&self) -> bool {
        matches!(self, VerifyError::Expired)
    }
}

/// The detail behind [`VerifyError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InvalidReason {
    /// Occurs when the token is not three base64url segments of JSON, or is
    /// longer than [`crate::MAX_JWT_LEN`].
    #[error("malformed")]
    Malformed,
    /// Occurs when the header names an algorithm other than HS256
    /// (`none` included).
    #[error("algorithm not allowed")]
    Algorithm,
    /// Occurs when no key of the key set produced the token's signature.
    #[error("bad signature")]
    Signature,
    /// Occurs when the payload lacks a claim, has an unknown one, or has one
    /// of the wrong type (for example `token_type` other than `access`).
    #[error("claims missing or of the wrong type")]
    Claims,
    /// Occurs when `iat` lies in the future by more than the leeway.
    #[error("issued in the future")]
    IssuedInFuture,
    /// Occurs when `exp - iat` is longer than the configured lifetime: no
    /// token this service minted lives that long.
    #[error("lives longer than the configured lifetime")]
    Lifetime,
    /// Occurs when the signing key was retired before the token's `iat`
    /// (beyond the leeway): a token forged with a retired key.
    #[error("issued after its signing key was retired")]
    RetiredKey,
}

/// Why a string is not a well-formed static token.
///
/// Parsing never looks anything up, so these errors say nothing about
/// whether a token exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StaticTokenError {
    /// Occurs when the string does not have the static token's length,
    /// prefix, separators or alphabet.
    #[error("not a static token")]
    Malformed,
    /// Occurs when the shape is right but the checksum does not match: a
    /// typo, a truncated copy, or a made-up token.
    #[error("static token checksum mismatch")]
    Checksum,
}

/// Why a text cannot be imported as a static token, or a lookup key or
/// digest is unusable. No message quotes the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ImportedTokenError {
    /// Occurs when the text is shorter than 16 characters.
    #[error("a token to import is 16 to 256 characters; this one has {len}")]
    TooShort {
        /// Its length, in bytes.
        len: usize,
    },
    /// Occurs when the text is longer than 256 characters.
    #[error("a token to import is 16 to 256 characters; this one has {len}")]
    TooLong {
        /// Its length, in bytes.
        len: usize,
    },
    /// Occurs when the text holds whitespace, a control character or
    /// anything but printable ASCII.
    #[error("a token to import is printable ASCII, with no whitespace")]
    NotPrintable,
    /// Occurs when the text starts with the issued tokens' prefix.
    #[error("a token to import must not start with stmp_ (issued tokens are not imported)")]
    Prefix,
    /// Occurs when a lookup key is shorter than 32 bytes.
    #[error("the token lookup key must be at least 32 bytes")]
    ShortKey,
    /// Occurs when a stored lookup digest is not 64 lowercase hex
    /// characters.
    #[error("a lookup digest is 64 lowercase hexadecimal characters")]
    BadDigest,
}

/// A rejected setting of the core types (expiry rules, keys).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Occurs when the token lifetime is zero, shorter than one second, or
    /// longer than [`crate::ExpiryRules::MAX_LIFETIME`].
    #[error("lifetime must be between 1 second and {max_days} days")]
    Lifetime {
        /// The longest lifetime allowed, in days.
        max_days: u64,
    },
    /// Occurs when the leeway is not strictly smaller than the lifetime.
    #[error("leeway must be smaller than the lifetime")]
    Leeway,
    /// Occurs when a signing key is empty.
    #[error("a signing key must not be empty")]
    EmptyKey,
}
