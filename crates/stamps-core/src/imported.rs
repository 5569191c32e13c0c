//! Imported static tokens: the text that clients of an existing deployment
//! already hold (Django REST framework's 40-hex keys, the Stamps docs'
//! `23095sgtr95402mkdls954002`), kept as it is so that no client must be
//! reconfigured; and the keyed lookup that finds one without trying hashes.
//!
//! An imported token has no public id or checksum inside it, so the store
//! finds its record by a [`LookupDigest`]: an HMAC-SHA256 of the whole text
//! under a [`LookupKey`] that is kept apart from the store (a key file or a
//! setting, like the JWT secret). Without that key, the digests in a stolen
//! database or export test no guess faster than the argon2id hash beside
//! them; see `docs/TOKENS.md`.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ImportedTokenError;
use crate::static_token::TOKEN_PREFIX;

/// The shortest imported token, in characters.
pub const IMPORTED_MIN_LEN: usize = 16;

/// The longest imported token, in characters.
pub const IMPORTED_MAX_LEN: usize = 256;

/// Checks that `text` may be imported: 16 to 256 printable ASCII
/// characters, no whitespace, not starting with the issued tokens' prefix
/// (`stmp_`, which would make it ambiguous). The error never quotes the
/// text.
///
/// ```
/// use stamps_core::check_imported_text;
///
/// assert!(check_imported_text("23095sgtr95402mkdls954002").is_ok());
/// assert!(check_imported_text("9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b").is_ok());
/// assert!(check_imported_text("too short").is_err());
/// assert!(check_imported_text("stmp_0123456789abcdef").is_err());
/// ```
pub fn check_imported_text(text: &str) -> Result<(), ImportedTokenError> {
    let len = text.len();
    if len < IMPORTED_MIN_LEN {
        return Err(ImportedTokenError::TooShort { len });
    }
    if len > IMPORTED_MAX_LEN {
        return Err(ImportedTokenError::TooLong { len });
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ImportedTokenError::NotPrintable);
    }
    if text.starts_with(TOKEN_PREFIX) {
        return Err(ImportedTokenError::Prefix);
    }
    Ok(())
}

/// The secret key of the imported tokens' lookup. Its `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct LookupKey {
    mac: Hmac<Sha256>,
}

impl LookupKey {
    /// A lookup key of these bytes (at least 32: it stands between a stolen
    /// database and fast guessing).
    pub fn new(secret: &[u8]) -> Result<Self, ImportedTokenError> {
        if secret.len() < 32 {
            return Err(ImportedTokenError::ShortKey);
        }
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| ImportedTokenError::ShortKey)?;
        Ok(Self { mac })
    }

    /// The digest the store finds `text`'s record by.
    ///
    /// ```
    /// use stamps_core::LookupKey;
    ///
    /// let key = LookupKey::new(&[7; 32])?;
    /// let digest = key.digest("23095sgtr95402mkdls954002");
    /// assert_eq!(digest, key.digest("23095sgtr95402mkdls954002"));
    /// assert_ne!(digest, key.digest("23095sgtr95402mkdls954003"));
    /// assert_ne!(digest, LookupKey::new(&[8; 32])?.digest("23095sgtr95402mkdls954002"));
    /// assert_eq!(digest.to_string().parse::<stamps_core::LookupDigest>()?, digest);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn digest(&self, text: &str) -> LookupDigest {
        let mut mac = self.mac.clone();
        mac.update(b"stamps imported token\0");
        mac.update(text.as_bytes());
        LookupDigest(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LookupKey([redacted])")
    }
}

/// An imported token's lookup digest: 32 bytes, written as 64 lowercase hex
/// characters. Not a secret by itself: without the [`LookupKey`] it tests
/// no guess.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupDigest([u8; 32]);

impl LookupDigest {
    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for LookupDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for LookupDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupDigest({self})")
    }
}

impl FromStr for LookupDigest {
    type Err = ImportedTokenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0_u8; 32];
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImportedTokenError::BadDigest);
        }
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ImportedTokenError::BadDigest)?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for LookupDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LookupDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rules_of_importable_text() {
        assert!(check_imported_text(&"a".repeat(16)).is_ok());
        assert!(check_imported_text(&"a".repeat(256)).is_ok());
        assert!(check_imported_text("!#$%&'()*+,-./:;<=>?@[]^_`{|}~0").is_ok());
        assert_eq!(
            check_imported_text(&"a".repeat(15)),
            Err(ImportedTokenError::TooShort { len: 15 })
        );
        assert_eq!(
            check_imported_text(&"a".repeat(257)),
            Err(ImportedTokenError::TooLong { len: 257 })
        );
        for bad in [
            "aaaaaaaa aaaaaaaa",
            "aaaaaaaa\taaaaaaaa",
            "aaaaaaaaaaaaaaaé",
            "aaaaaaaaaaaaaaaa\n",
        ] {
            assert_eq!(
                check_imported_text(bad),
                Err(ImportedTokenError::NotPrintable),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_imported_text("stmp_aaaaaaaaaaaaaaaa"),
            Err(ImportedTokenError::Prefix)
        );
        assert_eq!(
            LookupKey::new(&[1; 31]).err(),
            Some(ImportedTokenError::ShortKey)
        );
        assert!(format!("{:?}", LookupKey::new(&[1; 32]).unwrap()).contains("redacted"));
    }

    proptest! {
        #[test]
        fn digests_round_trip_and_never_quote_the_text(text in "[!-~]{16,64}") {
            let key = LookupKey::new(&[9; 32]).unwrap();
            let digest = key.digest(&text);
            let written = digest.to_string();
            prop_assert_eq!(written.len(), 64);
            prop_assert!(!written.contains(&text));
            prop_assert_eq!(written.parse::<LookupDigest>().unwrap(), digest);
            let json = serde_json::to_string(&digest).unwrap();
            prop_assert_eq!(serde_json::from_str::<LookupDigest>(&json).unwrap(), digest);
        }
    }
}
