//! Model-based test (see `stamps_store::conformance`): the sled store,
//! used directly and through the admin socket (a `RemoteStore` talking to
//! an `AdminSocket` served by a thread over a sled store), answers as the
//! model does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use proptest::prelude::*;
use stamps_core::ManualClock;
use stamps_store::conformance::{Opened, check_against_model, op};
use stamps_store::{AdminShutdown, AdminSocket, RemoteStore, SecretHasher, admin_socket_path};
use stamps_store_sled::SledStore;

/// A thread serving a sled store on its admin socket; stopped and joined
/// on drop, which closes the sled store.
struct Server {
    stop: AdminShutdown,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Opens the store of `dir`, which the sequence may just have dropped: its
/// lock goes with sled's threads, a moment later.
fn reopen(dir: &Path, clock: &Arc<ManualClock>) -> SledStore {
    SledStore::open_with_patience(
        dir,
        SecretHasher::owasp(),
        clock.clone(),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn open_sled(dir: &Path, clock: &Arc<ManualClock>) -> Opened {
    Opened::bare(reopen(dir, clock))
}

fn open_remote(dir: &Path, clock: &Arc<ManualClock>) -> Opened {
    let sled = reopen(dir, clock);
    let path = admin_socket_path(dir);
    let socket = AdminSocket::bind(&path).unwrap();
    let stop = socket.shutdown_handle();
    let thread = socket.spawn(Arc::new(sled)).unwrap();
    let remote = RemoteStore::connect(&path)
        .unwrap()
        .expect("the server listens")
        .with_clock(clock.clone());
    Opened {
        store: Box::new(remote),
        guard: Some(Box::new(Server {
            stop,
            thread: Some(thread),
        })),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sled_store_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        check_against_model(ops, |clock| open_sled(dir.path(), clock))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn remote_store_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        check_against_model(ops, |clock| open_remote(dir.path(), clock))?;
    }
}
