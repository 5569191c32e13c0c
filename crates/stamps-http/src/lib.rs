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
//!   memory, in step with every change to the store; [`AuditTrail`]
//!   records every JWT issued; [`IssueQuota`] bounds how many JWTs one
//!   static token obtains; [`Throttle`] limits failed authentication.
//!   They are stamps-auth's, which has no HTTP in it, re-exported here.
//! * [`ClientInfo`] is who sent a request (the TCP peer, or what trusted
//!   proxies say), [`transport_security`] enforces `require_https` and
//!   sends HSTS, [`ConnectionCap`] bounds the connections one address
//!   holds, and [`tls::server_config`] loads the certificate for native TLS.
//! * [`health`] answers the probes (`/healthz`, `/readyz` with the
//!   server's [`Readiness`] checks), and [`metrics`] counts requests,
//!   authentication outcomes, the cache and argon2 ([`Metrics`],
//!   [`RequestMetrics`]) and serves `/metrics`.
//! * [`openapi`] is the API's OpenAPI 3.1 document, generated from the
//!   handlers and served at `GET /api/openapi.json`.
#![deny(missing_docs)]

mod auth;
mod body;
mod client;
mod connections;
mod error;
mod handlers;
pub mod health;
mod logging;
pub mod metrics;
pub mod openapi;
pub mod tls;

use actix_web::web;

pub use auth::{
    Authenticated, Authenticator, BearerClaims, Credentials, Principal, Proof, QUEUE_PER_PERMIT,
    STORE_DEADLINE,
};
// The authentication state (stamps-auth), re-exported: one API for users
// of this crate.
pub use body::{AccessTokenRequest, BodyTimeout, LimitedBody, MAX_BODY_BYTES};
pub use client::{ClientInfo, ClientPolicy, transport_security};
pub use connections::{ConnectionCap, ConnectionSlot};
pub use error::{ApiError, ErrorCode};
pub use health::{CheckFailure, Readiness};
pub use logging::{REQUEST_ID_HEADER, log_request};
pub use metrics::{AuthReason, Metrics, RequestMetrics, Route, Scheme};
pub use stamps_auth::{
    AUDIT_BACKLOG, AuditPolicy, AuditTrail, AuditWriter, CachedToken, FailureLimiter, Follower,
    IssueQuota, JwtIssued, LiveMerchant, LiveState, MAX_AGE_IDLE_TIMES, ObservedStore,
    POLL_INTERVAL, PROVEN_FOR, REPORT_EVERY, RefusedToken, StaticTokenCache, TRACKED_KEYS,
    Throttle, Throttled, address_key,
};
pub use stamps_config::{TrustedProxies, parse_trusted_net};

/// The methods every API path allows (the `Allow` header of 405s).
pub const ALLOWED_METHODS: &str = "POST, OPTIONS";

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The methods the OpenAPI document's path allows.
pub const OPENAPI_METHODS: &str = "GET, HEAD, OPTIONS";

/// The methods the probes and `/metrics` allow (the `Allow` header of
/// their 405s).
pub const READ_ONLY_METHODS: &str = "GET, HEAD";

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
    add_route(
        cfg,
        Route::GetAccessToken,
        Methods::Api,
        handlers::get_access_token,
    );
    add_route(
        cfg,
        Route::VerifyToken,
        Methods::Api,
        handlers::verify_token,
    );
    add_route(cfg, Route::Ping, Methods::Api, handlers::ping);
    // Built now, at start, rather than by the first request.
    if openapi::document_json().is_err() {
        tracing::error!("the OpenAPI document is unavailable: its path answers 500");
    }
    add_route(
        cfg,
        Route::OpenApi,
        Methods::Document,
        handlers::openapi_json,
    );
    cfg.default_service(web::to(handlers::not_found));
}

/// The resources of one route, with and without its trailing slash (no
/// redirect), each named after the route's pattern (how
/// [`Route::of`] tells a request's route without matching its path again).
fn route_resources(route: Route) -> [actix_web::Resource; 2] {
    let path = route.pattern();
    [path.to_owned(), format!("{path}/")].map(|p| web::resource(p).name(path))
}

/// Which methods a route answers.
#[derive(Clone, Copy)]
pub(crate) enum Methods {
    /// The API: POST to the handler, OPTIONS with `Allow`, anything else
    /// 405 with the same `Allow`.
    Api,
    /// The OpenAPI document: GET and HEAD to the handler, OPTIONS with
    /// `Allow`, anything else 405 with the same `Allow`.
    Document,
    /// The probes and `/metrics`: GET and HEAD to the handler, anything
    /// else 405 with `Allow: GET, HEAD`.
    ReadOnly,
}

impl Methods {
    /// The `Allow` header of the route's OPTIONS and 405 answers.
    fn allow(self) -> &'static str {
        match self {
            Methods::Api => ALLOWED_METHODS,
            Methods::Document => OPENAPI_METHODS,
            Methods::ReadOnly => READ_ONLY_METHODS,
        }
    }
}

/// Registers one route, with and without its trailing slash.
pub(crate) fn add_route<F, Args>(
    cfg: &mut web::ServiceConfig,
    route: Route,
    methods: Methods,
    handler: F,
) where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = methods.allow();
    for resource in route_resources(route) {
        let resource = match methods {
            Methods::Api => resource.route(web::post().to(handler.clone())),
            Methods::Document | Methods::ReadOnly => resource
                .route(web::get().to(handler.clone()))
                .route(web::head().to(handler.clone())),
        };
        let resource = match methods {
            Methods::Api | Methods::Document => resource.route(
                web::method(actix_web::http::Method::OPTIONS)
                    .to(move || async move { handlers::options(allow) }),
            ),
            Methods::ReadOnly => resource,
        };
        cfg.service(resource.default_service(web::to(move || async move {
            handlers::method_not_allowed(allow)
        })));
    }
}
