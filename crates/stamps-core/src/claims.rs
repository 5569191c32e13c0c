//! The JWT payload of the Stamps API.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::expiry::{ExpiryRules, UnixTime};

/// The `token_type` claim. Only access tokens exist in this API; a token of
/// any other type (say a simplejwt `refresh` token) fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// `"access"`
    Access,
}

/// The `jti` claim: 128 random bits, written as 32 lowercase hex characters
/// (as Django simplejwt writes `uuid4().hex`).
///
/// ```
/// use stamps_core::Jti;
///
/// let jti: Jti = "4eadc4014d0d4d778691b84d570a6daf".parse()?;
/// assert_eq!(jti.to_string(), "4eadc4014d0d4d778691b84d570a6daf");
/// assert!("4EADC4014D0D4D778691B84D570A6DAF".parse::<Jti>().is_err());
/// # Ok::<(), stamps_core::InvalidReason>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jti([u8; 16]);

impl Jti {
    /// A fresh id from the operating system's CSPRNG (through `rand`'s
    /// thread-local ChaCha generator, which it seeds).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The id with these 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes of the id.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jti({self})")
    }
}

impl FromStr for Jti {
    type Err = crate::InvalidReason;

    /// Accepts exactly 32 lowercase hex characters: the one spelling we
    /// mint, so a token's `jti` has a single representation.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s.as_bytes()).ok_or(crate::InvalidReason::Claims)
    }
}

/// The value of each lowercase hex digit; `INVALID` for every other byte.
const HEX_VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const INVALID: u8 = 0xff;

impl Jti {
    /// Decodes exactly 32 lowercase hex digits (on the verification path,
    /// so a table lookup per digit rather than a general hex decoder).
    fn from_hex(text: &[u8]) -> Option<Self> {
        let text: &[u8; 32] = text.try_into().ok()?;
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let (high, low) = (
                HEX_VALUES[usize::from(pair[0])],
                HEX_VALUES[usize::from(pair[1])],
            );
            if high == INVALID || low == INVALID {
                return None;
            }
            *byte = high << 4 | low;
        }
        Some(Self(bytes))
    }
}

impl Serialize for Jti {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Straight from a stack buffer: `collect_str` would go through the
        // formatting machinery on every minted and verified token.
        let mut buf = [0u8; 32];
        hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Jti {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JtiVisitor;
        impl de::Visitor<'_> for JtiVisitor {
            type Value = Jti;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 lowercase hex characters")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Jti, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(JtiVisitor)
    }
}

// The canonical payload (what `sign` writes and the scanner reads): these
// texts around the values, in this order.
const BEFORE_EXP: &[u8] = br#"{"token_type":"access","exp":"#;
const BEFORE_IAT: &[u8] = br#","iat":"#;
const BEFORE_JTI: &[u8] = br#","jti":""#;
const BEFORE_USER_ID: &[u8] = br#"","user_id":"#;
const BEFORE_MERCHANT_ID: &[u8] = br#","merchant_id":"#;
const END: &[u8] = b"}";
/// The longest canonical payload: the fixed text, four 20-digit integers
/// and the jti.
const CANONICAL_CAPACITY: usize = 184;

/// The payload of a Stamps access token.
///
/// The field order is the wire order of the Stamps documentation, and
/// serialisation keeps it, so minted tokens are byte-identical to the seed's
/// example. Parsing is strict: every claim must be present, of its type, and
/// no other claim may appear (so `verify-token` can answer with exactly the
/// keys and values inside the token).
///
/// ```
/// use stamps_core::{Claims, ExpiryRules, Jti};
///
/// let jti = "4eadc4014d0d4d778691b84d570a6daf".parse::<Jti>()?;
/// let claims = Claims::new(5870, 1, 1_657_246_216, jti, &ExpiryRules::default());
/// assert_eq!(
///     serde_json::to_string(&claims)?,
///     r#"{"token_type":"access","exp":1657332616,"iat":1657246216,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Always [`TokenType::Access`].
    pub token_type: TokenType,
    /// Expiry, seconds since the epoch: `iat` plus the lifetime.
    pub exp: UnixTime,
    /// Issue time, seconds since the epoch.
    pub iat: UnixTime,
    /// This token's unique id (revocation targets it).
    pub jti: Jti,
    /// The user the static token was issued to.
    pub user_id: u64,
    /// The merchant the token grants access to (`crm_merchant_id`).
    pub merchant_id: u64,
}

impl Claims {
    /// Parses a JWT payload, strictly (see the type's documentation).
    ///
    /// The exact form [`JwtCodec::sign`](crate::JwtCodec::sign) writes is
    /// read by a specialised scanner, several times faster than a generic
    /// JSON parser; anything else (other key order, white space, escapes)
    /// goes to `serde_json`. The scanner accepts only what `serde_json`
    /// reads the same way, which a property test checks.
    pub fn from_json(payload: &[u8]) -> Result<Self, crate::InvalidReason> {
        match Self::from_canonical_json(payload) {
            Some(claims) => Ok(claims),
            None => serde_json::from_slice(payload).map_err(|_| crate::InvalidReason::Claims),
        }
    }

    /// The payload as [`JwtCodec::sign`](crate::JwtCodec::sign) writes it:
    /// compact JSON in the wire order, the same bytes as `serde_json` writes
    /// for these claims (a property test checks), without its formatter.
    ///
    /// ```
    /// use stamps_core::{Claims, ExpiryRules, Jti};
    ///
    /// let claims = Claims::new(5870, 1, 1_657_246_216, Jti::from_bytes([0xab; 16]), &ExpiryRules::default());
    /// assert_eq!(claims.to_json(), serde_json::to_vec(&claims)?);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn to_json(&self) -> Vec<u8> {
        // The one token type: a new one would need its own text here.
        let TokenType::Access = self.token_type;
        let mut number = itoa::Buffer::new();
        let mut jti_hex = [0u8; 32];
        // 16 bytes always fit 32 hex characters.
        let _ = hex::encode_to_slice(self.jti.0, &mut jti_hex);
        let mut out = Vec::with_capacity(CANONICAL_CAPACITY);
        out.extend_from_slice(BEFORE_EXP);
        out.extend_from_slice(number.format(self.exp).as_bytes());
        out.extend_from_slice(BEFORE_IAT);
        out.extend_from_slice(number.format(self.iat).as_bytes());
        out.extend_from_slice(BEFORE_JTI);
        out.extend_from_slice(&jti_hex);
        out.extend_from_slice(BEFORE_USER_ID);
        out.extend_from_slice(number.format(self.user_id).as_bytes());
        out.extend_from_slice(BEFORE_MERCHANT_ID);
        out.extend_from_slice(number.format(self.merchant_id).as_bytes());
        out.extend_from_slice(END);
        out
    }

    /// The specialised scanner of [`Claims::from_json`]: `None` for anything
    /// but the minted form.
    fn from_canonical_json(payload: &[u8]) -> Option<Self> {
        let mut rest = payload.strip_prefix(BEFORE_EXP)?;
        let exp = take_integer(&mut rest)?;
        rest = rest.strip_prefix(BEFORE_IAT)?;
        let iat = take_integer(&mut rest)?;
        rest = rest.strip_prefix(BEFORE_JTI)?;
        let (jti, after) = rest.split_at_checked(32)?;
        let jti = Jti::from_hex(jti)?;
        rest = after.strip_prefix(BEFORE_USER_ID)?;
        let user_id = take_integer(&mut rest)?;
        rest = rest.strip_prefix(BEFORE_MERCHANT_ID)?;
        let merchant_id = take_integer(&mut rest)?;
        if rest != END {
            return None;
        }
        Some(Self {
            token_type: TokenType::Access,
            exp,
            iat,
            jti,
            user_id,
            merchant_id,
        })
    }

    /// The claims of an access token issued at `now`, expiring per `rules`.
    pub fn new(
        user_id: u64,
        merchant_id: u64,
        now: UnixTime,
        jti: Jti,
        rules: &ExpiryRules,
    ) -> Self {
        Self {
            token_type: TokenType::Access,
            exp: rules.expiry_for(now),
            iat: now,
            jti,
            user_id,
            merchant_id,
        }
    }
}

/// Takes a JSON integer in its one canonical spelling (`0`, or digits
/// without a leading zero) that fits a `u64`, from the front of `input`.
fn take_integer(input: &mut &[u8]) -> Option<u64> {
    let digits = input.iter().take_while(|c| c.is_ascii_digit()).count();
    let (number, rest) = input.split_at(digits);
    if digits == 0 || (digits > 1 && number[0] == b'0') {
        return None;
    }
    let mut value: u64 = 0;
    for &d in number {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    *input = rest;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn jti_is_32_lowercase_hex_and_random() {
        let a = Jti::random();
        let b = Jti::random();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(text.parse::<Jti>(), Ok(a));
    }

    #[test]
    fn claims_reject_missing_unknown_and_mistyped_fields() {
        let ok = r#"{"token_type":"access","exp":2,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#;
        assert!(serde_json::from_str::<Claims>(ok).is_ok());
        for bad in [
            ok.replace(r#""token_type":"access""#, r#""token_type":"refresh""#),
            ok.replace(r#","merchant_id":1"#, ""),
            ok.replace(r#""user_id":5870"#, r#""user_id":"5870""#),
            ok.replace(r#""exp":2"#, r#""exp":2.0"#),
            ok.replace(r#""exp":2"#, r#""exp":-2"#),
            ok.replace("4ead", "4EAD"),
            ok.replace(r#""merchant_id":1"#, r#""merchant_id":1,"sub":"x""#),
            ok.replace(r#""iat":1"#, r#""iat":1,"iat":1"#),
        ] {
            assert!(serde_json::from_str::<Claims>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scanner_declines_what_it_does_not_own() {
        let ok = br#"{"token_type":"access","exp":2,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#;
        assert!(Claims::from_canonical_json(ok).is_some());
        for declined in [
            r#"{"token_type":"access","exp":02,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#,
            r#"{"token_type":"access","exp":18446744073709551616,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#,
            r#"{"token_type":"access", "exp":2,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#,
            r#"{"token_type":"access","exp":2,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1} "#,
            r#"{"token_type":"access","exp":2,"iat":1,"jti":"4eadc4014d0d4d778691b84d570a6da\u0066","user_id":5870,"merchant_id":1}"#,
        ] {
            assert!(
                Claims::from_canonical_json(declined.as_bytes()).is_none(),
                "{declined}"
            );
        }
        // Declined by the scanner, still read by serde when valid JSON.
        let spaced = String::from_utf8_lossy(ok).replace(',', ", ");
        assert!(Claims::from_json(spaced.as_bytes()).is_ok());
        assert_eq!(
            Claims::from_json(b"{\"exp\":02}"),
            Err(crate::InvalidReason::Claims)
        );
    }

    /// JSON texts close to the canonical form: the canonical text with one
    /// byte changed, dropped or doubled.
    fn near_canonical() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<(u64, u64, [u8; 16], u64, u64)>(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..4u8,
        )
            .prop_map(|((exp, iat, jti, user_id, merchant_id), at, byte, edit)| {
                let claims = Claims {
                    token_type: TokenType::Access,
                    exp,
                    iat,
                    jti: Jti::from_bytes(jti),
                    user_id,
                    merchant_id,
                };
                let mut text = serde_json::to_vec(&claims).unwrap_or_default();
                let i = at.index(text.len());
                match edit {
                    0 => text[i] = byte,
                    1 => {
                        text.remove(i);
                    }
                    2 => text.insert(i, text[i]),
                    _ => {}
                }
                text
            })
    }

    proptest! {
        #[test]
        fn scanner_agrees_with_serde_json(text in near_canonical()) {
            let serde = serde_json::from_slice::<Claims>(&text).ok();
            if let Some(scanned) = Claims::from_canonical_json(&text) {
                prop_assert_eq!(Some(scanned), serde);
            }
            prop_assert_eq!(Claims::from_json(&text).ok(), serde_json::from_slice::<Claims>(&text).ok());
        }

        #[test]
        fn to_json_writes_what_serde_json_writes(
            exp in any::<u64>(), iat in any::<u64>(), jti in any::<[u8; 16]>(),
            user_id in any::<u64>(), merchant_id in any::<u64>(),
        ) {
            let claims = Claims {
                token_type: TokenType::Access, exp, iat, jti: Jti::from_bytes(jti), user_id, merchant_id,
            };
            let written = claims.to_json();
            prop_assert!(written.len() <= CANONICAL_CAPACITY);
            prop_assert_eq!(&written, &serde_json::to_vec(&claims).unwrap());
            prop_assert_eq!(Claims::from_canonical_json(&written), Some(claims));
        }

        #[test]
        fn jti_parse_never_panics_and_round_trips(s in "\\PC{0,40}", bytes in any::<[u8; 16]>()) {
            let _ = s.parse::<Jti>();
            let jti = Jti::from_bytes(bytes);
            prop_assert_eq!(jti.to_string().parse::<Jti>(), Ok(jti));
        }
    }
}
