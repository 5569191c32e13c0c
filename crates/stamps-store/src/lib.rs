//! stamps-store: merchants, users and argon2-hashed static tokens on an
//! embedded sled database.
//!
//! Not built yet: this crate is filled by the store issue. It holds no code
//! so that nothing pretends to work.
#![deny(missing_docs)]
