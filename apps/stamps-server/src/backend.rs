//! The store the settings choose, and what the server needs of it beyond
//! the `Store` seam: a write probe, its size, whether it is open, and the
//! key that signs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use stamps_config::{KeySource, ResolvedKey, Settings, StoreSettings, resolve_signing_key};
use stamps_core::{ExposeSecret, SigningKey};
use stamps_store::{Store, StoreError};
use stamps_store_postgres::PgStore;
use stamps_store_sled::ResilientStore;

use crate::ServerError;

/// How often a PostgreSQL store's size is read for the metrics.
const SIZE_EVERY: Duration = Duration::from_secs(30);

/// The store the settings choose.
#[derive(Clone)]
pub(crate) enum Backend {
    /// The embedded default; one server per data directory.
    Sled(Arc<ResilientStore>),
    /// Shared by replicas.
    Postgres(Arc<PgStore>),
}

impl Backend {
    pub(crate) fn open(settings: &Settings) -> Result<Self, StoreError> {
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

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sled(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    pub(crate) fn probe_write(&self) -> Result<(), StoreError> {
        match self {
            Self::Sled(store) => store.probe_write(),
            Self::Postgres(store) => store.probe_write(),
        }
    }

    /// Reads the store's size for a gauge. A scrape runs on an async
    /// worker, where the synchronous PostgreSQL client must not run (it
    /// would panic, and lose a pooled connection): on PostgreSQL the size
    /// is read by a thread of its own every [`SIZE_EVERY`].
    pub(crate) fn size_reader(&self) -> Box<dyn Fn() -> Option<i64> + Send + Sync> {
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

    pub(crate) fn is_open(&self) -> bool {
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
pub(crate) fn signing_key(
    settings: &Settings,
    backend: &Backend,
) -> Result<ResolvedKey, ServerError> {
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
