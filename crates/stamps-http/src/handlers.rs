//! The three endpoints, and the OpenAPI document. Thin: extract, call one
//! thing, respond.
//!
//! Each endpoint's `#[utoipa::path]` is its entry in the OpenAPI document
//! ([`crate::openapi`]): its request, its answer, and every error status it
//! can answer with ([`ErrorResponse`]). The doc comments are the
//! operations' summaries and descriptions.

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::body::{AccessTokenRequest, LimitedBody};
use crate::client_info::ClientInfo;
use crate::error::ApiError;
use crate::extractors::{Authenticated, BearerClaims};
use crate::openapi::ErrorResponse;
use stamps_auth::{Authenticator, Proof};

/// A fresh access token.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccessTokenResponse {
    /// An HS256 JWT, valid for the configured lifetime (24 hours by
    /// default). Send it as `Authorization: Bearer <access_token>`.
    #[schema(
        example = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjoxNjk4ODU4MjAwLCJpYXQiOjE2OTg3NzE4MDAsImp0aSI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwidXNlcl9pZCI6NTg3MCwibWVyY2hhbnRfaWQiOjF9.c2lnbmF0dXJl",
        pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
    )]
    access_token: String,
}

impl AccessTokenResponse {
    /// The body, byte for byte what `serde_json` writes, without its
    /// escaping scan: a JWT is base64url and dots, nothing to escape.
    fn into_json(self) -> Vec<u8> {
        const OPEN: &[u8] = br#"{"access_token":""#;
        const CLOSE: &[u8] = br#""}"#;
        let mut body = Vec::with_capacity(OPEN.len() + self.access_token.len() + CLOSE.len());
        body.extend_from_slice(OPEN);
        body.extend_from_slice(self.access_token.as_bytes());
        body.extend_from_slice(CLOSE);
        body
    }
}

/// Get an access token
///
/// A live static token and the merchant it was issued for buy a fresh JWT.
/// The body is JSON or form-encoded, with the same two fields. A token that
/// is unknown, wrong, revoked, or of a disabled user or merchant is 401;
/// a live token used for another merchant is 403; a token that asked for
/// more JWTs than its issuance quota is 429 (it still authenticates).
#[utoipa::path(
    post,
    path = "/api/auth/get-access-token/",
    operation_id = "get_access_token",
    tag = "auth",
    request_body(
        description = "The static token and the merchant it was issued for.",
        content(
            (AccessTokenRequest = "application/json"),
            (AccessTokenRequest = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "A fresh access token.", body = AccessTokenResponse),
        (status = 400, response = ErrorResponse<400>),
        (status = 401, response = ErrorResponse<401>),
        (status = 403, response = ErrorResponse<403>),
        (status = 405, response = ErrorResponse<405>),
        (status = 413, response = ErrorResponse<413>),
        (status = 415, response = ErrorResponse<415>),
        (status = 429, response = ErrorResponse<429>),
        (status = 500, response = ErrorResponse<500>),
        (status = 503, response = ErrorResponse<503>),
    ),
)]
pub async fn get_access_token(
    body: LimitedBody,
    req: HttpRequest,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    let request = AccessTokenRequest::parse(&req, &body.0)?;
    let client = ClientInfo::of(&req).ip;
    let minted = auth.exchange(request.access_request(), client).await?;
    let response = AccessTokenResponse {
        access_token: minted.token,
    };
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(response.into_json()))
}

/// The payload of a valid access token, as verify-token answers it: the
/// same keys and values as inside the token, in its order. It describes
/// `stamps_core::Claims` on the wire (a test holds the two together); the
/// handler sends the token's own bytes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only describes the answer.
pub(crate) struct TokenPayload {
    /// Always `access`.
    token_type: TokenType,
    /// Expiry, seconds since the epoch: `iat` plus the lifetime.
    #[schema(minimum = 0, example = 1_698_858_200)]
    exp: u64,
    /// Issue time, seconds since the epoch.
    #[schema(minimum = 0, example = 1_698_771_800)]
    iat: u64,
    /// The token's unique id: 32 lowercase hex characters.
    #[schema(
        pattern = "^[0-9a-f]{32}$",
        example = "0123456789abcdef0123456789abcdef"
    )]
    jti: String,
    /// The user the static token was issued to.
    #[schema(minimum = 0, example = 5870)]
    user_id: u64,
    /// The merchant the token grants access to.
    #[schema(minimum = 0, example = 1)]
    merchant_id: u64,
}

/// The `token_type` claim: always `access`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Only describes the answer.
pub(crate) enum TokenType {
    /// `"access"`
    Access,
}

/// Verify an access token
///
/// The payload of a valid `Authorization: Bearer <JWT>`: the same keys and
/// values as inside the token. Refused: a bad signature, a malformed token,
/// another `alg`, an expired token (`token_expired`), a revoked token, a
/// token of a disabled user or merchant, and a static token (only JWTs are
/// verified here: `not_authenticated`). Any request body is ignored.
#[utoipa::path(
    post,
    path = "/api/auth/verify-token/",
    operation_id = "verify_token",
    tag = "auth",
    security(("jwt" = [])),
    responses(
        (status = 200, description = "The token's payload.", body = TokenPayload),
        (status = 400, response = ErrorResponse<400>),
        (status = 401, response = ErrorResponse<401>),
        (status = 403, response = ErrorResponse<403>),
        (status = 405, response = ErrorResponse<405>),
        (status = 413, response = ErrorResponse<413>),
        (status = 429, response = ErrorResponse<429>),
        (status = 500, response = ErrorResponse<500>),
    ),
)]
pub async fn verify_token(
    _body: LimitedBody,
    claims: BearerClaims,
) -> Result<HttpResponse, ApiError> {
    // The payload as it is in the token: the same keys and values, with no
    // second serialisation.
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(claims.into_payload_json()))
}

/// The answer to an authenticated ping.
#[derive(Serialize, ToSchema)]
pub(crate) struct Pong {
    pong: PongMerchant,
}

/// The merchant the credential grants access to.
#[derive(Serialize, ToSchema)]
pub(crate) struct PongMerchant {
    /// Its name.
    #[schema(example = "My Merchant")]
    merchant: String,
    /// Its id.
    #[schema(minimum = 0, example = 1)]
    merchant_id: u64,
}

/// Ping
///
/// Any authenticated request, with either credential: `Authorization:
/// Token <static token>` or `Authorization: Bearer <JWT>`. Names the
/// merchant the credential grants access to. Any request body is ignored.
#[utoipa::path(
    post,
    path = "/api/ping",
    operation_id = "ping",
    tag = "auth",
    // Either scheme. The static token comes first: a client that takes
    // the first requirement it can meet (schemathesis does) then uses
    // static tokens here and JWTs on verify-token.
    security(("static_token" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The merchant of the credential.", body = Pong),
        (status = 400, response = ErrorResponse<400>),
        (status = 401, response = ErrorResponse<401>),
        (status = 403, response = ErrorResponse<403>),
        (status = 405, response = ErrorResponse<405>),
        (status = 413, response = ErrorResponse<413>),
        (status = 429, response = ErrorResponse<429>),
        (status = 500, response = ErrorResponse<500>),
        (status = 503, response = ErrorResponse<503>),
    ),
)]
pub async fn ping(
    _body: LimitedBody,
    who: Authenticated,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth
        .live()
        .merchant(who.0.merchant_id)
        .ok_or(ApiError::InvalidToken)?;
    Ok(HttpResponse::Ok().json(Pong {
        pong: PongMerchant {
            merchant: merchant.name.to_string(),
            merchant_id: who.0.merchant_id,
        },
    }))
}

/// The identity `/api/auth/check` answers with, in its body and headers.
#[derive(Serialize, ToSchema)]
pub(crate) struct CheckAnswer {
    /// The authenticated user (also `X-Stamps-User-Id`).
    #[schema(minimum = 0, example = 5870)]
    user_id: u64,
    /// The merchant the credential grants access to (also
    /// `X-Stamps-Merchant-Id`).
    #[schema(minimum = 0, example = 1)]
    merchant_id: u64,
}

/// The header a proxy sets to restrict `/api/auth/check` to one merchant.
pub const CHECK_MERCHANT_HEADER: &str = "x-stamps-merchant";
/// The answer's header naming the user.
pub const CHECK_USER_ID_HEADER: &str = "x-stamps-user-id";
/// The answer's header naming the merchant.
pub const CHECK_MERCHANT_ID_HEADER: &str = "x-stamps-merchant-id";
/// The answer's header naming the credential's kind: `jwt` or `static`.
pub const CHECK_TOKEN_KIND_HEADER: &str = "x-stamps-token-kind";
/// The answer's header carrying a JWT's `jti`.
pub const CHECK_JTI_HEADER: &str = "x-stamps-jti";

/// Check a credential (forward authentication)
///
/// For a reverse proxy in front of other APIs (nginx `auth_request`,
/// Traefik `ForwardAuth`, Envoy `ext_authz`, Caddy `forward_auth`): it
/// forwards the client's `Authorization` header, with any method, and lets
/// the request through only on a 2xx. Either credential, exactly as ping
/// accepts it. The identity is in the body and in headers for the proxy to
/// copy to the upstream. With `X-Stamps-Merchant: N` (set by the proxy's
/// configuration) a credential for another merchant is 403. Any body is
/// ignored.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/api/auth/check",
    operation_id = "check",
    tag = "auth",
    security(("static_token" = []), ("jwt" = [])),
    params(
        // Optional, but never null: a header has no null.
        ("X-Stamps-Merchant" = Option<u64>, Header, nullable = false,
         description = "Only a credential for this merchant passes (set by the proxy's configuration)."),
    ),
    responses(
        (status = 200, description = "The credential grants access; the identity, also in headers.",
         body = CheckAnswer,
         headers(
             ("X-Stamps-User-Id" = u64, description = "The user."),
             ("X-Stamps-Merchant-Id" = u64, description = "The merchant."),
             ("X-Stamps-Token-Kind" = String, description = "`jwt` or `static`."),
             ("X-Stamps-Jti" = String, description = "A JWT's `jti` (not sent for a static token)."),
         )),
        (status = 400, response = ErrorResponse<400>),
        (status = 401, response = ErrorResponse<401>),
        (status = 403, response = ErrorResponse<403>),
        (status = 413, response = ErrorResponse<413>),
        (status = 429, response = ErrorResponse<429>),
        (status = 500, response = ErrorResponse<500>),
        (status = 503, response = ErrorResponse<503>),
    ),
)]
pub async fn check(
    _body: LimitedBody,
    only: MerchantRestriction,
    who: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    if only
        .0
        .is_some_and(|merchant_id| merchant_id != who.merchant_id)
    {
        return Err(ApiError::MerchantForbidden);
    }
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header((CHECK_USER_ID_HEADER, who.user_id.to_string()))
        .insert_header((CHECK_MERCHANT_ID_HEADER, who.merchant_id.to_string()));
    match &who.proof {
        Proof::Jwt(claims) => answer
            .insert_header((CHECK_TOKEN_KIND_HEADER, "jwt"))
            .insert_header((CHECK_JTI_HEADER, claims.jti.to_string())),
        Proof::StaticToken(_) => answer.insert_header((CHECK_TOKEN_KIND_HEADER, "static")),
    };
    Ok(answer.json(CheckAnswer {
        user_id: who.user_id,
        merchant_id: who.merchant_id,
    }))
}

/// `X-Stamps-Merchant`, when the proxy set it: a merchant id, or 400 (a
/// proxy configured wrong fails loudly, rather than letting everyone in).
#[derive(Debug, Clone, Copy)]
pub struct MerchantRestriction(pub Option<u64>);

impl actix_web::FromRequest for MerchantRestriction {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let values: Vec<_> = req.headers().get_all(CHECK_MERCHANT_HEADER).collect();
        std::future::ready(match values.as_slice() {
            [] => Ok(Self(None)),
            [value] => value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .map(|id| Self(Some(id)))
                .ok_or_else(|| bad_restriction("A valid integer is required.")),
            _ => Err(bad_restriction("Send it once.")),
        })
    }
}

fn bad_restriction(problem: &'static str) -> ApiError {
    ApiError::InvalidRequest {
        detail: "Invalid X-Stamps-Merchant header.",
        errors: [("X-Stamps-Merchant", problem)].into(),
    }
}

/// The OpenAPI document
///
/// This API's OpenAPI 3.1 document, generated from the handlers' code and
/// built once. No credentials needed.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "documentation",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document (this one).", body = Object),
        (status = 403, response = ErrorResponse<403>),
        (status = 405, response = ErrorResponse<405>),
        (status = 500, response = ErrorResponse<500>),
    ),
)]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(crate::openapi::document_json()?))
}

/// `OPTIONS` on a known path: the methods it answers (`allow`).
pub fn options(allow: &'static str) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .finish()
}

/// Any other method on a known path, which answers `allow`.
pub fn method_not_allowed(allow: &'static str) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed { allow })
}

/// Any unknown path.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey};

    #[test]
    fn the_access_token_body_is_what_serde_json_writes() {
        let codec = JwtCodec::new(
            KeySet::new(SigningKey::new(vec![7; 32]).unwrap()),
            ExpiryRules::default(),
        );
        let response = AccessTokenResponse {
            access_token: codec.mint(5870, 1, 1_657_246_216).token,
        };
        let expected = serde_json::to_vec(&response).unwrap();
        assert_eq!(response.into_json(), expected);
    }
}
