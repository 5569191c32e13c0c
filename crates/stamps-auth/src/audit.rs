//! The audit trail of the HTTP side: every JWT issued is recorded, off the
//! request path, and the trail is kept to its retention.
//!
//! Handlers hand plain [`JwtIssued`] values to an [`AuditTrail`]; one writer
//! thread appends them to the store in batches (one flush per batch), so
//! issuing a token never waits for the disk. The same thread deletes events
//! older than the retention (`[audit] retention`), a small step at a time
//! between two batches, so that the trail, which every holder of a static
//! token makes grow, stays bounded on disk.
//!
//! Nothing here logs on the request path: events dropped because the queue
//! is full, and batches the store refused (a full disk: the store stops the
//! trail before anything else, see `stamps_store_sled::AUDIT_SPACE_RESERVE`),
//! are counted and reported by the writer at most every
//! [`REPORT_EVERY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stamps_config::AuditPolicy;
pub use stamps_store::JwtIssued;
use stamps_store::{Store, StoreError};

/// Events waiting for the writer, at most. Beyond this (a store that has
/// stopped accepting writes) new events are dropped, and counted, rather
/// than holding up requests. A count, not a buffer: the queue takes memory
/// for what it holds (std's `sync_channel` of this size wrote every slot at
/// creation, 5.5 MiB resident for a queue that is nearly always empty).
pub const AUDIT_BACKLOG: usize = 65_536;
/// Events appended with one flush, at most.
const BATCH: usize = 1_024;
/// How often the writer drains the queue when it was empty: an issued JWT
/// is on disk within about this (plus the flush).
const GATHER: Duration = Duration::from_millis(100);
/// How often it drains the queue while JWTs are being issued. Short, so a
/// drain is a short burst: the writer shares its core with the request
/// threads, and 100 ms of events at 80,000 JWTs a second took several
/// milliseconds, which doubled get-access-token's p99 (docs/PERFORMANCE.md).
const GATHER_BUSY: Duration = Duration::from_millis(10);
/// Events deleted per pruning step, about: one short write between batches.
const PRUNE_STEP: usize = 4_096;
/// The longest pause between two pruning passes.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Lost events are reported at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// How often the trail is pruned under `policy`: every minute, or twice
/// per retention when that is shorter (a second at least).
fn prune_every(policy: &AuditPolicy) -> Option<Duration> {
    policy
        .retention
        .map(|r| (r / 2).clamp(Duration::from_secs(1), PRUNE_EVERY))
}

/// The sending side: cheap to share between workers.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    /// `None` when JWTs issued are not recorded.
    sender: Option<Sender<JwtIssued>>,
    /// Events sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// Events dropped because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
}

/// The receiving side: the writer's.
#[derive(Debug)]
struct Queue {
    receiver: Receiver<JwtIssued>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// Moves up to `max` queued events to the end of `batch`.
    fn take_into(&self, batch: &mut Vec<JwtIssued>, max: usize) {
        let before = batch.len();
        batch.extend(self.receiver.try_iter().take(max));
        self.queued
            .fetch_sub(batch.len() - before, Ordering::Relaxed);
    }

    /// Drops every queued event; returns how many.
    fn discard(&self) -> usize {
        let dropped = self.receiver.try_iter().count();
        self.queued.fetch_sub(dropped, Ordering::Relaxed);
        dropped
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
    /// Starts the writer thread appending to `store` and pruning it as
    /// `policy` says.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stamps_core::Jti;
    /// use stamps_auth::{AuditPolicy, AuditTrail, JwtIssued};
    /// use stamps_store::{MemoryStore, Store};
    ///
    /// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    /// let (trail, writer) = AuditTrail::spawn(Arc::clone(&store), AuditPolicy::default())?;
    /// trail.record_jwt_issued(JwtIssued {
    ///     at: store.now(),
    ///     client: "203.0.113.7".parse()?,
    ///     jti: Jti::random(),
    ///     user_id: 5870,
    ///     merchant_id: 1,
    ///     token_id: "0123456789abcdef".parse()?,
    /// });
    /// writer.finish();
    /// assert_eq!(store.audit(0)?[0].action, "jwt.issue");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(
        store: Arc<dyn Store>,
        policy: AuditPolicy,
    ) -> std::io::Result<(Self, AuditWriter)> {
        let (trail, queue) = Self::queue(&policy);
        let stop = Arc::new(AtomicBool::new(false));
        let mut writer = Writer {
            store,
            queue,
            policy,
            dropped: Arc::clone(&trail.dropped),
            lost: Lost::default(),
            next_prune: Instant::now(),
        };
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("stamps-audit".into())
            .spawn(move || writer.run(&stopping))?;
        Ok((trail, AuditWriter { stop, thread }))
    }

    /// Both sides of the queue, without the writer.
    fn queue(policy: &AuditPolicy) -> (Self, Queue) {
        let (sender, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let trail = Self {
            sender: policy.jwt_issued.then_some(sender),
            queued: Arc::clone(&queued),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (trail, Queue { receiver, queued })
    }

    /// Queues the issue of a JWT; never blocks, never formats, never logs.
    pub fn record_jwt_issued(&self, issued: JwtIssued) {
        let Some(sender) = &self.sender else {
            return;
        };
        // A place is taken before the send, so the queue never holds more
        // than the backlog; a refused event gives its place back.
        let full = self.queued.fetch_add(1, Ordering::Relaxed) >= AUDIT_BACKLOG;
        if full || sender.send(issued).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
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

/// Events lost since the last report, and when that was.
#[derive(Debug, Default)]
struct Lost {
    refused: u64,
    last_error: Option<String>,
    reported: Option<Instant>,
}

struct Writer {
    store: Arc<dyn Store>,
    queue: Queue,
    policy: AuditPolicy,
    dropped: Arc<AtomicU64>,
    lost: Lost,
    next_prune: Instant,
}

impl Writer {
    fn run(&mut self, stop: &AtomicBool) {
        // Wake on a timer and drain, rather than block on the channel: a
        // blocked receiver costs every request a wake-up of this thread (a
        // futex call and a context switch), which under load cost more than
        // the writing itself.
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let written = self.write_queued();
            if written.is_none() && stop.load(Ordering::Acquire) {
                return self.give_up();
            }
            if stopping {
                self.report(true);
                return;
            }
            self.report(false);
            let more_to_prune = self.prune_step();
            if !more_to_prune {
                let busy = written.is_some_and(|events| events > 0);
                std::thread::sleep(if busy { GATHER_BUSY } else { GATHER });
            }
        }
    }

    /// Appends what is queued, a batch at a time, and returns how many
    /// events; `None` if the store refused a batch (its events are lost,
    /// and counted).
    fn write_queued(&mut self) -> Option<usize> {
        let mut batch = Vec::with_capacity(BATCH);
        let mut written = 0;
        loop {
            self.queue.take_into(&mut batch, BATCH);
            if batch.is_empty() {
                return Some(written);
            }
            if let Err(e) = self.store.append_jwt_issued(&batch) {
                self.lose(batch.len(), &e);
                return None;
            }
            written += batch.len();
            if batch.len() < BATCH {
                return Some(written);
            }
            batch.clear();
            // A backlog: let the request threads that share this core run
            // between two batches.
            std::thread::yield_now();
        }
    }

    /// One pruning step, if one is due; true if there is more to prune
    /// right away.
    fn prune_step(&mut self) -> bool {
        let (Some(retention), Some(every)) = (self.policy.retention, prune_every(&self.policy))
        else {
            return false;
        };
        if Instant::now() < self.next_prune {
            return false;
        }
        let before = self.store.now().saturating_sub(retention.as_secs());
        match self.store.prune_audit(before, PRUNE_STEP) {
            Ok(removed) if removed >= PRUNE_STEP => return true,
            Ok(removed) if removed > 0 => {
                tracing::debug!(
                    events = removed,
                    "audit events past their retention deleted"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete audit events past their retention"),
        }
        self.next_prune = Instant::now() + every;
        false
    }

    fn lose(&mut self, events: usize, error: &StoreError) {
        self.lost.refused += events as u64;
        self.lost.last_error = Some(error.to_string());
    }

    /// Logs the events lost since the last report: the first loss at once,
    /// then at most every [`REPORT_EVERY`] (or now, with `force`).
    fn report(&mut self, force: bool) {
        let due = force
            || self
                .lost
                .reported
                .is_none_or(|at| at.elapsed() >= REPORT_EVERY);
        if !due {
            return;
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped == 0 && self.lost.refused == 0 {
            // Nothing to say: the next loss is reported at once.
            return;
        }
        if dropped > 0 {
            tracing::error!(
                events = dropped,
                "audit backlog full (is the store writable?): JWTs issued not recorded"
            );
        }
        if self.lost.refused > 0 {
            tracing::error!(
                events = self.lost.refused,
                error = self.lost.last_error.as_deref().unwrap_or_default(),
                "cannot write the audit trail: JWTs issued not recorded"
            );
            self.lost.refused = 0;
        }
        self.lost.reported = Some(Instant::now());
    }

    /// Stopping while the store fails: the backlog is dropped (and counted)
    /// rather than retried batch by batch, which with an unreachable
    /// database would hold the shutdown for minutes.
    fn give_up(&mut self) {
        let dropped = self.queue.discard();
        if dropped > 0 {
            tracing::error!(events = dropped, "stopping: audit events not written");
        }
        self.report(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_core::{Jti, TokenId};
    use stamps_store_sled::SledStore;

    fn issued(at: u64) -> JwtIssued {
        JwtIssued {
            at,
            client: "2001:db8::7".parse().unwrap(),
            jti: Jti::from_bytes([0xab; 16]),
            user_id: 5870,
            merchant_id: 1,
            token_id: "0123456789abcdef".parse::<TokenId>().unwrap(),
        }
    }

    fn sled() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        (dir, store)
    }

    const KEEP: AuditPolicy = AuditPolicy {
        retention: None,
        jwt_issued: true,
    };

    #[test]
    fn the_queue_holds_at_most_the_backlog_and_counts_what_it_drops() {
        let (trail, queue) = AuditTrail::queue(&KEEP);
        for at in 0..AUDIT_BACKLOG as u64 + 5 {
            trail.record_jwt_issued(issued(at));
        }
        assert_eq!(trail.dropped.load(Ordering::Relaxed), 5);
        // What the writer takes makes room again, for as much.
        let mut batch = Vec::new();
        queue.take_into(&mut batch, 10);
        assert_eq!(
            batch.iter().map(|e| e.at).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        for at in 0..12 {
            trail.record_jwt_issued(issued(at));
        }
        assert_eq!(trail.dropped.load(Ordering::Relaxed), 7);
        assert_eq!(queue.discard(), AUDIT_BACKLOG);
        assert_eq!(trail.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_issued_jwt_is_written_as_its_event_text_names_it() {
        let (_dir, store) = sled();
        let (trail, writer) = AuditTrail::spawn(Arc::clone(&store), KEEP).unwrap();
        trail.record_jwt_issued(issued(1_657_246_216));
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
        let (_dir, store) = sled();
        let (trail, writer) = AuditTrail::spawn(Arc::clone(&store), KEEP).unwrap();
        for i in 0..3_000u64 {
            trail.record_jwt_issued(issued(i));
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

    #[test]
    fn with_jwt_issued_off_nothing_is_recorded() {
        let (_dir, store) = sled();
        let policy = AuditPolicy {
            jwt_issued: false,
            ..KEEP
        };
        let (trail, writer) = AuditTrail::spawn(Arc::clone(&store), policy).unwrap();
        trail.record_jwt_issued(issued(1));
        writer.finish();
        assert!(store.audit(0).unwrap().is_empty());
    }

    #[test]
    fn events_past_the_retention_are_deleted_and_newer_ones_kept() {
        let (_dir, store) = sled();
        let now = store.now();
        // Two old batches and a recent one, written as the writer would.
        let old: Vec<_> = (0..5_000)
            .map(|i| issued(now - 7_200 + i / 1_000))
            .collect();
        store.append_jwt_issued(&old[..2_500]).unwrap();
        store.append_jwt_issued(&old[2_500..]).unwrap();
        store.append_jwt_issued(&[issued(now - 10)]).unwrap();
        let policy = AuditPolicy {
            retention: Some(Duration::from_secs(3_600)),
            jwt_issued: true,
        };
        let (_trail, writer) = AuditTrail::spawn(Arc::clone(&store), policy).unwrap();
        // The first pass runs at once and goes on while there is more.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.audit(0).unwrap().len() > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.finish();
        let kept = store.audit(0).unwrap();
        assert_eq!(kept.len(), 1, "{} events kept", kept.len());
        assert_eq!(kept[0].at, now - 10);
    }

    #[test]
    fn the_pruning_pace_follows_the_retention() {
        let every = |retention| {
            prune_every(&AuditPolicy {
                retention,
                jwt_issued: true,
            })
        };
        assert_eq!(every(None), None);
        assert_eq!(
            every(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            every(Some(Duration::from_millis(10))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            every(Some(Duration::from_secs(30 * 86_400))),
            Some(PRUNE_EVERY)
        );
    }
}
