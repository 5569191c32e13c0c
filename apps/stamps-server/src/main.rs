//! `stamps-server`: the Stamps access-token API on an embedded store.
//!
//! Glue only: read the settings, open the store, load what authentication
//! keeps in memory, open the admin socket, serve HTTP until SIGTERM/SIGINT,
//! then flush the store. See `stamps-server --help`. `backend` opens the
//! store the settings choose, `observability` the log, readiness and
//! metrics, `maintenance` the periodic pruning.

mod backend;
mod maintenance;
mod observability;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{HttpServer, web};
use clap::Parser;
use stamps_config::{KeySource, Settings};
use stamps_core::{JwtCodec, KeySet, SystemClock};
use stamps_http::{
    AppState, AuditTrail, Authenticator, BodyTimeout, ClientPolicy, ConnectionCap, Follower,
    LiveState, ObservedStore, RequestMetrics, StaticTokenCache,
};
use stamps_store::{AdminSocket, Store, StoreError, admin_socket_path};
use stamps_store_sled::create_data_dir;

use crate::backend::{imported_token_key, open_store, signing_key};
use crate::maintenance::{flush_last_use, prune_periodically, write_last_use_periodically};
use crate::observability::{Logging, init_logging, metrics, metrics_server, readiness};

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

/// Static tokens verified with argon2 are remembered while used at least
/// this often (and an hour at most, `MAX_AGE_IDLE_TIMES` of it).
const CACHE_IDLE: Duration = Duration::from_secs(300);
/// At most this many verified static tokens are remembered.
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
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
            let logging = init_logging(settings.log.format);
            let result = run(settings, &logging);
            // The lines still queued, written before the verdict.
            drop(logging);
            result
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

fn run(settings: Settings, logging: &Logging) -> Result<(), ServerError> {
    // Before the store is opened: a bad certificate stops the start at once.
    let tls = match &settings.tls {
        Some(tls) => Some(stamps_http::tls::server_config(&tls.cert, &tls.key)?),
        None => None,
    };
    // A data directory another user prepared could hand us a secret of
    // their choosing, or have its store moved aside (either backend: on
    // PostgreSQL it holds the admin socket).
    stamps_store_sled::check_data_dir_owner(&settings.data_dir)?;
    let backend = open_store(&settings)?;
    let resolved = signing_key(&settings, backend.as_ref())?;
    match &resolved.source {
        KeySource::Store => {
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

    let lookup = imported_token_key(&settings, backend.as_ref())?;

    let store: Arc<dyn Store> = backend.clone();
    // On a shared database, changes from elsewhere are followed from here
    // on: the feed starts before the state is read, so nothing made in
    // between is missed (applying a change twice is harmless).
    let feed = backend.change_feed()?;
    let live = Arc::new(LiveState::load(
        store.as_ref(),
        StaticTokenCache::new(CACHE_CAPACITY, CACHE_IDLE),
    )?);
    let observed: Arc<dyn Store> = Arc::new(ObservedStore::new(store.clone(), live.clone()));
    let follower = match feed {
        Some(feed) => Some(
            Follower::spawn(feed, store.clone(), live.clone()).map_err(ServerError::Follower)?,
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
    if backend.is_shared()
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
    // Each JWT issued costs an audit event: a static token obtains only so
    // many (None: no limit, then nothing is registered).
    let quota = stamps_http::IssueQuota::from_settings(&settings.rate_limit);
    let rules = settings.jwt.rules;
    let pruned = observed.clone();
    // Each static token's last use, noted per request, written in batches.
    let last_use = Arc::new(stamps_http::LastUse::default());
    let (used, uses) = (observed.clone(), last_use.clone());

    let metrics = settings
        .metrics
        .enabled
        .then(|| Arc::new(metrics(&backend, &live, logging.dropped())));

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
        .with_issue_quota(quota)
        .with_audit_trail(Some(trail))
        .with_lookup_key(lookup)
        .with_last_use(Some(last_use.clone()))
        .with_observer(
            metrics
                .clone()
                .map(|m| m as Arc<dyn stamps_http::AuthObserver>),
        ),
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

    let listen = settings.listen;
    let metrics_listen = settings.metrics.listen;
    let state = AppState {
        auth,
        policy,
        readiness,
        body_timeout: BodyTimeout(http.body_timeout),
        access_log: logging.access_log(settings.log.access),
        recorder: RequestMetrics::new(metrics.clone()),
        // /metrics on the main listener only when it has no listener of
        // its own.
        metrics: metrics
            .clone()
            .filter(|_| metrics_listen.is_none())
            .map(web::Data::from),
    };
    let served = actix_web::rt::System::new().block_on(async move {
        actix_web::rt::spawn(prune_periodically(pruned, rules));
        actix_web::rt::spawn(write_last_use_periodically(used, uses));
        let server = HttpServer::new(move || stamps_http::app(state.clone()))
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
    // The last uses noted since the last write: none is lost at a stop.
    flush_last_use(store.as_ref(), &last_use);
    backend.flush()?;
    // The workers' last request lines, before the last line. After SIGTERM
    // the workers have answered every request (SIGINT does not wait).
    logging.flush_request_lines();
    tracing::info!("stopped; store flushed");
    served
}
