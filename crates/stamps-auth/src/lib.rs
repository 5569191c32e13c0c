//! stamps-auth: the authentication of stamps, with no HTTP in it.
//!
//! How a server decides on a credential, what it keeps to decide, and what
//! it records when it issues one, independent of the web framework that
//! carries them:
//!
//! * [`Authenticator`] is the one rule "is this credential accepted":
//!   [`Authenticator::authenticate`] takes an `Authorization` header's
//!   value ([`Credentials`]) and gives a [`Principal`] or an [`AuthError`];
//!   [`Authenticator::verify_bearer`] is verify-token's and
//!   [`Authenticator::exchange`] get-access-token's one call. Each outcome
//!   is reported to an [`AuthObserver`] (metrics) under a [`Scheme`] and an
//!   [`AuthReason`].
//! * [`LiveState`] and [`ObservedStore`] keep accounts, JWT revocations and
//!   rotated signing keys in memory, in step with every change made to the
//!   store through it; [`Follower`] applies the changes other replicas
//!   make (a [`stamps_store::ChangeFeed`]).
//! * [`StaticTokenCache`] remembers verified static tokens (and refused
//!   ones) keyed by an HMAC of their text, so argon2 runs once per token.
//! * [`Throttle`] limits failed authentication per client address and per
//!   token id; [`IssueQuota`] bounds the JWTs one static token obtains.
//!   Both refuse with [`Throttled`], which the HTTP layer answers as 429.
//! * [`HashTimer`] paces the refusal of unknown token ids like a hash.
//! * [`LastUse`] notes each static token's last successful use, written
//!   to the store in batches (`last_used_at`).
//! * [`AuditTrail`] records every JWT issued, off the request path, and
//!   keeps the trail to its retention ([`AuditPolicy`]).
//!
//! stamps-http's extractors and handlers are thin on these; a Rust service
//! could do the same with another framework.
#![deny(missing_docs)]

mod audit;
mod authenticator;
mod cache;
mod credentials;
mod error;
mod follow;
mod hash_timer;
mod last_use;
mod live;
mod observer;
mod outcome;
mod quota;
mod throttle;

/// A map looked up on every request whose keys are records that exist
/// (account ids, the ids of proven tokens): foldhash, a few instructions
/// a lookup where SipHash took about 150 (callgrind). Those keys are the
/// operator's, not an attacker's choice, so flooding one bucket is no
/// threat here.
pub(crate) type RecordMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use audit::{AUDIT_BACKLOG, AuditTrail, AuditWriter, JwtIssued, REPORT_EVERY};
pub use authenticator::{
    AccessRequest, Authenticator, Principal, Proof, QUEUE_PER_PERMIT, STORE_DEADLINE,
};
pub use cache::{CachedToken, MAX_AGE_IDLE_TIMES, RefusedToken, StaticTokenCache};
pub use credentials::{Credentials, MalformedCredentials};
pub use error::AuthError;
pub use follow::{Follower, POLL_INTERVAL};
pub use hash_timer::HashTimer;
pub use last_use::{LAST_USE_FLUSH_EVERY, LastUse};
pub use live::{JwtRefusal, LiveMerchant, LiveState, ObservedStore};
pub use observer::AuthObserver;
pub use outcome::{AuthReason, Scheme};
pub use quota::IssueQuota;
pub use stamps_config::AuditPolicy;
pub use throttle::{FailureLimiter, PROVEN_FOR, TRACKED_KEYS, Throttle, Throttled, address_key};
