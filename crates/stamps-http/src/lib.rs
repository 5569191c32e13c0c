//! stamps-http: the actix-web side of stamps.
//!
//! * [`configure`] registers the Stamps API (get-access-token,
//!   verify-token, ping; each with and without the trailing slash) and JSON
//!   404/405 answers, on any actix-web `App` or scope.
//! * [`Authenticated`] and [`BearerClaims`] are extractors other
//!   actix-web services can reuse: each is one call to stamps-auth's
//!   [`Authenticator`] (re-exported here), which verifies JWTs (in memory)
//!   and static tokens (cache, then store and argon2id); handlers are
//!   extract, one call, respond.
//! * [`ApiError`] is every error the API answers with, mapped to status,
//!   JSON body and headers in one place (`From<AuthError>` among them).
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

mod app;
mod body;
mod client_info;
mod connections;
mod error;
mod extractors;
mod handlers;
pub mod health;
mod logging;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod tls;

use actix_web::web;

use crate::routes::{Methods, add_any_method_route, add_route};

pub use app::{AppState, app};
pub use body::{AccessTokenRequest, BodyTimeout, LimitedBody, MAX_BODY_BYTES};
pub use client_info::{ClientInfo, ClientPolicy, transport_security};
pub use connections::{ConnectionCap, ConnectionSlot};
pub use error::{ApiError, ErrorCode};
pub use extractors::{Authenticated, BearerClaims};
pub use health::{CheckFailure, Readiness};
pub use logging::{
    AccessLog, LineSink, Logged, REQUEST_ID_HEADER, REQUEST_LINE_TARGET, RequestLog,
    RequestLogService,
};
pub use metrics::{Metrics, RequestMetrics};
pub use routes::{
    ALLOWED_METHODS, METRICS_PATH, OPENAPI_METHODS, OPENAPI_PATH, READ_ONLY_METHODS, Route,
};
// The authentication (stamps-auth), re-exported: one API for users of
// this crate.
pub use stamps_auth::{
    AUDIT_BACKLOG, AccessRequest, AuditPolicy, AuditTrail, AuditWriter, AuthError, AuthObserver,
    AuthReason, Authenticator, CachedToken, Credentials, FailureLimiter, Follower, IssueQuota,
    JwtIssued, JwtRefusal, LAST_USE_FLUSH_EVERY, LastUse, LiveMerchant, LiveState,
    MAX_AGE_IDLE_TIMES, MalformedCredentials, ObservedStore, POLL_INTERVAL, PROVEN_FOR, Principal,
    Proof, QUEUE_PER_PERMIT, REPORT_EVERY, RefusedToken, STORE_DEADLINE, Scheme, StaticTokenCache,
    TRACKED_KEYS, Throttle, Throttled, address_key,
};
pub use stamps_config::{TrustedProxies, parse_trusted_net};

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
    add_any_method_route(cfg, Route::Check, handlers::check);
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
