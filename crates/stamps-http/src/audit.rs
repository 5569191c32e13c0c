//! The audit trail of the HTTP side: every JWT issued is recorded, off the
//! request path. Handlers hand events to an [`AuditTrail`]; one writer
//! thread formats them and appends them to the store in batches (one flush
//! per batch), so issuing a token never waits for the disk, nor for the
//! text of its audit event.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use stamps_core::{Jti, TokenId, UnixTime};
use stamps_store::{AuditEvent, Store};

/// Events waiting for the writer, at most. Beyond this (a store that has
/// stopped accepting writes) new events are dropped, with an error logged,
/// rather than holding up requests.
pub const AUDIT_BACKLOG: usize = 65_536;
/// Events appended with one flush, at most.
const BATCH: usize = 1_024;
/// How often the writer drains the queue: an issued JWT is on disk within
/// about this (plus the flush).
const GATHER: Duration = Duration::from_millis(100);

/// The sending side: cheap to share between workers.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    sender: SyncSender<Pending>,
}

/// A JWT issued by get-access-token, as the request path knows it: plain
/// values, made into an [`AuditEvent`]'s text by the writer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtIssued {
    /// The token's `iat`.
    pub at: UnixTime,
    /// The client, as trusted proxies report it.
    pub client: IpAddr,
    /// The token's `jti`.
    pub jti: Jti,
    /// The user it was issued to.
    pub user_id: u64,
    /// The merchant it grants access to.
    pub merchant_id: u64,
    /// The static token that bought it, by its public id.
    pub token_id: TokenId,
}

impl From<JwtIssued> for AuditEvent {
    fn from(issued: JwtIssued) -> Self {
        let JwtIssued {
            at,
            client,
            jti,
            user_id,
            merchant_id,
            token_id,
        } = issued;
        AuditEvent::new(
            at,
            format!("api {client}"),
            "jwt.issue",
            format!("jti {jti} user {user_id} merchant {merchant_id} token {token_id}"),
        )
    }
}

/// What waits in the queue.
#[derive(Debug)]
enum Pending {
    Event(AuditEvent),
    JwtIssued(JwtIssued),
}

impl From<Pending> for AuditEvent {
    fn from(pending: Pending) -> Self {
        match pending {
            Pending::Event(event) => event,
            Pending::JwtIssued(issued) => issued.into(),
        }
    }
}

/// The writer thread; [`AuditWriter::finish`] writes what is queued and
/// stops it.
#[derive(Debug)]
pub struct AuditWriter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AuditTrail {
    /// Starts the writer thread appending to `store`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stamps_http::AuditTrail;
    /// use stamps_store::{AuditEvent, SledStore, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path())?);
    /// let (trail, writer) = AuditTrail::spawn(Arc::clone(&store))?;
    /// trail.record(AuditEvent::new(1, "api 127.0.0.1", "jwt.issue", "jti 00"));
    /// writer.finish();
    /// assert_eq!(store.audit(0)?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(store: Arc<dyn Store>) -> std::io::Result<(Self, AuditWriter)> {
        let (sender, receiver) = mpsc::sync_channel(AUDIT_BACKLOG);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("stamps-audit".into())
            .spawn(move || write_events(store.as_ref(), &receiver, &stopping))?;
        Ok((Self { sender }, AuditWriter { stop, thread }))
    }

    /// Queues an event; never blocks.
    pub fn record(&self, event: AuditEvent) {
        self.queue(Pending::Event(event));
    }

    /// Queues the issue of a JWT; never blocks, never formats.
    pub fn record_jwt_issued(&self, issued: JwtIssued) {
        self.queue(Pending::JwtIssued(issued));
    }

    fn queue(&self, pending: Pending) {
        let (message, pending) = match self.sender.try_send(pending) {
            Ok(()) => return,
            Err(TrySendError::Full(pending)) => (
                "audit backlog full (is the store writable?); event dropped",
                pending,
            ),
            Err(TrySendError::Disconnected(pending)) => {
                ("audit writer stopped; event dropped", pending)
            }
        };
        let event = AuditEvent::from(pending);
        tracing::error!(action = %event.action, subject = %event.subject, "{message}");
    }
}

impl AuditWriter {
    /// Writes every event queued so far, then stops the thread.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Release);
        if self.thread.join().is_err() {
            tracing::error!("the audit writer panicked");
        }
    }
}

fn write_events(store: &dyn Store, receiver: &Receiver<Pending>, stop: &AtomicBool) {
    // Wake on a timer and drain, rather than block on the channel: a
    // blocked receiver costs every request a wake-up of this thread (a
    // futex call and a context switch), which under load cost more than
    // the writing itself.
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            batch.extend(
                receiver
                    .try_iter()
                    .take(BATCH - batch.len())
                    .map(AuditEvent::from),
            );
            if batch.len() < BATCH {
                break;
            }
            if !append(store, &batch) && stop.load(Ordering::Acquire) {
                return give_up(receiver);
            }
            batch.clear();
        }
        if !batch.is_empty() && !append(store, &batch) && stop.load(Ordering::Acquire) {
            return give_up(receiver);
        }
        if stopping {
            return;
        }
        std::thread::sleep(GATHER);
    }
}

/// Appends a batch; false (logged) if the store refused it.
fn append(store: &dyn Store, events: &[AuditEvent]) -> bool {
    match store.append_audit(events) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, events = events.len(), "cannot write the audit trail");
            false
        }
    }
}

/// Stopping while the store fails: the backlog is dropped (and counted)
/// rather than retried batch by batch, which with an unreachable database
/// would hold the shutdown for minutes.
fn give_up(receiver: &Receiver<Pending>) {
    let dropped = receiver.try_iter().count();
    if dropped > 0 {
        tracing::error!(events = dropped, "stopping: audit events not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_store::SledStore;

    #[test]
    fn an_issued_jwt_is_written_as_its_event_text_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let (trail, writer) = AuditTrail::spawn(Arc::clone(&store)).unwrap();
        let token_id: TokenId = "0123456789abcdef".parse().unwrap();
        trail.record_jwt_issued(JwtIssued {
            at: 1_657_246_216,
            client: "2001:db8::7".parse().unwrap(),
            jti: Jti::from_bytes([0xab; 16]),
            user_id: 5870,
            merchant_id: 1,
            token_id,
        });
        writer.finish();
        let written = store.audit(0).unwrap();
        assert_eq!(written.len(), 1);
        let event = &written[0];
        assert_eq!(
            (event.at, event.actor.as_str(), event.action.as_str()),
            (1_657_246_216, "api 2001:db8::7", "jwt.issue")
        );
        assert_eq!(
            event.subject,
            format!(
                "jti {} user 5870 merchant 1 token 0123456789abcdef",
                "ab".repeat(16)
            )
        );
    }

    #[test]
    fn every_queued_event_is_written_in_order_before_finish_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let (trail, writer) = AuditTrail::spawn(Arc::clone(&store)).unwrap();
        for i in 0..3_000u64 {
            trail.record(AuditEvent::new(
                i,
                "api 127.0.0.1",
                "jwt.issue",
                format!("jti {i}"),
            ));
        }
        writer.finish();
        let written = store.audit(0).unwrap();
        assert_eq!(written.len(), 3_000);
        assert!(
            written
                .windows(2)
                .all(|w| w[0].seq < w[1].seq && w[0].at < w[1].at)
        );
    }
}
