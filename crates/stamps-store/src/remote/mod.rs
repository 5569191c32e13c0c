//! The local admin channel: a [`Store`] served over a Unix socket.
//!
//! sled lets one process at a time open a database, so while
//! `stamps-server` runs on a data directory the admin command line cannot
//! open the store itself. The server instead listens on
//! `<data dir>/admin.sock` ([`admin_socket_path`]) and the command line
//! talks to it with a [`RemoteStore`]; with no server running it opens the
//! store directly. Nothing reachable from the network administers the
//! server: the socket is a file with mode 0600 in the (0700) data
//! directory, so file permissions are the access control.
//!
//! The protocol is described on [`Request`]; [`AdminSocket`] has an
//! example.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod client;
mod protocol;
mod server;
mod socket;

pub use client::RemoteStore;
pub use protocol::{Request, Response};
pub use server::{serve_connection, serve_connection_limited};
pub use socket::{AdminDown, AdminHealth, AdminShutdown, AdminSocket};

/// The name of the admin socket inside a data directory.
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";

/// The longest request or response line either side accepts, in bytes,
/// newline excluded (1 GiB).
pub const MAX_LINE_BYTES: usize = 1 << 30;

/// How long a [`RemoteStore`] waits on a silent server, and how long the
/// server waits on a silent client, before giving up (per read or write).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin socket of the data directory `data_dir`:
/// `<data_dir>/admin.sock`.
pub fn admin_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_SOCKET_FILE)
}

/// Reads one line, without its newline: `Ok(None)` at a clean end of the
/// stream, an `InvalidData` error for a line longer than `max` bytes (of
/// which at most `max + 1` are read), `UnexpectedEof` for a cut line.
fn read_line<R: BufRead>(reader: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    io::Read::take(&mut *reader, limit).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some(line));
    }
    if line.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {max} bytes"),
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended in the middle of a line",
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn lines_are_bounded() {
        let read = |input: &[u8], max| read_line(&mut &input[..], max);
        assert_eq!(read(b"", 4).unwrap(), None);
        assert_eq!(read(b"abcd\nrest", 4).unwrap(), Some(b"abcd".to_vec()));
        assert_eq!(
            read(b"abcde\n", 4).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            read(b"abcdefgh", 4).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            read(b"abc", 4).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
