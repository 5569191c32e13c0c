//! The server's routes: each path by its pattern ([`Route`], also the
//! `route` label of the metrics), the methods each answers, and how a
//! route is registered (with and without its trailing slash, OPTIONS and
//! 405 with `Allow`).

use actix_web::guard::{Guard, GuardContext};
use actix_web::http::Method;
use actix_web::{HttpRequest, web};

use crate::handlers;

/// The path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// The methods every API path allows (the `Allow` header of 405s).
pub const ALLOWED_METHODS: &str = "POST, OPTIONS";

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The methods the OpenAPI document's path allows.
pub const OPENAPI_METHODS: &str = "GET, HEAD, OPTIONS";

/// The methods the probes and `/metrics` allow (the `Allow` header of
/// their 405s).
pub const READ_ONLY_METHODS: &str = "GET, HEAD";

/// A route of the server, by pattern: the only values of the `route`
/// label, so its cardinality is fixed whatever paths clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/api/auth/get-access-token` (with or without the trailing slash).
    GetAccessToken,
    /// `/api/auth/verify-token`.
    VerifyToken,
    /// `/api/ping`.
    Ping,
    /// `/api/auth/check` (forward authentication).
    Check,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/metrics`.
    Metrics,
    /// `/api/openapi.json`.
    OpenApi,
    /// Any path no route matched (a 404), or a request that failed before
    /// it was routed.
    Unmatched,
}

impl Route {
    /// Every route, in label order.
    pub const ALL: [Route; 9] = [
        Route::GetAccessToken,
        Route::VerifyToken,
        Route::Ping,
        Route::Check,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::OpenApi,
        Route::Unmatched,
    ];

    /// The route's pattern without the optional trailing slash (also the
    /// name its actix resources are registered with, and its `route`
    /// label); `unmatched` for [`Route::Unmatched`].
    pub const fn pattern(self) -> &'static str {
        match self {
            Route::GetAccessToken => "/api/auth/get-access-token",
            Route::VerifyToken => "/api/auth/verify-token",
            Route::Ping => "/api/ping",
            Route::Check => "/api/auth/check",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => METRICS_PATH,
            Route::OpenApi => OPENAPI_PATH,
            Route::Unmatched => "unmatched",
        }
    }

    /// The route of a resource name (see [`Route::pattern`]).
    pub fn from_name(name: &str) -> Route {
        Route::ALL
            .into_iter()
            .find(|route| route.pattern() == name)
            .unwrap_or(Route::Unmatched)
    }

    /// The route a request matched: by the name of its resource, which
    /// actix finds from the indices it recorded while routing (no path
    /// matching again, no allocation).
    pub fn of(req: &HttpRequest) -> Route {
        req.match_name().map_or(Route::Unmatched, Route::from_name)
    }
}

/// The resources of one route, with and without its trailing slash (no
/// redirect), each named after the route's pattern (how
/// [`Route::of`] tells a request's route without matching its path again).
fn route_resources(route: Route) -> [actix_web::Resource; 2] {
    let path = route.pattern();
    let (bare, slashed) = (path.to_owned(), format!("{path}/"));
    // The form clients use first: actix tries resources in order, and the
    // API's page gives the two auth paths with their slash.
    let forms = match route {
        Route::GetAccessToken | Route::VerifyToken => [slashed, bare],
        _ => [bare, slashed],
    };
    forms.map(|p| web::resource(p).name(path))
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

/// A route's method, compared and nothing more. actix's own guard
/// (`web::post()` and the like) also records, in the request's extensions,
/// every method it is tried with, for the `Allow` header of actix's default
/// 405: two allocations per request, for a header each route here writes
/// itself ([`Methods::allow`]).
struct MethodIs(Method);

impl Guard for MethodIs {
    fn check(&self, ctx: &GuardContext<'_>) -> bool {
        ctx.head().method == self.0
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
    let method = |method| web::route().guard(MethodIs(method));
    for resource in route_resources(route) {
        let resource = match methods {
            Methods::Api => resource.route(method(Method::POST).to(handler.clone())),
            Methods::Document | Methods::ReadOnly => resource
                .route(method(Method::GET).to(handler.clone()))
                .route(method(Method::HEAD).to(handler.clone())),
        };
        let resource = match methods {
            Methods::Api | Methods::Document => resource
                .route(method(Method::OPTIONS).to(move || async move { handlers::options(allow) })),
            Methods::ReadOnly => resource,
        };
        cfg.service(resource.default_service(web::to(move || async move {
            handlers::method_not_allowed(allow)
        })));
    }
}

/// Registers a route whose every method reaches `handler`, with and without
/// its trailing slash: no OPTIONS answer, no 405. For forward
/// authentication, where proxies send their client's method or one of
/// their own.
pub(crate) fn add_any_method_route<F, Args>(cfg: &mut web::ServiceConfig, route: Route, handler: F)
where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    for resource in route_resources(route) {
        cfg.service(resource.route(web::route().to(handler.clone())));
    }
}
