//! The static token format.
//!
//! ```text
//! stmp_0123456789abcdef_0123456789abcdefghjkmnpqrstvwxyz_0123456
//! └─┬─┘└──────┬───────┘ └──────────────┬───────────────┘ └──┬──┘
//! prefix   public id (16)          secret (32)            checksum (7)
//! ```
//!
//! * `stmp_`: a fixed prefix, so people and secret scanners recognise a
//!   stamps token on sight.
//! * the public id: 16 characters (80 random bits). The store keeps each
//!   record under it, so a presented token leads to exactly one record and
//!   one hash check, found in O(1). It is not secret: it names the token in
//!   `token list` and `token revoke`.
//! * the secret: 32 characters, 160 bits from a CSPRNG; only its argon2id
//!   hash is stored.
//! * the checksum: the CRC-32 of everything before its separator, as 7
//!   characters.
//!
//! All three fields use the lowercase Crockford base32 alphabet
//! (`0-9a-z` without `i l o u`): no characters that read alike, no case to
//! get wrong, and every character is a word character, so a double click
//! selects the whole token.
//!
//! **Why typos are caught by parsing alone.** CRC-32 detects every error
//! burst of up to 32 bits, so it catches every change of one character and
//! every swap of two neighbours inside the checked text. A change inside the
//! checksum itself alters it (the encoding is one-to-one). Fields have fixed
//! lengths and `_` is outside the alphabet, so a swap across a separator
//! puts a `_` where none may be. A random or truncated string passes with
//! odds of 1 in 2³², so garbage never costs a store lookup or an argon2 hash.
//!
//! **Why scanners find few false positives.** A scanner can match
//! `stmp_[0-9a-hjkmnp-tv-z]{16}_[0-9a-hjkmnp-tv-z]{32}_[0-9a-hjkmnp-tv-z]{7}`
//! and then check the CRC offline: an identifier that merely looks like a
//! token fails the checksum with odds of 2³² to 1.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::StaticTokenError;

/// The fixed start of every static token.
pub const TOKEN_PREFIX: &str = "stmp_";

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 7;
const ID_START: usize = TOKEN_PREFIX.len();
const SECRET_START: usize = ID_START + ID_LEN + 1;
const CHECKSUM_START: usize = SECRET_START + SECRET_LEN + 1;
const TOKEN_LEN: usize = CHECKSUM_START + CHECKSUM_LEN;

/// Which bytes belong to the alphabet: a table, since parsing is on the
/// path of every static-token request.
const IN_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

fn in_alphabet(c: u8) -> bool {
    IN_ALPHABET[usize::from(c)]
}

/// `n` characters drawn uniformly from the alphabet (5 random bits each).
fn random_chars<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes.map(|b| ALPHABET[usize::from(b & 31)])
}

/// The 7-character checksum of `checked` (everything before the checksum's
/// separator): CRC-32, most significant 5-bit group first.
fn checksum(checked: &[u8]) -> [u8; CHECKSUM_LEN] {
    let crc = crc32fast::hash(checked);
    let mut out = [0u8; CHECKSUM_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (CHECKSUM_LEN - 1 - i);
        *slot = ALPHABET[((crc >> shift) & 31) as usize];
    }
    out
}

/// The public id of a static token: 16 lowercase base32 characters, the key
/// of its record in the store. Not a secret.
///
/// ```
/// use stamps_core::TokenId;
///
/// let id: TokenId = "0123456789abcdef".parse()?;
/// assert_eq!(id.as_str(), "0123456789abcdef");
/// assert!("0123456789ABCDEF".parse::<TokenId>().is_err());
/// # Ok::<(), stamps_core::StaticTokenError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; ID_LEN]);

impl TokenId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only alphabet (ASCII) bytes ever get in, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for TokenId {
    type Err = StaticTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; ID_LEN] = s
            .as_bytes()
            .try_into()
            .map_err(|_| StaticTokenError::Malformed)?;
        if !bytes.iter().all(|&c| in_alphabet(c)) {
            return Err(StaticTokenError::Malformed);
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom("not a static token id"))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.as_str())
    }
}

/// The secret part of a static token. `Debug` hides it; equality is
/// constant-time.
#[derive(Clone)]
pub struct TokenSecret(SecretString);

impl TokenSecret {
    /// The secret characters, for hashing. Handle with care.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret([redacted])")
    }
}

impl PartialEq for TokenSecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret()
            .as_bytes()
            .ct_eq(other.expose_secret().as_bytes())
            .into()
    }
}

impl Eq for TokenSecret {}

/// A static token: its public [`TokenId`] and its [`TokenSecret`].
///
/// ```
/// use stamps_core::{ExposeSecret, StaticToken, StaticTokenError};
///
/// let token = StaticToken::generate();
/// let text = token.to_secret_string();
/// let parsed = StaticToken::parse(text.expose_secret())?;
/// assert_eq!(parsed, token);
/// assert!(text.expose_secret().starts_with("stmp_"));
///
/// // A typo is caught without any lookup.
/// let typo = text.expose_secret().replacen("stmp_", "stmp-", 1);
/// assert_eq!(StaticToken::parse(&typo), Err(StaticTokenError::Malformed));
/// # Ok::<(), StaticTokenError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StaticToken {
    id: TokenId,
    secret: TokenSecret,
}

impl StaticToken {
    /// The length of every static token, in bytes.
    pub const LEN: usize = TOKEN_LEN;

    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let secret = random_chars::<SECRET_LEN>();
        Self {
            id: TokenId(random_chars::<ID_LEN>()),
            secret: TokenSecret(SecretString::from(
                String::from_utf8_lossy(&secret).into_owned(),
            )),
        }
    }

    /// Checks a presented token like [`StaticToken::parse`] and returns
    /// only its public id, without copying the secret anywhere: for a cache
    /// that already knows the whole token.
    pub fn parse_id(text: &str) -> Result<TokenId, StaticTokenError> {
        Self::check(text)?;
        text[ID_START..SECRET_START - 1].parse()
    }

    /// Parses and checks a presented token. Looks nothing up: a malformed
    /// string or a wrong checksum is refused here, in constant work.
    pub fn parse(text: &str) -> Result<Self, StaticTokenError> {
        let id = Self::parse_id(text)?;
        let secret = text[SECRET_START..CHECKSUM_START - 1].to_owned();
        Ok(Self {
            id,
            secret: TokenSecret(SecretString::from(secret)),
        })
    }

    /// The shape, alphabet and checksum of a presented token.
    fn check(text: &str) -> Result<(), StaticTokenError> {
        let bytes = text.as_bytes();
        let shaped = bytes.len() == TOKEN_LEN
            && bytes.starts_with(TOKEN_PREFIX.as_bytes())
            && bytes[SECRET_START - 1] == b'_'
            && bytes[CHECKSUM_START - 1] == b'_'
            && bytes[ID_START..SECRET_START - 1]
                .iter()
                .all(|&c| in_alphabet(c))
            && bytes[SECRET_START..CHECKSUM_START - 1]
                .iter()
                .all(|&c| in_alphabet(c))
            && bytes[CHECKSUM_START..].iter().all(|&c| in_alphabet(c));
        if !shaped {
            return Err(StaticTokenError::Malformed);
        }
        if checksum(&bytes[..CHECKSUM_START - 1]) != bytes[CHECKSUM_START..] {
            return Err(StaticTokenError::Checksum);
        }
        // All bytes are ASCII (checked above), so the callers' slices are on
        // character boundaries.
        Ok(())
    }

    /// A token from its id and the text of its secret (32 alphabet
    /// characters): for re-assembling a token, and for tests that need a
    /// wrong secret under a real id.
    pub fn from_parts(id: TokenId, secret: &str) -> Result<Self, StaticTokenError> {
        if secret.len() != SECRET_LEN || !secret.bytes().all(in_alphabet) {
            return Err(StaticTokenError::Malformed);
        }
        Ok(Self {
            id,
            secret: TokenSecret(SecretString::from(secret.to_owned())),
        })
    }

    /// The public id.
    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// The secret.
    pub fn secret(&self) -> &TokenSecret {
        &self.secret
    }

    /// The whole token as text, to show its holder once.
    pub fn to_secret_string(&self) -> SecretString {
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        text.push_str(self.id.as_str());
        text.push('_');
        text.push_str(self.secret.expose_secret());
        let sum = checksum(text.as_bytes());
        text.push('_');
        text.push_str(std::str::from_utf8(&sum).unwrap_or_default());
        SecretString::from(text)
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(token: &StaticToken) -> String {
        token.to_secret_string().expose_secret().to_owned()
    }

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let token = StaticToken::generate();
        let s = text(&token);
        assert_eq!(s.len(), 62);
        assert_eq!(s.len(), StaticToken::LEN);
        let parts: Vec<&str> = s.split('_').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "stmp");
        assert_eq!(parts[1], token.id().as_str());
        assert_eq!(parts[2].len(), 32);
        assert_eq!(parts[3].len(), 7);
        assert!(s[5..].bytes().all(|c| c == b'_' || in_alphabet(c)));
        assert_ne!(token, StaticToken::generate());
    }

    #[test]
    fn secret_randomness_covers_the_alphabet() {
        // 160 bits: 32 characters of 5 bits, each from all 32 symbols.
        let mut seen = [false; 32];
        for _ in 0..64 {
            for c in text(&StaticToken::generate())[22..54].bytes() {
                if let Some(i) = ALPHABET.iter().position(|&a| a == c) {
                    seen[i] = true;
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = StaticToken::generate();
        let secret = token.secret().expose_secret().to_owned();
        let shown = format!("{token:?} {:?}", token.to_secret_string());
        assert!(!shown.contains(&secret), "{shown}");
        assert!(shown.contains(token.id().as_str()));
    }

    #[test]
    fn checksum_is_crc32_of_the_body() {
        let token = StaticToken::generate();
        let s = text(&token);
        let crc = crc32fast::hash(&s.as_bytes()[..54]);
        let decoded = s[55..].bytes().fold(0u64, |acc, c| {
            acc * 32 + ALPHABET.iter().position(|&a| a == c).unwrap() as u64
        });
        assert_eq!(decoded, u64::from(crc));
    }

    #[test]
    fn from_parts_reassembles_and_validates_the_secret() {
        let token = StaticToken::generate();
        let again = StaticToken::from_parts(*token.id(), token.secret().expose_secret()).unwrap();
        assert_eq!(again, token);
        let wrong = StaticToken::from_parts(*token.id(), &"0".repeat(32)).unwrap();
        assert_ne!(wrong.secret(), token.secret());
        assert!(StaticToken::from_parts(*token.id(), &"0".repeat(31)).is_err());
        assert!(StaticToken::from_parts(*token.id(), &"I".repeat(32)).is_err());
    }

    #[test]
    fn near_misses_are_malformed() {
        let s = text(&StaticToken::generate());
        for bad in [
            String::new(),
            s[..61].to_owned(),
            format!("{s}0"),
            s.to_uppercase(),
            s.replacen("stmp_", "STMP_", 1),
            format!("Token {s}"),
            format!(" {}", &s[1..]),
        ] {
            assert_eq!(
                StaticToken::parse(&bad),
                Err(StaticTokenError::Malformed),
                "{bad}"
            );
        }
    }

    /// Characters a typo could put in: the alphabet, its look-alikes, the
    /// separator, and some that are not ASCII.
    const TYPO_CHARS: &str = "0123456789abcdefghjkmnpqrstvwxyziloupABCXYZ_-. é€";

    proptest! {
        #[test]
        fn generated_tokens_parse_back(_seed in any::<u8>()) {
            let token = StaticToken::generate();
            prop_assert_eq!(StaticToken::parse(&text(&token)), Ok(token));
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,80}", near in "stmp_[0-9a-z_]{57}") {
            let _ = StaticToken::parse(&input);
            let _ = StaticToken::parse(&near);
            prop_assert_eq!(StaticToken::parse_id(&near), StaticToken::parse(&near).map(|t| *t.id()));
            let _ = input.parse::<TokenId>();
        }

        #[test]
        fn every_single_substitution_is_caught(_seed in any::<u8>()) {
            let s = text(&StaticToken::generate());
            let chars: Vec<char> = s.chars().collect();
            for i in 0..chars.len() {
                for c in TYPO_CHARS.chars().filter(|&c| c != chars[i]) {
                    let mut typo = chars.clone();
                    typo[i] = c;
                    let typo: String = typo.into_iter().collect();
                    prop_assert!(StaticToken::parse(&typo).is_err(), "{} accepted", typo);
                }
            }
        }

        #[test]
        fn every_adjacent_transposition_is_caught(_seed in any::<u8>()) {
            let s = text(&StaticToken::generate());
            let bytes = s.as_bytes();
            for i in 0..bytes.len() - 1 {
                if bytes[i] == bytes[i + 1] {
                    continue;
                }
                let mut swapped = bytes.to_vec();
                swapped.swap(i, i + 1);
                let swapped = String::from_utf8(swapped).unwrap();
                prop_assert!(StaticToken::parse(&swapped).is_err(), "{} accepted", swapped);
            }
        }
    }
}
