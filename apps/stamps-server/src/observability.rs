//! What an operator watches: the log's format, the readiness checks, the
//! metrics' scrape-time gauges, and `/metrics` on a listener of its own.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use actix_web::{App, HttpServer, web};
use stamps_config::LogFormat;
use stamps_http::{AccessLog, CheckFailure, LineSink, LiveState, Metrics, Readiness};
use stamps_store::{AdminHealth, ServedStore, StoreError};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::ServerError;
use crate::backend::size_reader;

/// Entries of the log writer's queue, at most: a line, or a worker's
/// batch of request lines (at most [`REQUEST_BATCH_BYTES`] and a line),
/// so at most about 16 MiB, and a few hundred KiB in practice. Past it an
/// entry is dropped (and its lines counted) rather than making a request
/// wait for the disk.
const LOG_BACKLOG_ENTRIES: usize = 2_048;

/// A worker's request lines are queued together once they fill this much,
/// or when the worker has answered the requests it had (see
/// [`stamps_http::LineSink`]): one queue entry, one allocation and one
/// copy for many lines instead of one each.
const REQUEST_BATCH_BYTES: usize = 8 * 1024;

/// Where log lines go: a writer thread, and the count of lines it dropped.
/// Dropping it writes the lines still held and queued (within a second),
/// so keep it until the last line, and drop it before the process exits.
pub(crate) struct Logging {
    /// The batches of request lines, held by the workers; `Drop` queues
    /// them before the guard writes the queue out.
    batches: Arc<Batches>,
    _writer: WorkerGuard,
    /// The writer, for the request lines the server makes itself.
    lines: NonBlocking,
    format: LogFormat,
}

impl Logging {
    /// A writer thread writing to `out`, its queue holding up to `entries`.
    fn new(out: impl Write + Send + 'static, entries: usize, format: LogFormat) -> Self {
        let (lines, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(entries)
            .lossy(true)
            .thread_name("stamps-log")
            .finish(out);
        Logging {
            batches: Arc::default(),
            _writer: guard,
            lines,
            format,
        }
    }

    /// The request lines, if `log.access` and the log level (`info` at
    /// [`stamps_http::REQUEST_LINE_TARGET`]) want them: made whole by the
    /// middleware, in this log's format, and queued for the same writer as
    /// every other line (so they count as dropped alike), a worker's lines
    /// together: another line the worker logs in the same turn of its event
    /// loop may come before them.
    pub(crate) fn access_log(&self, access: bool) -> Option<AccessLog> {
        let wanted = access
            && tracing::enabled!(target: stamps_http::REQUEST_LINE_TARGET, tracing::Level::INFO);
        wanted.then(|| AccessLog::Lines {
            sink: self.line_sink(),
            json: self.format == LogFormat::Json,
        })
    }

    fn line_sink(&self) -> Arc<dyn LineSink> {
        Arc::new(WriterLines {
            writer: self.lines.clone(),
            batches: self.batches.clone(),
        })
    }

    /// Lines dropped because the writer fell behind (`/metrics`).
    pub(crate) fn dropped(&self) -> DroppedLines {
        DroppedLines {
            entries: self.lines.error_counter(),
            batched: self.batches.dropped.clone(),
        }
    }

    /// Queues the request lines the workers still hold: at a stop, after
    /// the workers have answered their last requests, so that no line is
    /// lost and the last lines come before the stop's.
    pub(crate) fn flush_request_lines(&self) {
        self.batches.flush_all(&self.lines);
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        self.flush_request_lines();
    }
}

/// How many log lines were dropped: the writer's queue counts an entry it
/// drops as one line, and a batch's other lines are counted here.
#[derive(Clone)]
pub(crate) struct DroppedLines {
    entries: ErrorCounter,
    batched: Arc<AtomicU64>,
}

impl DroppedLines {
    pub(crate) fn count(&self) -> u64 {
        u64::try_from(self.entries.dropped_lines())
            .unwrap_or(u64::MAX)
            .saturating_add(self.batched.load(Ordering::Relaxed))
    }
}

/// Every live worker's batch of request lines, for the drain at a stop.
#[derive(Default)]
struct Batches {
    /// Weak: a worker that is gone has queued its lines (its writer
    /// flushes when dropped), and its batch is freed.
    all: Mutex<Vec<Weak<Mutex<Batch>>>>,
    /// Lines dropped with their batch, beyond the one the queue counts.
    dropped: Arc<AtomicU64>,
}

impl Batches {
    fn register(&self, batch: &Arc<Mutex<Batch>>) {
        let mut all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|batch| batch.strong_count() > 0);
        all.push(Arc::downgrade(batch));
    }

    fn flush_all(&self, writer: &NonBlocking) {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        for batch in all.iter().filter_map(Weak::upgrade) {
            let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
            batch.queue(writer, &self.dropped);
        }
    }
}

/// A worker's request lines, not yet queued.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

impl Batch {
    /// Queues the lines as one entry of the writer's queue.
    fn queue(&mut self, writer: &NonBlocking, dropped: &AtomicU64) {
        if self.lines == 0 {
            return;
        }
        // The queue drops an entry when it is full and counts it as one
        // line; the batch's other lines are counted here. (A drop by
        // another thread in between is counted as this batch's: under such
        // an overload the count is close, not exact.)
        let counter = writer.error_counter();
        let before = counter.dropped_lines();
        let _ = writer.clone().write_all(&self.bytes);
        if counter.dropped_lines() > before {
            dropped.fetch_add(self.lines - 1, Ordering::Relaxed);
        }
        self.bytes.clear();
        self.lines = 0;
    }
}

/// The log writer, taking whole lines.
struct WriterLines {
    writer: NonBlocking,
    batches: Arc<Batches>,
}

impl LineSink for WriterLines {
    fn worker_writer(&self) -> Box<dyn Write> {
        let batch = Arc::new(Mutex::new(Batch {
            bytes: Vec::with_capacity(REQUEST_BATCH_BYTES + 512),
            lines: 0,
        }));
        self.batches.register(&batch);
        Box::new(WorkerLines {
            batch,
            writer: self.writer.clone(),
            dropped: self.batches.dropped.clone(),
        })
    }
}

/// A worker's request lines: batched, queued when the batch is full or
/// flushed. The batch's lock is the worker's alone but for the drain at a
/// stop, so taking it costs no wait.
struct WorkerLines {
    batch: Arc<Mutex<Batch>>,
    writer: NonBlocking,
    dropped: Arc<AtomicU64>,
}

impl Write for WorkerLines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        batch.bytes.extend_from_slice(line);
        batch.lines += 1;
        if batch.bytes.len() >= REQUEST_BATCH_BYTES {
            batch.queue(&self.writer, &self.dropped);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        batch.queue(&self.writer, &self.dropped);
        Ok(())
    }
}

impl Drop for WorkerLines {
    fn drop(&mut self) {
        let _ = self.flush();
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
    let logging = Logging::new(
        BufWriter::with_capacity(64 * 1024, std::io::stderr()),
        LOG_BACKLOG_ENTRIES,
        format,
    );
    let writer = logging.lines.clone();
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
    logging
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
    dropped_lines: DroppedLines,
) -> Metrics {
    let metrics = Metrics::new();
    metrics.scrape_counter(
        "log_lines_dropped",
        "Log lines dropped because the log writer fell behind",
        move || dropped_lines.count(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;

    /// What the writer thread wrote.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Written {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn worker_writer(logging: &Logging) -> Box<dyn Write> {
        logging.line_sink().worker_writer()
    }

    #[test]
    fn a_workers_lines_are_written_at_its_flush_or_at_the_stop_in_order() {
        let written = Written::default();
        let logging = Logging::new(written.clone(), 16, LogFormat::Text);
        let mut worker = worker_writer(&logging);
        worker.write_all(b"one\n").unwrap();
        worker.flush().unwrap();
        // Held, unflushed, when the server stops.
        worker.write_all(b"two\n").unwrap();
        worker.write_all(b"three\n").unwrap();
        drop(logging);
        assert_eq!(written.text(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_gone_workers_batch_is_queued_and_forgotten() {
        let written = Written::default();
        let logging = Logging::new(written.clone(), 16, LogFormat::Text);
        let sink = logging.line_sink();
        // Gone, flushed or not.
        for flushed in [true, false, false] {
            let mut worker = sink.worker_writer();
            worker.write_all(b"line\n").unwrap();
            if flushed {
                worker.flush().unwrap();
            }
        }
        let _live = sink.worker_writer();
        // The three gone, the live one registered.
        assert_eq!(logging.batches.all.lock().unwrap().len(), 1);
        drop(logging);
        assert_eq!(written.text(), "line\nline\nline\n");
    }

    #[test]
    fn a_full_batch_is_queued_without_a_flush() {
        let written = Written::default();
        let logging = Logging::new(written.clone(), 16, LogFormat::Text);
        let mut worker = worker_writer(&logging);
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let lines = REQUEST_BATCH_BYTES / line.len() + 1;
        for _ in 0..lines {
            worker.write_all(&line).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while written.text().len() < lines * line.len() {
            assert!(Instant::now() < deadline, "the full batch was not written");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(logging);
    }

    /// A writer that blocks until told to go on.
    struct Blocked(Mutex<mpsc::Receiver<()>>);

    impl Write for Blocked {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_dropped_batch_counts_every_line_in_it() {
        let (go_on, blocked) = mpsc::channel();
        // A queue of one entry, before a writer that does not write.
        let logging = Logging::new(Blocked(Mutex::new(blocked)), 1, LogFormat::Text);
        let dropped = logging.dropped();
        let mut worker = worker_writer(&logging);
        const LINES: u64 = 3;
        for _ in 0..4 {
            for _ in 0..LINES {
                worker.write_all(b"line\n").unwrap();
            }
            worker.flush().unwrap();
        }
        // Of 4 batches, the writer holds one and the queue one: at least
        // two were dropped, each with all its lines.
        let count = dropped.count();
        assert!(count >= 2 * LINES && count.is_multiple_of(LINES), "{count}");
        drop(go_on);
        drop(logging);
    }
}
