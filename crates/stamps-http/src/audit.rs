//! The audit trail of the HTTP side: every JWT issued is recorded, off the
//! request path. Handlers hand events to an [`AuditTrail`]; one writer
//! thread appends them to the store in batches (one flush per batch), so
//! issuing a token never waits for the disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

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
    sender: SyncSender<AuditEvent>,
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
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => {
                tracing::error!(action = %event.action, subject = %event.subject,
                    "audit backlog full (is the store writable?); event dropped");
            }
            Err(TrySendError::Disconnected(event)) => {
                tracing::error!(action = %event.action, subject = %event.subject,
                    "audit writer stopped; event dropped");
            }
        }
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

fn write_events(store: &dyn Store, receiver: &Receiver<AuditEvent>, stop: &AtomicBool) {
    // Wake on a timer and drain, rather than block on the channel: a
    // blocked receiver costs every request a wake-up of this thread (a
    // futex call and a context switch), which under load cost more than
    // the writing itself.
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            batch.extend(receiver.try_iter().take(BATCH - batch.len()));
            if batch.len() < BATCH {
                break;
            }
            append(store, &batch);
            batch.clear();
        }
        if !batch.is_empty() {
            append(store, &batch);
        }
        if stopping {
            return;
        }
        std::thread::sleep(GATHER);
    }
}

fn append(store: &dyn Store, events: &[AuditEvent]) {
    if let Err(e) = store.append_audit(events) {
        tracing::error!(error = %e, events = events.len(), "cannot write the audit trail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_store::SledStore;

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
