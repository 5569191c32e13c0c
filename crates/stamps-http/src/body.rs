//! Request bodies: read with a hard size limit and a time limit, and the
//! get-access-token request parsed from JSON or form data with an error per
//! field.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{Bytes, Payload};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::Either;
use serde_json::Value;

use crate::error::ApiError;

/// The largest request body accepted: 64 KiB.
pub const MAX_BODY_BYTES: usize = 65_536;

/// How long a request body may take to arrive, whole (`http.body_timeout`):
/// register it with `App::app_data`. Without it, [`BodyTimeout::default`]
/// (10 seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl Default for BodyTimeout {
    fn default() -> Self {
        Self(Duration::from_secs(10))
    }
}

/// Reads the whole body the head left to be read ([`known_from_head`]
/// decides the rest first), refusing it with 413 as soon as it crosses
/// [`MAX_BODY_BYTES`] while streaming a chunked body, never after reading
/// it whole; and with 400 if it has not arrived within the
/// [`BodyTimeout`], so that a stalled client does not hold the request.
pub async fn read_body(req: &HttpRequest, payload: Payload) -> Result<Bytes, ApiError> {
    let timeout = req.app_data::<BodyTimeout>().copied().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout.0;
    let mut read = std::pin::pin!(payload.to_bytes_limited(MAX_BODY_BYTES));
    // actix-web runs the handler before it feeds the body that came in the
    // same packet as the head, so the first poll always waits. Poll once
    // more before arming a timer (a timer costs a lock and a wheel entry
    // per request): a small body is there by then. The self-wake makes
    // sure that second poll comes; the deadline still counts from here.
    let mut waited = false;
    let early = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        std::task::Poll::Ready(read) => std::task::Poll::Ready(Some(read)),
        std::task::Poll::Pending if !waited => {
            waited = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    let read = match early {
        Some(read) => Ok(read),
        None => tokio::time::timeout_at(deadline, read).await,
    };
    match read {
        Ok(Ok(Ok(body))) => Ok(body),
        Ok(Ok(Err(_))) => Err(ApiError::InvalidRequest {
            detail: "The request body could not be read.",
            errors: BTreeMap::new(),
        }),
        Ok(Err(_limit_exceeded)) => Err(ApiError::PayloadTooLarge),
        Err(_elapsed) => Err(ApiError::InvalidRequest {
            detail: "The request body did not arrive in time.",
            errors: BTreeMap::new(),
        }),
    }
}

/// The body's fate when the head decides it: `Some(Err)` (413, unread)
/// when `Content-Length` is over [`MAX_BODY_BYTES`], `Some(Ok)` (empty)
/// when the request has no body, the common case of verify-token and ping;
/// `None` when it must be read ([`read_body`]).
fn known_from_head(req: &HttpRequest) -> Option<Result<Bytes, ApiError>> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Some(Err(ApiError::PayloadTooLarge));
    }
    let empty = declared == Some(0)
        || (declared.is_none() && !req.headers().contains_key(header::TRANSFER_ENCODING));
    empty.then(|| Ok(Bytes::new()))
}

/// The request body, read under [`MAX_BODY_BYTES`]. Put it first among a
/// handler's arguments: extractors are polled in order, so an oversized
/// body is refused (413) before credentials are looked at, and a declared
/// `Content-Length` over the limit fails on the first poll, unread.
#[derive(Debug, Clone)]
pub struct LimitedBody(pub Bytes);

impl FromRequest for LimitedBody {
    type Error = ApiError;
    type Future = Either<
        std::future::Ready<Result<Self, ApiError>>,
        std::pin::Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>,
    >;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        // Decided by the head: answered now, without boxing a future.
        if let Some(known) = known_from_head(req) {
            return Either::Left(std::future::ready(known.map(LimitedBody)));
        }
        let req = req.clone();
        let payload = Payload::from_request(&req, payload);
        Either::Right(Box::pin(async move {
            let payload = payload.await.map_err(|_| ApiError::Internal)?;
            read_body(&req, payload).await.map(LimitedBody)
        }))
    }
}

/// `POST /api/auth/get-access-token/`, as sent: JSON or form-encoded.
/// Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct AccessTokenRequest {
    /// The static token presented.
    #[schema(
        min_length = 1,
        example = "stmp_0123456789abcdef_0123456789abcdefghjkmnpqrstvwxyz_0123456"
    )]
    pub token: String,
    /// The merchant asked for. Like Django REST framework, JSON may also
    /// send it as a string of digits.
    #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64, example = 1)]
    pub crm_merchant_id: u64,
}

const REQUIRED: &str = "This field is required.";
const NOT_A_STRING: &str = "Not a valid string.";
const NOT_AN_INTEGER: &str = "A valid integer is required.";

impl std::fmt::Debug for AccessTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenRequest")
            .field("token", &"[redacted]")
            .field("crm_merchant_id", &self.crm_merchant_id)
            .finish()
    }
}

impl AccessTokenRequest {
    /// What stamps-auth's [`Authenticator::exchange`](stamps_auth::Authenticator::exchange)
    /// is asked.
    pub fn access_request(&self) -> stamps_auth::AccessRequest<'_> {
        stamps_auth::AccessRequest {
            token: &self.token,
            merchant_id: self.crm_merchant_id,
        }
    }

    /// Parses a JSON or form-encoded body, chosen by `Content-Type`. An
    /// empty body with no type counts as an empty form: both fields missing.
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Self::from_body(content_type, body)
    }

    /// [`AccessTokenRequest::parse`] without the request: `content_type` is
    /// the `Content-Type` header's value (`None` when absent or not
    /// visible ASCII), `body` the bytes read. Pure, for callers outside
    /// actix-web and for fuzzing.
    ///
    /// ```
    /// use stamps_http::AccessTokenRequest;
    ///
    /// let json = AccessTokenRequest::from_body(Some("application/json"), br#"{"token": "t", "crm_merchant_id": "1"}"#)?;
    /// let form = AccessTokenRequest::from_body(Some("application/x-www-form-urlencoded"), b"token=t&crm_merchant_id=1")?;
    /// assert_eq!(json, form);
    /// assert!(AccessTokenRequest::from_body(Some("text/plain"), b"token=t").is_err());
    /// # Ok::<(), stamps_http::ApiError>(())
    /// ```
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<Self, ApiError> {
        let content_type = content_type.map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match content_type.as_deref() {
            Some("application/json") => Self::from_json(body),
            Some("application/x-www-form-urlencoded") => Self::from_form(body),
            None if body.is_empty() => Self::from_form(body),
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }

    fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        /// The well-formed request, read without building a JSON tree.
        #[derive(serde::Deserialize)]
        struct WellFormed<'a> {
            token: &'a str,
            crm_merchant_id: u64,
        }
        let malformed = || ApiError::InvalidRequest {
            detail: "Malformed JSON body.",
            errors: BTreeMap::new(),
        };
        // JSON text is UTF-8 (RFC 8259 §8.1). Checked first and whole:
        // serde_json's byte-slice reader skips the strings of fields it
        // ignores without checking them, so the typed reading below would
        // accept a body that is not JSON (found by fuzzing).
        let body = std::str::from_utf8(body).map_err(|_| malformed())?;
        if let Ok(request) = serde_json::from_str::<WellFormed>(body)
            && !request.token.is_empty()
        {
            return Ok(Self {
                token: request.token.to_owned(),
                crm_merchant_id: request.crm_merchant_id,
            });
        }
        // Anything else: the general reading, with an error per field.
        let value: Value = serde_json::from_str(body).map_err(|_| malformed())?;
        let Value::Object(fields) = value else {
            return Err(ApiError::InvalidRequest {
                detail: "Expected a JSON object.",
                errors: BTreeMap::new(),
            });
        };
        let token = match fields.get("token") {
            None | Some(Value::Null) => Err(REQUIRED),
            Some(Value::String(s)) if s.is_empty() => Err(REQUIRED),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(NOT_A_STRING),
        };
        let merchant = match fields.get("crm_merchant_id") {
            None | Some(Value::Null) => Err(REQUIRED),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().and_then(integral))
                .ok_or(NOT_AN_INTEGER),
            // Django REST framework also reads integers sent as strings.
            Some(Value::String(s)) => parse_integer(s),
            Some(_) => Err(NOT_AN_INTEGER),
        };
        Self::validated(token, merchant)
    }

    fn from_form(body: &[u8]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| ApiError::InvalidRequest {
                detail: "Malformed form body.",
                errors: BTreeMap::new(),
            })?;
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let token = match field("token") {
            None | Some("") => Err(REQUIRED),
            Some(s) => Ok(s.to_owned()),
        };
        let merchant = match field("crm_merchant_id") {
            None | Some("") => Err(REQUIRED),
            Some(s) => parse_integer(s),
        };
        Self::validated(token, merchant)
    }

    fn validated(
        token: Result<String, &'static str>,
        merchant: Result<u64, &'static str>,
    ) -> Result<Self, ApiError> {
        match (token, merchant) {
            (Ok(token), Ok(crm_merchant_id)) => Ok(Self {
                token,
                crm_merchant_id,
            }),
            (token, merchant) => {
                let mut errors = BTreeMap::new();
                if let Err(problem) = token {
                    errors.insert("token", problem);
                }
                if let Err(problem) = merchant {
                    errors.insert("crm_merchant_id", problem);
                }
                Err(ApiError::InvalidRequest {
                    detail: "Invalid request.",
                    errors,
                })
            }
        }
    }
}

/// The largest integer every larger one of which an `f64` may have been
/// rounded to: 2^53.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// A JSON number written with a fraction or an exponent (`1.0`, `1e3`)
/// whose value is a whole number: an integer for JSON Schema (the OpenAPI
/// document's `type: integer`), and for Django REST framework's
/// `IntegerField`, which reads `1.0` as 1. Only up to 2^53, where the
/// parsed `f64` is still exactly what was written (DRF refuses such large
/// ones too: it reads them through `str(float)`, `1e+16`).
fn integral(value: f64) -> Option<u64> {
    (value.fract() == 0.0 && (0.0..=EXACT_F64).contains(&value)).then_some(value as u64)
}

/// A string of digits, as Django REST framework's `IntegerField` reads
/// it: white space around it, and a decimal point followed only by zeros
/// (`"1.0"`, `"1."`), are allowed.
fn parse_integer(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let text = match text.split_once('.') {
        Some((whole, zeros)) if zeros.bytes().all(|b| b == b'0') => whole,
        _ => text,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NOT_AN_INTEGER);
    }
    text.parse().map_err(|_| NOT_AN_INTEGER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn parse(content_type: Option<&str>, body: &str) -> Result<AccessTokenRequest, ApiError> {
        let mut req = TestRequest::default();
        if let Some(ct) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, ct));
        }
        AccessTokenRequest::parse(&req.to_http_request(), body.as_bytes())
    }

    fn field_errors(r: Result<AccessTokenRequest, ApiError>) -> Vec<(&'static str, &'static str)> {
        match r {
            Err(ApiError::InvalidRequest { errors, .. }) => errors.into_iter().collect(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let request = parse(
            Some("application/json"),
            r#"{"token": "stmp_secret_text", "crm_merchant_id": 7}"#,
        )
        .unwrap();
        for shown in [
            format!("{request:?}"),
            format!("{:?}", request.access_request()),
        ] {
            assert!(!shown.contains("stmp_secret_text"), "{shown}");
            assert!(
                shown.contains("[redacted]") && shown.contains('7'),
                "{shown}"
            );
        }
    }

    #[test]
    fn json_and_form_give_the_same_request() {
        let want = AccessTokenRequest {
            token: "t".into(),
            crm_merchant_id: 1,
        };
        assert_eq!(
            parse(
                Some("application/json"),
                r#"{"token": "t", "crm_merchant_id": 1}"#
            )
            .unwrap(),
            want
        );
        assert_eq!(
            parse(
                Some("application/json; charset=utf-8"),
                r#"{"token": "t", "crm_merchant_id": "1"}"#
            )
            .unwrap(),
            want
        );
        assert_eq!(
            parse(
                Some("application/x-www-form-urlencoded"),
                "token=t&crm_merchant_id=1"
            )
            .unwrap(),
            want
        );
    }

    #[test]
    fn whole_numbers_written_with_a_fraction_are_integers() {
        // JSON Schema's `integer` (the OpenAPI document) and Django REST
        // framework's IntegerField both take these (found by schemathesis).
        for (json, want) in [
            ("1.0", 1),
            ("0.0", 0),
            ("1e3", 1000),
            ("2.50e1", 25),
            ("9007199254740992.0", 9_007_199_254_740_992),
            (r#""1.0""#, 1),
            (r#""1.""#, 1),
            (r#"" 7.00 ""#, 7),
        ] {
            let body = format!(r#"{{"token": "t", "crm_merchant_id": {json}}}"#);
            assert_eq!(
                parse(Some("application/json"), &body)
                    .unwrap()
                    .crm_merchant_id,
                want,
                "{json}"
            );
        }
        let form = parse(
            Some("application/x-www-form-urlencoded"),
            "token=t&crm_merchant_id=1.0",
        );
        assert_eq!(form.unwrap().crm_merchant_id, 1);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            field_errors(parse(Some("application/json"), "{}")),
            [("crm_merchant_id", REQUIRED), ("token", REQUIRED)]
        );
        assert_eq!(
            field_errors(parse(
                Some("application/json"),
                r#"{"token": 5, "crm_merchant_id": -1}"#
            )),
            [("crm_merchant_id", NOT_AN_INTEGER), ("token", NOT_A_STRING)]
        );
        assert_eq!(
            field_errors(parse(
                Some("application/json"),
                r#"{"token": "t", "crm_merchant_id": 1.5}"#
            )),
            [("crm_merchant_id", NOT_AN_INTEGER)]
        );
        assert_eq!(
            field_errors(parse(
                Some("application/x-www-form-urlencoded"),
                "token=t&crm_merchant_id=x"
            )),
            [("crm_merchant_id", NOT_AN_INTEGER)]
        );
        for bad in [
            r#"1.000001"#,
            r#"-1.0"#,
            r#"1e300"#,
            r#"9007199254740994.0"#,
            r#""1.5""#,
            r#"".0""#,
            r#""1..0""#,
            r#""1.0 0""#,
            r#""-1""#,
        ] {
            let body = format!(r#"{{"token": "t", "crm_merchant_id": {bad}}}"#);
            assert_eq!(
                field_errors(parse(Some("application/json"), &body)),
                [("crm_merchant_id", NOT_AN_INTEGER)],
                "{bad}"
            );
        }
        assert_eq!(field_errors(parse(None, "")).len(), 2);
    }

    #[test]
    fn bytes_that_are_not_utf8_make_malformed_json_even_in_an_ignored_field() {
        // Found by the access_token_body fuzz target: the typed reading
        // accepted this body, whose unknown field's string is not UTF-8.
        for body in [
            &b"{\"token\":\"t\",\"crm_men\":\"t\xaf\",\"crm_merchant_id\":0}"[..],
            b"{\"token\":\"t\xaf\",\"crm_merchant_id\":0}",
            b"{\"token\":\"t\",\"crm_merchant_id\":0}\xff",
        ] {
            let req = TestRequest::default()
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .to_http_request();
            assert!(
                matches!(
                    AccessTokenRequest::parse(&req, body),
                    Err(ApiError::InvalidRequest { errors, .. }) if errors.is_empty()
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn malformed_bodies_and_other_types_are_refused() {
        assert!(matches!(
            parse(Some("application/json"), "{"),
            Err(ApiError::InvalidRequest { .. })
        ));
        assert!(matches!(
            parse(Some("application/json"), "[1]"),
            Err(ApiError::InvalidRequest { .. })
        ));
        assert!(matches!(
            parse(Some("text/plain"), "token=t"),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(matches!(
            parse(None, "token=t"),
            Err(ApiError::UnsupportedMediaType)
        ));
    }
}
