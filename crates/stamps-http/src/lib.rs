//! stamps-http: the actix-web side of stamps.
//!
//! * [`configure`] registers the Stamps API (get-access-token,
//!   verify-token, ping; each with and without the trailing slash) and JSON
//!   404/405 answers, on any actix-web `App` or scope.
//! * [`Authenticator`] verifies JWTs (in memory) and static tokens
//!   (cache, then store and argon2id), and [`Authenticated`] /
//!   [`BearerClaims`] are extractors other actix-web services can reuse.
//! * [`ApiError`] is every error the API answers with, mapped to status,
//!   JSON body and headers in one place.
//! * [`LiveState`] and [`ObservedStore`] keep what authentication needs in
//!   memory, in step with every change to the store.
//! * [`AuditTrail`] records every JWT issued, off the request path.
//! * [`ClientInfo`] is who sent a request (the TCP peer, or what trusted
//!   proxies say), [`transport_security`] enforces `require_https` and
//!   sends HSTS, [`Throttle`] limits failed authentication, and
//!   [`tls::server_config`] loads the certificate for native TLS.
//! * [`settings`] is the server's configuration.
//! * [`openapi`] is the API's OpenAPI 3.1 document, generated from the
//!   handlers and served at `GET /api/openapi.json`.
#![deny(missing_docs)]

mod audit;
mod auth;
mod body;
mod cache;
mod client;
mod error;
mod handlers;
mod live;
mod logging;
pub mod openapi;
mod pacing;
pub mod settings;
mod throttle;
pub mod tls;

use actix_web::web;

pub use audit::{AUDIT_BACKLOG, AuditTrail, AuditWriter, JwtIssued};
pub use auth::{Authenticated, Authenticator, BearerClaims, Credentials, Principal, Proof};
pub use body::{AccessTokenRequest, BodyTimeout, LimitedBody, MAX_BODY_BYTES};
pub use cache::{CachedToken, StaticTokenCache};
pub use client::{ClientInfo, ClientPolicy, TrustedProxies, parse_trusted_net, transport_security};
pub use error::{ApiError, ErrorCode};
pub use live::{LiveMerchant, LiveState, ObservedStore};
pub use logging::{REQUEST_ID_HEADER, log_request};
pub use throttle::{FailureLimiter, TRACKED_KEYS, Throttle, address_key};

/// The methods every API path allows (the `Allow` header of 405s).
pub const ALLOWED_METHODS: &str = "POST, OPTIONS";

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The methods the OpenAPI document's path allows.
pub const OPENAPI_METHODS: &str = "GET, HEAD, OPTIONS";

/// Registers the Stamps API and its OpenAPI document
/// ([`OPENAPI_PATH`], built here once). The app must also hold a
/// `web::Data<Authenticator>`.
///
/// ```
/// use std::sync::Arc;
/// use actix_web::{App, test, web};
/// use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock};
/// use stamps_http::{Authenticator, LiveState, StaticTokenCache};
///
/// # actix_web::rt::System::new().block_on(async {
/// let codec = JwtCodec::new(KeySet::new(SigningKey::new(vec![7; 32])?), ExpiryRules::default());
/// let live = Arc::new(LiveState::empty(StaticTokenCache::new(1000, std::time::Duration::from_secs(300))));
/// let auth = web::Data::new(Authenticator::new(codec, Arc::new(SystemClock), live, None, 1));
/// let app = test::init_service(App::new().app_data(auth).configure(stamps_http::configure)).await;
/// let req = test::TestRequest::post().uri("/api/ping").to_request();
/// assert_eq!(test::call_service(&app, req).await.status(), 401);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn configure(cfg: &mut web::ServiceConfig) {
    api_route(
        cfg,
        "/api/auth/get-access-token",
        handlers::get_access_token,
    );
    api_route(cfg, "/api/auth/verify-token", handlers::verify_token);
    api_route(cfg, "/api/ping", handlers::ping);
    // Built now, at start, rather than by the first request.
    if openapi::document_json().is_err() {
        tracing::error!("the OpenAPI document is unavailable: its path answers 500");
    }
    path_route(cfg, OPENAPI_PATH, OPENAPI_METHODS, |resource| {
        resource
            .route(web::get().to(handlers::openapi_json))
            .route(web::head().to(handlers::openapi_json))
    });
    cfg.default_service(web::to(handlers::not_found));
}

/// One API path: POST to the handler.
fn api_route<F, Args>(cfg: &mut web::ServiceConfig, path: &str, handler: F)
where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    path_route(cfg, path, ALLOWED_METHODS, |resource| {
        resource.route(web::post().to(handler.clone()))
    });
}

/// One path, answered with and without its trailing slash (no redirect):
/// the routes `routes` adds, OPTIONS with `Allow: allow`, any other method
/// 405 with the same `Allow`.
fn path_route(
    cfg: &mut web::ServiceConfig,
    path: &str,
    allow: &'static str,
    routes: impl Fn(actix_web::Resource) -> actix_web::Resource,
) {
    for path in [path.to_owned(), format!("{path}/")] {
        cfg.service(
            routes(web::resource(path))
                .route(
                    web::method(actix_web::http::Method::OPTIONS)
                        .to(move || async move { handlers::options(allow) }),
                )
                .default_service(web::to(move || async move {
                    handlers::method_not_allowed(allow)
                })),
        );
    }
}
