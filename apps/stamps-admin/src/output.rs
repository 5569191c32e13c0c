//! How outcomes look: one JSON document with `--json`, tables and sentences
//! without.
//!
//! The JSON shapes are part of the external contract, so they are written
//! by dedicated wire structs here, never by serialising store records (which
//! hold hashes).

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{Table, presets};
use serde::Serialize;
use stamps_core::{ExposeSecret, UnixTime};
use stamps_store::{
    Account, AccountKind, AuditEvent, IssuedToken, JwtRevocation, JwtRevocationTarget, KeyInfo,
    SnapshotSummary, TokenRecord,
};

use crate::outcome::Outcome;

/// A merchant or user on the wire.
#[derive(Debug, Serialize)]
struct AccountJson<'a> {
    id: u64,
    name: &'a str,
    active: bool,
}

impl<'a> From<&'a Account> for AccountJson<'a> {
    fn from(a: &'a Account) -> Self {
        Self {
            id: a.id,
            name: &a.name,
            active: a.active,
        }
    }
}

/// A token record on the wire: never its hash.
#[derive(Debug, Serialize)]
struct TokenJson<'a> {
    id: &'a str,
    user_id: u64,
    merchant_id: u64,
    label: Option<&'a str>,
    created_at: String,
    revoked: bool,
    /// RFC 3339, or null: never.
    expires_at: Option<String>,
    /// RFC 3339, or null: not used since it was recorded.
    last_used_at: Option<String>,
    /// Imported (clients keep the text they held), not issued by stamps.
    imported: bool,
}

impl<'a> From<&'a TokenRecord> for TokenJson<'a> {
    fn from(t: &'a TokenRecord) -> Self {
        Self {
            id: t.id.as_str(),
            user_id: t.user_id,
            merchant_id: t.merchant_id,
            label: t.label.as_deref(),
            created_at: timestamp(t.created_at),
            revoked: t.revoked,
            expires_at: t.expires_at.map(timestamp),
            last_used_at: t.last_used_at.map(timestamp),
            imported: t.is_imported(),
        }
    }
}

/// A token just created: the record's fields and, this once, the token.
#[derive(Debug, Serialize)]
struct IssuedJson<'a> {
    token: &'a str,
    #[serde(flatten)]
    record: TokenJson<'a>,
}

/// Counts of an import or export.
#[derive(Debug, Serialize)]
struct SummaryJson<'a> {
    merchants: usize,
    users: usize,
    tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
}

impl<'a> SummaryJson<'a> {
    fn new(s: &SnapshotSummary, file: Option<&'a str>) -> Self {
        Self {
            merchants: s.merchants,
            users: s.users,
            tokens: s.tokens,
            file,
        }
    }
}

/// A JWT revocation on the wire.
#[derive(Debug, Serialize)]
struct RevocationJson<'a> {
    target: &'a JwtRevocationTarget,
    revoked_at: String,
}

impl<'a> From<&'a JwtRevocation> for RevocationJson<'a> {
    fn from(r: &'a JwtRevocation) -> Self {
        Self {
            target: &r.target,
            revoked_at: timestamp(r.revoked_at),
        }
    }
}

/// A signing key on the wire: never the key itself.
#[derive(Debug, Serialize)]
struct KeyJson {
    id: u64,
    created_at: String,
    drops_previous: bool,
}

impl From<&KeyInfo> for KeyJson {
    fn from(k: &KeyInfo) -> Self {
        Self {
            id: k.id,
            created_at: timestamp(k.created_at),
            drops_previous: k.drops_previous,
        }
    }
}

/// An audit event on the wire.
#[derive(Debug, Serialize)]
struct AuditJson<'a> {
    seq: u64,
    at: String,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
}

impl<'a> From<&'a AuditEvent> for AuditJson<'a> {
    fn from(e: &'a AuditEvent) -> Self {
        Self {
            seq: e.seq,
            at: timestamp(e.at),
            actor: &e.actor,
            action: &e.action,
            subject: &e.subject,
        }
    }
}

/// Prints `outcome` on `out`, then flushes it.
pub fn render(outcome: &Outcome, json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        render_json(outcome, out)?;
    } else {
        render_human(outcome, out)?;
    }
    out.flush()
}

fn render_json(outcome: &Outcome, out: &mut dyn Write) -> io::Result<()> {
    let file_name;
    match outcome {
        Outcome::Account(a) => write_json(out, &AccountJson::from(a)),
        Outcome::Accounts(_, list) => {
            write_json(out, &list.iter().map(AccountJson::from).collect::<Vec<_>>())
        }
        Outcome::Token(t) => write_json(out, &TokenJson::from(t)),
        Outcome::Tokens(list) => {
            write_json(out, &list.iter().map(TokenJson::from).collect::<Vec<_>>())
        }
        Outcome::Issued(issued) => {
            let secret = issued.token.to_secret_string();
            write_json(
                out,
                &IssuedJson {
                    token: secret.expose_secret(),
                    record: TokenJson::from(&issued.record),
                },
            )
        }
        Outcome::Imported(summary) => write_json(out, &SummaryJson::new(summary, None)),
        Outcome::Revoked(r) => write_json(out, &RevocationJson::from(r)),
        Outcome::KeyRotated(k) => write_json(out, &KeyJson::from(k)),
        Outcome::Inspected(inspection) => write_json(out, inspection),
        Outcome::Checked(status) => write_json(out, status),
        Outcome::Audit(events) => {
            write_json(out, &events.iter().map(AuditJson::from).collect::<Vec<_>>())
        }
        // The export went to stdout: it is the output.
        Outcome::Exported { file: None, .. } => Ok(()),
        Outcome::Exported {
            summary,
            file: Some(file),
        } => {
            file_name = file.to_string_lossy();
            write_json(out, &SummaryJson::new(summary, Some(&file_name)))
        }
    }
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

fn render_human(outcome: &Outcome, out: &mut dyn Write) -> io::Result<()> {
    match outcome {
        Outcome::Account(a) => writeln!(out, "{}", account_table([a])),
        Outcome::Accounts(kind, list) if list.is_empty() => writeln!(out, "No {}s.", kind.as_str()),
        Outcome::Accounts(_, list) => writeln!(out, "{}", account_table(list)),
        Outcome::Token(t) => writeln!(out, "{}", token_table([t])),
        Outcome::Tokens(list) if list.is_empty() => writeln!(out, "No tokens."),
        Outcome::Tokens(list) => writeln!(out, "{}", token_table(list)),
        Outcome::Issued(issued) => render_issued(issued, out),
        Outcome::Imported(summary) => writeln!(out, "Imported {}.", counts(summary)),
        Outcome::Revoked(r) => writeln!(out, "Revoked {}.", describe(r)),
        Outcome::KeyRotated(k) if k.drops_previous => writeln!(
            out,
            "Key {} signs from {} on; every earlier key is dropped: the JWTs they signed are refused.",
            k.id,
            timestamp(k.created_at)
        ),
        Outcome::KeyRotated(k) => writeln!(
            out,
            "Key {} signs from {} on; earlier keys verify the tokens they signed until those expire.",
            k.id,
            timestamp(k.created_at)
        ),
        Outcome::Inspected(i) => {
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .map_or_else(|| "(does not decode)".to_owned(), ToString::to_string)
            };
            writeln!(out, "header: {}", show(&i.header))?;
            writeln!(out, "claims: {}", show(&i.claims))?;
            match i.valid {
                true => writeln!(out, "valid"),
                false => writeln!(out, "not valid: {}", i.reason),
            }
        }
        Outcome::Checked(c) => {
            let id = c.id.as_deref().unwrap_or("(not a static token)");
            let now = if c.revoked_now { "; revoked now" } else { "" };
            writeln!(out, "token {id}: {}{now}", c.status.as_str())
        }
        Outcome::Audit(events) if events.is_empty() => writeln!(out, "No audit events."),
        Outcome::Audit(events) => {
            let mut t = table(&["Seq", "At", "Actor", "Action", "Subject"]);
            for e in events {
                t.add_row(vec![
                    e.seq.to_string(),
                    timestamp(e.at),
                    e.actor.clone(),
                    e.action.clone(),
                    e.subject.clone(),
                ]);
            }
            writeln!(out, "{t}")
        }
        Outcome::Exported { file: None, .. } => Ok(()),
        Outcome::Exported {
            summary,
            file: Some(file),
        } => writeln!(
            out,
            "Exported {} to {}.",
            counts(summary),
            Path::display(file)
        ),
    }
}

fn render_issued(issued: &IssuedToken, out: &mut dyn Write) -> io::Result<()> {
    let t = &issued.record;
    writeln!(
        out,
        "Created token {} for user {} at merchant {}:",
        t.id, t.user_id, t.merchant_id
    )?;
    writeln!(out, "{}", token_table([t]))?;
    writeln!(out)?;
    writeln!(out, "{}", issued.token.to_secret_string().expose_secret())?;
    writeln!(out)?;
    writeln!(
        out,
        "Copy the token now: it is shown only once and will not be shown again \
         (the store keeps only a hash of it)."
    )
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

fn account_table<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> Table {
    let mut table = table(&["ID", "Name", "Status"]);
    for a in accounts {
        let status = if a.active { "active" } else { "disabled" };
        table.add_row(vec![a.id.to_string(), a.name.clone(), status.to_owned()]);
    }
    table
}

fn token_table<'a>(tokens: impl IntoIterator<Item = &'a TokenRecord>) -> Table {
    let mut table = table(&[
        "ID",
        "Kind",
        "User",
        "Merchant",
        "Label",
        "Created",
        "Revoked",
        "Expires",
        "Last used",
    ]);
    let or_dash = |time: Option<UnixTime>| time.map_or_else(|| "-".to_owned(), timestamp);
    for t in tokens {
        table.add_row(vec![
            t.id.to_string(),
            if t.is_imported() {
                "imported"
            } else {
                "issued"
            }
            .to_owned(),
            t.user_id.to_string(),
            t.merchant_id.to_string(),
            t.label.clone().unwrap_or_default(),
            timestamp(t.created_at),
            if t.revoked { "yes" } else { "no" }.to_owned(),
            or_dash(t.expires_at),
            or_dash(t.last_used_at),
        ]);
    }
    table
}

/// `1 merchant, 2 users and 3 tokens`.
pub fn counts(s: &SnapshotSummary) -> String {
    let n =
        |count: usize, kind: &str| format!("{count} {kind}{}", if count == 1 { "" } else { "s" });
    format!(
        "{}, {} and {}",
        n(s.merchants, AccountKind::Merchant.as_str()),
        n(s.users, AccountKind::User.as_str()),
        n(s.tokens, "token")
    )
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: UnixTime = 253_402_300_799;

/// Seconds since the epoch as RFC 3339 UTC, `2022-07-08T02:10:16Z`. A time
/// past the year 9999 (only a hand-edited import can hold one) is written
/// as its number of seconds, rather than failing the whole listing.
pub fn timestamp(secs: UnixTime) -> String {
    if secs > LAST_RFC3339_SECOND {
        return secs.to_string();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// A revocation in words.
pub fn describe(revocation: &JwtRevocation) -> String {
    let at = timestamp(revocation.revoked_at);
    match revocation.target {
        JwtRevocationTarget::Jti { jti } => format!("jti {jti} (revoked at {at})"),
        JwtRevocationTarget::User { id } => {
            format!("every JWT of user {id} issued at or before {at}")
        }
        JwtRevocationTarget::Merchant { id } => {
            format!("every JWT for merchant {id} issued at or before {at}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_and_never_panic() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_657_246_216), "2022-07-08T02:10:16Z");
        assert_eq!(timestamp(LAST_RFC3339_SECOND), "9999-12-31T23:59:59Z");
        assert_eq!(timestamp(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn counts_read_well() {
        let s = SnapshotSummary {
            merchants: 1,
            users: 2,
            tokens: 0,
        };
        assert_eq!(counts(&s), "1 merchant, 2 users and 0 tokens");
    }
}
