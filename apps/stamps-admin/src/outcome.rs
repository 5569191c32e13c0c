//! What a command did: the value [`crate::commands`] produces and
//! [`crate::output`] shows, so neither of the two reaches into the other.

use std::path::PathBuf;

use stamps_store::{
    Account, AccountKind, AuditEvent, IssuedToken, JwtRevocation, KeyInfo, SnapshotSummary,
    TokenRecord,
};

use serde::Serialize;

/// What a command did, for [`crate::output::render`] to show.
#[derive(Debug)]
pub enum Outcome {
    /// One merchant or user, as it now is.
    Account(Account),
    /// Every merchant or every user.
    Accounts(AccountKind, Vec<Account>),
    /// One token, as it now is.
    Token(TokenRecord),
    /// A list of tokens.
    Tokens(Vec<TokenRecord>),
    /// A token just created, with the only copy of its secret.
    Issued(IssuedToken),
    /// What an import loaded.
    Imported(SnapshotSummary),
    /// A JWT revocation just made.
    Revoked(JwtRevocation),
    /// A signing key just made.
    KeyRotated(KeyInfo),
    /// What `jwt inspect` found.
    Inspected(Inspection),
    /// What `token check` found.
    Checked(TokenStatus),
    /// Audit events, oldest first.
    Audit(Vec<AuditEvent>),
    /// What an export wrote, and to which file (`None`: stdout, where the
    /// export itself is the output).
    Exported {
        /// The counts of records written.
        summary: SnapshotSummary,
        /// The file written, if not stdout.
        file: Option<PathBuf>,
    },
}

/// What `jwt inspect` found.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Whether the server would accept the token now.
    pub valid: bool,
    /// Why (`valid` when it is).
    pub reason: String,
    /// The decoded header, if it decodes.
    pub header: Option<serde_json::Value>,
    /// The decoded payload, if it decodes (shown also when not valid).
    pub claims: Option<serde_json::Value>,
}

/// What `token check` found.
#[derive(Debug, Serialize)]
pub struct TokenStatus {
    /// The token's public id, when it has the static token format.
    pub id: Option<String>,
    /// What the token is now.
    pub status: TokenState,
    /// Whether `--revoke` revoked it now.
    pub revoked_now: bool,
}

/// What `token check` says a static token is (written in snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Its secret matches, it is neither revoked nor expired, its user and
    /// merchant are active.
    Live,
    /// Revoked.
    Revoked,
    /// Past its expiry (its secret is right).
    Expired,
    /// Its id exists; the secret given is not its secret.
    WrongSecret,
    /// No token has its id.
    Unknown,
    /// Its user is disabled.
    UserDisabled,
    /// Its merchant is disabled.
    MerchantDisabled,
    /// Not a static token at all.
    Malformed,
}

impl TokenState {
    /// The state as one word: `live`, `wrong_secret`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenState::Live => "live",
            TokenState::Revoked => "revoked",
            TokenState::Expired => "expired",
            TokenState::WrongSecret => "wrong_secret",
            TokenState::Unknown => "unknown",
            TokenState::UserDisabled => "user_disabled",
            TokenState::MerchantDisabled => "merchant_disabled",
            TokenState::Malformed => "malformed",
        }
    }
}
