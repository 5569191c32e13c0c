//! How a store connects: the URL's TLS settings taken out (`tls.rs`), the
//! timeouts and keepalives that make a silent database fail fast, and one
//! first connection whose error says what is wrong.

use std::time::Duration;

use postgres::Config;
use stamps_store::{Result, StoreError};

use crate::tls::{Tls, split_url};
use crate::{CONNECT_TIMEOUT, DEAD_PEER_TIMEOUT};

/// The client's configuration and TLS connector for `url`, after one
/// connection made with them (so that a bad address, login or certificate
/// fails here, clearly).
pub(crate) fn config_and_tls(url: &str) -> Result<(Config, Tls)> {
    // sslmode and sslrootcert are libpq's, not the client's: taken out.
    let settings = split_url(url)?;
    let tls = settings.connector()?;
    let mut config: Config = settings
        .url
        .parse()
        .map_err(|e: postgres::Error| StoreError::Backend(format!("invalid store.url: {e}")))?;
    config.ssl_mode(settings.client_mode());
    config.connect_timeout(CONNECT_TIMEOUT);
    // A database host that stops answering (rather than refusing) is
    // given up on within seconds, not the kernel's ~15 minutes: unsent
    // data times out, and idle connections are probed.
    config.tcp_user_timeout(DEAD_PEER_TIMEOUT);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(5));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    config.application_name("stamps");
    // One connection first: its error, with its causes (a certificate
    // that does not verify, a refused login), says what is wrong,
    // where the pool's would say only that it timed out.
    config.connect(tls.clone()).map_err(connect_error)?;
    Ok((config, tls))
}

/// A connection that could not be made, with its causes on one line
/// (never the URL: the client's errors do not hold it).
fn connect_error(e: postgres::Error) -> StoreError {
    let mut message = format!("the database is unreachable: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    StoreError::Backend(message.replace('\n', " "))
}
