//! Minting and verifying HS256 access tokens.
//!
//! Tokens are minted with the fixed header `{"typ":"JWT","alg":"HS256"}`.
//! Verification of a token carrying exactly that header takes a specialised
//! path: one HMAC per key over the signing input and one typed parse of the
//! payload. Every other header (PyJWT's `{"alg":"HS256","typ":"JWT"}`, a
//! `kid`, another algorithm) goes through jsonwebtoken's generic decoder, the
//! reference implementation; a differential property test holds both paths
//! to the same answer on every input.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::claims::{Claims, Jti};
use crate::error::{InvalidReason, VerifyError};
use crate::expiry::{ExpiryRules, UnixTime};
use crate::keys::KeySet;

/// `{"typ":"JWT","alg":"HS256"}` in base64url: the header segment of every
/// token we mint, byte for byte the one in the Stamps documentation.
const HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// An HS256 signature (32 bytes) in unpadded base64url.
const SIGNATURE_B64_LEN: usize = 43;

/// Decoded payloads of ours stay on the stack (they are under 200 bytes).
const PAYLOAD_STACK_LEN: usize = 256;

/// The first 27 bytes of every payload we mint, and their 36 base64url
/// characters.
const CLAIMS_PREFIX_JSON: &[u8; 27] = br#"{"token_type":"access","exp"#;
const CLAIMS_PREFIX_B64: &str = "eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhw";

/// Longer strings are refused before any decoding: our tokens are about 250
/// bytes, and a bound keeps hostile input cheap.
pub const MAX_JWT_LEN: usize = 4096;

/// A freshly minted access token and its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The compact JWT, `header.payload.signature`.
    pub token: String,
    /// What the token says.
    pub claims: Claims,
}

/// Mints and verifies Stamps access tokens under a [`KeySet`] and
/// [`ExpiryRules`].
///
/// ```
/// use stamps_core::{Claims, ExpiryRules, JwtCodec, KeySet, SigningKey, VerifyError};
///
/// // The Stamps documentation's example, with its test secret.
/// let codec = JwtCodec::new(KeySet::new(SigningKey::new(b"TESTJWT".to_vec())?), ExpiryRules::default());
/// let seed = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNjU3MzMyNjE2LCJpYXQiOjE2NTcyNDYyMTYsImp0aSI6IjRlYWRjNDAxNGQwZDRkNzc4NjkxYjg0ZDU3MGE2ZGFmIiwidXNlcl9pZCI6NTg3MCwibWVyY2hhbnRfaWQiOjF9.b_TiGJEO7mKMT0BFTrF9VjPHjoGrt5Be8FPSgvn-4bY";
/// let claims = codec.verify(seed, 1_657_246_216)?;
/// assert_eq!((claims.user_id, claims.merchant_id), (5870, 1));
/// assert_eq!(codec.sign(&claims), seed);
/// assert_eq!(codec.verify(seed, 1_657_332_616 + 31), Err(VerifyError::Expired));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwtCodec {
    keys: KeySet,
    rules: ExpiryRules,
    /// jsonwebtoken's settings for the reference path: HS256 only, and no
    /// claim checks of its own (ours apply to both paths alike).
    reference: Validation,
}

impl JwtCodec {
    /// A codec signing with `keys.current()` and verifying with every key.
    pub fn new(keys: KeySet, rules: ExpiryRules) -> Self {
        let mut reference = Validation::new(Algorithm::HS256);
        reference.validate_exp = false;
        reference.validate_aud = false;
        reference.required_spec_claims.clear();
        Self {
            keys,
            rules,
            reference,
        }
    }

    /// The keys in use.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The expiry rules in use.
    pub fn rules(&self) -> &ExpiryRules {
        &self.rules
    }

    /// Mints an access token for `user_id` at `merchant_id`, issued at `now`,
    /// with a fresh random `jti`.
    pub fn mint(&self, user_id: u64, merchant_id: u64, now: UnixTime) -> Minted {
        let claims = Claims::new(user_id, merchant_id, now, Jti::random(), &self.rules);
        Minted {
            token: self.sign(&claims),
            claims,
        }
    }

    /// Signs `claims` as they are with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = claims.to_json();
        let mut token = String::with_capacity(HEADER_B64.len() + payload.len() * 4 / 3 + 48);
        token.push_str(HEADER_B64);
        token.push('.');
        BASE64URL.encode_append(&payload, &mut token);
        let mut mac = self.keys.current().mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        BASE64URL.encode_append(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// Verifies `token` at time `now` and returns its claims.
    ///
    /// Checks, in order: the length bound, the structure, the algorithm
    /// (HS256 only), the signature under any key of the set, the claims
    /// (all present, typed, `token_type` `access`, nothing else), `exp -
    /// iat` within the lifetime, `iat` by the signing key's retirement
    /// (plus the leeway) for a retired key, then `exp` and `iat` against
    /// `now` with the leeway.
    pub fn verify(&self, token: &str, now: UnixTime) -> Result<Claims, VerifyError> {
        self.verify_then(token, now, |claims, _| claims)
    }

    /// Like [`JwtCodec::verify`], and also returns the payload's JSON bytes
    /// exactly as they are inside the token: what `verify-token` answers
    /// with, without serialising the claims again.
    ///
    /// ```
    /// use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey};
    ///
    /// let codec = JwtCodec::new(KeySet::new(SigningKey::new(vec![7; 32])?), ExpiryRules::default());
    /// let minted = codec.mint(5870, 1, 1_000);
    /// let (claims, payload) = codec.verify_with_payload(&minted.token, 1_000)?;
    /// assert_eq!(payload, serde_json::to_vec(&claims)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_with_payload(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<(Claims, Vec<u8>), VerifyError> {
        self.verify_then(token, now, |claims, payload| (claims, payload.to_vec()))
    }

    /// Verifies, then hands the claims and the decoded payload to `finish`.
    fn verify_then<R>(
        &self,
        token: &str,
        now: UnixTime,
        finish: impl FnOnce(Claims, &[u8]) -> R,
    ) -> Result<R, VerifyError> {
        if token.len() > MAX_JWT_LEN {
            return Err(VerifyError::Invalid(InvalidReason::Malformed));
        }
        match token
            .strip_prefix(HEADER_B64)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            Some(rest) => self.verify_fixed_header(token, rest, now, finish),
            None => {
                let claims = self.verify_reference(token, now)?;
                // Verified, so the token has three segments and the middle
                // one decodes; fall back to re-serialising if not.
                let payload = token
                    .split('.')
                    .nth(1)
                    .and_then(|segment| URL_SAFE_NO_PAD.decode(segment).ok())
                    .unwrap_or_else(|| serde_json::to_vec(&claims).unwrap_or_default());
                Ok(finish(claims, &payload))
            }
        }
    }

    /// Verifies with jsonwebtoken's generic decoder whatever the header.
    /// Same answers as [`JwtCodec::verify`], several times slower: it is the
    /// reference that the fast path is tested against, and the path taken
    /// by tokens minted elsewhere with another header.
    pub fn verify_reference(&self, token: &str, now: UnixTime) -> Result<Claims, VerifyError> {
        if token.len() > MAX_JWT_LEN {
            return Err(VerifyError::Invalid(InvalidReason::Malformed));
        }
        for (key, retired_at) in self.keys.verifiers() {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.reference) {
                Ok(data) => return self.check_claims(data.claims, retired_at, now),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(VerifyError::Invalid(reason_of(e.kind()))),
            }
        }
        Err(VerifyError::Invalid(InvalidReason::Signature))
    }

    /// The fast path: the header is our fixed one, `rest` is what follows
    /// its dot.
    fn verify_fixed_header<R>(
        &self,
        token: &str,
        rest: &str,
        now: UnixTime,
        finish: impl FnOnce(Claims, &[u8]) -> R,
    ) -> Result<R, VerifyError> {
        let malformed = VerifyError::Invalid(InvalidReason::Malformed);
        // A vectorised search for the dot, rather than `str::split_once`'s.
        let dot = memchr::memchr(b'.', rest.as_bytes()).ok_or(malformed)?;
        let (payload_b64, signature_b64) = (&rest[..dot], &rest[dot + 1..]);
        let signing_input = &token.as_bytes()[..HEADER_B64.len() + 1 + payload_b64.len()];

        // Any other length cannot decode to the 32 bytes of an HS256 tag.
        if signature_b64.len() != SIGNATURE_B64_LEN {
            return Err(VerifyError::Invalid(InvalidReason::Signature));
        }
        let mut signature = [0u8; SIGNATURE_B64_LEN / 4 * 3 + 3];
        let signature = decode_into(signature_b64, &mut signature).ok_or(malformed)?;
        // `verify_slice` compares in constant time.
        let signer = self.keys.verifiers().find(|(key, _)| {
            let mut mac = key.mac.clone();
            mac.update(signing_input);
            mac.verify_slice(signature).is_ok()
        });
        let Some((_, retired_at)) = signer else {
            return Err(VerifyError::Invalid(InvalidReason::Signature));
        };

        let mut buffer = [0u8; PAYLOAD_STACK_LEN];
        let heap;
        let payload = match payload_b64.strip_prefix(CLAIMS_PREFIX_B64) {
            // Ours: the constant start is known, only the rest is decoded
            // (36 characters make whole base64 quads, so decoding in two
            // parts accepts exactly what decoding at once would).
            Some(tail)
                if tail.len() / 4 * 3 + 3 <= PAYLOAD_STACK_LEN - CLAIMS_PREFIX_JSON.len() =>
            {
                let (prefix, rest) = buffer.split_at_mut(CLAIMS_PREFIX_JSON.len());
                prefix.copy_from_slice(CLAIMS_PREFIX_JSON);
                let len = decode_into(tail, rest).ok_or(malformed)?.len();
                &buffer[..CLAIMS_PREFIX_JSON.len() + len]
            }
            // Signed elsewhere: decoded whole, to the heap.
            _ => {
                heap = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| malformed)?;
                &heap[..]
            }
        };
        let claims = Claims::from_json(payload).map_err(VerifyError::Invalid)?;
        Ok(finish(self.check_claims(claims, retired_at, now)?, payload))
    }

    /// The rules on signed claims, for a token signed by a key retired at
    /// `retired_at` (`None`: the current key, or one whose retirement is
    /// not known). What no token of ours can be comes first, then expiry.
    fn check_claims(
        &self,
        claims: Claims,
        retired_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<Claims, VerifyError> {
        if claims.exp.saturating_sub(claims.iat) > self.rules.lifetime().as_secs() {
            return Err(VerifyError::Invalid(InvalidReason::Lifetime));
        }
        if retired_at
            .is_some_and(|at| claims.iat > at.saturating_add(self.rules.leeway().as_secs()))
        {
            return Err(VerifyError::Invalid(InvalidReason::RetiredKey));
        }
        if self.rules.is_expired(claims.exp, now) {
            return Err(VerifyError::Expired);
        }
        if self.rules.is_issued_in_future(claims.iat, now) {
            return Err(VerifyError::Invalid(InvalidReason::IssuedInFuture));
        }
        Ok(claims)
    }
}

/// The base64url of minting and of the fast path: unpadded, canonical
/// trailing bits only, as strict as base64's `URL_SAFE_NO_PAD` (the
/// reference path's, jsonwebtoken's) and several times faster (SIMD).
const BASE64URL: base64_simd::Base64 = base64_simd::URL_SAFE_NO_PAD;

/// Decodes unpadded base64url `text` into the start of `out` and returns
/// what it wrote; `None` if `text` is not canonical unpadded base64url or
/// `out` is too short.
fn decode_into<'a>(text: &str, out: &'a mut [u8]) -> Option<&'a [u8]> {
    let len = BASE64URL.decoded_length(text.as_bytes()).ok()?;
    // `decode` panics on a short buffer: give it one of exactly `len`.
    let out = out.get_mut(..len)?;
    BASE64URL
        .decode(text.as_bytes(), base64_simd::Out::from_slice(out))
        .ok()
        .map(|decoded| &*decoded)
}

fn reason_of(kind: &ErrorKind) -> InvalidReason {
    match kind {
        ErrorKind::InvalidSignature => InvalidReason::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => InvalidReason::Algorithm,
        ErrorKind::Json(_) => InvalidReason::Claims,
        _ => InvalidReason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::TokenType;
    use crate::keys::SigningKey;
    use proptest::prelude::*;
    use std::time::Duration;

    const SEED: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNjU3MzMyNjE2LCJpYXQiOjE2NTcyNDYyMTYsImp0aSI6IjRlYWRjNDAxNGQwZDRkNzc4NjkxYjg0ZDU3MGE2ZGFmIiwidXNlcl9pZCI6NTg3MCwibWVyY2hhbnRfaWQiOjF9.b_TiGJEO7mKMT0BFTrF9VjPHjoGrt5Be8FPSgvn-4bY";
    const SEED_IAT: u64 = 1_657_246_216;

    fn key(secret: &[u8]) -> SigningKey {
        SigningKey::new(secret.to_vec()).unwrap()
    }

    fn seed_codec() -> JwtCodec {
        JwtCodec::new(KeySet::new(key(b"TESTJWT")), ExpiryRules::default())
    }

    fn seed_claims() -> Claims {
        Claims {
            token_type: TokenType::Access,
            exp: 1_657_332_616,
            iat: SEED_IAT,
            jti: "4eadc4014d0d4d778691b84d570a6daf".parse().unwrap(),
            user_id: 5870,
            merchant_id: 1,
        }
    }

    /// Signs arbitrary header and payload bytes, as another library would.
    fn sign_raw(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        sign_input(secret, &input)
    }

    /// Signs a signing input (`header.payload`) as it is, however encoded.
    fn sign_input(secret: &[u8], input: &str) -> String {
        let mut mac = key(secret).mac;
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// What both paths must agree on: the claims, or expired versus invalid.
    fn outcome(r: Result<Claims, VerifyError>) -> Result<Claims, bool> {
        r.map_err(|e| e.is_expired())
    }

    fn assert_paths_agree(codec: &JwtCodec, token: &str, now: u64) {
        assert_eq!(
            outcome(codec.verify(token, now)),
            outcome(codec.verify_reference(token, now)),
            "paths disagree on {token:?}"
        );
    }

    #[test]
    fn header_constant_is_the_documented_header() {
        assert_eq!(
            HEADER_B64,
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256"}"#)
        );
        assert_eq!(
            CLAIMS_PREFIX_B64,
            URL_SAFE_NO_PAD.encode(CLAIMS_PREFIX_JSON)
        );
        assert!(
            serde_json::to_vec(&seed_claims())
                .unwrap()
                .starts_with(CLAIMS_PREFIX_JSON)
        );
    }

    #[test]
    fn non_canonical_base64_is_refused_on_both_paths() {
        // The seed's last signature character, `Y`, carries two unused
        // zero bits; `Z` decodes to the same 32 bytes with one of them set.
        let signature_bits = format!("{}Z", &SEED[..SEED.len() - 1]);
        // A payload whose last quad is partial (the seed's is whole),
        // changed, then signed again: the signature holds, and the
        // payload's decoding is what refuses it.
        let codec = seed_codec();
        let token = (0..4)
            .map(|extra| {
                codec.sign(&Claims {
                    user_id: 5870 + 10_000 * extra,
                    ..seed_claims()
                })
            })
            .find(|token| token.split('.').nth(1).unwrap().len() % 4 != 0)
            .unwrap();
        let (input, _) = token.rsplit_once('.').unwrap();
        // Its last character with an unused bit set.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = alphabet
            .iter()
            .position(|&c| c == *input.as_bytes().last().unwrap())
            .unwrap();
        assert_eq!(last & 1, 0);
        let payload_bits = sign_input(
            b"TESTJWT",
            &format!(
                "{}{}",
                &input[..input.len() - 1],
                char::from(alphabet[last | 1])
            ),
        );
        // Padded to a whole quad.
        let padding = "=".repeat(4 - input.split('.').nth(1).unwrap().len() % 4);
        let padded = sign_input(b"TESTJWT", &format!("{input}{padding}"));
        for token in [&signature_bits, &payload_bits, &padded] {
            assert_eq!(
                codec.verify(token, SEED_IAT),
                Err(VerifyError::Invalid(InvalidReason::Malformed)),
                "{token}"
            );
            assert!(codec.verify_reference(token, SEED_IAT).is_err(), "{token}");
        }
    }

    #[test]
    fn seed_claims_with_testjwt_mint_the_seed_token_byte_for_byte() {
        assert_eq!(seed_codec().sign(&seed_claims()), SEED);
    }

    #[test]
    fn seed_token_verifies_on_both_paths_until_exp_plus_leeway() {
        let codec = seed_codec();
        for path in [JwtCodec::verify, JwtCodec::verify_reference] {
            assert_eq!(path(&codec, SEED, SEED_IAT), Ok(seed_claims()));
            assert_eq!(path(&codec, SEED, 1_657_332_616 + 30), Ok(seed_claims()));
            assert_eq!(
                path(&codec, SEED, 1_657_332_616 + 31),
                Err(VerifyError::Expired)
            );
            assert_eq!(
                path(&codec, SEED, SEED_IAT - 31),
                Err(VerifyError::Invalid(InvalidReason::IssuedInFuture))
            );
        }
    }

    #[test]
    fn reference_path_runs_on_the_rust_crypto_backend() {
        // jsonwebtoken 12 panics at first use without exactly one backend;
        // this exercises ours (rust_crypto) through the generic decoder.
        let data = jsonwebtoken::decode::<Claims>(
            SEED,
            &jsonwebtoken::DecodingKey::from_secret(b"TESTJWT").unwrap(),
            &seed_codec().reference,
        )
        .unwrap();
        assert_eq!(data.claims, seed_claims());
        assert!(jsonwebtoken::crypto::CryptoProvider::try_get_default().is_some());
    }

    #[test]
    fn the_payload_comes_back_byte_for_byte_on_both_paths() {
        let codec = seed_codec();
        let (claims, payload) = codec.verify_with_payload(SEED, SEED_IAT).unwrap();
        assert_eq!(claims, seed_claims());
        assert_eq!(payload, serde_json::to_vec(&seed_claims()).unwrap());
        let spaced = r#"{"token_type": "access", "exp": 1657332616, "iat": 1657246216, "jti": "4eadc4014d0d4d778691b84d570a6daf", "user_id": 5870, "merchant_id": 1}"#;
        let pyjwt = sign_raw(b"TESTJWT", r#"{"alg":"HS256","typ":"JWT"}"#, spaced);
        let (claims, payload) = codec.verify_with_payload(&pyjwt, SEED_IAT).unwrap();
        assert_eq!(claims, seed_claims());
        assert_eq!(payload, spaced.as_bytes());
        assert!(
            codec
                .verify_with_payload(&pyjwt, 1_657_332_616 + 31)
                .unwrap_err()
                .is_expired()
        );
    }

    #[test]
    fn pyjwt_header_order_and_extra_header_fields_still_verify() {
        let payload = serde_json::to_string(&seed_claims()).unwrap();
        let codec = seed_codec();
        for header in [
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#,
        ] {
            let token = sign_raw(b"TESTJWT", header, &payload);
            assert_eq!(
                codec.verify(&token, SEED_IAT),
                Ok(seed_claims()),
                "{header}"
            );
            assert_paths_agree(&codec, &token, SEED_IAT);
        }
    }

    #[test]
    fn other_algorithms_none_included_are_refused() {
        let payload = serde_json::to_string(&seed_claims()).unwrap();
        let codec = seed_codec();
        for header in [
            r#"{"typ":"JWT","alg":"none"}"#,
            r#"{"typ":"JWT","alg":"None"}"#,
            r#"{"typ":"JWT","alg":"HS384"}"#,
            r#"{"typ":"JWT","alg":"HS512"}"#,
            r#"{"typ":"JWT","alg":"RS256"}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            let token = sign_raw(b"TESTJWT", header, &payload);
            assert!(codec.verify(&token, SEED_IAT).is_err(), "{header}");
            assert_paths_agree(&codec, &token, SEED_IAT);
        }
        // An unsigned token in the `alg: none` style.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(&payload)
        );
        assert!(codec.verify(&unsigned, SEED_IAT).is_err());
        let stripped = SEED.rsplit_once('.').unwrap().0.to_owned() + ".";
        assert!(codec.verify(&stripped, SEED_IAT).is_err());
    }

    #[test]
    fn signed_payloads_with_bad_claims_are_invalid_not_expired() {
        let codec = seed_codec();
        let good = serde_json::to_string(&seed_claims()).unwrap();
        for payload in [
            good.replace(r#""access""#, r#""refresh""#),
            good.replace(r#","merchant_id":1"#, ""),
            good.replace(r#""merchant_id":1"#, r#""merchant_id":1,"extra":true"#),
            good.replace(r#""user_id":5870"#, r#""user_id":"5870""#),
            "[]".to_owned(),
            "not json".to_owned(),
        ] {
            let token = sign_raw(b"TESTJWT", r#"{"typ":"JWT","alg":"HS256"}"#, &payload);
            assert_eq!(
                codec.verify(&token, SEED_IAT),
                Err(VerifyError::Invalid(InvalidReason::Claims)),
                "{payload}"
            );
            assert_paths_agree(&codec, &token, SEED_IAT);
        }
    }

    #[test]
    fn a_token_living_longer_than_the_lifetime_is_refused_whatever_its_key() {
        let codec = seed_codec();
        let lifetime = codec.rules().lifetime().as_secs();
        for exp in [SEED_IAT + lifetime + 1, u64::MAX] {
            let payload = format!(
                r#"{{"token_type":"access","exp":{exp},"iat":{SEED_IAT},"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}}"#
            );
            let token = sign_raw(b"TESTJWT", r#"{"typ":"JWT","alg":"HS256"}"#, &payload);
            assert_eq!(
                codec.verify(&token, SEED_IAT),
                Err(VerifyError::Invalid(InvalidReason::Lifetime)),
                "exp {exp}"
            );
            assert_paths_agree(&codec, &token, SEED_IAT);
        }
        // Exactly the lifetime, as minted: fine (the seed token).
        assert!(codec.verify(SEED, SEED_IAT).is_ok());
    }

    #[test]
    fn a_retired_key_verifies_only_what_it_signed_before_its_retirement() {
        let old = key(b"an old secret of at least thirty-two bytes");
        let new = key(b"a new secret of at least thirty-two bytes!");
        let rules = ExpiryRules::default();
        let with_old = JwtCodec::new(KeySet::new(old.clone()), rules);
        let leeway = rules.leeway().as_secs();
        let codec = JwtCodec::new(KeySet::new(old).rotated_at(new, 1_000), rules);
        // Signed before the rotation, or within the leeway after: valid.
        for iat in [10, 1_000, 1_000 + leeway] {
            let token = with_old.mint(1, 2, iat).token;
            assert!(codec.verify(&token, iat).is_ok(), "iat {iat}");
            assert_paths_agree(&codec, &token, iat);
        }
        // Forged with the old key later: refused, on both paths.
        let forged = with_old.mint(1, 2, 1_001 + leeway).token;
        assert_eq!(
            codec.verify(&forged, 1_001 + leeway),
            Err(VerifyError::Invalid(InvalidReason::RetiredKey))
        );
        assert_paths_agree(&codec, &forged, 1_001 + leeway);
        // The current key has no such bound.
        assert!(codec.verify(&codec.mint(1, 2, 5_000).token, 5_000).is_ok());
    }

    #[test]
    fn previous_keys_verify_but_only_the_current_one_signs() {
        let old = key(b"an old secret of at least thirty-two bytes");
        let new = key(b"a new secret of at least thirty-two bytes!");
        let rules = ExpiryRules::default();
        let before = JwtCodec::new(KeySet::new(old.clone()), rules);
        let after = JwtCodec::new(KeySet::new(old).rotated(new.clone()), rules);
        let only_new = JwtCodec::new(KeySet::new(new), rules);

        let old_token = before.mint(1, 2, 100).token;
        let new_token = after.mint(1, 2, 100).token;
        assert!(after.verify(&old_token, 100).is_ok());
        assert!(only_new.verify(&new_token, 100).is_ok());
        assert_eq!(
            only_new.verify(&old_token, 100),
            Err(VerifyError::Invalid(InvalidReason::Signature))
        );
        assert!(before.verify(&new_token, 100).is_err());
        assert_paths_agree(&after, &old_token, 100);
        assert_paths_agree(&only_new, &old_token, 100);
    }

    #[test]
    fn overlong_tokens_are_refused_before_decoding() {
        let codec = seed_codec();
        let long = format!("{SEED}{}", "A".repeat(MAX_JWT_LEN));
        assert_eq!(
            codec.verify(&long, SEED_IAT),
            Err(VerifyError::Invalid(InvalidReason::Malformed))
        );
    }

    fn arb_claims() -> impl Strategy<Value = Claims> {
        (
            0u64..4_000_000_000,
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(iat, jti, user_id, merchant_id)| {
                Claims::new(
                    user_id,
                    merchant_id,
                    iat,
                    Jti::from_bytes(jti),
                    &ExpiryRules::default(),
                )
            })
    }

    fn arb_codec() -> impl Strategy<Value = JwtCodec> {
        (
            prop::collection::vec(any::<u8>(), 1..80),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..80), 0..3),
            1u64..1_000_000,
        )
            .prop_map(|(current, previous, lifetime)| {
                let previous = previous.into_iter().map(|k| key(&k)).collect();
                let rules = ExpiryRules::new(
                    Duration::from_secs(lifetime),
                    Duration::from_secs(lifetime / 2),
                )
                .unwrap();
                JwtCodec::new(KeySet::with_previous(key(&current), previous), rules)
            })
    }

    /// Headers other libraries write, and hostile ones.
    fn arb_header() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"{"typ":"JWT","alg":"HS256"}"#.to_owned()),
            Just(r#"{"alg":"HS256","typ":"JWT"}"#.to_owned()),
            Just(r#"{"alg":"HS256"}"#.to_owned()),
            Just(r#"{"alg":"none","typ":"JWT"}"#.to_owned()),
            Just(r#"{"alg":"HS512","typ":"JWT"}"#.to_owned()),
            Just(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#.to_owned()),
            Just(r#"{ "typ" : "JWT" , "alg" : "HS256" }"#.to_owned()),
            "\\PC{0,30}",
        ]
    }

    /// Payloads: valid claims, near-misses, and noise.
    fn arb_payload() -> impl Strategy<Value = String> {
        prop_oneof![
            arb_claims().prop_map(|c| serde_json::to_string(&c).unwrap()),
            arb_claims().prop_map(|c| serde_json::to_string(&c)
                .unwrap()
                .replace("access", "refresh")),
            arb_claims().prop_map(|c| serde_json::to_string(&c)
                .unwrap()
                .replace('}', r#","sub":"x"}"#)),
            arb_claims().prop_map(|c| serde_json::to_string(&c)
                .unwrap()
                .replace("\"exp\"", "\"nbf\"")),
            "\\PC{0,60}",
        ]
    }

    proptest! {
        #[test]
        fn mint_then_verify_round_trips(codec in arb_codec(), user in any::<u64>(), merchant in any::<u64>(), now in 0u64..4_000_000_000) {
            let minted = codec.mint(user, merchant, now);
            prop_assert_eq!(codec.verify(&minted.token, now), Ok(minted.claims.clone()));
            prop_assert_eq!(codec.verify_reference(&minted.token, now), Ok(minted.claims.clone()));
            prop_assert!(minted.token.starts_with(HEADER_B64));
            prop_assert_eq!(minted.claims.exp, now + codec.rules().lifetime().as_secs());
        }

        #[test]
        fn any_single_character_change_makes_verification_fail(
            claims in arb_claims(),
            position in any::<prop::sample::Index>(),
            replacement in prop_oneof![any::<char>(), prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=".to_vec()).prop_map(char::from)],
        ) {
            let codec = seed_codec();
            let token = codec.sign(&claims);
            let mut chars: Vec<char> = token.chars().collect();
            let i = position.index(chars.len());
            prop_assume!(chars[i] != replacement);
            chars[i] = replacement;
            let tampered: String = chars.into_iter().collect();
            prop_assert!(codec.verify(&tampered, claims.iat).is_err());
            assert_paths_agree(&codec, &tampered, claims.iat);
        }

        #[test]
        fn arbitrary_input_never_panics_and_both_paths_agree(input in "\\PC{0,300}", dotted in "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_=.-]{0,60}") {
            let codec = seed_codec();
            for token in [input.as_str(), dotted.as_str(), &format!("{HEADER_B64}.{dotted}")] {
                prop_assert!(codec.verify(token, SEED_IAT).is_err());
                assert_paths_agree(&codec, token, SEED_IAT);
            }
        }

        #[test]
        fn both_paths_agree_on_signed_tokens_of_any_header_and_payload(
            codec in arb_codec(),
            header in arb_header(),
            payload in arb_payload(),
            signer in 0usize..4,
            now in 0u64..4_000_000_000,
        ) {
            // Sign with one of the codec's keys, or with a stranger's.
            let keys: Vec<&SigningKey> = codec.keys().iter().collect();
            let secret = keys.get(signer).map_or(b"stranger".as_slice(), |k| k.expose_secret());
            let token = sign_raw(secret, &header, &payload);
            assert_paths_agree(&codec, &token, now);
        }
    }
}
