//! HS256 signing keys and the key set used for rotation.

use std::fmt;

use hmac::{Hmac, KeyInit};
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ConfigError;
use crate::expiry::{ExpiryRules, UnixTime};

/// RFC 7518 §3.2: an HS256 key must be at least 256 bits. Shorter keys are
/// accepted by [`SigningKey::new`] (test vectors such as the seed's `TESTJWT`
/// need them) but flagged by [`SigningKey::is_weak`], so a server can refuse
/// them unless told otherwise.
pub const MIN_STRONG_KEY_LEN: usize = 32;

/// Fewer distinct bytes than this in a secret is obviously low variety: 32
/// random hex digits hold about 14, random bytes about 30.
const MIN_DISTINCT_BYTES: usize = 8;

/// Why a secret is too weak to sign HS256 tokens with (CONTRACT §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// Shorter than [`MIN_STRONG_KEY_LEN`] bytes (RFC 7518 §3.2); the length.
    TooShort(usize),
    /// One short pattern over and over (`"aaaa…"`, `"abcd" × 8`); its length.
    Repeated(usize),
    /// Made of only this many distinct bytes.
    LowVariety(usize),
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(len) => write!(f, "is too short ({len} bytes)"),
            Self::Repeated(1) => f.write_str("is one character repeated"),
            Self::Repeated(period) => write!(f, "repeats a pattern of {period} bytes"),
            Self::LowVariety(distinct) => write!(f, "has only {distinct} distinct bytes"),
        }
    }
}

/// Why `secret` is too weak to sign with, if it is: shorter than
/// [`MIN_STRONG_KEY_LEN`] bytes, a short pattern repeated (any period up to
/// half its length), or fewer than 8 distinct bytes. A random secret of 32
/// bytes or more (hex, base64 or raw) is never any of these.
///
/// ```
/// use stamps_core::{Weakness, weakness};
///
/// assert_eq!(weakness(b"TESTJWT"), Some(Weakness::TooShort(7)));
/// assert_eq!(weakness(&[b'x'; 32]), Some(Weakness::Repeated(1)));
/// assert_eq!(weakness("0123456789".repeat(4).as_bytes()), Some(Weakness::Repeated(10)));
/// assert_eq!(weakness(b"an end-to-end test secret of at least 32 bytes"), None);
/// ```
pub fn weakness(secret: &[u8]) -> Option<Weakness> {
    if secret.len() < MIN_STRONG_KEY_LEN {
        return Some(Weakness::TooShort(secret.len()));
    }
    let repeats = |period: usize| secret.iter().skip(period).zip(secret).all(|(a, b)| a == b);
    if let Some(period) = (1..=secret.len() / 2).find(|&p| repeats(p)) {
        return Some(Weakness::Repeated(period));
    }
    let mut seen = [false; 256];
    for &byte in secret {
        seen[usize::from(byte)] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count();
    (distinct < MIN_DISTINCT_BYTES).then_some(Weakness::LowVariety(distinct))
}

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

    /// A new key of [`MIN_STRONG_KEY_LEN`] random bytes (256 bits, as RFC
    /// 7518 asks for HS256).
    ///
    /// ```
    /// let key = stamps_core::SigningKey::random();
    /// assert!(!key.is_weak());
    /// ```
    pub fn random() -> Self {
        let mut secret = vec![0u8; MIN_STRONG_KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
        let mac = Hmac::<Sha256>::new_from_slice(&secret);
        let decoding = DecodingKey::from_secret(&secret);
        match (mac, decoding) {
            (Ok(mac), Ok(decoding)) => Self {
                secret: SecretSlice::from(secret),
                mac,
                decoding,
            },
            // HMAC takes keys of any length and the secret is not empty.
            _ => unreachable!("a 32-byte HMAC key is always valid"),
        }
    }

    /// True when the key is weak ([`weakness`]): shorter than
    /// [`MIN_STRONG_KEY_LEN`] bytes, or of obviously low variety.
    pub fn is_weak(&self) -> bool {
        weakness(self.secret.expose_secret()).is_some()
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
    previous: Vec<Retired>,
}

/// A key that verifies but no longer signs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Retired {
    key: SigningKey,
    /// When it stopped signing, if known: a token it verifies must have
    /// been issued by then (plus the leeway), or it is a forgery made with
    /// a key that was retired, perhaps because it leaked.
    retired_at: Option<UnixTime>,
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
    /// still verify, whatever a token's `iat` (their retirement is not
    /// known: see [`KeySet::rotated_at`]).
    pub fn with_previous(current: SigningKey, previous: Vec<SigningKey>) -> Self {
        let previous = previous
            .into_iter()
            .map(|key| Retired {
                key,
                retired_at: None,
            })
            .collect();
        Self { current, previous }
    }

    /// This set after a rotation: `next` signs, the current key joins the
    /// verifying ones at the front (for tokens of any `iat`).
    pub fn rotated(mut self, next: SigningKey) -> Self {
        let old = std::mem::replace(&mut self.current, next);
        self.previous.insert(
            0,
            Retired {
                key: old,
                retired_at: None,
            },
        );
        self
    }

    /// This set after a rotation at `retired_at`: `next` signs, and the
    /// current key verifies only tokens issued (`iat`) by then, plus the
    /// leeway: one forged later with it, if it leaked, is refused.
    ///
    /// ```
    /// use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey, VerifyError};
    ///
    /// let old = SigningKey::new(vec![1; 32])?;
    /// let rules = ExpiryRules::default();
    /// let before = JwtCodec::new(KeySet::new(old.clone()), rules).mint(1, 1, 1_000);
    /// let forged = JwtCodec::new(KeySet::new(old.clone()), rules).mint(1, 1, 2_000);
    /// let codec = JwtCodec::new(KeySet::new(old).rotated_at(SigningKey::new(vec![2; 32])?, 1_500), rules);
    /// assert!(codec.verify(&before.token, 2_000).is_ok());
    /// assert!(matches!(codec.verify(&forged.token, 2_000), Err(VerifyError::Invalid(_))));
    /// # Ok::<(), stamps_core::ConfigError>(())
    /// ```
    pub fn rotated_at(mut self, next: SigningKey, retired_at: UnixTime) -> Self {
        let old = std::mem::replace(&mut self.current, next);
        self.previous.insert(
            0,
            Retired {
                key: old,
                retired_at: Some(retired_at),
            },
        );
        self
    }

    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Every key that verifies, the current one first.
    pub fn iter(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.previous.iter().map(|r| &r.key))
    }

    /// Every key that verifies with when it stopped signing (`None`: the
    /// current key, or a retirement not known), the current one first.
    pub(crate) fn verifiers(&self) -> impl Iterator<Item = (&SigningKey, Option<UnixTime>)> {
        std::iter::once((&self.current, None))
            .chain(self.previous.iter().map(|r| (&r.key, r.retired_at)))
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

/// A signing key made by a rotation, and when it took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedKey {
    /// The key.
    pub key: SigningKey,
    /// When it started signing; the key before it stopped then.
    pub created_at: UnixTime,
    /// Made by an emergency rotation (`key rotate --drop-previous`): every
    /// earlier key, the configured one included, verifies nothing from
    /// then on, whatever their tokens' `iat`.
    pub drops_previous: bool,
}

/// The key set in force at `now`, given the configured key and the keys
/// made by rotations since.
///
/// The newest key signs. Every earlier key stopped signing when its
/// successor was created, so its last tokens expire `lifetime + leeway`
/// later: until then it still verifies, only tokens issued before it
/// stopped (plus the leeway), and after that it is dropped. The configured
/// key comes before every rotated one. A rotated key made with
/// `drops_previous` ends every earlier key at once: they verify nothing.
///
/// Returns the key set and when it next changes (the earliest moment a key
/// still verifying will be dropped), if it ever does.
///
/// ```
/// use stamps_core::{ExpiryRules, RotatedKey, SigningKey, scheduled_key_set};
///
/// let rules = ExpiryRules::default();
/// let configured = SigningKey::new(vec![1; 32])?;
/// let rotated = vec![RotatedKey { key: SigningKey::new(vec![2; 32])?, created_at: 1_000, drops_previous: false }];
/// let (keys, next_change) = scheduled_key_set(configured.clone(), rotated.clone(), &rules, 2_000);
/// assert_eq!(keys.current(), &rotated[0].key);
/// assert_eq!(keys.len(), 2); // the configured key still verifies
/// assert_eq!(next_change, Some(1_000 + 86_400 + 30 + 1));
/// let (later, _) = scheduled_key_set(configured, rotated, &rules, 1_000 + 86_400 + 31);
/// assert_eq!(later.len(), 1);
/// # Ok::<(), stamps_core::ConfigError>(())
/// ```
pub fn scheduled_key_set(
    configured: SigningKey,
    mut rotated: Vec<RotatedKey>,
    rules: &ExpiryRules,
    now: UnixTime,
) -> (KeySet, Option<UnixTime>) {
    rotated.sort_by_key(|k| k.created_at);
    let grace = rules.max_token_age_secs();
    // Oldest first: each key with the moment its successor took over. A
    // key that drops its predecessors starts the chain afresh.
    let mut chain: Vec<(SigningKey, UnixTime)> = Vec::with_capacity(rotated.len() + 1);
    let mut key = configured;
    for next in rotated {
        if next.drops_previous {
            chain.clear();
        } else {
            chain.push((key, next.created_at));
        }
        key = next.key;
    }
    let current = key;
    let mut previous = Vec::new();
    let mut next_change: Option<UnixTime> = None;
    // Newest first, as `KeySet` tries them.
    for (key, retired_at) in chain.into_iter().rev() {
        let last_valid = retired_at.saturating_add(grace);
        if now <= last_valid {
            previous.push(Retired {
                key,
                retired_at: Some(retired_at),
            });
            let drop_at = last_valid.saturating_add(1);
            next_change = Some(next_change.map_or(drop_at, |t| t.min(drop_at)));
        }
    }
    (KeySet { current, previous }, next_change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_low_variety_secrets_are_weak() {
        assert_eq!(weakness(&[b'x'; 64]), Some(Weakness::Repeated(1)));
        assert_eq!(
            weakness("abcd".repeat(8).as_bytes()),
            Some(Weakness::Repeated(4))
        );
        assert_eq!(
            weakness("abcdefghijklmnopq".repeat(2).as_bytes()),
            Some(Weakness::Repeated(17))
        );
        assert_eq!(
            weakness("aaaabbbbccccddddaaaabbbbccccdddx".as_bytes()),
            Some(Weakness::LowVariety(5))
        );
        assert_eq!(weakness(b"correct horse battery staple, twice"), None);
        assert!(SigningKey::new(vec![7; 32]).unwrap().is_weak());
    }

    proptest::proptest! {
        /// Random secrets of 32 or more bytes, raw or as hex or base64 text
        /// (what `openssl rand` gives), are never weak.
        #[test]
        fn random_secrets_are_never_weak(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 32..64)) {
            use base64::Engine;
            proptest::prop_assert_eq!(weakness(&bytes), None);
            proptest::prop_assert_eq!(weakness(hex::encode(&bytes).as_bytes()), None);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            proptest::prop_assert_eq!(weakness(b64.as_bytes()), None);
        }
    }

    #[test]
    fn empty_keys_are_refused_and_short_ones_flagged() {
        assert_eq!(SigningKey::new(Vec::new()), Err(ConfigError::EmptyKey));
        assert!(SigningKey::new(vec![7; 31]).unwrap().is_weak());
        assert!(!SigningKey::new((0..32).collect()).unwrap().is_weak());
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

    fn key(byte: u8) -> SigningKey {
        SigningKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn without_rotations_the_configured_key_signs_forever() {
        let rules = ExpiryRules::default();
        let (keys, next) = scheduled_key_set(key(1), Vec::new(), &rules, 5);
        assert_eq!(keys, KeySet::new(key(1)));
        assert_eq!(next, None);
    }

    #[test]
    fn a_rotation_that_drops_previous_keys_leaves_only_the_newer_ones() {
        let rules = ExpiryRules::default();
        let rotated = |at, byte, drops_previous| RotatedKey {
            key: key(byte),
            created_at: at,
            drops_previous,
        };
        let (keys, next) = scheduled_key_set(
            key(1),
            vec![
                rotated(100, 2, false),
                rotated(200, 3, true),
                rotated(300, 4, false),
            ],
            &rules,
            400,
        );
        // Keys 1 and 2 are gone at once; key 3 verifies what it signed.
        assert_eq!(keys.iter().cloned().collect::<Vec<_>>(), [key(4), key(3)]);
        assert_eq!(
            keys.verifiers().map(|(_, at)| at).collect::<Vec<_>>(),
            [None, Some(300)]
        );
        assert_eq!(next, Some(300 + 86_400 + 30 + 1));
    }

    #[test]
    fn retired_keys_verify_until_their_last_tokens_expire() {
        let rules = ExpiryRules::new(
            std::time::Duration::from_secs(100),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        // Out of order on purpose: the schedule sorts by creation.
        let rotated = vec![
            RotatedKey {
                key: key(3),
                created_at: 500,
                drops_previous: false,
            },
            RotatedKey {
                key: key(2),
                created_at: 200,
                drops_previous: false,
            },
        ];
        let at = |now| scheduled_key_set(key(1), rotated.clone(), &rules, now);
        // Key 1 retired at 200, key 2 at 500; each verifies 110 s longer.
        let (keys, next) = at(300);
        assert_eq!(keys.current(), &key(3));
        assert_eq!(
            keys.iter().cloned().collect::<Vec<_>>(),
            [key(3), key(2), key(1)]
        );
        assert_eq!(next, Some(311));
        let (keys, next) = at(310);
        assert_eq!(keys.len(), 3);
        assert_eq!(next, Some(311));
        let (keys, next) = at(311);
        assert_eq!(keys.iter().cloned().collect::<Vec<_>>(), [key(3), key(2)]);
        assert_eq!(next, Some(611));
        let (keys, next) = at(611);
        assert_eq!(keys, KeySet::new(key(3)));
        assert_eq!(next, None);
    }
}
