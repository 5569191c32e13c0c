//! stamps-http: the actix-web handlers of the Stamps API.
//!
//! Not built yet: this crate is filled by the server issue. It holds no code
//! so that nothing pretends to work.
#![deny(missing_docs)]
