//! Prometheus metrics: what the server counts, and `GET /metrics` in the
//! Prometheus text format (version 0.0.4).
//!
//! Recording is cheap on the request path. Every series a request touches
//! is resolved ahead of time, in arrays indexed by [`Route`], status code,
//! [`Scheme`] and [`AuthReason`]: recording is an atomic add per counter
//! and one short, rarely contended lock per latency observation
//! (prometheus-client's histogram), with no allocation, no string
//! formatting and no map lookup. A request's route comes from the name
//! actix gave the resource it matched, without re-matching the path.
//!
//! Memory is bounded whether or not anyone scrapes: histograms keep a
//! count per fixed bucket, never raw samples, and every label takes a
//! bounded set of values (routes are patterns, never raw paths: anything
//! unmatched is `unmatched`; status codes are 100 to 599).
//!
//! Values that cost something to read (the store's size on disk, account
//! and cache sizes) are read when `/metrics` is scraped
//! ([`Metrics::scrape_gauge`]), never per request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{Error, HttpResponse, web};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use crate::routes::METRICS_PATH;
use crate::routes::{Methods, Route, add_route};
use stamps_auth::{AuthObserver, AuthReason, Scheme};

/// The `Content-Type` of `/metrics`: the Prometheus text format, 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the request latency buckets: from 25 µs (a
/// JWT check) to 10 s (argon2 behind a long queue).
pub const REQUEST_BUCKETS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the argon2 buckets (queue wait and hash time).
pub const ARGON2_BUCKETS: [f64; 13] = [
    0.000_1, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.pattern())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuthLabels {
    /// [`Scheme::label`].
    scheme: &'static str,
    /// [`AuthReason::label`].
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Status codes with a series slot each, per route: 100 to 599.
const CODES: usize = 500;
const ROUTES: usize = Route::ALL.len();
const SCHEMES: usize = Scheme::ALL.len();
const REASONS: usize = AuthReason::ALL.len();

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// Every metric of the server, and the registry that exposes them.
///
/// Share one in an `Arc`: the [`Authenticator`](crate::Authenticator)
/// ([`with_observer`](crate::Authenticator::with_observer), as its
/// [`AuthObserver`]), the
/// [`RequestMetrics`] middleware and the `/metrics` handler
/// ([`configure`]) all record into or read the same one.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `requests` resolved per (route, code), on first use.
    request_slots: Box<[OnceLock<Counter>]>,
    latency: [Histogram; ROUTES],
    auth: [[Counter; REASONS]; SCHEMES],
    cache_hits: Counter,
    cache_misses: Counter,
    connections_refused: Counter,
    argon2_waiting: Gauge,
    argon2_hashing: Gauge,
    argon2_wait: Histogram,
    argon2_hash: Histogram,
    scraped: Arc<ScrapeGauges>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `stamps_` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("stamps");

        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern and status code",
            requests.clone(),
        );
        let latency_family =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head), by route pattern",
            latency_family.clone(),
        );
        let latency =
            Route::ALL.map(|route| latency_family.get_or_create(&RouteLabels { route }).clone());

        let auth_family = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_outcomes",
            "Authentication attempts, by credential scheme and outcome",
            auth_family.clone(),
        );
        let auth = Scheme::ALL.map(|scheme| {
            AuthReason::ALL.map(|reason| {
                auth_family
                    .get_or_create(&AuthLabels {
                        scheme: scheme.label(),
                        reason: reason.label(),
                    })
                    .clone()
            })
        });

        let cache_hits = Counter::default();
        registry.register(
            "static_token_cache_hits",
            "Static tokens accepted from the verification cache (no store, no argon2)",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "static_token_cache_misses",
            "Well-formed static tokens not in the verification cache",
            cache_misses.clone(),
        );

        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival: their address held http.max_connections_per_address",
            connections_refused.clone(),
        );

        let argon2_waiting = Gauge::default();
        registry.register(
            "argon2_queue_depth",
            "Static token checks waiting for an argon2 slot",
            argon2_waiting.clone(),
        );
        let argon2_hashing = Gauge::default();
        registry.register(
            "argon2_in_progress",
            "argon2 verifications running now",
            argon2_hashing.clone(),
        );
        let argon2_wait = Histogram::new(ARGON2_BUCKETS);
        registry.register(
            "argon2_wait_seconds",
            "Time a static token check waited for an argon2 slot",
            argon2_wait.clone(),
        );
        let argon2_hash = Histogram::new(ARGON2_BUCKETS);
        registry.register(
            "argon2_hash_seconds",
            "Time of one argon2 verification (with the store lookup of its record)",
            argon2_hash.clone(),
        );

        let build = Family::<BuildLabels, ConstGauge>::new_with_constructor(|| ConstGauge::new(1));
        drop(build.get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        }));
        registry.register("build_info", "The running version (always 1)", build);

        let scraped = Arc::new(ScrapeGauges::default());
        root.register_collector(Box::new(scraped.clone()));

        Self {
            registry: root,
            requests,
            request_slots: (0..ROUTES * CODES).map(|_| OnceLock::new()).collect(),
            latency,
            auth,
            cache_hits,
            cache_misses,
            connections_refused,
            argon2_waiting,
            argon2_hashing,
            argon2_wait,
            argon2_hash,
            scraped,
        }
    }

    /// Adds a gauge read when `/metrics` is scraped: `stamps_<name>`, with
    /// `label` (name, value) if given, whose value `read` returns (`None`:
    /// left out of this scrape). Gauges of one name are written together,
    /// under one `HELP` (the first one's).
    pub fn scrape_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        label: Option<(&'static str, &'static str)>,
        read: impl Fn() -> Option<i64> + Send + Sync + 'static,
    ) {
        self.add_scraped(ScrapeGauge {
            name,
            help,
            label,
            counter: false,
            read: Box::new(read),
        });
    }

    /// Adds a counter read when `/metrics` is scraped: `stamps_<name>_total`,
    /// whose value `read` returns (it must only grow), such as the log
    /// lines dropped by a writer that fell behind.
    pub fn scrape_counter(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.add_scraped(ScrapeGauge {
            name,
            help,
            label: None,
            counter: true,
            read: Box::new(move || i64::try_from(read()).ok()),
        });
    }

    fn add_scraped(&self, metric: ScrapeGauge) {
        self.scraped
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(metric);
    }

    /// Counts one answered request and its latency.
    #[inline]
    pub fn record_request(&self, route: Route, code: u16, elapsed: Duration) {
        let code = code.clamp(100, 599);
        let slot = route as usize * CODES + usize::from(code - 100);
        if let Some(counter) = self.request_slots.get(slot) {
            counter
                .get_or_init(|| {
                    self.requests
                        .get_or_create(&RequestLabels { route, code })
                        .clone()
                })
                .inc();
        }
        self.latency[route as usize].observe(elapsed.as_secs_f64());
    }

    /// Counts one authentication outcome.
    #[inline]
    pub fn record_auth(&self, scheme: Scheme, reason: AuthReason) {
        self.auth[scheme as usize][reason as usize].inc();
    }

    /// Counts one lookup in the static token cache.
    #[inline]
    pub fn record_cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// Counts a connection closed on arrival by the per-address cap
    /// ([`ConnectionCap`](crate::ConnectionCap)).
    pub fn record_connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Every metric, in the Prometheus text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The Authenticator's events, as series: outcomes by scheme and reason,
/// cache hits and misses, the argon2 queue and hashes.
impl AuthObserver for Metrics {
    #[inline]
    fn outcome(&self, scheme: Scheme, reason: AuthReason) {
        self.record_auth(scheme, reason);
    }

    #[inline]
    fn cache_lookup(&self, hit: bool) {
        self.record_cache(hit);
    }

    fn argon2_queue_changed(&self, change: i64) {
        self.argon2_waiting.inc_by(change);
    }

    fn argon2_running_changed(&self, change: i64) {
        self.argon2_hashing.inc_by(change);
    }

    fn argon2_waited(&self, waited: Duration) {
        self.argon2_wait.observe(waited.as_secs_f64());
    }

    fn argon2_hashed(&self, took: Duration) {
        self.argon2_hash.observe(took.as_secs_f64());
    }
}

/// A gauge (or a counter) read at scrape time.
struct ScrapeGauge {
    name: &'static str,
    help: &'static str,
    label: Option<(&'static str, &'static str)>,
    counter: bool,
    read: Box<dyn Fn() -> Option<i64> + Send + Sync>,
}

/// The gauges read at scrape time, as one collector.
#[derive(Default)]
struct ScrapeGauges(RwLock<Vec<ScrapeGauge>>);

impl fmt::Debug for ScrapeGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gauges = self.0.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(gauges.iter().map(|g| g.name))
            .finish()
    }
}

impl Collector for ScrapeGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let gauges = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut done: Vec<&str> = Vec::new();
        for first in gauges.iter() {
            if done.contains(&first.name) {
                continue;
            }
            done.push(first.name);
            let values: Vec<(Option<(&str, &str)>, i64)> = gauges
                .iter()
                .filter(|g| g.name == first.name)
                .filter_map(|g| (g.read)().map(|value| (g.label, value)))
                .collect();
            if values.is_empty() {
                continue;
            }
            let name = format!("stamps_{}", first.name);
            if first.counter {
                let total = values.first().map_or(0, |(_, value)| *value);
                let metric = encoder.encode_descriptor(
                    &name,
                    first.help,
                    None,
                    prometheus_client::metrics::MetricType::Counter,
                )?;
                ConstCounter::new(u64::try_from(total).unwrap_or(0)).encode(metric)?;
                continue;
            }
            let mut metric = encoder.encode_descriptor(
                &name,
                first.help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (label, value) in values {
                let gauge = ConstGauge::new(value);
                match label {
                    Some(pair) => gauge.encode(metric.encode_family(&[pair])?)?,
                    None => {
                        // One value without labels: the whole metric.
                        gauge.encode(metric)?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The request middleware
// ---------------------------------------------------------------------------

/// Middleware that counts every request by route pattern and status code,
/// and observes its latency. Wrap it outermost, so that it sees every
/// answer (404s, 405s, 413s, `https_required`). `None`: records nothing
/// and reads no clock.
#[derive(Debug, Clone)]
pub struct RequestMetrics(Option<Arc<Metrics>>);

impl RequestMetrics {
    /// Records into `metrics`, if any.
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self(metrics)
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestMetricsService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(RequestMetricsService {
            service,
            // One per worker: each request clones an `Rc`, not an `Arc`,
            // so the workers never contend for a reference count.
            metrics: self.0.clone().map(Rc::new),
        }))
    }
}

/// The metrics as a worker holds them: cloned per request without touching
/// the shared (atomic) reference count of the `Arc`, which the workers
/// would otherwise bounce between their cores.
#[allow(clippy::redundant_allocation)]
type WorkerMetrics = Rc<Arc<Metrics>>;

/// The service of [`RequestMetrics`].
#[derive(Debug)]
pub struct RequestMetricsService<S> {
    service: S,
    metrics: Option<WorkerMetrics>,
}

impl<S, B> Service<ServiceRequest> for RequestMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Recorded<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let recording = self
            .metrics
            .as_ref()
            .map(|metrics| (Rc::clone(metrics), Instant::now()));
        Recorded {
            inner: self.service.call(req),
            recording,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestMetricsService`]: the inner one, recorded
    /// when it completes.
    pub struct Recorded<F> {
        #[pin]
        inner: F,
        recording: Option<(WorkerMetrics, Instant)>,
    }
}

impl<F: fmt::Debug> fmt::Debug for Recorded<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded").finish_non_exhaustive()
    }
}

impl<F, B> Future for Recorded<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some((metrics, started)) = this.recording.take() {
            let (route, status) = match &result {
                Ok(response) => (Route::of(response.request()), response.status()),
                Err(e) => (Route::Unmatched, e.as_response_error().status_code()),
            };
            metrics.record_request(route, status.as_u16(), started.elapsed());
        }
        Poll::Ready(result)
    }
}

// ---------------------------------------------------------------------------
// The endpoint
// ---------------------------------------------------------------------------

/// Registers `GET /metrics` (and `HEAD`; with or without the trailing
/// slash; any other method 405). The app must hold a `web::Data<Metrics>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    add_route(cfg, Route::Metrics, Methods::ReadOnly, metrics);
}

/// Metrics
///
/// Every metric, in the Prometheus text format (0.0.4). Off by default;
/// when `metrics.listen` is set, served only on that listener.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 405, response = crate::openapi::ErrorResponse<405>),
        (status = 500, response = crate::openapi::ErrorResponse<500>),
    ),
)]
pub(crate) async fn metrics(metrics: Option<web::Data<Metrics>>) -> HttpResponse {
    let Some(metrics) = metrics else {
        tracing::error!("no Metrics registered with app_data");
        return actix_web::ResponseError::error_response(&crate::ApiError::Internal);
    };
    match metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .body(text),
        Err(_) => {
            tracing::error!("cannot encode the metrics");
            actix_web::ResponseError::error_response(&crate::ApiError::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn routes_round_trip_through_their_names() {
        for route in Route::ALL {
            assert_eq!(Route::from_name(route.pattern()), route);
        }
        assert_eq!(Route::from_name("/api/ping/"), Route::Unmatched);
        assert_eq!(Route::from_name("/anything"), Route::Unmatched);
    }

    #[test]
    fn requests_are_counted_by_route_and_code_with_a_histogram() {
        let metrics = Metrics::new();
        metrics.record_request(Route::Ping, 200, Duration::from_micros(30));
        metrics.record_request(Route::Ping, 200, Duration::from_micros(70));
        metrics.record_request(Route::Ping, 401, Duration::from_micros(70));
        metrics.record_request(Route::Unmatched, 404, Duration::from_micros(5));
        // Out-of-range codes are clamped, never out of bounds.
        metrics.record_request(Route::Unmatched, 999, Duration::ZERO);
        metrics.record_request(Route::Unmatched, 0, Duration::ZERO);
        let text = metrics.encode().unwrap();
        let count =
            |labels: &str| line_value(&text, &format!("stamps_http_requests_total{{{labels}}}"));
        assert_eq!(
            count(r#"route="/api/ping",code="200""#),
            Some(2.0),
            "{text}"
        );
        assert_eq!(count(r#"route="/api/ping",code="401""#), Some(1.0));
        assert_eq!(count(r#"route="unmatched",code="404""#), Some(1.0));
        assert_eq!(count(r#"route="unmatched",code="599""#), Some(1.0));
        assert_eq!(count(r#"route="unmatched",code="100""#), Some(1.0));
        assert_eq!(count(r#"route="/api/ping",code="500""#), None);
        let ping_hist = |suffix: &str| {
            line_value(
                &text,
                &format!("stamps_http_request_duration_seconds_{suffix}{{route=\"/api/ping\""),
            )
        };
        assert_eq!(ping_hist("count"), Some(3.0));
        assert!(
            text.contains(
                "stamps_http_request_duration_seconds_bucket{route=\"/api/ping\",le=\"5e-05\"} 1"
            ) || text.contains(
                "stamps_http_request_duration_seconds_bucket{route=\"/api/ping\",le=\"0.00005\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE stamps_http_request_duration_seconds histogram"));
    }

    #[test]
    fn auth_outcomes_cache_and_argon2_are_exposed() {
        let metrics = Metrics::new();
        metrics.scrape_gauge("accounts", "Accounts", Some(("kind", "merchant")), || {
            Some(3)
        });
        metrics.scrape_gauge("accounts", "Accounts", Some(("kind", "user")), || Some(5));
        metrics.scrape_gauge("store_size_bytes", "Size", None, || Some(4096));
        metrics.scrape_gauge("gone", "Not there", None, || None);
        metrics.scrape_counter("log_lines_dropped", "Dropped", || 3);
        metrics.record_auth(Scheme::Jwt, AuthReason::Ok);
        metrics.record_auth(Scheme::Static, AuthReason::Revoked);
        metrics.record_auth(Scheme::Static, AuthReason::Revoked);
        metrics.record_cache(true);
        metrics.record_cache(false);
        metrics.record_cache(false);
        metrics.argon2_queue_changed(1);
        metrics.argon2_running_changed(1);
        let text = metrics.encode().unwrap();
        assert_eq!(line_value(&text, "stamps_argon2_queue_depth "), Some(1.0));
        assert_eq!(line_value(&text, "stamps_argon2_in_progress "), Some(1.0));
        metrics.argon2_queue_changed(-1);
        metrics.argon2_running_changed(-1);
        metrics.argon2_waited(Duration::from_millis(2));
        metrics.argon2_hashed(Duration::from_millis(40));
        let text = metrics.encode().unwrap();
        let auth =
            |labels: &str| line_value(&text, &format!("stamps_auth_outcomes_total{{{labels}}}"));
        assert_eq!(auth(r#"scheme="jwt",reason="ok""#), Some(1.0), "{text}");
        assert_eq!(auth(r#"scheme="static",reason="revoked""#), Some(2.0));
        // Every outcome is there from the start, at zero.
        assert_eq!(auth(r#"scheme="jwt",reason="throttled""#), Some(0.0));
        assert_eq!(
            line_value(&text, "stamps_static_token_cache_hits_total "),
            Some(1.0)
        );
        assert_eq!(
            line_value(&text, "stamps_static_token_cache_misses_total "),
            Some(2.0)
        );
        assert_eq!(line_value(&text, "stamps_argon2_queue_depth "), Some(0.0));
        assert_eq!(
            line_value(&text, "stamps_argon2_hash_seconds_count "),
            Some(1.0)
        );
        assert_eq!(
            line_value(&text, "stamps_argon2_wait_seconds_count "),
            Some(1.0)
        );
        assert_eq!(
            line_value(&text, "stamps_accounts{kind=\"merchant\"} "),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            line_value(&text, "stamps_accounts{kind=\"user\"} "),
            Some(5.0)
        );
        assert_eq!(text.matches("# TYPE stamps_accounts gauge").count(), 1);
        assert_eq!(line_value(&text, "stamps_store_size_bytes "), Some(4096.0));
        assert_eq!(
            line_value(&text, "stamps_log_lines_dropped_total "),
            Some(3.0)
        );
        assert!(
            text.contains("# TYPE stamps_log_lines_dropped_total counter"),
            "{text}"
        );
        assert!(!text.contains("stamps_gone"));
        assert!(text.contains("stamps_build_info{version="));
    }
}
