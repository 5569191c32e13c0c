//! What an operator watches: the log's format, the readiness checks, the
//! metrics' scrape-time gauges, and `/metrics` on a listener of its own.

use std::io::BufWriter;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use stamps_config::LogFormat;
use stamps_http::{AccessLog, CheckFailure, LineSink, LiveState, Metrics, Readiness};
use stamps_store::{AdminHealth, ServedStore, StoreError};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::ServerError;
use crate::backend::size_reader;

/// Log lines not yet written, at most: about 3 MB. Past it a line is
/// dropped (and counted) rather than making a request wait for the disk.
const LOG_BACKLOG_LINES: usize = 16_384;

/// Where log lines go: a writer thread, and the count of lines it dropped.
/// Dropping it writes the lines still queued (within a second), so keep it
/// until the last line, and drop it before the process exits.
pub(crate) struct Logging {
    _writer: WorkerGuard,
    /// Lines dropped because the writer fell behind (`/metrics`).
    pub(crate) dropped: ErrorCounter,
    /// The writer, for the request lines the server makes itself.
    lines: NonBlocking,
    format: LogFormat,
}

impl Logging {
    /// The request lines, if `log.access` and the log level (`info` at
    /// [`stamps_http::REQUEST_LINE_TARGET`]) want them: made whole by the
    /// middleware, in this log's format, and queued for the same writer as
    /// every other line (so they stay in order, and count as dropped
    /// alike).
    pub(crate) fn access_log(&self, access: bool) -> Option<AccessLog> {
        let wanted = access
            && tracing::enabled!(target: stamps_http::REQUEST_LINE_TARGET, tracing::Level::INFO);
        wanted.then(|| AccessLog::Lines {
            sink: Arc::new(WriterLines(self.lines.clone())),
            json: self.format == LogFormat::Json,
        })
    }
}

/// The log writer, taking whole lines.
struct WriterLines(NonBlocking);

impl LineSink for WriterLines {
    fn worker_writer(&self) -> Box<dyn std::io::Write> {
        // A handle on the same queue, which takes each write as one line
        // (a full queue drops it, counted).
        Box::new(self.0.clone())
    }
}

/// Logs to stderr, as text or JSON lines (`log.format`); the levels come
/// from `STAMPS_LOG` (or `RUST_LOG`), in `tracing`'s filter syntax
/// (`warn,stamps_http=debug`), `info` by default. A line is formatted on
/// the thread that logs it, then handed to one writer thread through a
/// bounded queue: no request waits for a write system call (the writer
/// batches lines into one write while more are queued), and a writer that
/// cannot keep up drops lines, counted, instead of slowing the server.
pub(crate) fn init_logging(format: LogFormat) -> Logging {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BACKLOG_LINES)
        .lossy(true)
        .thread_name("stamps-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let dropped = writer.error_counter();
    let filter = std::env::var("STAMPS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer.clone())
        // A log that cannot be written (a full disk under a redirected
        // stderr) is skipped: by default the subscriber reports that with
        // `eprintln!`, which panics the logging thread, sled's flusher
        // included, and then the store hangs when it is dropped.
        .log_internal_errors(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // One object per line, the event's fields at the top level.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Logging {
        _writer: guard,
        dropped,
        lines: writer,
        format,
    }
}

/// The readiness checks: the store takes a write (a small flushed probe,
/// through the same path as every write: the space reserve, the reopen
/// after a failure), and the admin socket is up. `/readyz` runs them at
/// most once a second, whatever the polling rate.
pub(crate) fn readiness(store: Arc<dyn ServedStore>, admin: Option<AdminHealth>) -> Readiness {
    Readiness::default()
        .with_check("store", move || match store.probe_write() {
            Ok(()) => Ok(()),
            Err(e @ StoreError::Full(_)) => Err(CheckFailure::new("full", e)),
            Err(e) if !store.is_open() => Err(CheckFailure::new("closed", e)),
            Err(e) => Err(CheckFailure::new("unwritable", e)),
        })
        .with_check("admin_socket", move || match &admin {
            Some(health) => health.check().map_err(|e| CheckFailure::new("down", e)),
            None => Err(CheckFailure::new(
                "down",
                "the admin socket could not be bound at start (see the log)",
            )),
        })
}

/// The metrics, with the gauges read at scrape time: the store's size on
/// disk and whether it is open, the accounts, the cached static tokens, and
/// the log lines dropped.
pub(crate) fn metrics(
    store: &Arc<dyn ServedStore>,
    live: &Arc<LiveState>,
    dropped_lines: ErrorCounter,
) -> Metrics {
    let metrics = Metrics::new();
    metrics.scrape_counter(
        "log_lines_dropped",
        "Log lines dropped because the log writer fell behind",
        move || u64::try_from(dropped_lines.dropped_lines()).unwrap_or(u64::MAX),
    );
    metrics.scrape_gauge(
        "store_size_bytes",
        "Size of the store's files on disk (PostgreSQL: of its database)",
        None,
        size_reader(store.clone()),
    );
    let open = store.clone();
    metrics.scrape_gauge(
        "store_open",
        "1 while the store is open, 0 while a storage failure keeps it closed",
        None,
        move || Some(i64::from(open.is_open())),
    );
    for (kind, pick) in [("merchant", 0), ("user", 1)] {
        let live = live.clone();
        metrics.scrape_gauge(
            "accounts",
            "Merchants and users in the store, active or not",
            Some(("kind", kind)),
            move || {
                let (merchants, users) = live.account_counts();
                i64::try_from(if pick == 0 { merchants } else { users }).ok()
            },
        );
    }
    let cached = live.clone();
    metrics.scrape_gauge(
        "static_token_cache_entries",
        "Static tokens in the verification cache",
        None,
        move || i64::try_from(cached.cache().entry_count()).ok(),
    );
    metrics
}

/// Serves `/metrics` alone on `addr` (plain HTTP, one worker), until the
/// returned handle stops it; anything else there is a 404.
pub(crate) fn metrics_server(
    metrics: Arc<Metrics>,
    addr: std::net::SocketAddr,
) -> Result<actix_web::dev::ServerHandle, ServerError> {
    let data = web::Data::from(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(stamps_http::metrics::configure)
            .default_service(web::to(|| async {
                actix_web::ResponseError::error_response(&stamps_http::ApiError::NotFound)
            }))
    })
    .workers(1)
    // The main server handles the signals, then stops this one.
    .disable_signals()
    .bind(addr)
    .map_err(|source| ServerError::Listen {
        addr,
        what: " (metrics.listen)",
        source,
    })?;
    for addr in server.addrs() {
        tracing::info!("serving /metrics on http://{addr}/metrics");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(handle)
}
