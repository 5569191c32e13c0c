//! HS256 signing keys and the key set used for rotation.

use std::fmt;

use hmac::{Hmac, KeyInit};
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// RFC 7518 §3.2: an HS256 key must be at least 256 bits. Shorter keys are
/// accepted by [`SigningKey::new`] (test vectors such as the seed's `TESTJWT`
/// need them) but flagged by [`SigningKey::is_weak`], so a server can refuse
/// them unless told otherwise.
pub const MIN_STRONG_KEY_LEN: usize = 32;

/// One HS256 secret, with its HMAC state precomputed.
///
/// `Debug` never shows the secret, and equality is constant-time.
///
/// ```
/// use stamps_core::SigningKey;
///
/// let key = SigningKey::new(b"TESTJWT".to_vec())?;
/// assert!(key.is_weak());
/// assert_eq!(format!("{key:?}"), "SigningKey([redacted])");
/// # Ok::<(), stamps_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    secret: SecretSlice<u8>,
    /// HMAC state after absorbing the key: cloning it skips the key schedule
    /// on every signature.
    pub(crate) mac: Hmac<Sha256>,
    /// The same key for jsonwebtoken, the reference implementation.
    pub(crate) decoding: DecodingKey,
}

impl SigningKey {
    /// A key from raw secret bytes. Fails only for an empty secret.
    pub fn new(secret: Vec<u8>) -> Result<Self, ConfigError> {
        if secret.is_empty() {
            return Err(ConfigError::EmptyKey);
        }
        let mac = Hmac::<Sha256>::new_from_slice(&secret).map_err(|_| ConfigError::EmptyKey)?;
        let decoding = DecodingKey::from_secret(&secret).map_err(|_| ConfigError::EmptyKey)?;
        Ok(Self {
            secret: SecretSlice::from(secret),
            mac,
            decoding,
        })
    }

    /// True when the key is shorter than [`MIN_STRONG_KEY_LEN`] bytes.
    pub fn is_weak(&self) -> bool {
        self.secret.expose_secret().len() < MIN_STRONG_KEY_LEN
    }

    /// The secret bytes, for storing the key. Handle with care.
    pub fn expose_secret(&self) -> &[u8] {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.secret
            .expose_secret()
            .ct_eq(other.secret.expose_secret())
            .into()
    }
}

impl Eq for SigningKey {}

/// The keys a service holds: the current one signs and verifies; older ones
/// only verify, so that tokens signed before a rotation stay valid until
/// they expire.
///
/// The JWT header carries no `kid` (it must stay byte-identical to the
/// Stamps one), so verification tries the current key first, then the older
/// ones in order.
///
/// ```
/// use stamps_core::{KeySet, SigningKey};
///
/// let old = SigningKey::new(b"old secret, at least thirty-two bytes".to_vec())?;
/// let new = SigningKey::new(b"new secret, at least thirty-two bytes".to_vec())?;
/// let keys = KeySet::new(old).rotated(new.clone());
/// assert_eq!(keys.current(), &new);
/// assert_eq!(keys.len(), 2);
/// # Ok::<(), stamps_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    current: SigningKey,
    previous: Vec<SigningKey>,
}

impl KeySet {
    /// A set with one key, which signs.
    pub fn new(current: SigningKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// A set whose current key signs and whose `previous` keys, newest first,
    /// still verify.
    pub fn with_previous(current: SigningKey, previous: Vec<SigningKey>) -> Self {
        Self { current, previous }
    }

    /// This set after a rotation: `next` signs, the current key joins the
    /// verifying ones at the front.
    pub fn rotated(mut self, next: SigningKey) -> Self {
        let old = std::mem::replace(&mut self.current, next);
        self.previous.insert(0, old);
        self
    }

    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Every key that verifies, the current one first.
    pub fn iter(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// How many keys verify (at least one).
    pub fn len(&self) -> usize {
        1 + self.previous.len()
    }

    /// Always false: a key set holds at least its current key.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_keys_are_refused_and_short_ones_flagged() {
        assert_eq!(SigningKey::new(Vec::new()), Err(ConfigError::EmptyKey));
        assert!(SigningKey::new(vec![7; 31]).unwrap().is_weak());
        assert!(!SigningKey::new(vec![7; 32]).unwrap().is_weak());
    }

    #[test]
    fn debug_hides_the_secret_and_equality_compares_bytes() {
        let a = SigningKey::new(b"super-secret-value".to_vec()).unwrap();
        let shown = format!("{a:?} {:?}", KeySet::new(a.clone()));
        assert!(!shown.contains("super"), "{shown}");
        assert_eq!(a, SigningKey::new(b"super-secret-value".to_vec()).unwrap());
        assert_ne!(a, SigningKey::new(b"super-secret-valuf".to_vec()).unwrap());
        assert_ne!(a, SigningKey::new(b"super-secret-valu".to_vec()).unwrap());
    }

    #[test]
    fn rotation_puts_the_new_key_first_and_keeps_the_old_ones_in_order() {
        let k = |b: u8| SigningKey::new(vec![b; 32]).unwrap();
        let keys = KeySet::new(k(1)).rotated(k(2)).rotated(k(3));
        let order: Vec<u8> = keys.iter().map(|key| key.expose_secret()[0]).collect();
        assert_eq!(order, [3, 2, 1]);
        assert_eq!(keys.len(), 3);
        assert!(!keys.is_empty());
    }
}
