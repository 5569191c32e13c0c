//! Following the change log: `LISTEN` on a connection of its own, read
//! the rows after the last one seen, and wait for the next notification,
//! at most a poll interval (the backstop if a notification is lost).

use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use stamps_store::{Change, ChangeFeed, FeedEvent, Result};

use crate::tls::Tls;
use crate::{CHANGE_CHANNEL, backend, from_bigint};

/// Most changes read at once.
const BATCH: i64 = 1_000;

/// A [`ChangeFeed`] over a PostgreSQL database's change log; made by
/// [`crate::PgStore::change_feed`].
pub struct PgChangeFeed {
    config: postgres::Config,
    tls: Tls,
    client: Option<Client>,
    /// The last change delivered.
    last: u64,
    /// Its text, as read: if the row numbered `last` holds another change
    /// now, the log was rewritten (a restore, then new changes).
    last_text: Option<String>,
}

impl std::fmt::Debug for PgChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgChangeFeed")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl PgChangeFeed {
    pub(crate) fn new(config: postgres::Config, tls: Tls, last: u64) -> Self {
        Self {
            config,
            tls,
            client: None,
            last,
            last_text: None,
        }
    }

    /// The sequence number of the last change delivered.
    pub fn last_seen(&self) -> u64 {
        self.last
    }

    /// Connects and listens. Also says whether changes this feed has not
    /// delivered were pruned from the log while it was away.
    fn connect(&self) -> Result<(Client, bool)> {
        let mut client = self.config.connect(self.tls.clone()).map_err(backend)?;
        client
            .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
            .map_err(backend)?;
        let pruned_through: i64 = client
            .query_one(
                "SELECT coalesce(max(value), 0) FROM meta WHERE key = 'change_log_pruned_through'",
                &[],
            )
            .map_err(backend)?
            .get(0);
        let missed = from_bigint("change_log", pruned_through)? > self.last;
        Ok((client, missed))
    }

    /// The changes after the last one delivered (at most [`BATCH`]). An
    /// undecodable row (written by a newer stamps) asks for a resync.
    fn read(
        client: &mut Client,
        last: &mut u64,
        last_text: &mut Option<String>,
    ) -> Result<FeedEvent> {
        let after = i64::try_from(*last).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT seq, change FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &BATCH],
            )
            .map_err(backend)?;
        let mut changes = Vec::with_capacity(rows.len());
        let mut resync = false;
        for row in &rows {
            *last = from_bigint("change_log", row.get(0))?;
            let text: &str = row.get(1);
            *last_text = Some(text.to_owned());
            match serde_json::from_str::<Change>(text) {
                Ok(change) => changes.push(change),
                Err(e) => {
                    tracing::warn!(seq = *last, error = %e, "unreadable change; reloading everything");
                    resync = true;
                }
            }
        }
        Ok(if resync {
            FeedEvent::Resync
        } else {
            FeedEvent::Changes(changes)
        })
    }

    /// Whether the log went back behind the last change delivered: the
    /// database was restored from an older dump (`pg_restore --clean`), or
    /// its log recreated. Changes numbered again from there would never
    /// be read: the caller reloads everything, and the feed goes on from
    /// the log's newest change.
    fn went_back(
        client: &mut Client,
        last: &mut u64,
        last_text: &mut Option<String>,
    ) -> Result<bool> {
        let row = client
            .query_one(
                "SELECT coalesce(max(seq), 0), (SELECT change FROM change_log WHERE seq = $1)
                 FROM change_log",
                &[&i64::try_from(*last).unwrap_or(i64::MAX)],
            )
            .map_err(backend)?;
        let newest = from_bigint("change_log", row.get(0))?;
        let at_last: Option<String> = row.get(1);
        // Gone by pruning is fine; there but another change is not.
        let rewritten = matches!((&at_last, &*last_text), (Some(now), Some(seen)) if now != seen);
        if newest >= *last && !rewritten {
            return Ok(false);
        }
        tracing::warn!(
            last = *last,
            newest,
            "the change log went back (a restore?): reloading everything"
        );
        *last = newest;
        *last_text = None;
        Ok(true)
    }

    /// The changes after the last one delivered, waiting at most `wait`
    /// for a notification when there are none yet.
    fn poll(
        client: &mut Client,
        last: &mut u64,
        last_text: &mut Option<String>,
        wait: Duration,
    ) -> Result<FeedEvent> {
        match Self::read(client, last, last_text)? {
            FeedEvent::Changes(changes) if changes.is_empty() => {}
            event => return Ok(event),
        }
        // Nothing after the last change: is it still the one delivered?
        if Self::went_back(client, last, last_text)? {
            return Ok(FeedEvent::Resync);
        }
        // Nothing new: sleep until a notification or the poll interval,
        // then drop any other notification already queued (one read
        // covers them all).
        {
            let mut notifications = client.notifications();
            notifications.timeout_iter(wait).next().map_err(backend)?;
            while notifications.iter().next().map_err(backend)?.is_some() {}
        }
        Self::read(client, last, last_text)
    }
}

impl ChangeFeed for PgChangeFeed {
    fn next(&mut self, wait: Duration) -> Result<FeedEvent> {
        // The connection is put back only after a call that went well: an
        // error drops it, and the next call reconnects and resumes from
        // `last`.
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                let (mut client, missed) = self.connect()?;
                if missed {
                    // Start again from the newest change: the caller
                    // reloads everything.
                    let newest: i64 = client
                        .query_one("SELECT coalesce(max(seq), 0) FROM change_log", &[])
                        .map_err(backend)?
                        .get(0);
                    self.last = from_bigint("change_log", newest)?;
                    self.last_text = None;
                    self.client = Some(client);
                    return Ok(FeedEvent::Resync);
                }
                client
            }
        };
        let event = Self::poll(&mut client, &mut self.last, &mut self.last_text, wait)?;
        self.client = Some(client);
        Ok(event)
    }
}
