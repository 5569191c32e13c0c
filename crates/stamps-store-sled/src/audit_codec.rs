//! The audit trail's form on disk in sled: one record per batch of events,
//! keyed by the batch's first sequence number, in a compact binary form
//! ([`postcard`]: varint integers, raw byte arrays).
//!
//! A JWT issued is stored as its few ids and a time (~50 bytes, where the
//! JSON text was ~190), and a batch of a thousand stays well under sled's
//! blob threshold (a quarter of a 512 KiB segment): values above it go to
//! files of their own under `blobs/`, which sled 0.34 reclaims late, so a
//! pruned trail did not give its space back.
//!
//! Layout of a record: [`FORMAT`], then a postcard [`Batch`]: the newest
//! event's time (so that pruning reads a varint, not the batch), then the
//! events, each with its sequence number as an offset from the key's.
//! Records written before this form are a JSON array of [`AuditEvent`]s
//! (they start with `[`) and are still read.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use stamps_core::{Jti, TokenId, UnixTime};

use stamps_store::{AuditEvent, JwtIssued};
use stamps_store::{Result, StoreError};

/// The first byte of a record in this form (a JSON array starts with `[`).
const FORMAT: u8 = 1;

/// An event to write, with the sequence number the store gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    /// An event as text (the admin command line's).
    Text(&'a AuditEvent),
    /// A JWT issued.
    JwtIssued(&'a JwtIssued),
}

impl Entry<'_> {
    fn at(&self) -> UnixTime {
        match self {
            Entry::Text(event) => event.at,
            Entry::JwtIssued(issued) => issued.at,
        }
    }
}

/// One event as stored; `seq` is the offset from the batch's key.
#[derive(Serialize, Deserialize)]
enum Stored<'a> {
    Text {
        seq: u64,
        at: UnixTime,
        #[serde(borrow)]
        actor: Cow<'a, str>,
        #[serde(borrow)]
        action: Cow<'a, str>,
        #[serde(borrow)]
        subject: Cow<'a, str>,
    },
    JwtIssued {
        seq: u64,
        at: UnixTime,
        client: IpAddr,
        jti: [u8; 16],
        user_id: u64,
        merchant_id: u64,
        token_id: [u8; 16],
    },
}

#[derive(Serialize, Deserialize)]
struct Batch<'a> {
    /// The newest `at` in the batch.
    newest: UnixTime,
    #[serde(borrow)]
    events: Vec<Stored<'a>>,
}

fn corrupt(reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: "audit".into(),
        reason: reason.to_string(),
    }
}

/// The record of a batch whose events have sequence numbers `seqs` (the
/// first is the record's key), in order.
pub(crate) fn encode(first_seq: u64, entries: &[(u64, Entry<'_>)]) -> Result<Vec<u8>> {
    let events = entries
        .iter()
        .map(|&(seq, entry)| {
            let seq = seq.saturating_sub(first_seq);
            match entry {
                Entry::Text(event) => Stored::Text {
                    seq,
                    at: event.at,
                    actor: Cow::Borrowed(&event.actor),
                    action: Cow::Borrowed(&event.action),
                    subject: Cow::Borrowed(&event.subject),
                },
                Entry::JwtIssued(issued) => {
                    let mut token_id = [0u8; 16];
                    token_id.copy_from_slice(issued.token_id.as_str().as_bytes());
                    Stored::JwtIssued {
                        seq,
                        at: issued.at,
                        client: issued.client,
                        jti: *issued.jti.as_bytes(),
                        user_id: issued.user_id,
                        merchant_id: issued.merchant_id,
                        token_id,
                    }
                }
            }
        })
        .collect();
    let batch = Batch {
        newest: entries.iter().map(|(_, e)| e.at()).max().unwrap_or(0),
        events,
    };
    postcard::to_extend(&batch, vec![FORMAT]).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The events of the record under key `first_seq`.
pub(crate) fn decode(first_seq: u64, bytes: &[u8]) -> Result<Vec<AuditEvent>> {
    let Some((&FORMAT, rest)) = bytes.split_first() else {
        return decode_json(bytes);
    };
    let batch: Batch<'_> = postcard::from_bytes(rest).map_err(corrupt)?;
    batch
        .events
        .into_iter()
        .map(|stored| match stored {
            Stored::Text {
                seq,
                at,
                actor,
                action,
                subject,
            } => Ok(AuditEvent {
                seq: first_seq.saturating_add(seq),
                at,
                actor: actor.into_owned(),
                action: action.into_owned(),
                subject: subject.into_owned(),
            }),
            Stored::JwtIssued {
                seq,
                at,
                client,
                jti,
                user_id,
                merchant_id,
                token_id,
            } => {
                let token_id = std::str::from_utf8(&token_id)
                    .ok()
                    .and_then(|id| id.parse::<TokenId>().ok())
                    .ok_or_else(|| corrupt("a token id that is not one"))?;
                let issued = JwtIssued {
                    at,
                    client,
                    jti: Jti::from_bytes(jti),
                    user_id,
                    merchant_id,
                    token_id,
                };
                Ok(issued.to_event(first_seq.saturating_add(seq)))
            }
        })
        .collect()
}

/// A record written before the compact form: a JSON array.
fn decode_json(bytes: &[u8]) -> Result<Vec<AuditEvent>> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// The newest time in a record, and how many events it holds, without
/// decoding its events (but for a JSON record).
pub(crate) fn summary(bytes: &[u8]) -> Result<(UnixTime, usize)> {
    let Some((&FORMAT, rest)) = bytes.split_first() else {
        let events = decode_json(bytes)?;
        let newest = events.iter().map(|e| e.at).max().unwrap_or(0);
        return Ok((newest, events.len()));
    };
    let (newest, rest) = postcard::take_from_bytes::<UnixTime>(rest).map_err(corrupt)?;
    // A sequence's length is a varint, like any integer.
    let (count, _) = postcard::take_from_bytes::<u64>(rest).map_err(corrupt)?;
    Ok((newest, usize::try_from(count).unwrap_or(usize::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn issued(at: UnixTime, client: IpAddr, user_id: u64) -> JwtIssued {
        JwtIssued {
            at,
            client,
            jti: Jti::from_bytes([0x5a; 16]),
            user_id,
            merchant_id: 1,
            token_id: "0123456789abcdef".parse().unwrap(),
        }
    }

    #[test]
    fn a_jwt_issued_takes_about_fifty_bytes() {
        let one = issued(1_657_246_216, "203.0.113.7".parse().unwrap(), 5870);
        let entries: Vec<_> = (0..1000u64)
            .map(|i| (100 + i, Entry::JwtIssued(&one)))
            .collect();
        let bytes = encode(100, &entries).unwrap();
        let per_event = bytes.len() / 1000;
        assert!(per_event <= 52, "{per_event} bytes per event");
        // Under sled's blob threshold (512 KiB / 4) with room to spare.
        assert!(bytes.len() < 128 * 1024 / 2, "{}", bytes.len());
    }

    #[test]
    fn records_in_the_old_json_form_are_still_read() {
        let old = br#"[{"seq":4,"at":10,"actor":"api 127.0.0.1","action":"jwt.issue","subject":"jti 00"},{"seq":5,"at":12,"actor":"a","action":"b","subject":"c"}]"#;
        let events = decode(4, old).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!((events[1].seq, events[1].at), (5, 12));
        assert_eq!(summary(old).unwrap(), (12, 2));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x01",
            b"\x01\xff\xff",
            b"{",
            b"\x01\x05\x02\x09",
        ] {
            assert!(decode(1, bytes).is_err(), "{bytes:?}");
        }
    }

    fn client() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    proptest! {
        /// What is written is read back as the same events, text and JWTs
        /// alike, and the summary says the newest time and the count.
        #[test]
        fn batches_round_trip(
            first in 0u64..u64::MAX / 2,
            events in proptest::collection::vec(
                (any::<bool>(), 0u64..u64::MAX / 4, client(), any::<u64>(), "[ -~]{1,40}"),
                1..50,
            ),
        ) {
            let issued: Vec<JwtIssued> = events
                .iter()
                .map(|(_, at, ip, user, _)| issued(*at, *ip, *user))
                .collect();
            let texts: Vec<AuditEvent> = events
                .iter()
                .map(|(_, at, _, _, text)| AuditEvent::new(*at, text.clone(), "token.revoke", text.clone()))
                .collect();
            let entries: Vec<(u64, Entry<'_>)> = events
                .iter()
                .enumerate()
                .map(|(i, (is_jwt, ..))| {
                    let entry = if *is_jwt { Entry::JwtIssued(&issued[i]) } else { Entry::Text(&texts[i]) };
                    (first + 2 * i as u64, entry)
                })
                .collect();
            let bytes = encode(first, &entries).unwrap();
            let read = decode(first, &bytes).unwrap();
            prop_assert_eq!(read.len(), events.len());
            for (i, event) in read.iter().enumerate() {
                let mut expected = if events[i].0 { issued[i].to_event(0) } else { texts[i].clone() };
                expected.seq = first + 2 * i as u64;
                prop_assert_eq!(event, &expected);
            }
            let newest = events.iter().map(|e| e.1).max().unwrap();
            prop_assert_eq!(summary(&bytes).unwrap(), (newest, events.len()));
        }
    }
}
