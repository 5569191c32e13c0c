//! Every error the API answers with, and the one place that maps them to a
//! status, a JSON body and headers.
//!
//! Bodies follow the Stamps documentation: `detail` (human text),
//! `error_code` (a stable machine word), `error_message` (repeats
//! `detail`), and `errors` (field -> message) for validation errors. No
//! body ever echoes a submitted secret or says whether a token id exists.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use stamps_auth::AuthError;
use stamps_store::StoreError;
use utoipa::ToSchema;

/// The `WWW-Authenticate` challenge of every 401 (RFC 6750).
const REALM: &str = r#"Bearer realm="stamps""#;

/// An API error. Each variant is one row of the contract's error table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Occurs when the body is not valid JSON or form data, or a field is
    /// missing or of the wrong type (400 `invalid_request`).
    #[error("{detail}")]
    InvalidRequest {
        /// What is wrong, for people.
        detail: &'static str,
        /// Field name -> problem; empty when the body as a whole is bad.
        errors: BTreeMap<&'static str, &'static str>,
    },
    /// Occurs when a request carries no credentials it could be
    /// authenticated with (401 `not_authenticated`).
    #[error("Authentication credentials were not provided.")]
    NotAuthenticated,
    /// Occurs when a correctly signed JWT has expired (401 `token_expired`).
    #[error("Token has expired")]
    TokenExpired,
    /// Occurs when a credential does not (or no longer) grant access:
    /// unknown, wrong, malformed, revoked, or of a disabled user or merchant
    /// (401 `invalid_token`). One body for every reason.
    #[error("Invalid token")]
    InvalidToken,
    /// Occurs when a live static token is used for a merchant it was not
    /// issued for (403 `merchant_forbidden`).
    #[error("This token is not valid for this merchant.")]
    MerchantForbidden,
    /// Occurs when `require_https` is set and a request came over plain
    /// HTTP (and no trusted proxy says otherwise) (403 `https_required`).
    #[error("HTTPS is required.")]
    HttpsRequired,
    /// Occurs for an unknown path (404 `not_found`).
    #[error("Not found.")]
    NotFound,
    /// Occurs for a known path with a method it does not answer
    /// (405 `method_not_allowed`, with `Allow`: the API's `POST, OPTIONS`,
    /// the probes' and `/metrics`' `GET, HEAD`).
    #[error("Method not allowed.")]
    MethodNotAllowed {
        /// The methods the path answers: the `Allow` header
        /// ([`crate::routes::ALLOWED_METHODS`] on the API paths).
        allow: &'static str,
    },
    /// Occurs when a body is larger than [`crate::MAX_BODY_BYTES`]
    /// (413 `payload_too_large`).
    #[error("Request body is too large.")]
    PayloadTooLarge,
    /// Occurs when a body is neither JSON nor form data
    /// (415 `unsupported_media_type`).
    #[error("Unsupported media type; send application/json or application/x-www-form-urlencoded.")]
    UnsupportedMediaType,
    /// Occurs when a client address or a static token id has failed to
    /// authenticate too often lately, or a static token asked for more JWTs
    /// than its issuance quota (429 `throttled`, with `Retry-After`).
    /// The wording is Django REST framework's, which the Stamps API runs on.
    #[error(
        "Request was throttled. Expected available in {retry_after} second{}.",
        if *retry_after == 1 { "" } else { "s" }
    )]
    Throttled {
        /// Whole seconds until a failed attempt would be counted again, or
        /// the quota allows another JWT (at least 1); also the
        /// `Retry-After` header.
        retry_after: u64,
    },
    /// Occurs when the store cannot be reached, or is full, for a request
    /// that needs it (503 `store_unavailable`).
    #[error("The token store is unavailable; try again later.")]
    StoreUnavailable,
    /// Occurs for anything unexpected (500 `internal_error`); the cause is
    /// logged, never sent.
    #[error("Internal server error.")]
    Internal,
}

impl ApiError {
    /// The stable machine word of the error, as it is in the body.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The error's row of the contract's table.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            ApiError::NotAuthenticated => ErrorCode::NotAuthenticated,
            ApiError::TokenExpired => ErrorCode::TokenExpired,
            ApiError::InvalidToken => ErrorCode::InvalidToken,
            ApiError::MerchantForbidden => ErrorCode::MerchantForbidden,
            ApiError::HttpsRequired => ErrorCode::HttpsRequired,
            ApiError::Throttled { .. } => ErrorCode::Throttled,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::StoreUnavailable => ErrorCode::StoreUnavailable,
            ApiError::Internal => ErrorCode::InternalError,
        }
    }

    /// The JSON body of the error.
    fn body(&self) -> Body<'_> {
        let detail = self.to_string();
        let errors = match self {
            ApiError::InvalidRequest { errors, .. } if !errors.is_empty() => Some(errors),
            _ => None,
        };
        Body {
            error_message: detail.clone(),
            detail,
            error_code: self.error_code(),
            errors,
        }
    }

    /// The body as a JSON value (the OpenAPI document's examples).
    pub(crate) fn body_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }

    /// A typical error with this code (the OpenAPI document's examples).
    pub(crate) fn example(code: ErrorCode) -> ApiError {
        match code {
            ErrorCode::InvalidRequest => {
                ApiError::field("crm_merchant_id", "This field is required.")
            }
            ErrorCode::NotAuthenticated => ApiError::NotAuthenticated,
            ErrorCode::TokenExpired => ApiError::TokenExpired,
            ErrorCode::InvalidToken => ApiError::InvalidToken,
            ErrorCode::MerchantForbidden => ApiError::MerchantForbidden,
            ErrorCode::HttpsRequired => ApiError::HttpsRequired,
            ErrorCode::NotFound => ApiError::NotFound,
            ErrorCode::MethodNotAllowed => ApiError::MethodNotAllowed {
                allow: crate::routes::ALLOWED_METHODS,
            },
            ErrorCode::PayloadTooLarge => ApiError::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType => ApiError::UnsupportedMediaType,
            ErrorCode::Throttled => ApiError::Throttled { retry_after: 30 },
            ErrorCode::StoreUnavailable => ApiError::StoreUnavailable,
            ErrorCode::InternalError => ApiError::Internal,
        }
    }

    /// A 400 naming one field.
    pub fn field(field: &'static str, problem: &'static str) -> Self {
        ApiError::InvalidRequest {
            detail: "Invalid request.",
            errors: BTreeMap::from([(field, problem)]),
        }
    }
}

impl From<AuthError> for ApiError {
    /// A refusal of stamps-auth, as the client sees it: each variant is the
    /// row of the same name (429 with `Retry-After` for `Throttled`).
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NotAuthenticated => ApiError::NotAuthenticated,
            AuthError::TokenExpired => ApiError::TokenExpired,
            AuthError::InvalidToken => ApiError::InvalidToken,
            AuthError::MerchantForbidden => ApiError::MerchantForbidden,
            AuthError::Throttled(throttled) => ApiError::Throttled {
                retry_after: throttled.retry_after,
            },
            AuthError::StoreUnavailable => ApiError::StoreUnavailable,
            AuthError::Internal => ApiError::Internal,
        }
    }
}

impl From<StoreError> for ApiError {
    /// As stamps-auth classifies (and logs) it: unavailable (503) or
    /// internal (500).
    fn from(e: StoreError) -> Self {
        ApiError::from(AuthError::from(e))
    }
}

/// The stable machine words of errors (`error_code`): the contract's fixed
/// codes, each with its one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed JSON or form, a missing or wrongly typed field.
    InvalidRequest,
    /// 401: no credentials.
    NotAuthenticated,
    /// 401: a correctly signed JWT that has expired.
    TokenExpired,
    /// 401: any other credential that does not grant access.
    InvalidToken,
    /// 403: a live static token used for another merchant.
    MerchantForbidden,
    /// 403: plain HTTP when `require_https` is set.
    HttpsRequired,
    /// 404: an unknown path.
    NotFound,
    /// 405: a method the path does not answer.
    MethodNotAllowed,
    /// 413: a body over [`crate::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 415: a body neither JSON nor form data.
    UnsupportedMediaType,
    /// 429: too many failed attempts lately.
    Throttled,
    /// 503: the store is unreachable or full.
    StoreUnavailable,
    /// 500: anything else.
    InternalError,
}

impl ErrorCode {
    /// Every code, in the order of the contract's table.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::InvalidRequest,
        ErrorCode::NotAuthenticated,
        ErrorCode::TokenExpired,
        ErrorCode::InvalidToken,
        ErrorCode::MerchantForbidden,
        ErrorCode::HttpsRequired,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Throttled,
        ErrorCode::StoreUnavailable,
        ErrorCode::InternalError,
    ];

    /// The word, as the body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::MerchantForbidden => "merchant_forbidden",
            ErrorCode::HttpsRequired => "https_required",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Throttled => "throttled",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::InternalError => "internal_error",
        }
    }

    /// The status every error with this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::NotAuthenticated | ErrorCode::TokenExpired | ErrorCode::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::MerchantForbidden | ErrorCode::HttpsRequired => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Throttled => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct Body<'a> {
    /// What went wrong, for people.
    #[schema(example = "Invalid token")]
    detail: String,
    /// What went wrong, for programs: one of the fixed codes.
    error_code: ErrorCode,
    /// The same text as `detail`.
    #[schema(example = "Invalid token")]
    error_message: String,
    /// Validation errors only (400): each field in error, with its problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>, nullable = false, example = json!({"crm_merchant_id": "This field is required."}))]
    errors: Option<&'a BTreeMap<&'static str, &'static str>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.error_code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::NotAuthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, REALM));
            }
            ApiError::TokenExpired | ApiError::InvalidToken => {
                let description = if matches!(self, ApiError::TokenExpired) {
                    "The access token expired"
                } else {
                    "The access token is invalid"
                };
                let challenge =
                    format!(r#"{REALM}, error="invalid_token", error_description="{description}""#);
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::Throttled { retry_after } => {
                response.insert_header((header::RETRY_AFTER, *retry_after));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[test]
    fn each_code_is_written_as_its_word_and_each_example_has_its_code() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
            let example = ApiError::example(code);
            assert_eq!(example.error_code(), code);
            assert_eq!(example.status_code(), code.status());
            assert_eq!(example.body_json()["error_code"], code.as_str());
        }
    }

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value, header::HeaderMap) {
        let response = e.error_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body()).await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_default(),
            headers,
        )
    }

    #[actix_web::test]
    async fn every_error_has_the_documented_shape() {
        let (status, body, headers) = body_of(ApiError::InvalidToken).await;
        assert_eq!(status, 401);
        assert_eq!(body["detail"], "Invalid token");
        assert_eq!(body["error_code"], "invalid_token");
        assert_eq!(body["error_message"], "Invalid token");
        assert!(body.get("errors").is_none());
        let challenge = headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer realm=\"stamps\", error=\"invalid_token\""));

        let (status, body, _) = body_of(ApiError::field(
            "crm_merchant_id",
            "This field is required.",
        ))
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"]["crm_merchant_id"], "This field is required.");

        let (status, _, headers) = body_of(ApiError::MethodNotAllowed {
            allow: crate::routes::ALLOWED_METHODS,
        })
        .await;
        assert_eq!(status, 405);
        assert_eq!(headers.get(header::ALLOW).unwrap(), "POST, OPTIONS");

        let (status, body, _) =
            body_of(ApiError::from(StoreError::Backend("disk full".into()))).await;
        assert_eq!(status, 503);
        assert_eq!(body["error_code"], "store_unavailable");
        assert!(!body.to_string().contains("disk full"));

        let (status, body, headers) = body_of(ApiError::Throttled { retry_after: 42 }).await;
        assert_eq!(status, 429);
        assert_eq!(body["error_code"], "throttled");
        assert_eq!(
            body["detail"],
            "Request was throttled. Expected available in 42 seconds."
        );
        assert_eq!(body["error_message"], body["detail"]);
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "42");
        let (_, body, _) = body_of(ApiError::Throttled { retry_after: 1 }).await;
        assert_eq!(
            body["detail"],
            "Request was throttled. Expected available in 1 second."
        );

        let (status, body, _) = body_of(ApiError::HttpsRequired).await;
        assert_eq!(status, 403);
        assert_eq!(body["error_code"], "https_required");
        let (status, body, _) = body_of(ApiError::from(StoreError::Full(
            "the file system is full".into(),
        )))
        .await;
        assert_eq!(status, 503);
        assert_eq!(body["error_code"], "store_unavailable");
    }
}
