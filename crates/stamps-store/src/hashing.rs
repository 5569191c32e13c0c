//! argon2id hashing of static token secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use stamps_core::TokenSecret;

use crate::error::{Result, StoreError};

/// OWASP's argon2id parameters: 19 MiB of memory, 2 passes, 1 lane.
pub const OWASP_MEMORY_KIB: u32 = 19_456;
/// See [`OWASP_MEMORY_KIB`].
pub const OWASP_ITERATIONS: u32 = 2;
/// See [`OWASP_MEMORY_KIB`].
pub const OWASP_PARALLELISM: u32 = 1;

/// Hashes and verifies secrets with argon2id.
///
/// Hashes are PHC strings that carry their parameters, so a hash made under
/// older parameters still verifies, and [`SecretHasher::needs_rehash`] tells
/// when to replace it.
///
/// ```
/// use stamps_core::StaticToken;
/// use stamps_store::SecretHasher;
///
/// let hasher = SecretHasher::owasp();
/// let token = StaticToken::generate();
/// let hash = hasher.hash(token.secret())?;
/// assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
/// assert!(hasher.verify(&hash, token.secret()));
/// assert!(!hasher.verify(&hash, StaticToken::generate().secret()));
/// # Ok::<(), stamps_store::StoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SecretHasher {
    params: Params,
}

impl SecretHasher {
    /// The production hasher, with OWASP's parameters.
    pub fn owasp() -> Self {
        Self::with_params(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM).unwrap_or_else(
            |_| Self {
                params: Params::default(),
            },
        )
    }

    /// A hasher with other parameters (memory in KiB, passes, lanes).
    pub fn with_params(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| StoreError::Hash(e.to_string()))?;
        Ok(Self { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes a secret with a fresh random salt.
    pub fn hash(&self, secret: &TokenSecret) -> Result<String> {
        self.hash_text(secret.expose_secret())
    }

    /// Hashes any secret text (an imported token's whole text) with a
    /// fresh random salt.
    pub fn hash_text(&self, secret: &str) -> Result<String> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Hash(e.to_string()))?;
        self.argon2()
            .hash_password(secret.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| StoreError::Hash(e.to_string()))
    }

    /// True when `secret` matches the PHC string `hash` (under the
    /// parameters written in the hash). The comparison is constant-time.
    pub fn verify(&self, hash: &str, secret: &TokenSecret) -> bool {
        self.verify_text(hash, secret.expose_secret())
    }

    /// [`SecretHasher::verify`] for any secret text.
    pub fn verify_text(&self, hash: &str, secret: &str) -> bool {
        PasswordHash::new(hash).is_ok_and(|parsed| {
            self.argon2()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
    }

    /// True when `hash` was made with other parameters than this hasher's.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return true;
        };
        let same_params = Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == self.params.m_cost()
                && p.t_cost() == self.params.t_cost()
                && p.p_cost() == self.params.p_cost()
        });
        parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed.version != Some(Version::V0x13.into())
            || !same_params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_core::StaticToken;

    #[test]
    fn production_parameters_are_owasps() {
        let hasher = SecretHasher::owasp();
        assert_eq!(hasher.params.m_cost(), 19_456);
        assert_eq!(hasher.params.t_cost(), 2);
        assert_eq!(hasher.params.p_cost(), 1);
    }

    #[test]
    fn hashes_are_salted_and_never_contain_the_secret() {
        let hasher = SecretHasher::owasp();
        let token = StaticToken::generate();
        let a = hasher.hash(token.secret()).unwrap();
        let b = hasher.hash(token.secret()).unwrap();
        assert_ne!(a, b);
        assert!(!a.contains(token.secret().expose_secret()));
        assert!(hasher.verify(&a, token.secret()) && hasher.verify(&b, token.secret()));
        assert!(!hasher.needs_rehash(&a));
    }

    #[test]
    fn old_parameters_still_verify_and_ask_for_a_rehash() {
        let weak = SecretHasher::with_params(8, 1, 1).unwrap();
        let token = StaticToken::generate();
        let old = weak.hash(token.secret()).unwrap();
        let current = SecretHasher::owasp();
        assert!(current.verify(&old, token.secret()));
        assert!(current.needs_rehash(&old));
        assert!(!current.verify("not a phc string", token.secret()));
        assert!(current.needs_rehash("not a phc string"));
    }
}
