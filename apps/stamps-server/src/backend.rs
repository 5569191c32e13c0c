//! The store the settings choose, opened as a [`ServedStore`]: the seam
//! plus what the server needs of it (a write probe, its size, whether it
//! is open or shared, its change feed). Nothing else in the server asks
//! which backend it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use stamps_config::{
    KeySource, ResolvedKey, Settings, StoreSettings, base_signing_key, lookup_key,
};
use stamps_core::ExposeSecret;
use stamps_core::LookupKey;
use stamps_store::{ServedStore, StoreError};
use stamps_store_postgres::PgStore;
use stamps_store_sled::ResilientStore;

use crate::ServerError;

/// How often the store's size is read for the metrics.
const SIZE_EVERY: Duration = Duration::from_secs(30);

/// Opens the store the settings choose.
pub(crate) fn open_store(settings: &Settings) -> Result<Arc<dyn ServedStore>, StoreError> {
    Ok(match &settings.store {
        // Refuses writes before the disk is full and reopens itself
        // after a storage failure (docs/STORAGE.md, "Disk full").
        StoreSettings::Sled => Arc::new(ResilientStore::open(&settings.data_dir)?),
        StoreSettings::Postgres { url } => {
            let store = PgStore::open(url.expose_secret())?;
            tracing::info!("store: PostgreSQL, schema migrated");
            Arc::new(store)
        }
    })
}

/// Reads the store's size for a gauge. Reading it may block (a query on
/// PostgreSQL), and a scrape runs on an async worker, where a blocking
/// client must not run: a thread of its own reads it every
/// [`SIZE_EVERY`], and the gauge shows the last reading.
pub(crate) fn size_reader(
    store: Arc<dyn ServedStore>,
) -> Box<dyn Fn() -> Option<i64> + Send + Sync> {
    let size = Arc::new(AtomicI64::new(-1));
    let shared = size.clone();
    let watcher = std::thread::Builder::new()
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

/// The key that signs, as [`base_signing_key`] chooses it: a configured
/// `jwt.secret` (which every replica of a shared store then shares), else:
/// for a store one server holds, the key file in the data directory (made
/// on first start); for a shared store, the store's newest key, made now if
/// there is none (two replicas starting together on an empty database may
/// both make one: the newer signs everywhere, the other still verifies), so
/// replicas sign alike with no shared file.
pub(crate) fn signing_key(
    settings: &Settings,
    store: &dyn ServedStore,
) -> Result<ResolvedKey, ServerError> {
    let resolved = base_signing_key(settings)?;
    if resolved.source == KeySource::Store && store.signing_keys()?.is_empty() {
        let made = store.rotate_signing_key()?;
        tracing::info!(
            key = made.id,
            "JWT secret: made the store's first signing key"
        );
    }
    Ok(resolved)
}

/// The key imported tokens are found by ([`lookup_key`]: configured, or on
/// sled the data directory's key file, made now if missing). On a shared
/// store without `tokens.lookup_secret` there is none: imported tokens are
/// then refused, which is said at start if the store holds any.
pub(crate) fn imported_token_key(
    settings: &Settings,
    store: &dyn ServedStore,
) -> Result<Option<LookupKey>, ServerError> {
    let Some(resolved) = lookup_key(settings)? else {
        if store.has_imported_tokens()? {
            tracing::warn!(
                "the store holds imported tokens, but tokens.lookup_secret is not set: \
                 they are refused; set it, the same on every replica"
            );
        }
        return Ok(None);
    };
    match &resolved.source {
        KeySource::Generated(path) => {
            tracing::info!(path = %path.display(), "token lookup key: generated (mode 0600); back it up with the store")
        }
        KeySource::Loaded(path) => {
            tracing::debug!(path = %path.display(), "token lookup key: loaded")
        }
        KeySource::Configured | KeySource::Store => {
            tracing::debug!("token lookup key: from the configuration")
        }
    }
    Ok(Some(resolved.key))
}
