//! Serving one connection: each request answered by the server's
//! store, within the line and time bounds.

use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde::Serialize;

use super::{ADMIN_TIMEOUT, MAX_LINE_BYTES, Request, Response, read_line};
use crate::Store;
use crate::error::{Result, StoreError};

/// Runs one request against `store` and encodes the answer line (without
/// its newline). An answer over `max_line` bytes is replaced by an error.
fn answer<S: Store + ?Sized>(store: &S, request: Request<'_>, max_line: usize) -> Vec<u8> {
    fn encode<T: Serialize>(result: Result<T>) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&Response::from(result))
    }
    let encoded = match request {
        Request::AddAccount { kind, name, id } => encode(store.add_account(kind, &name, id)),
        Request::Account { kind, id } => encode(store.account(kind, id)),
        Request::Accounts { kind } => encode(store.accounts(kind)),
        Request::SetAccountActive { kind, id, active } => {
            encode(store.set_account_active(kind, id, active))
        }
        Request::InsertTokens { records } => encode(store.insert_tokens(&records)),
        Request::RecordLastUsed { uses } => encode(store.record_last_used(&uses)),
        Request::ImportedToken { lookup } => encode(store.imported_token(&lookup)),
        Request::HasImportedTokens => encode(store.has_imported_tokens()),
        Request::Token { id } => encode(store.token(&id)),
        Request::Tokens { filter } => encode(store.tokens(filter)),
        Request::RevokeToken { id } => encode(store.revoke_token(&id)),
        Request::ReplaceTokenHash {
            id,
            old_hash,
            new_hash,
        } => encode(store.replace_token_hash(&id, &old_hash, &new_hash)),
        Request::Snapshot => encode(store.snapshot()),
        Request::Restore { snapshot } => encode(store.restore(&snapshot)),
        Request::RevokeJwts { target } => encode(store.revoke_jwts(target)),
        Request::JwtRevocations => encode(store.jwt_revocations()),
        Request::RotateSigningKey { drop_previous } => {
            encode(store.rotate_signing_key_with(drop_previous))
        }
        Request::SigningKeys => encode(store.signing_keys()),
        Request::Prune { expired_before } => encode(store.prune(expired_before)),
        Request::AppendAudit { events } => encode(store.append_audit(&events)),
        Request::Audit { since } => encode(store.audit(since)),
        Request::PruneAudit { before, max_events } => encode(store.prune_audit(before, max_events)),
    };
    match encoded {
        Ok(line) if line.len() <= max_line => line,
        Ok(line) => error_line(format!(
            "the answer is {} bytes, over the admin socket's limit of {max_line} bytes",
            line.len()
        )),
        Err(e) => error_line(format!("cannot encode the answer: {e}")),
    }
}

/// An error answer carrying [`StoreError::Backend`] with `reason`.
fn error_line(reason: String) -> Vec<u8> {
    let response: Response<()> = Response::Err(StoreError::Backend(reason));
    // An enum of strings always encodes; the fallback is never used.
    serde_json::to_vec(&response)
        .unwrap_or_else(|_| br#"{"err":{"backend":"admin socket error"}}"#.to_vec())
}

/// Serves one admin connection: reads [`Request`] lines from `stream` and
/// answers each against `store`, until the client closes its end.
///
/// A malformed request is answered with an error and the connection goes
/// on. A request line over [`MAX_LINE_BYTES`] is answered with an error,
/// then the connection is closed and an `InvalidData` error returned. A
/// client silent for [`ADMIN_TIMEOUT`] is dropped (a `WouldBlock` or
/// `TimedOut` error). Errors are the caller's to log; the store is
/// unaffected by them.
pub fn serve_connection<S: Store + ?Sized>(store: &S, stream: UnixStream) -> io::Result<()> {
    serve_connection_limited(store, stream, MAX_LINE_BYTES)
}

/// [`serve_connection`], refusing lines over `max_line` bytes.
pub fn serve_connection_limited<S: Store + ?Sized>(
    store: &S,
    stream: UnixStream,
    max_line: usize,
) -> io::Result<()> {
    stream.set_read_timeout(Some(ADMIN_TIMEOUT))?;
    stream.set_write_timeout(Some(ADMIN_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    loop {
        let (mut reply, outcome) = match read_line(&mut reader, max_line) {
            Ok(None) => return Ok(()),
            Ok(Some(line)) => match serde_json::from_slice::<Request<'_>>(&line) {
                Ok(request) => {
                    drop(line);
                    (answer(store, request, max_line), Ok(()))
                }
                Err(e) => (error_line(format!("malformed admin request: {e}")), Ok(())),
            },
            Err(e) if e.kind() == io::ErrorKind::InvalidData => (
                error_line(format!(
                    "admin request refused: longer than the admin socket's limit of {max_line} bytes"
                )),
                Err(e),
            ),
            Err(e) => return Err(e),
        };
        reply.push(b'\n');
        writer.write_all(&reply)?;
        writer.flush()?;
        outcome?;
    }
}
