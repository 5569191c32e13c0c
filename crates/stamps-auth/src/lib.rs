//! stamps-auth: the authentication state of stamps, with no HTTP in it.
//!
//! What a server keeps to decide on a credential, and what it records when
//! it issues one, independent of the web framework that carries them:
//!
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
//! * [`AuditTrail`] records every JWT issued, off the request path, and
//!   keeps the trail to its retention ([`AuditPolicy`]).
//!
//! stamps-http builds its `Authenticator` and handlers on these; a Rust
//! service could do the same with another framework.
#![deny(missing_docs)]

mod audit;
mod cache;
mod follow;
mod hash_timer;
mod live;
mod quota;
mod throttle;

pub use audit::{AUDIT_BACKLOG, AuditTrail, AuditWriter, JwtIssued, REPORT_EVERY};
pub use cache::{CachedToken, MAX_AGE_IDLE_TIMES, RefusedToken, StaticTokenCache};
pub use follow::{Follower, POLL_INTERVAL};
pub use hash_timer::HashTimer;
pub use live::{JwtRefusal, LiveMerchant, LiveState, ObservedStore};
pub use quota::IssueQuota;
pub use stamps_config::AuditPolicy;
pub use throttle::{FailureLimiter, PROVEN_FOR, TRACKED_KEYS, Throttle, Throttled, address_key};
