//! The records the store keeps, and the rules their fields follow.

use serde::{Deserialize, Serialize};
use stamps_core::{
    Claims, Jti, LookupDigest, SecretString, SigningKey, StaticToken, TokenId, UnixTime,
};

use crate::error::{Result, StoreError};

/// The longest name or label, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// Merchants and users are both accounts: an id, a name, and whether they
/// may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A merchant: what `crm_merchant_id` names.
    Merchant,
    /// A user: the holder of static tokens.
    User,
}

impl AccountKind {
    /// `merchant` or `user`, as messages say.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Merchant => "merchant",
            AccountKind::User => "user",
        }
    }
}

/// A merchant or a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The id, unique among accounts of its kind (1 or more).
    pub id: u64,
    /// A display name: 1 to 200 characters, no control characters.
    pub name: String,
    /// Whether its tokens are accepted.
    pub active: bool,
    /// When it was added, in seconds since the epoch.
    pub created_at: UnixTime,
}

/// A static token as stored: never its secret, only an argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The public id, which appears verbatim in the token.
    pub id: TokenId,
    /// The user the token was issued to.
    pub user_id: u64,
    /// The merchant it grants access to.
    pub merchant_id: u64,
    /// An operator's note, such as where the token is deployed.
    pub label: Option<String>,
    /// The argon2id hash of the secret, as a PHC string (it carries its own
    /// parameters, so hashes made under older parameters still verify).
    pub hash: String,
    /// When it was created, in seconds since the epoch.
    pub created_at: UnixTime,
    /// Whether it was revoked (a revoked token never works again).
    pub revoked: bool,
    /// When it stops granting access, in seconds since the epoch: from
    /// that second on it is refused ([`TokenRecord::is_expired`]). `None`:
    /// never (static tokens are permanent unless created to expire).
    /// Absent in records written before expiry existed.
    #[serde(default)]
    pub expires_at: Option<UnixTime>,
    /// When it last authenticated successfully, as the server last
    /// reported it (at most a minute stale); `None`: never, or not since
    /// this was recorded.
    #[serde(default)]
    pub last_used_at: Option<UnixTime>,
    /// For an imported token (CONTRACT §2), the digest its text is found
    /// by ([`stamps_core::LookupKey::digest`]); its `hash` is then of the
    /// whole text. `None` for tokens stamps issued, found by their id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupDigest>,
}

/// A token an operator imports: the text its clients already hold, and
/// what it is for. The text is a secret: its `Debug` shows nothing of it.
#[derive(Debug, Clone)]
pub struct TokenImport {
    /// The token as its clients send it.
    pub text: SecretString,
    /// The user it authenticates.
    pub user_id: u64,
    /// The merchant it grants access to.
    pub merchant_id: u64,
    /// An operator's note.
    pub label: Option<String>,
    /// When it stops granting access, if ever.
    pub expires_at: Option<UnixTime>,
}

impl TokenRecord {
    /// True when the token has expired at `now`: its expiry is `now` or
    /// earlier.
    ///
    /// ```
    /// # use stamps_store::TokenRecord;
    /// # let mut record: TokenRecord = serde_json::from_str(r#"{"id":"0123456789abcdef","user_id":1,"merchant_id":1,"label":null,"hash":"h","created_at":1,"revoked":false}"#)?;
    /// record.expires_at = Some(100);
    /// assert!(!record.is_expired(99));
    /// assert!(record.is_expired(100));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// True for an imported token ([`TokenRecord::lookup`]).
    pub fn is_imported(&self) -> bool {
        self.lookup.is_some()
    }
}

/// A token just created: its record, and the token itself, whose secret
/// exists nowhere else and must be shown to its holder now or never.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// What the store keeps.
    pub record: TokenRecord,
    /// The full token.
    pub token: StaticToken,
}

/// Which tokens `tokens` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFilter {
    /// Only this user's tokens.
    pub user_id: Option<u64>,
    /// Only tokens for this merchant.
    pub merchant_id: Option<u64>,
}

impl TokenFilter {
    /// True when `record` passes the filter.
    pub fn matches(&self, record: &TokenRecord) -> bool {
        self.user_id.is_none_or(|u| u == record.user_id)
            && self.merchant_id.is_none_or(|m| m == record.merchant_id)
    }
}

/// The outcome of checking a presented static token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token is live: its secret matches, it is neither revoked nor
    /// expired, and its user and merchant are active.
    Live(TokenRecord),
    /// The token grants nothing; the reason is for logs and metrics only,
    /// never for the client.
    Refused(Refusal),
}

/// Why a static token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No token has this id (no hash was computed).
    Unknown,
    /// The id exists but the secret is wrong.
    WrongSecret,
    /// The token was revoked.
    Revoked,
    /// The token has expired (its secret was right).
    Expired,
    /// Its user is disabled.
    UserDisabled,
    /// Its merchant is disabled.
    MerchantDisabled,
}

/// Checks a name or label: 1 to 200 characters, none of them a control
/// character.
pub fn validate_text(field: &'static str, text: &str) -> Result<()> {
    let invalid = |reason| {
        Err(StoreError::InvalidText {
            field: field.into(),
            reason,
        })
    };
    if text.is_empty() {
        return invalid("must not be empty".into());
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return invalid("must be at most 200 characters".into());
    }
    if text.chars().any(char::is_control) {
        return invalid("must not contain control characters".into());
    }
    Ok(())
}

/// Checks an account id given by an operator: 0 and `u64::MAX` are
/// reserved (0 is "none" in many clients; the maximum leaves room for the
/// next allocated id).
pub fn validate_id(kind: AccountKind, id: u64) -> Result<()> {
    if id == 0 || id == u64::MAX {
        return Err(StoreError::InvalidId {
            kind: kind.as_str().into(),
            id,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(validate_text("name", "My Merchant").is_ok());
        assert!(validate_text("name", &"é".repeat(200)).is_ok());
        assert!(validate_text("name", &"é".repeat(201)).is_err());
        assert!(validate_text("name", "").is_err());
        assert!(validate_text("name", "a\nb").is_err());
        assert!(validate_text("name", "a\u{7f}").is_err());
        assert!(validate_text("name", "tab\there").is_err());
    }

    #[test]
    fn id_rules() {
        assert!(validate_id(AccountKind::User, 0).is_err());
        assert!(validate_id(AccountKind::User, u64::MAX).is_err());
        assert!(validate_id(AccountKind::User, 5870).is_ok());
    }
}

/// Which JWTs a revocation refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum JwtRevocationTarget {
    /// The one JWT with this `jti`.
    Jti {
        /// Its `jti` claim.
        jti: Jti,
    },
    /// Every JWT of this user issued at or before the revocation.
    User {
        /// The user id.
        id: u64,
    },
    /// Every JWT for this merchant issued at or before the revocation.
    Merchant {
        /// The merchant id.
        id: u64,
    },
}

impl JwtRevocationTarget {
    /// The user or merchant it targets (which must exist), if any.
    pub fn account(&self) -> Option<(AccountKind, u64)> {
        match *self {
            JwtRevocationTarget::Jti { .. } => None,
            JwtRevocationTarget::User { id } => Some((AccountKind::User, id)),
            JwtRevocationTarget::Merchant { id } => Some((AccountKind::Merchant, id)),
        }
    }
}

/// A JWT revocation. Kept until every token it can refuse has expired
/// (`revoked_at + lifetime + leeway`), then pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRevocation {
    /// What it refuses.
    pub target: JwtRevocationTarget,
    /// When it was made: for a user or merchant, JWTs with `iat` at or
    /// before this second are refused. Revoking again moves it forward.
    pub revoked_at: UnixTime,
}

impl JwtRevocation {
    /// True when this revocation refuses a token with these (verified)
    /// claims.
    pub fn refuses(&self, claims: &Claims) -> bool {
        match self.target {
            JwtRevocationTarget::Jti { jti } => claims.jti == jti,
            JwtRevocationTarget::User { id } => {
                claims.user_id == id && claims.iat <= self.revoked_at
            }
            JwtRevocationTarget::Merchant { id } => {
                claims.merchant_id == id && claims.iat <= self.revoked_at
            }
        }
    }
}

/// A signing key made by `key rotate`, as the store keeps it. The key is a
/// secret: `Debug` hides it, and it is never exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Sequence number, 1 for the first rotation.
    pub id: u64,
    /// When it started signing.
    pub created_at: UnixTime,
    /// The HMAC key.
    pub key: SigningKey,
    /// Made by an emergency rotation: every earlier key, the configured
    /// one included, verifies nothing from then on.
    pub drops_previous: bool,
}

/// What the store says about a signing key, without its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInfo {
    /// Sequence number, 1 for the first rotation.
    pub id: u64,
    /// When it started signing.
    pub created_at: UnixTime,
    /// Whether it ended every earlier key at once.
    #[serde(default)]
    pub drops_previous: bool,
}

impl From<SigningKeyRecord> for stamps_core::RotatedKey {
    fn from(record: SigningKeyRecord) -> Self {
        Self {
            key: record.key,
            created_at: record.created_at,
            drops_previous: record.drops_previous,
        }
    }
}

impl SigningKeyRecord {
    /// The record without its secret.
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            id: self.id,
            created_at: self.created_at,
            drops_previous: self.drops_previous,
        }
    }
}

/// How a signing key record is serialised: the key as hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSigningKey {
    id: u64,
    created_at: UnixTime,
    key_hex: String,
    /// Absent in records of before emergency rotations, and when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drops_previous: bool,
}

impl Serialize for SigningKeyRecord {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        StoredSigningKey {
            id: self.id,
            created_at: self.created_at,
            key_hex: hex::encode(self.key.expose_secret()),
            drops_previous: self.drops_previous,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SigningKeyRecord {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let stored = StoredSigningKey::deserialize(deserializer)?;
        let bytes = hex::decode(&stored.key_hex).map_err(D::Error::custom)?;
        Ok(Self {
            id: stored.id,
            created_at: stored.created_at,
            key: SigningKey::new(bytes).map_err(D::Error::custom)?,
            drops_previous: stored.drops_previous,
        })
    }
}

/// A JWT issued by get-access-token: the bulk of the audit trail, kept as
/// plain values (a few ids and a time) so that a store can write it
/// compactly ([`crate::Store::append_jwt_issued`]). As an [`AuditEvent`] it
/// reads `api <client>`, `jwt.issue`, `jti <jti> user <u> merchant <m>
/// token <id>` ([`JwtIssued::to_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtIssued {
    /// The token's `iat`.
    pub at: UnixTime,
    /// The client, as trusted proxies report it.
    pub client: std::net::IpAddr,
    /// The token's `jti`.
    pub jti: Jti,
    /// The user it was issued to.
    pub user_id: u64,
    /// The merchant it grants access to.
    pub merchant_id: u64,
    /// The static token that bought it, by its public id.
    pub token_id: TokenId,
}

impl JwtIssued {
    /// The event as the trail shows it, at position `seq`.
    ///
    /// ```
    /// use stamps_core::Jti;
    /// use stamps_store::JwtIssued;
    ///
    /// let issued = JwtIssued {
    ///     at: 1_657_246_216,
    ///     client: "203.0.113.7".parse()?,
    ///     jti: Jti::from_bytes([0xab; 16]),
    ///     user_id: 5870,
    ///     merchant_id: 1,
    ///     token_id: "0123456789abcdef".parse()?,
    /// };
    /// let event = issued.to_event(7);
    /// assert_eq!((event.seq, event.actor.as_str(), event.action.as_str()), (7, "api 203.0.113.7", "jwt.issue"));
    /// assert!(event.subject.ends_with("user 5870 merchant 1 token 0123456789abcdef"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_event(&self, seq: u64) -> AuditEvent {
        let Self {
            at,
            client,
            jti,
            user_id,
            merchant_id,
            token_id,
        } = self;
        AuditEvent {
            seq,
            at: *at,
            actor: format!("api {client}"),
            action: "jwt.issue".to_owned(),
            subject: format!("jti {jti} user {user_id} merchant {merchant_id} token {token_id}"),
        }
    }
}

/// What [`crate::Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSummary {
    /// JWT revocations whose tokens have all expired.
    pub revocations: usize,
    /// Signing keys whose tokens have all expired.
    pub keys: usize,
}

/// One entry of the audit trail: who did what to what, and when. Never a
/// secret: tokens are named by their public id or `jti`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Position in the trail, assigned by the store (ignored on append).
    #[serde(default)]
    pub seq: u64,
    /// When, in seconds since the epoch.
    pub at: UnixTime,
    /// Who: `stamps-admin uid=0 (root)`, or `api 203.0.113.7` for a request.
    pub actor: String,
    /// What, as a stable word: `token.create`, `jwt.issue`, `key.rotate`...
    pub action: String,
    /// To what: `token 0123456789abcdef`, `user 5870`, `jti ...`.
    pub subject: String,
}

impl AuditEvent {
    /// An event at `at` (the store assigns `seq`).
    pub fn new(
        at: UnixTime,
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            seq: 0,
            at,
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
        }
    }

    /// Checks the fields are short printable text (the trail is read by
    /// people and scripts).
    pub fn validate(&self) -> Result<()> {
        validate_text("actor", &self.actor)?;
        validate_text("action", &self.action)?;
        validate_text("subject", &self.subject)
    }
}
