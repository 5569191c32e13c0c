//! The checks behind the fuzz targets, written once and run twice: by
//! libFuzzer (`fuzz/fuzz_targets/*.rs`, one line each, depend on this
//! crate) and, over the checked-in corpus, by the ordinary test suite
//! (this crate's `tests/corpus.rs`, which needs no nightly and no
//! libFuzzer).
//!
//! Each `check_*` function takes the fuzzer's bytes, builds an input from
//! them, runs the code under test, and panics when an invariant breaks:
//! that panic is the crash libFuzzer reports and the failure the replay test
//! reports. Besides "never panics", each check holds the code to a second
//! opinion: the JWT fast path to jsonwebtoken, the static-token parser to a
//! plain model of the format, the body parser to the JSON/form equivalence,
//! the `Authorization` parser to a re-parse of what it returned.
//!
//! The first byte of an input often chooses how the rest is used (its
//! "shape"), so that the fuzzer reaches deep code (a correctly signed JWT, a
//! static token with a right checksum) instead of stopping at the first
//! check.

// A broken invariant is a panic by design: it is the crash libFuzzer
// reports and the failure the replay test reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use actix_web::http::header::HeaderValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use stamps_core::{
    Claims, ExpiryRules, ExposeSecret, JwtCodec, KeySet, SigningKey, StaticToken, StaticTokenError,
    TokenId, UnixTime, VerifyError,
};
use stamps_http::{AccessTokenRequest, ApiError, AuthError, Credentials, Scheme};

/// A fuzz target: its name (the directory of its corpus), its check, and
/// the hand-written inputs its corpus starts from.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The cargo-fuzz target name, and `fuzz/corpus/<name>/`.
    pub name: &'static str,
    /// Runs one input; panics on a broken invariant.
    pub check: fn(&[u8]),
    /// Meaningful starting inputs, in the target's input encoding.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every fuzz target.
pub const TARGETS: [Target; 4] = [
    Target {
        name: "jwt_verify",
        check: check_jwt_verify,
        seeds: jwt_verify_seeds,
    },
    Target {
        name: "static_token",
        check: check_static_token,
        seeds: static_token_seeds,
    },
    Target {
        name: "access_token_body",
        check: check_access_token_body,
        seeds: access_token_body_seeds,
    },
    Target {
        name: "authorization_header",
        check: check_authorization_header,
        seeds: authorization_header_seeds,
    },
];

// ---------------------------------------------------------------------------
// JWT verification

/// The seed document's example token, signed with `TESTJWT`.
pub const SEED_JWT: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNjU3MzMyNjE2LCJpYXQiOjE2NTcyNDYyMTYsImp0aSI6IjRlYWRjNDAxNGQwZDRkNzc4NjkxYjg0ZDU3MGE2ZGFmIiwidXNlcl9pZCI6NTg3MCwibWVyY2hhbnRfaWQiOjF9.b_TiGJEO7mKMT0BFTrF9VjPHjoGrt5Be8FPSgvn-4bY";
/// The seed token's claims as JSON.
const SEED_PAYLOAD: &str = r#"{"token_type":"access","exp":1657332616,"iat":1657246216,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#;
/// The seed token's `iat`.
const SEED_IAT: UnixTime = 1_657_246_216;
/// The header we mint, and its base64url.
const HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;
const HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// The codec's current key (the seed's test secret) and a previous one.
const CURRENT_SECRET: &[u8] = b"TESTJWT";
const PREVIOUS_SECRET: &[u8] = b"a previous key, still verifying, 32+ bytes";

/// The times a JWT is verified at: the seed's `iat`, the extremes, and the
/// last second the seed token is valid (`exp` + the 30 s leeway).
const NOWS: [UnixTime; 4] = [SEED_IAT, 0, UnixTime::MAX, 1_657_332_646];

fn codec() -> &'static JwtCodec {
    static CODEC: OnceLock<JwtCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let key = |secret: &[u8]| SigningKey::new(secret.to_vec()).expect("a non-empty key");
        JwtCodec::new(
            KeySet::with_previous(key(CURRENT_SECRET), vec![key(PREVIOUS_SECRET)]),
            ExpiryRules::default(),
        )
    })
}

/// The HS256 signature of `input`, in base64url.
fn sign(secret: &[u8], input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// `input` followed by `.` and its signature.
fn signed(secret: &[u8], input: String) -> String {
    let signature = sign(secret, &input);
    format!("{input}.{signature}")
}

/// How a `jwt_verify` input becomes a token (the low 3 bits of its first
/// byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JwtShape {
    /// The rest is the token, as text.
    Raw,
    /// Our header, the rest as the payload's JSON (base64url-encoded here),
    /// correctly signed: reaches the claims parsers of both paths.
    SignedPayload,
    /// Our header, the rest as the payload segment's text, correctly
    /// signed: reaches the fast path's two-part base64 decoding.
    SignedSegment,
    /// The rest is `header JSON \n payload JSON`, both encoded here,
    /// correctly signed: other headers, the reference path.
    SignedHeader,
    /// Our header and a dot, then the rest as text (payload and signature
    /// fuzzed together).
    FixedHeader,
}

impl JwtShape {
    fn of(byte: u8) -> Self {
        match byte & 7 {
            1 | 5 => Self::SignedPayload,
            2 | 6 => Self::SignedSegment,
            3 => Self::SignedHeader,
            4 => Self::FixedHeader,
            _ => Self::Raw,
        }
    }
}

/// The token and the time an input stands for.
fn jwt_case(data: &[u8]) -> Option<(String, UnixTime)> {
    let (&control, rest) = data.split_first()?;
    // Bit 3: sign with the previous key rather than the current one.
    let secret = if control & 8 == 0 {
        CURRENT_SECRET
    } else {
        PREVIOUS_SECRET
    };
    let now = NOWS[usize::from(control >> 4) % NOWS.len()];
    let text = String::from_utf8_lossy(rest);
    let token = match JwtShape::of(control) {
        JwtShape::Raw => text.into_owned(),
        JwtShape::SignedPayload => signed(
            secret,
            format!("{HEADER_B64}.{}", URL_SAFE_NO_PAD.encode(rest)),
        ),
        JwtShape::SignedSegment => signed(secret, format!("{HEADER_B64}.{text}")),
        JwtShape::SignedHeader => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, SEED_PAYLOAD.as_bytes()),
            };
            signed(
                secret,
                format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header),
                    URL_SAFE_NO_PAD.encode(payload)
                ),
            )
        }
        JwtShape::FixedHeader => format!("{HEADER_B64}.{text}"),
    };
    Some((token, now))
}

/// What the two verification paths must agree on: the claims, or expired
/// against invalid (the one distinction callers see).
fn outcome(result: &Result<Claims, VerifyError>) -> Result<&Claims, bool> {
    result.as_ref().map_err(VerifyError::is_expired)
}

/// Verifies `token` at `now` every way there is and checks that the
/// answers agree: `verify` (the fast path for our header) against
/// `verify_reference` (jsonwebtoken), `verify_with_payload` against
/// `verify`, and the payload it returns against the token's own bytes.
pub fn check_jwt_token(token: &str, now: UnixTime) {
    let codec = codec();
    let fast = codec.verify(token, now);
    let reference = codec.verify_reference(token, now);
    assert_eq!(
        outcome(&fast),
        outcome(&reference),
        "fast and reference paths disagree on {token:?} at {now}: {fast:?} / {reference:?}"
    );
    let with_payload = codec.verify_with_payload(token, now);
    match (&fast, &with_payload) {
        (Ok(claims), Ok((same, payload))) => {
            assert_eq!(claims, same, "verify_with_payload's claims on {token:?}");
            let segment = token.split('.').nth(1).unwrap_or_default();
            assert_eq!(
                URL_SAFE_NO_PAD.decode(segment).ok().as_ref(),
                Some(payload),
                "the payload returned is not the token's on {token:?}"
            );
            assert_eq!(Claims::from_json(payload).as_ref(), Ok(claims));
            let rules = codec.rules();
            assert!(!rules.is_expired(claims.exp, now));
            assert!(!rules.is_issued_in_future(claims.iat, now));
            // Accepted claims, signed again by us, verify to themselves.
            assert_eq!(codec.verify(&codec.sign(claims), now).as_ref(), Ok(claims));
        }
        (Err(e), Err(same)) => assert_eq!(e, same, "verify_with_payload's error on {token:?}"),
        _ => panic!("verify and verify_with_payload disagree on {token:?}: {fast:?}"),
    }
}

/// The `jwt_verify` target: builds a token from the input (see
/// `JwtShape`) and runs [`check_jwt_token`]; for a payload written by
/// the input, also holds `Claims::from_json` (with its scanner of the
/// minted form) to plain `serde_json`.
pub fn check_jwt_verify(data: &[u8]) {
    let Some((token, now)) = jwt_case(data) else {
        return;
    };
    check_jwt_token(&token, now);
    if JwtShape::of(data[0]) == JwtShape::SignedPayload {
        let payload = &data[1..];
        assert_eq!(
            Claims::from_json(payload).ok(),
            serde_json::from_slice::<Claims>(payload).ok(),
            "Claims::from_json and serde_json disagree on {:?}",
            String::from_utf8_lossy(payload)
        );
    }
}

fn jwt_verify_seeds() -> Vec<Vec<u8>> {
    let with = |control: u8, rest: &[u8]| [&[control][..], rest].concat();
    let pyjwt_payload = SEED_PAYLOAD.replace(',', ", ").replace(':', ": ");
    let payload_b64 = SEED_JWT.split('.').nth(1).unwrap_or_default().to_owned();
    let mut seeds = vec![
        with(0, SEED_JWT.as_bytes()),
        with(0x10, SEED_JWT.as_bytes()),
        with(0x30, SEED_JWT.as_bytes()),
        with(0, b"not.a.jwt"),
        with(1, SEED_PAYLOAD.as_bytes()),
        with(1 | 8, SEED_PAYLOAD.as_bytes()),
        with(0x21, SEED_PAYLOAD.as_bytes()),
        with(1, pyjwt_payload.as_bytes()),
        with(1, SEED_PAYLOAD.replace("access", "refresh").as_bytes()),
        with(
            1,
            SEED_PAYLOAD
                .replace("}", r#","sub":"x"}"#)
                .replace("1657332616", "18446744073709551615")
                .as_bytes(),
        ),
        with(2, payload_b64.as_bytes()),
        with(2, format!("{payload_b64}==").as_bytes()),
        with(
            4,
            SEED_JWT
                .split_once('.')
                .map_or("", |(_, rest)| rest)
                .as_bytes(),
        ),
    ];
    for header in [
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#,
        r#"{"typ":"JWT","alg":"none"}"#,
        r#"{"typ":"JWT","alg":"HS512"}"#,
        HEADER,
    ] {
        seeds.push(with(3, format!("{header}\n{SEED_PAYLOAD}").as_bytes()));
    }
    seeds
}

// ---------------------------------------------------------------------------
// Static tokens

/// The static token alphabet (lowercase Crockford base32), restated from
/// `docs/TOKENS.md` for the model below.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// CRC-32 (IEEE, reflected), bit by bit: the model's own, not the crate's.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The 7-character checksum of the checked text, most significant first.
fn model_checksum(checked: &[u8]) -> String {
    let crc = crc32(checked);
    (0..7)
        .map(|i| char::from(ALPHABET[((crc >> (5 * (6 - i))) & 31) as usize]))
        .collect()
}

/// The format of `docs/TOKENS.md`, read plainly: the id and the secret of
/// a well-formed token.
fn model_static_token(text: &str) -> Result<(&str, &str), StaticTokenError> {
    let fields: Vec<&str> = text.split('_').collect();
    let in_alphabet = |field: &str, len: usize| {
        field.len() == len && field.bytes().all(|c| ALPHABET.contains(&c))
    };
    match fields[..] {
        ["stmp", id, secret, sum]
            if in_alphabet(id, 16) && in_alphabet(secret, 32) && in_alphabet(sum, 7) =>
        {
            let checked = &text[..text.len() - 8];
            if model_checksum(checked.as_bytes()) == sum {
                Ok((id, secret))
            } else {
                Err(StaticTokenError::Checksum)
            }
        }
        _ => Err(StaticTokenError::Malformed),
    }
}

/// Parses `text` as a static token and holds the parser to the model:
/// same verdict (malformed, bad checksum, or the same id and secret);
/// `parse_id` agrees with `parse`; an accepted token prints back as
/// `text`, and a `TokenId` parses exactly when the model says.
pub fn check_static_token_text(text: &str) {
    let parsed = StaticToken::parse(text);
    let model = model_static_token(text);
    assert_eq!(
        parsed
            .as_ref()
            .map(|t| (t.id().as_str(), t.secret().expose_secret()))
            .map_err(|e| *e),
        model,
        "parser and model disagree on {text:?}"
    );
    assert_eq!(
        StaticToken::parse_id(text),
        parsed.as_ref().map(|t| *t.id()).map_err(|e| *e)
    );
    if let Ok(token) = &parsed {
        assert_eq!(token.to_secret_string().expose_secret(), text);
        let again = StaticToken::from_parts(*token.id(), token.secret().expose_secret());
        assert_eq!(again.as_ref(), Ok(token));
    }
    let id_ok = text.len() == 16 && text.bytes().all(|c| ALPHABET.contains(&c));
    assert_eq!(text.parse::<TokenId>().is_ok(), id_ok, "TokenId {text:?}");
}

/// The `static_token` target. First byte, low 2 bits: 0, the rest is the
/// text; 1, the rest is 54 characters of "checked" text (ideally
/// `stmp_<id>_<secret>`) and the model's checksum is appended, so tokens
/// with a right checksum and any body are reached; 2, the rest is an id
/// and a secret, assembled with `from_parts` and printed.
pub fn check_static_token(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match control & 3 {
        1 => check_static_token_text(&format!("{text}_{}", model_checksum(text.as_bytes()))),
        2 => {
            // `str::floor_char_boundary` is newer than the workspace's MSRV.
            let at = (0..=16.min(text.len()))
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            let (id, secret) = text.split_at(at);
            match id.parse::<TokenId>() {
                Ok(id) => match StaticToken::from_parts(id, secret) {
                    Ok(token) => {
                        let printed = token.to_secret_string();
                        check_static_token_text(printed.expose_secret());
                        let parsed = StaticToken::parse(printed.expose_secret());
                        assert_eq!(parsed.as_ref(), Ok(&token));
                    }
                    Err(_) => assert!(
                        secret.len() != 32 || !secret.bytes().all(|c| ALPHABET.contains(&c)),
                        "from_parts refused the secret {secret:?}"
                    ),
                },
                Err(_) => check_static_token_text(id),
            }
        }
        _ => check_static_token_text(&text),
    }
}

fn static_token_seeds() -> Vec<Vec<u8>> {
    let token = StaticToken::generate();
    let text = token.to_secret_string().expose_secret().to_owned();
    let with = |control: u8, rest: &str| [&[control][..], rest.as_bytes()].concat();
    let fixed = "stmp_0123456789abcdef_0123456789abcdefghjkmnpqrstvwxyz";
    vec![
        with(0, &text),
        with(0, &text.to_uppercase()),
        with(0, &text[..61]),
        with(0, &format!("{text}0")),
        with(0, &text.replacen('_', "-", 1)),
        with(0, "stmp_"),
        with(0, token.id().as_str()),
        with(1, &text[..54]),
        with(1, fixed),
        with(1, &fixed.replace('a', "i")),
        with(1, &fixed.replace("stmp_", "STMP_")),
        with(2, "0123456789abcdef0123456789abcdefghjkmnpqrstvwxyz"),
        with(2, &text[5..21]),
    ]
}

// ---------------------------------------------------------------------------
// The get-access-token body

/// `Content-Type` values an `access_token_body` input can choose with its
/// first byte; a first byte past the table means "the text up to the first
/// newline is the type".
const CONTENT_TYPES: [Option<&str>; 9] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    None,
    Some("application/json; charset=utf-8"),
    Some(" Application/JSON ;"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("text/plain"),
    Some(""),
    Some("multipart/form-data; boundary=x"),
];

/// The media type as the contract reads it: before any `;`, trimmed,
/// case-insensitive.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Parses one body and checks: it never panics; it answers only 200, 400
/// (naming no field but `token` and `crm_merchant_id`) or 415 (only for a
/// type that is neither JSON nor form); an accepted JSON body is an object
/// whose fields say what was read; and what one encoding accepts, the
/// other encoding of the same fields gives back unchanged.
pub fn check_body(content_type: Option<&str>, body: &[u8]) {
    let result = AccessTokenRequest::from_body(content_type, body);
    let media = content_type.map(media_type);
    let json = media.as_deref() == Some("application/json");
    let form = media.as_deref() == Some("application/x-www-form-urlencoded")
        || (media.is_none() && body.is_empty());
    match &result {
        Ok(request) => {
            assert!(json || form, "accepted a {content_type:?} body");
            assert!(!request.token.is_empty(), "an empty token accepted");
            if json {
                let value: serde_json::Value =
                    serde_json::from_slice(body).expect("accepted JSON parses");
                assert_eq!(value["token"].as_str(), Some(request.token.as_str()));
                let id = &value["crm_merchant_id"];
                // A number, a whole one written with a fraction (`1.0`,
                // up to 2^53), or a string of digits (`" 7 "`, `"1.0"`).
                let read = id
                    .as_u64()
                    .or_else(|| {
                        id.as_f64()
                            .filter(|f| {
                                f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f)
                            })
                            .map(|f| f as u64)
                    })
                    .or_else(|| {
                        let text = id.as_str()?.trim();
                        let text = match text.split_once('.') {
                            Some((whole, zeros)) if zeros.bytes().all(|b| b == b'0') => whole,
                            _ => text,
                        };
                        text.parse().ok()
                    });
                assert_eq!(read, Some(request.crm_merchant_id));
            }
            let as_json = serde_json::json!({
                "token": request.token,
                "crm_merchant_id": request.crm_merchant_id,
            })
            .to_string();
            let again = AccessTokenRequest::from_body(Some("application/json"), as_json.as_bytes());
            assert_eq!(again.as_ref().ok(), Some(request), "as JSON: {as_json}");
            let as_form = serde_urlencoded::to_string([
                ("token", request.token.clone()),
                ("crm_merchant_id", request.crm_merchant_id.to_string()),
            ])
            .expect("strings encode");
            let again = AccessTokenRequest::from_body(
                Some("application/x-www-form-urlencoded"),
                as_form.as_bytes(),
            );
            assert_eq!(again.as_ref().ok(), Some(request), "as a form: {as_form}");
        }
        Err(ApiError::InvalidRequest { detail, errors }) => {
            assert!(json || form, "a 400 for a {content_type:?} body");
            assert!(!detail.is_empty());
            assert!(
                errors
                    .keys()
                    .all(|field| ["token", "crm_merchant_id"].contains(field)),
                "{errors:?}"
            );
        }
        Err(ApiError::UnsupportedMediaType) => {
            assert!(!json && !form, "a 415 for a {content_type:?} body");
        }
        Err(other) => panic!("unexpected {other:?} for a {content_type:?} body"),
    }
}

/// The `access_token_body` target: the first byte picks the
/// `Content-Type` (see `CONTENT_TYPES`), the rest is the body; runs
/// [`check_body`].
pub fn check_access_token_body(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    match CONTENT_TYPES.get(usize::from(control)) {
        Some(content_type) => check_body(*content_type, rest),
        None => {
            let (content_type, body) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            // What actix-web hands over: the value if it is visible ASCII.
            let content_type = HeaderValue::from_bytes(content_type).ok();
            check_body(content_type.as_ref().and_then(|v| v.to_str().ok()), body);
        }
    }
}

fn access_token_body_seeds() -> Vec<Vec<u8>> {
    let with = |control: u8, rest: &str| [&[control][..], rest.as_bytes()].concat();
    let token = StaticToken::generate();
    let token = token.to_secret_string().expose_secret().to_owned();
    vec![
        with(
            0,
            &format!(r#"{{"token": "{token}", "crm_merchant_id": 1}}"#),
        ),
        with(
            0,
            &format!(r#"{{"token":"{token}","crm_merchant_id":"42"}}"#),
        ),
        with(0, r#"{"token": "t\u00e9", "crm_merchant_id": " 7 "}"#),
        with(0, r#"{"token": "", "crm_merchant_id": 1.5}"#),
        with(0, r#"{"token": 5, "crm_merchant_id": -1}"#),
        with(
            0,
            r#"{"token": null, "crm_merchant_id": 18446744073709551616}"#,
        ),
        with(0, r#"{"token": "a", "token": "b", "crm_merchant_id": 1}"#),
        with(0, "[1]"),
        with(0, "{"),
        with(1, &format!("token={token}&crm_merchant_id=1")),
        with(1, "token=t%C3%A9+x&crm_merchant_id=%207"),
        with(1, "token=&crm_merchant_id=x&token=b"),
        with(2, ""),
        with(3, r#"{"crm_merchant_id":"1","token":"t"}"#),
        with(4, r#"{"token":"t","crm_merchant_id":1,"extra":[true]}"#),
        with(6, "token=t"),
        with(
            200,
            "application/json; charset=utf-8\n{\"token\":\"t\",\"crm_merchant_id\":1}",
        ),
    ]
}

// ---------------------------------------------------------------------------
// The Authorization header

/// The scheme word of a header value as RFC 7235 has it: the text before
/// the first space, after leading white space.
fn scheme_word(text: &str) -> &str {
    let text = text.trim_start();
    text.split_once(' ').map_or(text.trim(), |(word, _)| word)
}

/// Parses one `Authorization` value and checks: `Bearer`/`Token` (any
/// case) with one non-empty word after them gives that word, any other
/// scheme gives no credentials, anything else is a 401 `invalid_token`;
/// what was read parses back the same under either case of the scheme;
/// and the credential goes through its verifier (JWT or static token)
/// under the same checks as the other targets.
pub fn check_header(value: &HeaderValue) {
    let result = Credentials::parse(Some(value.as_bytes()));
    let text = std::str::from_utf8(value.as_bytes()).ok();
    let scheme = text.map(scheme_word).map(str::to_ascii_lowercase);
    let known = matches!(scheme.as_deref(), Some("bearer" | "token"));
    match &result {
        Ok(Some(credentials)) => {
            let (word, credential) = match credentials {
                Credentials::Bearer(jwt) => ("Bearer", *jwt),
                Credentials::Token(token) => ("Token", *token),
            };
            assert_eq!(scheme.as_deref(), Some(word.to_ascii_lowercase().as_str()));
            assert!(!credential.is_empty() && !credential.contains(' '));
            assert_eq!(credential, credential.trim());
            for scheme in [word.to_owned(), word.to_ascii_uppercase()] {
                let again = HeaderValue::from_bytes(format!("{scheme} {credential}").as_bytes())
                    .expect("a header value read as text");
                let reparsed = Credentials::parse(Some(again.as_bytes()));
                assert_eq!(reparsed.ok(), Some(Some(*credentials)), "{again:?}");
            }
            match credentials {
                Credentials::Bearer(jwt) => check_jwt_token(jwt, SEED_IAT),
                Credentials::Token(token) => check_static_token_text(token),
            }
        }
        Ok(None) => assert!(text.is_some() && !known, "no credentials in {value:?}"),
        Err(malformed) => {
            assert!(text.is_none() || known, "401 for {value:?}");
            // The scheme it reports is the one the header names (by its
            // first bytes when it is not text).
            let bearer = match &scheme {
                Some(word) => word == "bearer",
                None => value
                    .as_bytes()
                    .trim_ascii_start()
                    .get(..6)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"bearer")),
            };
            assert_eq!(malformed.scheme == Scheme::Jwt, bearer, "{value:?}");
            assert!(matches!(
                ApiError::from(AuthError::from(*malformed)),
                ApiError::InvalidToken
            ));
        }
    }
}

/// The `authorization_header` target: the input is the header value's
/// bytes (the ones `HeaderValue` refuses are skipped, as actix-web never
/// hands them over); runs [`check_header`].
pub fn check_authorization_header(data: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        check_header(&value);
    }
}

fn authorization_header_seeds() -> Vec<Vec<u8>> {
    let token = StaticToken::generate();
    let token = token.to_secret_string().expose_secret().to_owned();
    [
        format!("Bearer {SEED_JWT}"),
        format!("bearer {SEED_JWT}"),
        format!("BEARER   {SEED_JWT}  "),
        format!("Token {token}"),
        format!("token {token}"),
        format!(" Token {token}"),
        format!("Token {token} extra"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Token\t{token}"),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer caf\u{e9}".to_owned(),
        String::new(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([b"Bearer \xff\xfe".to_vec()])
    .collect()
}
