//! Housekeeping while the server runs: expired JWT revocations and signing
//! keys pruned from the store, and the static tokens' last uses written.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use stamps_core::ExpiryRules;
use stamps_http::{LAST_USE_FLUSH_EVERY, LastUse};
use stamps_store::{PruneSummary, Store};

/// How often expired JWT revocations and signing keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Removes JWT revocations and signing keys whose tokens have all expired
/// (made more than lifetime + leeway ago), at start and then every minute.
pub(crate) async fn prune_periodically(store: Arc<dyn Store>, rules: ExpiryRules) {
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

/// Writes the static tokens' last uses noted since the last time, every
/// [`LAST_USE_FLUSH_EVERY`], off the async workers; the server writes the
/// rest when it stops ([`flush_last_use`]).
pub(crate) async fn write_last_use_periodically(store: Arc<dyn Store>, uses: Arc<LastUse>) {
    let mut ticks = actix_web::rt::time::interval(LAST_USE_FLUSH_EVERY);
    loop {
        ticks.tick().await;
        let (store, uses) = (store.clone(), uses.clone());
        if let Err(e) = web::block(move || flush_last_use(store.as_ref(), &uses)).await {
            tracing::warn!(error = %e, "cannot write the tokens' last uses");
        }
    }
}

/// Writes the last uses noted so far; a failure is logged, and the uses
/// are kept for the next time.
pub(crate) fn flush_last_use(store: &dyn Store, uses: &LastUse) {
    match uses.flush(store) {
        Ok(0) => {}
        Ok(tokens) => tracing::debug!(tokens, "wrote the tokens' last uses"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the tokens' last uses; kept for the next time")
        }
    }
}
