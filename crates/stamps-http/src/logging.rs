//! One log line per request: method, path, status, latency and a request
//! id (also sent back as `X-Request-Id`). Never a header or a body, so
//! never a secret.
//!
//! An app logs its requests as `tracing` events by default
//! ([`AccessLog::Tracing`]). The server writes each line itself instead
//! ([`AccessLog::Lines`]), in the same text or JSON shape, straight to its
//! log writer: a request then pays for a few byte copies into a buffer its
//! worker reuses, not for `tracing`'s formatting of an event. That matters
//! because the line is on every request: with `tracing`'s formatting it
//! cost a fifth of what the framework itself costs per request.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use rand::RngCore;
use tokio::sync::Notify;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The `tracing` target of the request lines: whether it has `info` says
/// whether the lines are wanted (`STAMPS_LOG=warn` leaves them out).
pub const REQUEST_LINE_TARGET: &str = module_path!();
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Where request lines go (the server's log writer).
pub trait LineSink: Send + Sync {
    /// A writer for one worker's lines, made once as the worker starts, so
    /// that a line costs no shared reference count.
    ///
    /// Each line is one `write_all` of the whole line, its newline
    /// included. The writer may hold lines back to write them together:
    /// the worker calls `flush` once it has answered the requests that
    /// were ready, so a line waits at most for the requests of the same
    /// turn of the worker's event loop, never for a timer. It also calls
    /// `flush` as it stops. Errors are ignored: a log line is not worth
    /// failing a request.
    fn worker_writer(&self) -> Box<dyn std::io::Write>;
}

/// How request lines are made.
#[derive(Clone)]
pub enum AccessLog {
    /// `tracing::info!` events (`message = "request"`, with the fields).
    Tracing,
    /// Lines made here and handed to `sink`: text in the shape of the
    /// `tracing` text format, or (`json`) one object per line. Every
    /// request has one: the log level is for whoever builds this to check
    /// (at [`REQUEST_LINE_TARGET`]), once.
    Lines {
        /// The writer.
        sink: Arc<dyn LineSink>,
        /// JSON lines rather than text.
        json: bool,
    },
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLog::Tracing => f.write_str("AccessLog::Tracing"),
            AccessLog::Lines { json, .. } => write!(f, "AccessLog::Lines {{ json: {json} }}"),
        }
    }
}

/// Middleware writing one line per request as `access` says, or none
/// (`None`, or [`AccessLog::Tracing`] when the log level leaves out
/// `info`). Sets the `X-Request-Id` of every response it logs.
///
/// ```
/// use actix_web::{App, web};
/// use stamps_http::{AccessLog, RequestLog};
///
/// let app = App::new()
///     .wrap(RequestLog::new(Some(AccessLog::Tracing)))
///     .route("/", web::get().to(|| async { "hello" }));
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct RequestLog(Option<AccessLog>);

impl RequestLog {
    /// Logs each request as `access` says; `None`: logs nothing.
    pub fn new(access: Option<AccessLog>) -> Self {
        Self(access)
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestLogService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    /// Called in each worker as it starts, on its event loop: the
    /// writer, the line buffer and the flushing task are the worker's own.
    /// With [`AccessLog::Lines`], it must run within an actix (or tokio
    /// `LocalSet`) runtime, as every actix server and `actix_web::test`
    /// app does.
    fn new_transform(&self, service: S) -> Self::Future {
        let worker = self.0.as_ref().map(|access| match access {
            AccessLog::Tracing => Rc::new(WorkerLog::Tracing),
            AccessLog::Lines { sink, json } => {
                let flush = Rc::new(Notify::new());
                let worker = Rc::new(WorkerLog::Lines(RefCell::new(LineWriter {
                    writer: sink.worker_writer(),
                    json: *json,
                    line: Vec::with_capacity(256),
                    clock: SecondStamp::default(),
                    flush: Rc::clone(&flush),
                    unflushed: false,
                })));
                tokio::task::spawn_local(flush_each_turn(Rc::downgrade(&worker), flush));
                worker
            }
        });
        std::future::ready(Ok(RequestLogService { service, worker }))
    }
}

/// How one worker logs its requests.
enum WorkerLog {
    Tracing,
    Lines(RefCell<LineWriter>),
}

/// A worker's flushing task: woken by the first line after a flush, it
/// runs once the requests already woken on the worker have run, then
/// flushes their lines together. Ends with the worker's app.
async fn flush_each_turn(worker: Weak<WorkerLog>, flush: Rc<Notify>) {
    loop {
        flush.notified().await;
        let Some(worker) = worker.upgrade() else {
            return;
        };
        if let WorkerLog::Lines(writer) = &*worker
            && let Ok(mut writer) = writer.try_borrow_mut()
        {
            writer.flush();
        }
    }
}

/// The service of [`RequestLog`].
pub struct RequestLogService<S> {
    service: S,
    worker: Option<Rc<WorkerLog>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RequestLogService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLogService")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for RequestLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Logged<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // With request logging off (`STAMPS_LOG=warn`), none of its work.
        let logging = self
            .worker
            .as_ref()
            .filter(|worker| match ***worker {
                WorkerLog::Tracing => tracing::enabled!(tracing::Level::INFO),
                WorkerLog::Lines(_) => true,
            })
            .map(|worker| (Rc::clone(worker), Instant::now()));
        Logged {
            inner: self.service.call(req),
            logging,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestLogService`]: the inner one, logged when it
    /// completes with a response.
    pub struct Logged<F> {
        #[pin]
        inner: F,
        logging: Option<(Rc<WorkerLog>, Instant)>,
    }
}

impl<F> std::fmt::Debug for Logged<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged").finish_non_exhaustive()
    }
}

impl<F, B> Future for Logged<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let (Some((worker, started)), Ok(response)) = (this.logging.take(), &mut result) {
            log_response(&worker, started, response);
        }
        Poll::Ready(result)
    }
}

/// Sets the response's request id and logs its line.
fn log_response<B>(worker: &WorkerLog, started: Instant, response: &mut ServiceResponse<B>) {
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut request_id = [0u8; 16];
    // 16 hex digits of 8 bytes into 16 bytes cannot fail.
    let _ = hex::encode_to_slice(rand::rng().next_u64().to_be_bytes(), &mut request_id);
    if let Ok(value) = HeaderValue::from_bytes(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let request = response.request();
    let line = RequestLine {
        request_id: &request_id,
        method: request.method().as_str(),
        // The path only: a query string is not ours to log.
        path: request.path(),
        status: response.status().as_u16(),
        latency_us,
    };
    match worker {
        WorkerLog::Lines(writer) => {
            if let Ok(mut writer) = writer.try_borrow_mut() {
                writer.write(&line, SystemTime::now());
            }
        }
        WorkerLog::Tracing => tracing::info!(
            // Hex digits are ASCII.
            request_id = %std::str::from_utf8(line.request_id).unwrap_or_default(),
            method = %line.method,
            path = %line.path,
            status = line.status,
            latency_us = line.latency_us,
            "request"
        ),
    }
}

/// What a request line says.
struct RequestLine<'a> {
    /// 16 hex digits.
    request_id: &'a [u8],
    method: &'a str,
    path: &'a str,
    status: u16,
    latency_us: u64,
}

/// A worker's line writer: the line is built in a buffer it reuses, then
/// handed whole to the log's writer, flushed by the worker's flushing task.
struct LineWriter {
    writer: Box<dyn std::io::Write>,
    json: bool,
    line: Vec<u8>,
    clock: SecondStamp,
    /// Wakes the flushing task.
    flush: Rc<Notify>,
    /// Lines written since the last flush.
    unflushed: bool,
}

impl LineWriter {
    fn write(&mut self, line: &RequestLine<'_>, now: SystemTime) {
        self.line.clear();
        render(&mut self.line, &mut self.clock, line, now, self.json);
        // The log's writer takes the line whole or drops it (counted).
        let _ = self.writer.write_all(&self.line);
        if !self.unflushed {
            self.unflushed = true;
            self.flush.notify_one();
        }
    }

    fn flush(&mut self) {
        self.unflushed = false;
        let _ = self.writer.flush();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
        // Wakes the flushing task to find the worker gone, and end.
        self.flush.notify_one();
    }
}

/// The line, as `tracing`'s formatter would write the event: text
/// (`<time>  INFO request request_id=... ...`) or a JSON object, the time
/// in RFC 3339 with microseconds, UTC.
fn render(
    out: &mut Vec<u8>,
    clock: &mut SecondStamp,
    line: &RequestLine<'_>,
    now: SystemTime,
    json: bool,
) {
    let mut number = itoa::Buffer::new();
    if json {
        out.extend_from_slice(br#"{"timestamp":""#);
        clock.write(out, now);
        out.extend_from_slice(br#"","level":"INFO","message":"request","request_id":""#);
        out.extend_from_slice(line.request_id);
        out.extend_from_slice(br#"","method":""#);
        out.extend_from_slice(line.method.as_bytes());
        out.extend_from_slice(br#"","path":"#);
        // A string always serializes; the fallback keeps the line valid.
        if serde_json::to_writer(&mut *out, line.path).is_err() {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(br#","status":"#);
        out.extend_from_slice(number.format(line.status).as_bytes());
        out.extend_from_slice(br#","latency_us":"#);
        out.extend_from_slice(number.format(line.latency_us).as_bytes());
        out.extend_from_slice(b"}\n");
    } else {
        clock.write(out, now);
        out.extend_from_slice(b"  INFO request request_id=");
        out.extend_from_slice(line.request_id);
        out.extend_from_slice(b" method=");
        out.extend_from_slice(line.method.as_bytes());
        out.extend_from_slice(b" path=");
        out.extend_from_slice(line.path.as_bytes());
        out.extend_from_slice(b" status=");
        out.extend_from_slice(number.format(line.status).as_bytes());
        out.extend_from_slice(b" latency_us=");
        out.extend_from_slice(number.format(line.latency_us).as_bytes());
        out.push(b'\n');
    }
}

/// RFC 3339 timestamps with microseconds, the date and time of day
/// formatted once per second: within the second only the microseconds
/// change.
#[derive(Default)]
struct SecondStamp {
    /// The second of `prefix` (since the epoch), if any.
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.`
    prefix: Vec<u8>,
}

impl SecondStamp {
    fn write(&mut self, out: &mut Vec<u8>, now: SystemTime) {
        // A clock set before 1970 logs as 1970 (humantime would panic).
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now = SystemTime::UNIX_EPOCH + since_epoch;
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            self.prefix.clear();
            // `YYYY-MM-DDTHH:MM:SSZ`, without its `Z`.
            let _ = write!(self.prefix, "{}", humantime::format_rfc3339_seconds(now));
            self.prefix.pop();
            self.prefix.push(b'.');
            self.second = Some(second);
        }
        out.extend_from_slice(&self.prefix);
        let micros = since_epoch.subsec_micros();
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits);
        out.push(b'Z');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn rendered(line: &RequestLine<'_>, now: SystemTime, json: bool) -> String {
        let mut out = Vec::new();
        render(&mut out, &mut SecondStamp::default(), line, now, json);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_text_or_json_in_the_shape_of_tracing_events() {
        let line = RequestLine {
            request_id: b"5f0c2e9a7b1d4c3e",
            method: "POST",
            path: "/api/\"ping",
            status: 200,
            latency_us: 41,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_977_681_000_042);
        assert_eq!(
            rendered(&line, now, false),
            "2025-12-05T23:34:41.000042Z  INFO request request_id=5f0c2e9a7b1d4c3e method=POST path=/api/\"ping status=200 latency_us=41\n"
        );
        let json = rendered(&line, now, true);
        assert_eq!(
            json,
            r#"{"timestamp":"2025-12-05T23:34:41.000042Z","level":"INFO","message":"request","request_id":"5f0c2e9a7b1d4c3e","method":"POST","path":"/api/\"ping","status":200,"latency_us":41}"#
                .to_owned()
                + "\n"
        );
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["path"], "/api/\"ping");
    }

    /// What a worker's writer was given, and how often it was flushed.
    #[derive(Clone, Default)]
    struct Collected(Arc<std::sync::Mutex<(Vec<u8>, usize)>>);

    impl LineSink for Collected {
        fn worker_writer(&self) -> Box<dyn std::io::Write> {
            Box::new(self.clone())
        }
    }

    impl std::io::Write for Collected {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().1 += 1;
            Ok(())
        }
    }

    #[actix_web::test]
    async fn a_workers_lines_are_flushed_once_it_has_answered_what_was_ready() {
        use actix_web::{App, test, web};
        let sink = Collected::default();
        let access = AccessLog::Lines {
            sink: Arc::new(sink.clone()),
            json: false,
        };
        let app = test::init_service(
            App::new()
                .wrap(RequestLog::new(Some(access)))
                .route("/hello", web::get().to(|| async { "hello" })),
        )
        .await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let request = test::TestRequest::get().uri("/hello?secret=1").to_request();
            let response = test::call_service(&app, request).await;
            ids.push(
                response
                    .headers()
                    .get(REQUEST_ID_HEADER)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        // Written, and flushed by the worker's task once it runs.
        for _ in 0..100 {
            if sink.0.lock().unwrap().1 > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let (bytes, flushes) = sink.0.lock().unwrap().clone();
        // Both answered before the worker's loop turned: one flush for both.
        assert_eq!(flushes, 1);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for (line, id) in lines.iter().zip(&ids) {
            assert!(
                line.ends_with(&format!(
                    "Z  INFO request request_id={id} method=GET path=/hello status=200 latency_us={}",
                    line.rsplit('=').next().unwrap()
                )),
                "{line}"
            );
            assert_eq!(id.len(), 16);
        }
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn a_clock_before_1970_logs_as_1970() {
        let mut out = Vec::new();
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        SecondStamp::default().write(&mut out, before);
        assert_eq!(out, b"1970-01-01T00:00:00.000000Z");
    }

    proptest! {
        /// The cached second gives the time humantime gives, whatever
        /// time came before it (the same second, another, or earlier).
        #[test]
        fn timestamps_are_humantimes_rfc3339_micros(
            micros in proptest::collection::vec(0u64..4_102_444_800_000_000, 1..8),
            same_second in 0u64..1_000_000,
        ) {
            let mut clock = SecondStamp::default();
            let mut times: Vec<SystemTime> = micros
                .iter()
                .map(|m| SystemTime::UNIX_EPOCH + Duration::from_micros(*m))
                .collect();
            // And one in the same second as the last.
            let last = micros[micros.len() - 1];
            times.push(SystemTime::UNIX_EPOCH + Duration::from_micros(last - last % 1_000_000 + same_second));
            for now in times {
                let mut out = Vec::new();
                clock.write(&mut out, now);
                prop_assert_eq!(
                    String::from_utf8(out).unwrap(),
                    humantime::format_rfc3339_micros(now).to_string()
                );
            }
        }

        /// Any path makes a JSON line that parses back to it.
        #[test]
        fn json_lines_carry_any_path(path in any::<String>(), latency_us in any::<u64>()) {
            let line = RequestLine {
                request_id: b"0123456789abcdef",
                method: "GET",
                path: &path,
                status: 404,
                latency_us,
            };
            let json: serde_json::Value =
                serde_json::from_str(&rendered(&line, SystemTime::now(), true)).unwrap();
            prop_assert_eq!(json["path"].as_str(), Some(path.as_str()));
            prop_assert_eq!(json["latency_us"].as_u64(), Some(latency_us));
        }
    }
}
