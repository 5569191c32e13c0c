//! `stamps-server`: the Stamps access-token API on an embedded store.
//!
//! Glue only: read the settings, open the store, load what authentication
//! keeps in memory, open the admin socket, serve HTTP until SIGTERM/SIGINT,
//! then flush the store. See `stamps-server --help`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};
use clap::Parser;
use stamps_config::{
    KeySource, LogFormat, ResolvedKey, Settings, StoreSettings, resolve_signing_key,
};
use stamps_core::{ExpiryRules, ExposeSecret, JwtCodec, KeySet, SigningKey, SystemClock};
use stamps_http::{
    AuditTrail, Authenticator, BodyTimeout, CheckFailure, ClientPolicy, ConnectionCap, Follower,
    LiveState, Metrics, ObservedStore, Readiness, RequestMetrics, StaticTokenCache, log_request,
    transport_security,
};
use stamps_store::{AdminHealth, AdminSocket, PruneSummary, Store, StoreError, admin_socket_path};
use stamps_store_postgres::PgStore;
use stamps_store_sled::{ResilientStore, create_data_dir};

// argon2id borrows 19 MiB per hash. glibc's malloc keeps such blocks in its
// per-thread arenas after the first free: 40 wrong secrets for one token id
// left 420 MiB resident. jemalloc hands them back (RSS back to 49 MiB with
// 1 M tokens stored), where mimalloc doubled sled's footprint at open.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Serves the Stamps access-token API from one binary on an embedded store.
///
/// With no configuration at all it listens on 127.0.0.1:8080 and keeps its
/// data in ./stamps-data, generating a JWT secret there on first start.
#[derive(Debug, Parser)]
#[command(name = "stamps-server", version)]
struct Args {
    /// A TOML configuration file; STAMPS_... environment variables override it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// How often a PostgreSQL store's size is read for the metrics.
const SIZE_EVERY: Duration = Duration::from_secs(30);
/// Static tokens verified with argon2 are remembered while used at least
/// this often (and an hour at most, `MAX_AGE_IDLE_TIMES` of it).
const CACHE_IDLE: Duration = Duration::from_secs(300);
/// At most this many verified static tokens are remembered.
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("{0}")]
    Settings(#[from] stamps_config::SettingsError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot start the change follower: {0}")]
    Follower(std::io::Error),
    #[error("{0}")]
    Tls(#[from] stamps_http::tls::TlsError),
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the audit writer: {0}")]
    Audit(std::io::Error),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = Settings::load(args.config.as_deref())
        .map_err(ServerError::from)
        .and_then(|settings| {
            init_logging(settings.log.format);
            run(settings)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line on stderr (nothing more to do if it is gone).
            let _ = writeln!(std::io::stderr(), "stamps-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, as text or JSON lines (`log.format`); the levels come
/// from `STAMPS_LOG` (or `RUST_LOG`), in `tracing`'s filter syntax
/// (`warn,stamps_http=debug`), `info` by default.
fn init_logging(format: LogFormat) {
    let filter = std::env::var("STAMPS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
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
}

/// The store the settings choose.
#[derive(Clone)]
enum Backend {
    /// The embedded default; one server per data directory.
    Sled(Arc<ResilientStore>),
    /// Shared by replicas.
    Postgres(Arc<PgStore>),
}

impl Backend {
    fn open(settings: &Settings) -> Result<Self, StoreError> {
        Ok(match &settings.store {
            // Refuses writes before the disk is full and reopens itself
            // after a storage failure (docs/STORAGE.md, "Disk full").
            StoreSettings::Sled => Self::Sled(Arc::new(ResilientStore::open(&settings.data_dir)?)),
            StoreSettings::Postgres { url } => {
                let store = PgStore::open(url.expose_secret())?;
                tracing::info!("store: PostgreSQL, schema migrated");
                Self::Postgres(Arc::new(store))
            }
        })
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sled(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    fn probe_write(&self) -> Result<(), StoreError> {
        match self {
            Self::Sled(store) => store.probe_write(),
            Self::Postgres(store) => store.probe_write(),
        }
    }

    /// Reads the store's size for a gauge. A scrape runs on an async
    /// worker, where the synchronous PostgreSQL client must not run (it
    /// would panic, and lose a pooled connection): on PostgreSQL the size
    /// is read by a thread of its own every [`SIZE_EVERY`].
    fn size_reader(&self) -> Box<dyn Fn() -> Option<i64> + Send + Sync> {
        match self {
            Self::Sled(store) => {
                let store = store.clone();
                Box::new(move || store.size_on_disk().and_then(|n| i64::try_from(n).ok()))
            }
            Self::Postgres(store) => {
                let size = Arc::new(AtomicI64::new(-1));
                let (store, shared) = (store.clone(), size.clone());
                let watcher =
                    std::thread::Builder::new()
                        .name("store-size".into())
                        .spawn(move || {
                            loop {
                                let read = store
                                    .size_on_disk()
                                    .ok()
                                    .and_then(|n| i64::try_from(n).ok());
                                shared.store(read.unwrap_or(-1), Ordering::Relaxed);
                                std::thread::sleep(SIZE_EVERY);
                            }
                        });
                if let Err(e) = watcher {
                    tracing::warn!(error = %e, "cannot start the store size reader");
                }
                Box::new(move || Some(size.load(Ordering::Relaxed)).filter(|n| *n >= 0))
            }
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Sled(store) => store.is_open(),
            Self::Postgres(_) => true,
        }
    }
}

/// The key that signs. A configured `jwt.secret` (which every replica of a
/// PostgreSQL deployment then shares), else: on sled, the key file in the
/// data directory; on PostgreSQL, the newest key in the store, made now if
/// there is none (two replicas starting together on an empty database may
/// both make one: the newer signs everywhere, the other still verifies),
/// so replicas sign alike with no shared file.
fn signing_key(settings: &Settings, backend: &Backend) -> Result<ResolvedKey, ServerError> {
    let store = match backend {
        Backend::Postgres(store) if settings.jwt.secret.is_none() => store,
        _ => return Ok(resolve_signing_key(settings)?),
    };
    if store.signing_keys()?.is_empty() {
        let made = store.rotate_signing_key()?;
        tracing::info!(
            key = made.id,
            "JWT secret: made the store's first signing key"
        );
    }
    // The rotated keys sign; this base key is never used once one exists
    // (it is random, and known to no one).
    Ok(ResolvedKey {
        key: SigningKey::random(),
        source: KeySource::Configured,
    })
}

fn run(settings: Settings) -> Result<(), ServerError> {
    // Before the store is opened: a bad certificate stops the start at once.
    let tls = match &settings.tls {
        Some(tls) => Some(stamps_http::tls::server_config(&tls.cert, &tls.key)?),
        None => None,
    };
    // A data directory another user prepared could hand us a secret of
    // their choosing, or have its store moved aside (either backend: on
    // PostgreSQL it holds the admin socket).
    stamps_store_sled::check_data_dir_owner(&settings.data_dir)?;
    let backend = Backend::open(&settings)?;
    let resolved = signing_key(&settings, &backend)?;
    match &resolved.source {
        KeySource::Configured if matches!(backend, Backend::Postgres(_)) => {
            tracing::info!("JWT secret: the store's signing keys")
        }
        KeySource::Configured => tracing::info!("JWT secret: from the configuration"),
        KeySource::Loaded(path) => tracing::info!(path = %path.display(), "JWT secret: loaded"),
        KeySource::Generated(path) => {
            tracing::info!(path = %path.display(), "JWT secret: generated a new one (mode 0600); back it up")
        }
    }
    if let Some(weakness) = stamps_core::weakness(resolved.key.expose_secret()) {
        tracing::warn!("the JWT secret {weakness} (allow_weak_secret = true): for tests only");
    }

    let store = backend.store();
    // On a shared database, changes from elsewhere are followed from here
    // on: the feed starts before the state is read, so nothing made in
    // between is missed (applying a change twice is harmless).
    let feed = match &backend {
        Backend::Postgres(pg) => Some(pg.change_feed()?),
        Backend::Sled(_) => None,
    };
    let live = Arc::new(LiveState::load(
        store.as_ref(),
        StaticTokenCache::new(CACHE_CAPACITY, CACHE_IDLE),
    )?);
    let observed: Arc<dyn Store> = Arc::new(ObservedStore::new(store.clone(), live.clone()));
    let follower = match feed {
        Some(feed) => Some(
            Follower::spawn(Box::new(feed), store.clone(), live.clone())
                .map_err(ServerError::Follower)?,
        ),
        None => None,
    };

    // The admin channel: a 0600 Unix socket in the data directory, so
    // stamps-admin works while the server holds the store, and a change
    // made through it is in this server at once (on PostgreSQL, in the
    // other replicas within a second, through the change log).
    // Without it (a data directory path too long for a Unix socket, say)
    // the API still serves; stamps-admin then reports the store in use, or
    // on PostgreSQL can use the database itself (--store-url).
    if matches!(backend, Backend::Postgres(_))
        && let Err(e) = create_data_dir(&settings.data_dir)
    {
        tracing::warn!(error = %e, path = %settings.data_dir.display(), "cannot create the data directory for the admin socket");
    }
    let (admin, admin_health) = match AdminSocket::bind(&admin_socket_path(&settings.data_dir)) {
        Ok(admin) => {
            tracing::info!(path = %admin.path().display(), "admin socket ready");
            let stop = admin.shutdown_handle();
            let health = admin.health_handle();
            (Some((stop, admin.spawn(observed.clone())?)), Some(health))
        }
        Err(e) => {
            tracing::warn!(error = %e, "no admin socket: stamps-admin cannot reach this server while it runs");
            (None, None)
        }
    };
    let readiness = web::Data::new(readiness(backend.clone(), admin_health));

    // Every JWT issued is audited, off the request path; the trail is kept
    // to its retention by the same thread.
    let (trail, audit_writer) =
        AuditTrail::spawn(store.clone(), settings.audit).map_err(ServerError::Audit)?;
    let trail = web::Data::new(trail);
    // Each JWT issued costs an audit event: a static token obtains only so
    // many (None: no limit, then nothing is registered).
    let quota = stamps_http::IssueQuota::from_settings(&settings.rate_limit).map(web::Data::new);
    let rules = settings.jwt.rules;
    let pruned = observed.clone();

    let metrics = settings
        .metrics
        .enabled
        .then(|| Arc::new(metrics(&backend, &live)));

    let codec = JwtCodec::new(KeySet::new(resolved.key), rules);
    // argon2 is CPU-bound: leave a core to everything else.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let auth = web::Data::new(
        Authenticator::new(
            codec,
            Arc::new(SystemClock),
            live,
            Some(observed),
            cores.saturating_sub(1).max(1),
        )
        .with_throttle(stamps_http::Throttle::from_settings(&settings.rate_limit))
        .with_metrics(metrics.clone()),
    );
    if !settings.rate_limit.enabled {
        tracing::warn!("rate limits on failed authentication are off (rate_limit.enabled = false)");
    }
    let http = settings.http.clone();
    let connections = Arc::new(
        ConnectionCap::new(
            http.max_connections_per_address,
            settings.proxy.trusted.clone(),
        )
        .with_metrics(metrics.clone()),
    );
    let policy = web::Data::new(ClientPolicy::new(
        settings.proxy.trusted.clone(),
        tls.is_some(),
        http.require_https,
        http.hsts_max_age,
    ));
    let body_timeout = BodyTimeout(http.body_timeout);

    let listen = settings.listen;
    let metrics_listen = settings.metrics.listen;
    // /metrics on the main listener only when it has no listener of its own.
    let metrics_here = metrics
        .clone()
        .filter(|_| metrics_listen.is_none())
        .map(web::Data::from);
    let recorder = RequestMetrics::new(metrics.clone());
    let served = actix_web::rt::System::new().block_on(async move {
        actix_web::rt::spawn(prune_periodically(pruned, rules));
        let transport = policy.needs_middleware();
        let server = HttpServer::new(move || {
            let metrics_here = metrics_here.clone();
            let quota = quota.clone();
            App::new()
                .app_data(auth.clone())
                .app_data(trail.clone())
                .configure(|cfg| {
                    if let Some(quota) = quota {
                        cfg.app_data(quota);
                    }
                })
                .app_data(policy.clone())
                .app_data(readiness.clone())
                .app_data(body_timeout)
                .wrap(Condition::new(transport, from_fn(transport_security)))
                .wrap(from_fn(log_request))
                // Outermost: it sees every answer, https_required included.
                .wrap(recorder.clone())
                .configure(stamps_http::health::configure)
                .configure(|cfg| {
                    if let Some(metrics) = metrics_here {
                        cfg.app_data(metrics);
                        stamps_http::metrics::configure(cfg);
                    }
                })
                .configure(stamps_http::configure)
        })
        .workers(cores)
        .on_connect(move |io, data| connections.on_connect(io, data))
        // actix counts connections per worker.
        .max_connections(http.max_connections.div_ceil(cores).max(1))
        .client_request_timeout(http.header_timeout)
        .client_disconnect_timeout(http.disconnect_timeout)
        .keep_alive(if http.keep_alive.is_zero() {
            KeepAlive::Disabled
        } else {
            KeepAlive::Timeout(http.keep_alive)
        })
        .shutdown_timeout(30);
        let (server, scheme) = match tls {
            Some(config) => (server.bind_rustls_0_23(listen, config), "https"),
            None => (server.bind(listen), "http"),
        };
        let server = server.map_err(|source| ServerError::Listen {
            addr: listen,
            what: "",
            source,
        })?;
        // The metrics listener first: the "listening on" line below says
        // the server is up, with everything it serves.
        let metrics_server = match (metrics, metrics_listen) {
            (Some(metrics), Some(addr)) => Some(metrics_server(metrics, addr)?),
            _ => None,
        };
        for addr in server.addrs() {
            tracing::info!("listening on {scheme}://{addr}");
        }
        let served = server.run().await.map_err(ServerError::Serve);
        if let Some(handle) = metrics_server {
            handle.stop(true).await;
        }
        served
    });

    if let Some((stop, thread)) = admin {
        stop.shutdown();
        if thread.join().is_err() {
            tracing::error!("the admin socket thread panicked");
        }
    }
    if let Some(follower) = follower {
        follower.stop();
    }
    audit_writer.finish();
    if let Backend::Sled(sled) = &backend {
        sled.flush()?;
    }
    tracing::info!("stopped; store flushed");
    served
}

/// The readiness checks: the store takes a write (a small flushed probe,
/// through the same path as every write: the space reserve, the reopen
/// after a failure), and the admin socket is up. `/readyz` runs them at
/// most once a second, whatever the polling rate.
fn readiness(store: Backend, admin: Option<AdminHealth>) -> Readiness {
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
/// disk and whether it is open, the accounts, the cached static tokens.
fn metrics(store: &Backend, live: &Arc<LiveState>) -> Metrics {
    let metrics = Metrics::new();
    metrics.scrape_gauge(
        "store_size_bytes",
        "Size of the store's files on disk (PostgreSQL: of its database)",
        None,
        store.size_reader(),
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
fn metrics_server(
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

/// How often expired JWT revocations and signing keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Removes JWT revocations and signing keys whose tokens have all expired
/// (made more than lifetime + leeway ago), at start and then every minute.
async fn prune_periodically(store: Arc<dyn Store>, rules: ExpiryRules) {
    let horizon = rules.max_token_age_secs();
    let mut ticks = actix_web::rt::time::interval(PRUNE_EVERY);
    loop {
        ticks.tick().await;
        let store = store.clone();
        let pruned = web::block(move || store.prune(store.now().saturating_sub(horizon))).await;
        match pruned {
            Ok(Ok(summary)) if summary != PruneSummary::default() => {
                tracing::info!(
                    revocations = summary.revocations,
                    keys = summary.keys,
                    "pruned expired JWT revocations and keys"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot prune expired JWT revocations and keys")
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune expired JWT revocations and keys"),
        }
    }
}
