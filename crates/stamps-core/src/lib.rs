//! The heart of stamps: access-token claims, their expiry rules, and the two
//! token formats of the Stamps API, with no I/O and no framework.
//!
//! Everything here is pure computation over bytes and a caller-supplied time,
//! so any Rust service can depend on it to mint and verify Stamps tokens
//! in-process, and tests can control the clock.
//!
//! * [`Claims`] are the JWT payload, serialised in the exact key order of the
//!   Stamps documentation (`token_type, exp, iat, jti, user_id, merchant_id`).
//! * [`JwtCodec`] mints HS256 JWTs whose header bytes are exactly
//!   `{"typ":"JWT","alg":"HS256"}` and verifies them with a pinned algorithm,
//!   under several keys (one that signs, older ones that still verify).
//! * [`ExpiryRules`] hold the lifetime and leeway; [`Clock`] abstracts time.
//! * [`StaticToken`] is the format of the long-lived static tokens:
//!   a fixed prefix, a public id, a secret, and a checksum; imported tokens
//!   keep the text clients already hold ([`check_imported_text`]) and are
//!   found by a keyed digest ([`LookupKey`], [`LookupDigest`]).
//!
//! # Example
//!
//! ```
//! use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey};
//!
//! let key = SigningKey::new(b"a secret of at least thirty-two bytes!".to_vec())?;
//! let codec = JwtCodec::new(KeySet::new(key), ExpiryRules::default());
//!
//! let now = 1_657_246_216;
//! let minted = codec.mint(5870, 1, now);
//! let claims = codec.verify(&minted.token, now)?;
//! assert_eq!(claims.user_id, 5870);
//! assert_eq!(claims.exp, now + 24 * 60 * 60);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod claims;
mod error;
mod expiry;
mod imported;
mod jwt;
mod keys;
mod static_token;

pub use claims::{Claims, Jti, TokenType};
pub use error::{ConfigError, ImportedTokenError, InvalidReason, StaticTokenError, VerifyError};
pub use expiry::{Clock, ExpiryRules, ManualClock, SystemClock, UnixTime};
pub use imported::{
    IMPORTED_MAX_LEN, IMPORTED_MIN_LEN, LookupDigest, LookupKey, check_imported_text,
};
pub use jwt::{JwtCodec, MAX_JWT_LEN, Minted};
pub use keys::{
    KeySet, MIN_STRONG_KEY_LEN, RotatedKey, SigningKey, Weakness, scheduled_key_set, weakness,
};
pub use static_token::{StaticToken, TOKEN_PREFIX, TokenId, TokenSecret};

/// Re-exported so callers can reveal a [`StaticToken`] or [`SigningKey`]
/// deliberately, with the same `secrecy` types.
pub use secrecy::{ExposeSecret, SecretString};
