//! The whole store as one value, and its JSON-lines export format.
//!
//! ```text
//! {"kind":"header","format":"stamps-export","schema":2}
//! {"kind":"merchant","id":1,"name":"My Merchant","active":true,"created_at":1764340000}
//! {"kind":"user","id":5870,"name":"user5870","active":true,"created_at":1764340000}
//! {"kind":"token","id":"…","user_id":5870,"merchant_id":1,"label":null,"hash":"$argon2id$…","created_at":1764340000,"revoked":false,"expires_at":null,"last_used_at":null}
//! ```
//!
//! Hashes travel, secrets never do (the store has none). Signing keys are
//! not part of an export either. An export of schema 1 (before tokens had
//! an expiry and a last use) reads as tokens that never expire and were
//! not used since.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use argon2::password_hash::PasswordHash;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::records::{Account, AccountKind, TokenRecord, validate_id, validate_text};

/// The version of the on-disk layout and of the export format: 2 since
/// token records have `expires_at` and `last_used_at`. Older versions are
/// read; newer ones refused.
pub const SCHEMA_VERSION: u32 = 2;

const FORMAT: &str = "stamps-export";

/// Every record of a store.
///
/// Its serde form (an object of three arrays) is what the admin socket
/// carries; the export format is [`Snapshot::write_jsonl`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The merchants, by id.
    pub merchants: Vec<Account>,
    /// The users, by id.
    pub users: Vec<Account>,
    /// The tokens (hashes only).
    pub tokens: Vec<TokenRecord>,
}

/// How many records of each kind a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Merchants.
    pub merchants: usize,
    /// Users.
    pub users: usize,
    /// Tokens.
    pub tokens: usize,
}

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Header { format: String, schema: u32 },
    Merchant(Account),
    User(Account),
    Token(TokenRecord),
}

impl Snapshot {
    /// Counts the records.
    pub fn summary(&self) -> SnapshotSummary {
        SnapshotSummary {
            merchants: self.merchants.len(),
            users: self.users.len(),
            tokens: self.tokens.len(),
        }
    }

    /// True when there is no record at all.
    pub fn is_empty(&self) -> bool {
        self.merchants.is_empty() && self.users.is_empty() && self.tokens.is_empty()
    }

    /// Writes the export: a header line, then one JSON object per record.
    pub fn write_jsonl(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut line = |record: &Line| -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")
        };
        line(&Line::Header {
            format: FORMAT.to_owned(),
            schema: SCHEMA_VERSION,
        })?;
        for m in &self.merchants {
            line(&Line::Merchant(m.clone()))?;
        }
        for u in &self.users {
            line(&Line::User(u.clone()))?;
        }
        for t in &self.tokens {
            line(&Line::Token(t.clone()))?;
        }
        out.flush()
    }

    /// Reads and validates an export. Refuses, naming the line, anything a
    /// store could not hold: a missing or newer header, an unknown line,
    /// a bad name or id, a duplicate (of an id, or of an imported token's
    /// lookup digest), a token whose user or merchant is not in the file, a
    /// hash that is not a PHC string.
    pub fn read_jsonl(input: impl BufRead) -> Result<Self> {
        let mut snapshot = Snapshot::default();
        let mut seen_header = false;
        let mut merchant_ids = HashSet::new();
        let mut user_ids = HashSet::new();
        let mut token_ids = HashSet::new();
        let mut lookups = HashSet::new();
        let mut pending_tokens = Vec::new();

        for (index, line) in input.lines().enumerate() {
            let number = index + 1;
            let invalid = |reason: String| StoreError::InvalidImport {
                line: number,
                reason,
            };
            let line = line.map_err(|e| invalid(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let record: Line = serde_json::from_str(&line).map_err(|e| invalid(e.to_string()))?;
            match record {
                Line::Header { format, schema } => {
                    if seen_header || number != 1 {
                        return Err(invalid("the header must be the first line, once".into()));
                    }
                    if format != FORMAT {
                        return Err(invalid(format!("not a stamps export ({format})")));
                    }
                    if schema > SCHEMA_VERSION {
                        return Err(invalid(format!(
                            "written by a newer stamps (schema {schema}, this one reads {SCHEMA_VERSION})"
                        )));
                    }
                    seen_header = true;
                }
                _ if !seen_header => {
                    return Err(invalid("missing the stamps-export header line".into()));
                }
                Line::Merchant(account) | Line::User(account)
                    if validate_text("name", &account.name).is_err() =>
                {
                    return Err(invalid(format!("invalid name for id {}", account.id)));
                }
                Line::Merchant(account) => {
                    validate_id(AccountKind::Merchant, account.id)
                        .map_err(|e| invalid(e.to_string()))?;
                    if !merchant_ids.insert(account.id) {
                        return Err(invalid(format!("duplicate merchant {}", account.id)));
                    }
                    snapshot.merchants.push(account);
                }
                Line::User(account) => {
                    validate_id(AccountKind::User, account.id)
                        .map_err(|e| invalid(e.to_string()))?;
                    if !user_ids.insert(account.id) {
                        return Err(invalid(format!("duplicate user {}", account.id)));
                    }
                    snapshot.users.push(account);
                }
                Line::Token(token) => {
                    if !token_ids.insert(token.id) {
                        return Err(invalid(format!("duplicate token {}", token.id)));
                    }
                    if let Some(lookup) = token.lookup
                        && !lookups.insert(lookup)
                    {
                        return Err(invalid(format!(
                            "token {}: the same imported token as an earlier line",
                            token.id
                        )));
                    }
                    if let Some(label) = &token.label {
                        validate_text("label", label).map_err(|e| invalid(e.to_string()))?;
                    }
                    if PasswordHash::new(&token.hash).is_err() {
                        return Err(invalid(format!(
                            "token {}: hash is not a PHC string",
                            token.id
                        )));
                    }
                    pending_tokens.push((number, token));
                }
            }
        }
        if !seen_header {
            return Err(StoreError::InvalidImport {
                line: 1,
                reason: "empty file: missing the stamps-export header line".into(),
            });
        }
        // Tokens may come before the accounts they name; check at the end.
        for (number, token) in pending_tokens {
            for (kind, id, ids) in [
                ("user", token.user_id, &user_ids),
                ("merchant", token.merchant_id, &merchant_ids),
            ] {
                if !ids.contains(&id) {
                    return Err(StoreError::InvalidImport {
                        line: number,
                        reason: format!(
                            "token {} names {kind} {id}, which the file lacks",
                            token.id
                        ),
                    });
                }
            }
            snapshot.tokens.push(token);
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: u64, name: &str) -> Account {
        Account {
            id,
            name: name.into(),
            active: true,
            created_at: 1,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            merchants: vec![account(1, "My Merchant")],
            users: vec![account(5870, "user5870")],
            tokens: vec![TokenRecord {
                id: "0123456789abcdef".parse().unwrap(),
                user_id: 5870,
                merchant_id: 1,
                label: Some("till".into()),
                hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$3Zq0vKDxwFqQ9Qx1cKiTWg".into(),
                created_at: 2,
                revoked: false,
                expires_at: None,
                last_used_at: None,
                lookup: None,
            }],
        }
    }

    fn export(s: &Snapshot) -> String {
        let mut out = Vec::new();
        s.write_jsonl(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn round_trips() {
        let text = export(&sample());
        assert!(text.starts_with(r#"{"kind":"header","format":"stamps-export","schema":2}"#));
        // Schema 1, without the newer fields, still reads.
        let first = text
            .replacen(r#""schema":2"#, r#""schema":1"#, 1)
            .replace(r#","expires_at":null,"last_used_at":null"#, "");
        assert_eq!(Snapshot::read_jsonl(first.as_bytes()).unwrap(), sample());
        assert_eq!(Snapshot::read_jsonl(text.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn refuses_what_a_store_could_not_hold() {
        let good = export(&sample());
        let cases = [
            ("", 1),
            (
                &good.replacen(r#""schema":2"#, r#""schema":3"#, 1) as &str,
                1,
            ),
            (&good.lines().skip(1).collect::<Vec<_>>().join("\n"), 1),
            (&good.replace("My Merchant", ""), 2),
            (
                &good
                    .replace(r#""id":5870,"name""#, r#""id":1,"name""#)
                    .replace(r#""kind":"user""#, r#""kind":"merchant""#),
                3,
            ),
            (&good.replace(r#""user_id":5870"#, r#""user_id":5871"#), 4),
            (&good.replace("$argon2id$", "plain"), 4),
            (&format!("{good}{{\"kind\":\"secret\"}}\n"), 5),
            (
                &good.replace(r#""revoked":false"#, r#""revoked":false,"token":"x""#),
                4,
            ),
        ];
        for (text, line) in cases {
            match Snapshot::read_jsonl(text.as_bytes()) {
                Err(StoreError::InvalidImport { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("accepted or wrong error {other:?} for {text}"),
            }
        }
    }
}
