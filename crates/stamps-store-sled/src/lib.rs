//! The embedded backend of stamps' store: [`SledStore`], a
//! [`stamps_store::Store`] on a sled 0.34 database in the data directory,
//! and [`ResilientStore`], the `SledStore` the server and the admin command
//! line use: it keeps a reserve of disk space that the audit trail cannot
//! use (so revocations still succeed on a full disk) and reopens sled after
//! a storage failure.
//!
//! One process at a time opens a data directory; while a server holds it,
//! the admin command line reaches it through the server's admin socket
//! (`stamps_store::RemoteStore`).
//!
//! # Example
//!
//! ```
//! use stamps_store::{AccountKind, Store, TokenCheck};
//! use stamps_store_sled::SledStore;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path())?;
//! store.add_account(AccountKind::Merchant, "My Merchant", Some(1))?;
//! store.add_account(AccountKind::User, "user5870", Some(5870))?;
//! let issued = store.create_token(5870, 1, Some("till 3"))?;
//! assert!(matches!(store.check_token(&issued.token)?, TokenCheck::Live(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod audit_codec;
mod data_dir;
mod error;
mod resilient;
mod sled_store;

pub use data_dir::check_data_dir_owner;
pub use resilient::{AUDIT_SPACE_RESERVE, DEFAULT_SPACE_RESERVE, REOPEN_INTERVAL, ResilientStore};
pub use sled_store::{SledStore, create_data_dir};
