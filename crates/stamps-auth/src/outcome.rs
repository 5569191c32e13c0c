//! What an authentication attempt was and how it ended: the scheme of the
//! credential and the reason it was accepted or refused, as the metrics
//! count them (`scheme` and `reason` labels) and the logs name them.

/// The credential scheme of an authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `Authorization: Bearer <JWT>`.
    Jwt,
    /// A static token (`Authorization: Token ...`, or get-access-token).
    Static,
}

impl Scheme {
    /// Both schemes, in the order of their metric series.
    pub const ALL: [Scheme; 2] = [Scheme::Jwt, Scheme::Static];

    /// The scheme a header's bytes name by their first word: `Bearer`
    /// (any case) is a JWT, anything else a static token. For a header
    /// that is not UTF-8, which cannot be parsed further.
    pub(crate) fn of_bytes(bytes: &[u8]) -> Scheme {
        match bytes.trim_ascii_start().get(..6) {
            Some(word) if word.eq_ignore_ascii_case(b"bearer") => Scheme::Jwt,
            _ => Scheme::Static,
        }
    }

    /// The `scheme` label value.
    pub const fn label(self) -> &'static str {
        match self {
            Scheme::Jwt => "jwt",
            Scheme::Static => "static",
        }
    }
}

/// The outcome of an authentication attempt (the `reason` label). Clients
/// see one 401 for every refusal; the reason is for operators only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthReason {
    /// Accepted.
    Ok,
    /// Malformed, badly signed, unknown id, wrong secret.
    Invalid,
    /// A correctly signed JWT past its expiry.
    Expired,
    /// A revoked static token, or a JWT a revocation covers.
    Revoked,
    /// A credential of a disabled (or unknown) user or merchant.
    Disabled,
    /// Refused with 429: the address or token id failed too often.
    Throttled,
    /// The store could not answer (503) or something else failed (500).
    Unavailable,
}

impl AuthReason {
    /// Every reason, in the order of their metric series.
    pub const ALL: [AuthReason; 7] = [
        AuthReason::Ok,
        AuthReason::Invalid,
        AuthReason::Expired,
        AuthReason::Revoked,
        AuthReason::Disabled,
        AuthReason::Throttled,
        AuthReason::Unavailable,
    ];

    /// The `reason` label value.
    pub const fn label(self) -> &'static str {
        match self {
            AuthReason::Ok => "ok",
            AuthReason::Invalid => "invalid",
            AuthReason::Expired => "expired",
            AuthReason::Revoked => "revoked",
            AuthReason::Disabled => "disabled",
            AuthReason::Throttled => "throttled",
            AuthReason::Unavailable => "unavailable",
        }
    }
}
