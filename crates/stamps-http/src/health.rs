//! The probes: `GET /healthz` (the process answers) and `GET /readyz` (it
//! can do its whole job: every [`Readiness`] check passes).
//!
//! Both are unauthenticated, never throttled, and say nothing secret: a
//! failing check is named with a fixed word (`"store": "full"`), and its
//! details go to the log, once per change.
//!
//! A readiness poll storm cannot hammer the disk: the checks run at most
//! once per [`READY_TTL`] (the store check is a small flushed write), on
//! the blocking pool, one run at a time; every poll in between gets the
//! last answer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::routes::{Methods, Route, add_route};

/// How long a readiness answer is reused.
pub const READY_TTL: Duration = Duration::from_secs(1);

/// How long the checks may take before readiness says `timeout` for them.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of every `/healthz` answer.
const ALIVE: &str = r#"{"status":"ok"}"#;

/// Why a readiness check fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// A fixed word for the `/readyz` body (`full`, `closed`, `down`...):
    /// never a path, an error text or a secret.
    pub reason: &'static str,
    /// The whole story, for the log only.
    pub detail: String,
}

impl CheckFailure {
    /// A failure with its body word and its logged detail.
    pub fn new(reason: &'static str, detail: impl fmt::Display) -> Self {
        Self {
            reason,
            detail: detail.to_string(),
        }
    }
}

type CheckFn = Box<dyn Fn() -> Result<(), CheckFailure> + Send + Sync>;

struct Check {
    name: &'static str,
    run: CheckFn,
}

/// One run of every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each check by name, in registration order: `Ok`, or its failure.
    pub checks: Vec<(&'static str, Result<(), CheckFailure>)>,
}

impl Report {
    /// True when every check passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|(_, result)| result.is_ok())
    }
}

/// A probe's answer, as the OpenAPI document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only describes the answer.
pub(crate) struct ProbeBody {
    /// `ok`, or `unavailable` when a readiness check fails.
    #[schema(example = "ok")]
    status: String,
    /// `/readyz` only: each check by name (`store`, `admin_socket`), with
    /// `ok` or the fixed word of its failure (`full`, `closed`, `down`,
    /// `timeout`...).
    #[schema(example = json!({"store": "ok", "admin_socket": "ok"}))]
    checks: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: &'static str,
    checks: std::collections::BTreeMap<&'static str, &'a str>,
}

/// The readiness checks of a server, and the last answer.
pub struct Readiness {
    checks: Arc<Vec<Check>>,
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field(
                "checks",
                &self.checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            )
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(READY_TTL)
    }
}

impl Readiness {
    /// No checks yet (ready); answers reused for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            checks: Arc::new(Vec::new()),
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Adds a check named `name` (its key in the `/readyz` body). It runs
    /// on the blocking pool: it may touch the disk.
    pub fn with_check(
        mut self,
        name: &'static str,
        run: impl Fn() -> Result<(), CheckFailure> + Send + Sync + 'static,
    ) -> Self {
        if let Some(checks) = Arc::get_mut(&mut self.checks) {
            checks.push(Check {
                name,
                run: Box::new(run),
            });
        }
        self
    }

    /// The report of the last run, if younger than the TTL, or of a new run.
    pub async fn report(&self) -> Arc<Report> {
        // One run at a time: pollers arriving meanwhile wait (without a
        // thread) and then share its answer.
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return Arc::clone(report);
        }
        let checks = Arc::clone(&self.checks);
        let run = web::block(move || run_checks(&checks));
        let report = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
            Ok(Ok(report)) => report,
            // The blocking pool is gone (shutting down), or the checks
            // hang (a stalled disk): every check is reported as not done.
            Ok(Err(_)) => self.all_failed("error", "the readiness checks could not run"),
            Err(_) => self.all_failed(
                "timeout",
                format_args!("the readiness checks took longer than {CHECK_TIMEOUT:?}"),
            ),
        };
        log_changes(last.as_ref().map(|(_, r)| r.as_ref()), &report);
        let report = Arc::new(report);
        *last = Some((Instant::now(), Arc::clone(&report)));
        report
    }

    fn all_failed(&self, reason: &'static str, detail: impl fmt::Display) -> Report {
        let detail = detail.to_string();
        Report {
            checks: self
                .checks
                .iter()
                .map(|c| (c.name, Err(CheckFailure::new(reason, &detail))))
                .collect(),
        }
    }
}

fn run_checks(checks: &[Check]) -> Report {
    Report {
        checks: checks.iter().map(|c| (c.name, (c.run)())).collect(),
    }
}

/// Logs each check that starts failing (with its detail) or recovers.
fn log_changes(before: Option<&Report>, now: &Report) {
    for (name, result) in &now.checks {
        let was = before.and_then(|r| r.checks.iter().find(|(n, _)| n == name).map(|(_, r)| r));
        match (was, result) {
            (Some(Err(old)), Err(new)) if old == new => {}
            (_, Err(failure)) => tracing::warn!(
                check = name,
                reason = failure.reason,
                detail = %failure.detail,
                "not ready"
            ),
            (Some(Err(_)), Ok(())) => tracing::info!(check = name, "ready again"),
            _ => {}
        }
    }
}

/// Registers `GET /healthz` and `GET /readyz` (and `HEAD`; with or without
/// the trailing slash; any other method 405). `/readyz` runs the checks
/// of the app's `web::Data<Readiness>`; with none registered, it answers
/// like `/healthz`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    add_route(cfg, Route::Healthz, Methods::ReadOnly, healthz);
    add_route(cfg, Route::Readyz, Methods::ReadOnly, readyz);
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Liveness
///
/// The process is up and answering. No credentials, never throttled.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Alive.", body = ProbeBody),
        (status = 405, response = crate::openapi::ErrorResponse<405>),
    ),
)]
pub(crate) async fn healthz() -> HttpResponse {
    no_store(
        HttpResponse::Ok()
            .content_type(header::ContentType::json())
            .body(ALIVE),
    )
}

/// Readiness
///
/// 200 when every check passes (the store is open and takes a write, the
/// admin socket is up), else 503; the body names each check with `ok` or
/// the word of its failure. Checked at most once a second. No credentials,
/// never throttled.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: every check passed.", body = ProbeBody),
        (status = 503, description = "Not ready: a check failed.", body = ProbeBody),
        (status = 405, response = crate::openapi::ErrorResponse<405>),
    ),
)]
pub(crate) async fn readyz(readiness: Option<web::Data<Readiness>>) -> HttpResponse {
    let Some(readiness) = readiness else {
        return healthz().await;
    };
    let report = readiness.report().await;
    let ready = report.ready();
    let body = Body {
        status: if ready { "ok" } else { "unavailable" },
        checks: report
            .checks
            .iter()
            .map(|(name, result)| (*name, result.as_ref().map_or_else(|f| f.reason, |()| "ok")))
            .collect(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store(HttpResponse::build(status).json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[actix_web::test]
    async fn checks_run_at_most_once_per_ttl_and_failures_are_named() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let readiness = Readiness::new(Duration::from_secs(3600))
            .with_check("store", move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Err(CheckFailure::new("full", "/secret/path: 1 MiB free"))
            })
            .with_check("admin_socket", || Ok(()));
        let first = readiness.report().await;
        for _ in 0..50 {
            assert_eq!(readiness.report().await, first);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!first.ready());
        assert_eq!(first.checks[0].1.as_ref().unwrap_err().reason, "full");
        assert!(first.checks[1].1.is_ok());
    }

    #[actix_web::test]
    async fn an_expired_answer_runs_the_checks_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let readiness = Readiness::new(Duration::ZERO).with_check("store", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        assert!(readiness.report().await.ready());
        assert!(readiness.report().await.ready());
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(Readiness::default().report().await.ready());
    }
}
