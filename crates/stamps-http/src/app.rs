//! The server's whole app, built in one place: the state it holds, the
//! middleware in its order, and every route. `stamps-server` serves it and
//! the in-process tests exercise it, so both run the same app.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, web};
use stamps_auth::Authenticator;
use stamps_config::TrustedProxies;

use crate::body::BodyTimeout;
use crate::client_info::{ClientPolicy, transport_security};
use crate::health::Readiness;
use crate::logging::{AccessLog, RequestLog};
use crate::metrics::{Metrics, RequestMetrics};

/// What the app holds, shared by every worker (clone it into each).
/// [`AppState::new`] gives the defaults: one log line per request, plain HTTP with no trusted proxy, no readiness checks, the
/// default body timeout, no metrics.
#[derive(Clone)]
pub struct AppState {
    /// Verifies credentials and exchanges static tokens for JWTs (with
    /// the issuance quota and the audit trail, when it has them).
    pub auth: web::Data<Authenticator>,
    /// Trusted proxies, TLS, `require_https` and HSTS.
    pub policy: web::Data<ClientPolicy>,
    /// The checks behind `/readyz`.
    pub readiness: web::Data<Readiness>,
    /// How long a request body may take.
    pub body_timeout: BodyTimeout,
    /// One log line per request (`log.access`), and how it is made;
    /// `None`: none.
    pub access_log: Option<AccessLog>,
    /// Counts every answer, when metrics are on.
    pub recorder: RequestMetrics,
    /// Served at `/metrics` on this app; `None` when metrics are off or
    /// have a listener of their own.
    pub metrics: Option<web::Data<Metrics>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("auth", &self.auth)
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The defaults around `auth` (see [`AppState`]).
    pub fn new(auth: web::Data<Authenticator>) -> Self {
        Self {
            auth,
            policy: web::Data::new(ClientPolicy::new(
                TrustedProxies::default(),
                false,
                false,
                Duration::from_secs(365 * 86_400),
            )),
            readiness: web::Data::new(Readiness::default()),
            body_timeout: BodyTimeout::default(),
            access_log: Some(AccessLog::Tracing),
            recorder: RequestMetrics::new(None),
            metrics: None,
        }
    }
}

/// The app: `state`, then the middleware from the inside out (HTTPS
/// policy when it has something to do, the access log, the request
/// metrics outermost, so that they see every answer, `https_required`
/// included), then the probes, `/metrics` when served here, and the API
/// ([`crate::configure`]).
///
/// ```
/// use std::sync::Arc;
/// use actix_web::{test, web};
/// use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock};
/// use stamps_http::{AppState, Authenticator, LiveState, StaticTokenCache};
///
/// # actix_web::rt::System::new().block_on(async {
/// let codec = JwtCodec::new(KeySet::new(SigningKey::new(vec![7; 32])?), ExpiryRules::default());
/// let live = Arc::new(LiveState::empty(StaticTokenCache::new(1000, std::time::Duration::from_secs(300))));
/// let auth = web::Data::new(Authenticator::new(codec, Arc::new(SystemClock), live, None, 1));
/// let app = test::init_service(stamps_http::app(AppState::new(auth))).await;
/// let req = test::TestRequest::post().uri("/api/ping").to_request();
/// assert_eq!(test::call_service(&app, req).await.status(), 401);
/// let req = test::TestRequest::get().uri("/healthz").to_request();
/// assert_eq!(test::call_service(&app, req).await.status(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let AppState {
        auth,
        policy,
        readiness,
        body_timeout,
        access_log,
        recorder,
        metrics,
    } = state;
    let transport = policy.needs_middleware();
    App::new()
        .app_data(auth)
        .app_data(policy)
        .app_data(readiness)
        .app_data(body_timeout)
        .wrap(Condition::new(transport, from_fn(transport_security)))
        .wrap(RequestLog::new(access_log))
        // Outermost: it sees every answer, https_required included.
        .wrap(recorder)
        // The API first: actix tries the routes in order, and most
        // requests are the API's.
        .configure(crate::configure)
        .configure(crate::health::configure)
        .configure(|cfg| {
            if let Some(metrics) = metrics {
                cfg.app_data(metrics);
                crate::metrics::configure(cfg);
            }
        })
}
