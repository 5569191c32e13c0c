//! Housekeeping while the server runs: expired JWT revocations and signing
//! keys pruned from the store.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use stamps_core::ExpiryRules;
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
