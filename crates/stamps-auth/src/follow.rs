//! Following a shared store's changes: a thread reads the [`ChangeFeed`]
//! and applies each [`Change`] to the [`LiveState`], so revocations,
//! disabled accounts and key rotations made through another replica (or
//! the admin command line) take effect here too, without a store read on
//! the JWT path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use stamps_store::{Change, ChangeFeed, FeedEvent, Store};

use crate::LiveState;

/// The longest wait for a change notification: the backstop poll, should
/// a notification be lost.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The longest pause between attempts while the store is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A running follower; [`Follower::stop`] ends it.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts a thread applying `feed`'s changes to `live`, re-reading
    /// `store` when a change asks for it.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(
        feed: Box<dyn ChangeFeed>,
        store: Arc<dyn Store>,
        live: Arc<LiveState>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("change-follower".into())
            .spawn(move || follow(feed, store.as_ref(), &live, &stopping))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (within one poll interval) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the change follower panicked");
        }
    }
}

/// What is owed to the live state after a failed re-read; a greater debt
/// covers a lesser one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owed {
    #[default]
    Nothing,
    JwtState,
    Everything,
}

/// The follower's loop; ends when `stop` is set.
fn follow(mut feed: Box<dyn ChangeFeed>, store: &dyn Store, live: &LiveState, stop: &AtomicBool) {
    let mut owed = Owed::Nothing;
    let mut retry = Duration::ZERO;
    let mut down = false;
    while !stop.load(Ordering::Acquire) {
        if retry > Duration::ZERO {
            std::thread::sleep(retry);
        }
        let event = feed.next(POLL_INTERVAL);
        match event {
            Ok(event) => {
                if down {
                    tracing::info!("change feed: reconnected");
                    down = false;
                }
                owed = apply(event, store, live, owed);
                retry = if owed == Owed::Nothing {
                    Duration::ZERO
                } else {
                    RETRY_MAX
                };
            }
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "change feed: store unreachable; retrying");
                    down = true;
                }
                retry = (retry * 2).clamp(Duration::from_millis(50), RETRY_MAX);
            }
        }
    }
}

/// Applies one feed event, then pays what a failed re-read left owing;
/// returns what is still owed.
fn apply(event: FeedEvent, store: &dyn Store, live: &LiveState, mut owed: Owed) -> Owed {
    match event {
        FeedEvent::Resync => owed = Owed::Everything,
        FeedEvent::Changes(changes) => {
            for change in &changes {
                let needs = match change {
                    Change::JwtStateChanged => Owed::JwtState,
                    Change::Restored => Owed::Everything,
                    _ => Owed::Nothing,
                };
                // A re-read already owed covers this one.
                if needs != Owed::Nothing && owed != Owed::Nothing {
                    owed = owed.max(needs);
                    continue;
                }
                if let Err(e) = live.apply_change(store, change) {
                    tracing::warn!(error = %e, "cannot apply a change yet; retrying");
                    owed = owed.max(needs);
                }
            }
        }
    }
    let paid = match owed {
        Owed::Nothing => Ok(()),
        Owed::JwtState => live.reload_jwt_state(store),
        Owed::Everything => live.reload(store),
    };
    match paid {
        Ok(()) => Owed::Nothing,
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-read the store yet; retrying");
            owed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use stamps_store::{AccountKind, StoreError};
    use stamps_store_sled::SledStore;

    use super::*;
    use crate::StaticTokenCache;

    /// A feed the test feeds, event by event.
    struct Fed(mpsc::Receiver<stamps_store::Result<FeedEvent>>);

    impl ChangeFeed for Fed {
        fn next(&mut self, wait: Duration) -> stamps_store::Result<FeedEvent> {
            self.0
                .recv_timeout(wait)
                .unwrap_or(Ok(FeedEvent::Changes(Vec::new())))
        }
    }

    fn eventually(what: &str, holds: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !holds() {
            assert!(Instant::now() < deadline, "not applied: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn changes_after_feed_errors_are_applied_and_a_resync_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        store
            .add_account(AccountKind::Merchant, "M", Some(1))
            .unwrap();
        let live = Arc::new(
            LiveState::load(
                store.as_ref(),
                StaticTokenCache::new(10, Duration::from_secs(60)),
            )
            .unwrap(),
        );
        // Made elsewhere: this live state has not seen them yet.
        store.add_account(AccountKind::User, "U", Some(2)).unwrap();
        let disabled = store
            .set_account_active(AccountKind::Merchant, 1, false)
            .unwrap();
        assert!(live.merchant_active(1) && !live.user_active(2));

        let (events, feed) = mpsc::channel();
        let follower = Follower::spawn(Box::new(Fed(feed)), store, live.clone()).unwrap();
        let down = || Err(StoreError::Backend("connection refused".into()));
        events.send(down()).unwrap();
        events.send(down()).unwrap();
        events
            .send(Ok(FeedEvent::Changes(vec![Change::Account {
                kind: AccountKind::Merchant,
                account: disabled,
            }])))
            .unwrap();
        eventually("the change", || !live.merchant_active(1));
        assert!(!live.user_active(2), "from the change alone, no reload");
        events.send(Ok(FeedEvent::Resync)).unwrap();
        eventually("the resync", || live.user_active(2));
        follower.stop();
    }

    #[test]
    fn a_full_reload_owed_covers_a_key_reload() {
        assert_eq!(Owed::JwtState.max(Owed::Everything), Owed::Everything);
        assert_eq!(Owed::Nothing.max(Owed::JwtState), Owed::JwtState);
        assert_eq!(Owed::Nothing.max(Owed::Nothing), Owed::Nothing);
    }
}
