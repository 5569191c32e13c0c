//! How records map to rows: the columns read, and the conversions between
//! stamps' values (u64 ids and times) and PostgreSQL's (numeric ids as
//! text, bigint times), each refusing what it cannot represent.

use postgres::Row;
use stamps_core::UnixTime;
use stamps_store::{Account, AccountKind, JwtRevocationTarget, Result, StoreError, TokenRecord};

pub(crate) fn corrupt(table: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: table.into(),
        reason: reason.to_string(),
    }
}

/// Ids travel as text, cast to numeric(20, 0) in SQL.
pub(crate) fn id_text(id: u64) -> String {
    id.to_string()
}

pub(crate) fn parse_id(table: &'static str, text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| corrupt(table, format!("id {text:?} is not a u64")))
}

pub(crate) fn to_bigint(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{value} is beyond bigint")))
}

pub(crate) fn from_bigint(table: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(table, format!("negative value {value}")))
}

pub(crate) fn table(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Merchant => "merchants",
        AccountKind::User => "users",
    }
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id::text, name, active, created_at";
pub(crate) const TOKEN_COLUMNS: &str = "id, user_id::text, merchant_id::text, label, hash, created_at, revoked, expires_at, last_used_at, lookup";

pub(crate) fn account_of(table: &'static str, row: &Row) -> Result<Account> {
    Ok(Account {
        id: parse_id(table, row.get(0))?,
        name: row.get(1),
        active: row.get(2),
        created_at: from_bigint(table, row.get(3))?,
    })
}

pub(crate) fn token_of(row: &Row) -> Result<TokenRecord> {
    let id: &str = row.get(0);
    Ok(TokenRecord {
        id: id
            .parse()
            .map_err(|_| corrupt("tokens", format!("token id {id:?}")))?,
        user_id: parse_id("tokens", row.get(1))?,
        merchant_id: parse_id("tokens", row.get(2))?,
        label: row.get(3),
        hash: row.get(4),
        created_at: from_bigint("tokens", row.get(5))?,
        revoked: row.get(6),
        expires_at: optional_time(row.get(7))?,
        last_used_at: optional_time(row.get(8))?,
        lookup: row
            .get::<_, Option<&str>>(9)
            .map(|text| text.parse().map_err(|e| corrupt("tokens", e)))
            .transpose()?,
    })
}

/// A nullable time column.
pub(crate) fn optional_time(value: Option<i64>) -> Result<Option<UnixTime>> {
    value.map(|v| from_bigint("tokens", v)).transpose()
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(table: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(table, e))
}

pub(crate) fn encode(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The key of a revocation: one row per jti, user or merchant.
pub(crate) fn revocation_key(target: &JwtRevocationTarget) -> String {
    match target {
        JwtRevocationTarget::Jti { jti } => format!("j:{jti}"),
        JwtRevocationTarget::User { id } => format!("u:{id}"),
        JwtRevocationTarget::Merchant { id } => format!("m:{id}"),
    }
}
