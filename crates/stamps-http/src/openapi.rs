//! The OpenAPI 3.1 document of the API, generated from the handlers' code
//! by utoipa and served at `GET /api/openapi.json`.
//!
//! Each handler's `#[utoipa::path]` (in `handlers.rs`) gives its path,
//! request body, answer and error statuses; the request and answer types
//! derive `ToSchema`; the error answers ([`ErrorResponse`]) come from
//! [`ErrorCode`]: one reusable response per status, its `error_code` enum
//! narrowed to that status's codes, its examples rendered by [`ApiError`]
//! itself, and the headers the contract promises (`WWW-Authenticate`,
//! `Allow`, `Retry-After`) marked required.
//!
//! To document a new path: annotate its handler with `#[utoipa::path]`
//! (copy one in `handlers.rs`; error statuses as
//! `(status = 503, response = ErrorResponse<503>)`) and name the handler in
//! [`ApiDoc`]'s `paths(...)`. The document is built once, on first use
//! ([`document_json`]; [`crate::configure`] asks for it at start), and
//! served as the same bytes ever after.

use std::sync::OnceLock;

use actix_web::web::Bytes;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::error::{ApiError, ErrorCode};
use crate::handlers;

/// The document's general description.
const DESCRIPTION: &str = "A self-hosted reimplementation of the Stamps access-token API: \
exchange a static token for a short-lived HS256 JWT, verify JWTs, and authenticate requests \
with either.\n\n\
Every path answers with and without its trailing slash (no redirect), and OPTIONS with \
`Allow`; any other method is 405 with `Allow`, and an unknown path is 404 (`NotFound`). \
Request bodies over 64 KiB are 413. Every error body is JSON with `detail`, `error_code` \
(one of the fixed codes), `error_message` and, for validation errors, `errors`.";

/// The API's OpenAPI document, generated from the handlers and types.
///
/// ```
/// use utoipa::OpenApi;
///
/// let doc = stamps_http::openapi::ApiDoc::openapi();
/// assert!(doc.paths.paths.contains_key("/api/ping"));
/// ```
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "stamps", description = DESCRIPTION),
    paths(
        handlers::get_access_token,
        handlers::verify_token,
        handlers::ping,
        handlers::check,
        handlers::openapi_json,
        crate::health::healthz,
        crate::health::readyz,
        crate::metrics::metrics,
    ),
    components(schemas(crate::error::Body, ErrorCode)),
    modifiers(&SharedComponents),
    tags(
        (name = "auth", description = "Access tokens and authenticated requests."),
        (name = "documentation", description = "This document."),
        (name = "operations", description = "Probes and metrics, for the operator: no credentials."),
    ),
)]
pub struct ApiDoc;

/// The document, as a value (to inspect it, or to merge more paths in).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served: JSON, built on the first call and shared after
/// (a clone of [`Bytes`] is a reference count).
pub fn document_json() -> Result<Bytes, ApiError> {
    static JSON: OnceLock<Option<Bytes>> = OnceLock::new();
    JSON.get_or_init(|| match document().to_pretty_json() {
        Ok(json) => Some(Bytes::from(json)),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the OpenAPI document");
            None
        }
    })
    .clone()
    .ok_or(ApiError::Internal)
}

/// Every error status, with the name of its reusable response and when it
/// happens. Each [`ErrorCode`]'s status is here (a test checks).
const ERROR_STATUSES: [(u16, &str, &str); 10] = [
    (
        400,
        "BadRequest",
        "The body is malformed, or a field is missing or of the wrong type (`errors` names \
         each field); or the body could not be read in time.",
    ),
    (
        401,
        "Unauthorized",
        "No credentials (`not_authenticated`), an expired JWT (`token_expired`), or any other \
         credential that does not grant access: unknown, wrong, malformed, revoked, of a \
         disabled user or merchant (`invalid_token`, the same answer whatever the reason). \
         With a `WWW-Authenticate` challenge (RFC 6750).",
    ),
    (
        403,
        "Forbidden",
        "A live static token used for a merchant it was not issued for \
         (`merchant_forbidden`), or plain HTTP when the server requires HTTPS \
         (`https_required`).",
    ),
    (404, "NotFound", "A path that is not in this document."),
    (
        405,
        "MethodNotAllowed",
        "A method the path does not answer (on the API paths, anything but POST and \
         OPTIONS); `Allow` lists the methods it does answer.",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body is over 64 KiB (65,536 bytes), refused as soon as it crosses the limit.",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The body is neither JSON (`application/json`) nor form data \
         (`application/x-www-form-urlencoded`).",
    ),
    (
        429,
        "Throttled",
        "Too many failed authentications lately from this client address, or against this \
         static token id; `Retry-After` says in how many seconds to try again. Valid JWTs and \
         proven static tokens are never throttled.",
    ),
    (
        500,
        "InternalError",
        "Anything unexpected; the body never tells internals.",
    ),
    (
        503,
        "StoreUnavailable",
        "The token store is unreachable or full, for a request that needs it (JWT checks go \
         on).",
    ),
];

/// The reusable error response of one status: `(status = 401, response =
/// ErrorResponse<401>)` in a `#[utoipa::path]` refers to it.
#[derive(Debug)]
pub struct ErrorResponse<const STATUS: u16>;

impl<'r, const STATUS: u16> ToResponse<'r> for ErrorResponse<STATUS> {
    fn response() -> (&'r str, RefOr<Response>) {
        let (name, response) = error_response(STATUS);
        (name, RefOr::T(response))
    }
}

/// The name and the response of one error status.
fn error_response(status: u16) -> (&'static str, Response) {
    let (name, description) = ERROR_STATUSES
        .iter()
        .find(|(s, _, _)| *s == status)
        .map_or(("Error", "An error."), |(_, name, description)| {
            (*name, *description)
        });
    let codes: Vec<ErrorCode> = ErrorCode::ALL
        .into_iter()
        .filter(|code| code.status().as_u16() == status)
        .collect();
    let narrowed = ObjectBuilder::new().property(
        "error_code",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().map(|code| code.as_str()))),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorBody"))
        .item(narrowed)
        .build();
    let examples = codes.iter().map(|code| {
        let body = ApiError::example(*code).body_json();
        (
            code.as_str(),
            ExampleBuilder::new().value(Some(body)).build(),
        )
    });
    let content = ContentBuilder::new()
        .schema(Some(Schema::AllOf(schema)))
        .examples_from_iter(examples)
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    match status {
        401 => {
            response = response.header(
                "WWW-Authenticate",
                required_header(
                    ObjectBuilder::new().schema_type(Type::String),
                    r#"The RFC 6750 challenge: `Bearer realm="stamps"`, with `error="invalid_token"` and an `error_description` when a credential was refused."#,
                ),
            );
        }
        405 => {
            response = response.header(
                "Allow",
                required_header(
                    ObjectBuilder::new().schema_type(Type::String),
                    "The methods the path answers: `POST, OPTIONS` on the API paths, `GET, HEAD, OPTIONS` on this document.",
                ),
            );
        }
        429 => {
            response = response.header(
                "Retry-After",
                required_header(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                    "Whole seconds until a failed attempt would be counted again.",
                ),
            );
        }
        _ => {}
    }
    (name, response.build())
}

/// A response header that is always sent. utoipa's `Header` has no
/// `required` field (OpenAPI's Header Object has): it goes in through the
/// header's flattened extension map, which is written as it is.
fn required_header(schema: ObjectBuilder, description: &str) -> utoipa::openapi::header::Header {
    let mut required = Extensions::default();
    required.insert("required".to_owned(), serde_json::Value::Bool(true));
    HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .extensions(Some(required))
        .build()
}

/// The security schemes and the reusable error responses.
struct SharedComponents;

impl Modify for SharedComponents {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .take()
            .unwrap_or_else(|| ComponentsBuilder::new().build());
        let mut components = components;
        components.add_security_scheme(
            "jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <JWT>`, a token from get-access-token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "static_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Authorization: Token <static token>`: the whole header value, with the \
                 scheme word `Token` (matched case-insensitively), as Django REST \
                 framework's token authentication reads it. Static tokens are issued by \
                 `stamps-admin token create`.",
            ))),
        );
        for (status, _, _) in ERROR_STATUSES {
            let (name, response) = error_response(status);
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response));
        }
        openapi.components = Some(components);
        unique_operation_ids(openapi);
    }
}

/// An operation documented for several methods (`check` answers any) gets
/// one id per method, `check_get`, `check_post`, ...: OpenAPI wants every
/// operation id unique, and utoipa gives each method the handler's.
fn unique_operation_ids(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("trace", &mut item.trace),
        ];
        let ids: Vec<Option<String>> = operations
            .iter()
            .filter_map(|(_, op)| op.as_ref().map(|op| op.operation_id.clone()))
            .collect();
        let shared = ids.len() > 1 && ids.windows(2).all(|pair| pair[0] == pair[1]);
        if !shared {
            continue;
        }
        for (method, operation) in operations {
            if let Some(operation) = operation {
                operation.operation_id = operation
                    .operation_id
                    .take()
                    .map(|id| format!("{id}_{method}"));
            }
        }
    }
}
