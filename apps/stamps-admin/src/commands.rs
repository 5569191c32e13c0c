//! Runs a parsed command against a [`Store`].

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use stamps_core::{TOKEN_PREFIX, TokenId};
use stamps_store::{
    AccountKind, JwtRevocationTarget, RemoteStore, Snapshot, Store, StoreError, TokenFilter,
    TokenImport, TokenRecord, admin_socket_path,
};
use stamps_store_sled::ResilientStore;

use stamps_config::{Settings, StoreSettings, existing_lookup_key};
use stamps_core::ExposeSecret;
use stamps_store_postgres::PgStore;

use crate::audit_trail::audit;
use crate::cli::{
    AccountCommand, Cli, Command, JwtCommand, KeyCommand, StoreLocation, TokenCommand,
};
use crate::error::AdminError;
use crate::outcome::{Outcome, TokenState};
use crate::output;
use crate::{args, jwt_inspect, location, token_check, token_import};

/// Runs the command line's command and prints its outcome on `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), AdminError> {
    // These need no store (see `Command::needs_store`).
    match &cli.command {
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write
            // (a closed pipe), and nothing here may panic.
            let mut script = Vec::new();
            clap_complete::generate(
                *shell,
                &mut crate::cli::command(),
                "stamps-admin",
                &mut script,
            );
            return out
                .write_all(&script)
                .and_then(|()| out.flush())
                .map_err(AdminError::io("cannot write to stdout"));
        }
        Command::Man => {
            return clap_mangen::Man::new(crate::cli::command())
                .render(out)
                .map_err(AdminError::io("cannot write to stdout"));
        }
        _ => {}
    }
    let location = cli.store.location().ok_or(AdminError::Invalid(
        "say which store: --data-dir DIR or --config FILE".into(),
    ))?;
    let (store, outcome) = match &cli.command {
        Command::Import { file } => {
            // Read and validate the whole export before touching the store.
            let snapshot = read_export(file)?;
            let store = open_store(&location)?;
            let summary = store.restore(&snapshot)?;
            audit(store.as_ref(), "import", output::counts(&summary));
            (store, Outcome::Imported(summary))
        }
        command => {
            let store = open_store(&location)?;
            let outcome = execute(store.as_ref(), &location, command, out)?;
            (store, outcome)
        }
    };
    match output::render(&outcome, cli.json, out) {
        // The report is out; the exit status tells scripts the verdict.
        Ok(()) => match &outcome {
            Outcome::Inspected(i) if !i.valid => Err(AdminError::NotValid(i.reason.clone())),
            Outcome::Checked(c) if c.status != TokenState::Live => {
                Err(AdminError::NotValid(c.status.as_str().replace('_', " ")))
            }
            _ => Ok(()),
        },
        Err(source) => {
            // A token nobody saw must not stay usable: revoke it.
            let mut context = "cannot write to stdout".to_owned();
            if let Outcome::Issued(issued) = &outcome {
                let id = issued.record.id;
                context = match store.revoke_token(&id) {
                    Ok(_) => {
                        format!("{context} (token {id} was revoked, since it could not be shown)")
                    }
                    Err(e) => format!("{context} (token {id} was never shown; revoke it: {e})"),
                };
            }
            Err(AdminError::Io { context, source })
        }
    }
}

/// Opens the store a command line names.
///
/// A server running on the data directory holds its store open (sled
/// allows one process per database), so the store is reached through the
/// server's admin socket (`<data dir>/admin.sock`) when one listens there;
/// a change made that way is in the running server at once. With no
/// server (no socket, or the stale one of a server that crashed) the store
/// is opened directly. A store held open by a process without an admin
/// socket gives [`stamps_store::StoreError::Locked`], at once.
///
/// A PostgreSQL store (`--store-url`, or a configuration naming one) is
/// opened directly: the servers follow its change log, so a change made
/// here reaches every replica within a second.
pub fn open_store(location: &StoreLocation) -> Result<Box<dyn Store>, AdminError> {
    let dir = match location {
        StoreLocation::DataDir(dir) => dir.clone(),
        StoreLocation::Postgres(url) => return Ok(Box::new(PgStore::open(&url.0)?)),
        StoreLocation::Config(file) => {
            let settings = Settings::load(Some(file))?;
            if let StoreSettings::Postgres { url } = &settings.store {
                return Ok(Box::new(PgStore::open(url.expose_secret())?));
            }
            settings.data_dir
        }
    };
    if let Some(remote) = RemoteStore::connect(&admin_socket_path(&dir))? {
        return Ok(Box::new(remote));
    }
    // Refuses writes below the free-space reserve, as the server does.
    Ok(Box::new(ResilientStore::open(&dir)?))
}

/// Runs one command (but `import`, which [`run`] handles) against `store`.
/// Only `export` writes to `out` itself: the export is its output.
pub fn execute(
    store: &dyn Store,
    location: &StoreLocation,
    command: &Command,
    out: &mut dyn Write,
) -> Result<Outcome, AdminError> {
    match command {
        Command::Merchant(command) => account(store, AccountKind::Merchant, command),
        Command::User(command) => account(store, AccountKind::User, command),
        Command::Token(command) => token(store, location, command),
        Command::Jwt(command) => jwt(store, location, command),
        &Command::Key(KeyCommand::Rotate { drop_previous }) => {
            let key = store.rotate_signing_key_with(drop_previous)?;
            let subject = if drop_previous {
                format!("key {}, every earlier key dropped", key.id)
            } else {
                format!("key {}", key.id)
            };
            audit(store, "key.rotate", subject);
            Ok(Outcome::KeyRotated(key))
        }
        Command::Audit { since } => {
            let since = since.as_deref().map(args::parse_since).transpose()?;
            Ok(Outcome::Audit(store.audit(since.unwrap_or(0))?))
        }
        Command::Export { output } => export(store, output.as_deref(), out),
        Command::Import { file } => {
            let summary = store.restore(&read_export(file)?)?;
            audit(store, "import", output::counts(&summary));
            Ok(Outcome::Imported(summary))
        }
        Command::Completions { .. } | Command::Man => Err(AdminError::Invalid(
            "completions and man need no store; run them on their own".into(),
        )),
    }
}

fn jwt(
    store: &dyn Store,
    location: &StoreLocation,
    command: &JwtCommand,
) -> Result<Outcome, AdminError> {
    let target = match command {
        JwtCommand::Inspect { token } => {
            let token = args::read_token_arg(token)?;
            return Ok(Outcome::Inspected(jwt_inspect::inspect(
                store, location, &token,
            )?));
        }
        JwtCommand::Revoke { jti } => JwtRevocationTarget::Jti {
            jti: args::parse_jti(jti)?,
        },
        JwtCommand::RevokeAll { user: Some(id), .. } => JwtRevocationTarget::User { id: *id },
        JwtCommand::RevokeAll {
            merchant: Some(id), ..
        } => JwtRevocationTarget::Merchant { id: *id },
        JwtCommand::RevokeAll { .. } => {
            return Err(AdminError::Invalid("give --user U or --merchant M".into()));
        }
    };
    let revocation = store.revoke_jwts(target)?;
    let action = match target {
        JwtRevocationTarget::Jti { .. } => "jwt.revoke",
        _ => "jwt.revoke_all",
    };
    audit(store, action, output::describe(&revocation));
    Ok(Outcome::Revoked(revocation))
}

/// One audit event per imported token, by its public id.
fn audit_imported(store: &dyn Store, records: &[TokenRecord]) {
    for t in records {
        let subject = format!(
            "token {} user {} merchant {} (imported)",
            t.id, t.user_id, t.merchant_id
        );
        audit(store, "token.import", subject);
    }
}

/// Merchants and users alike.
fn account(
    store: &dyn Store,
    kind: AccountKind,
    command: &AccountCommand,
) -> Result<Outcome, AdminError> {
    let (account, action) = match command {
        AccountCommand::Add { name, id } => (store.add_account(kind, name, *id)?, "add"),
        AccountCommand::List => return Ok(Outcome::Accounts(kind, store.accounts(kind)?)),
        AccountCommand::Disable { id } => (store.set_account_active(kind, *id, false)?, "disable"),
        AccountCommand::Enable { id } => (store.set_account_active(kind, *id, true)?, "enable"),
    };
    let k = kind.as_str();
    audit(
        store,
        &format!("{k}.{action}"),
        format!("{k} {}", account.id),
    );
    Ok(Outcome::Account(account))
}

fn token(
    store: &dyn Store,
    location: &StoreLocation,
    command: &TokenCommand,
) -> Result<Outcome, AdminError> {
    Ok(match command {
        TokenCommand::Create {
            owner,
            expires_in,
            expires_at,
        } => {
            let expires_at =
                expires_at.or_else(|| expires_in.map(|d| store.now().saturating_add(d.as_secs())));
            let issued = store.create_expiring_token(
                owner.user,
                owner.merchant,
                owner.label.as_deref(),
                expires_at,
            )?;
            let t = &issued.record;
            let subject = format!(
                "token {} user {} merchant {}",
                t.id, t.user_id, t.merchant_id
            );
            audit(store, "token.create", subject);
            Outcome::Issued(issued)
        }
        TokenCommand::Import { owner, expires_at } => {
            let text = token_import::read_one(io::stdin().lock())?;
            let key = token_import::key(&location::settings(location)?)?;
            let import = TokenImport {
                text,
                user_id: owner.user,
                merchant_id: owner.merchant,
                label: owner.label.clone(),
                expires_at: *expires_at,
            };
            let mut records =
                token_import::import(store, &key, vec![(1, import)]).map_err(|e| match e {
                    // One token: its problem, without a line number.
                    AdminError::Store(StoreError::InvalidImport { reason, .. }) => {
                        AdminError::Invalid(reason)
                    }
                    other => other,
                })?;
            audit_imported(store, &records);
            Outcome::Token(records.remove(0))
        }
        TokenCommand::ImportFile { file } => {
            // The whole file read and parsed before the store is touched.
            let imports = token_import::read_file(file)?;
            let key = token_import::key(&location::settings(location)?)?;
            let records = token_import::import(store, &key, imports)?;
            audit_imported(store, &records);
            Outcome::Tokens(records)
        }
        TokenCommand::List {
            user,
            merchant,
            unused_since,
        } => {
            let mut tokens = store.tokens(TokenFilter {
                user_id: *user,
                merchant_id: *merchant,
            })?;
            if let Some(unused) = unused_since {
                let now = store.now();
                let before = now.saturating_sub(unused.as_secs());
                tokens.retain(|t| {
                    !t.revoked
                        && !t.is_expired(now)
                        && t.last_used_at.unwrap_or(t.created_at) < before
                });
            }
            Outcome::Tokens(tokens)
        }
        TokenCommand::Revoke { id } => {
            let record = store.revoke_token(&parse_token_id(id)?)?;
            audit(store, "token.revoke", format!("token {}", record.id));
            Outcome::Token(record)
        }
        TokenCommand::Check { token, revoke } => {
            let text = args::read_token_arg(token)?;
            // Needed only for an imported token's text; never made here.
            let lookup = if text.starts_with(TOKEN_PREFIX) {
                None
            } else {
                existing_lookup_key(&location::settings(location)?)?.map(|found| found.key)
            };
            let status = token_check::check_token(store, &text, lookup.as_ref(), *revoke)?;
            if let (true, Some(id)) = (status.revoked_now, &status.id) {
                audit(
                    store,
                    "token.revoke",
                    format!("token {id} (token check: leaked)"),
                );
            }
            Outcome::Checked(status)
        }
    })
}

/// Parses a token id given on the command line. The refusal repeats the
/// input only when it cannot be (part of) a secret: a whole token holds
/// one, and so may anything longer than an id.
fn parse_token_id(text: &str) -> Result<TokenId, AdminError> {
    text.parse().map_err(|_| {
        let may_hold_secret = text.contains(TOKEN_PREFIX) || text.chars().count() > 24;
        AdminError::InvalidTokenId((!may_hold_secret).then(|| format!("{text:?}")))
    })
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn export(
    store: &dyn Store,
    file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<Outcome, AdminError> {
    let snapshot = store.snapshot()?;
    let file = file.filter(|f| !is_stdio(f));
    match file {
        None => {
            let mut out = BufWriter::new(out);
            snapshot
                .write_jsonl(&mut out)
                .map_err(AdminError::io("cannot write the export to stdout"))?;
        }
        Some(path) => write_private_file(path, |w| snapshot.write_jsonl(w))?,
    }
    Ok(Outcome::Exported {
        summary: snapshot.summary(),
        file: file.map(Path::to_path_buf),
    })
}

/// Reads and validates an export from a file, or stdin for `-`.
fn read_export(file: &Path) -> Result<Snapshot, AdminError> {
    if is_stdio(file) {
        return Ok(Snapshot::read_jsonl(io::stdin().lock())?);
    }
    let reader =
        File::open(file).map_err(AdminError::io(format!("cannot read {}", file.display())))?;
    Ok(Snapshot::read_jsonl(BufReader::new(reader))?)
}

/// Writes `path` with mode 0600, complete or not at all: the contents go to
/// a new private temporary file beside it (tempfile creates them 0600),
/// which is then renamed over `path`.
fn write_private_file(
    path: &Path,
    contents: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), AdminError> {
    let fail = || AdminError::io(format!("cannot write {}", path.display()));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(fail())?;
    let (file, temp_path) = temp.into_parts();
    let mut writer = BufWriter::new(file);
    contents(&mut writer).map_err(fail())?;
    let file = writer.into_inner().map_err(|e| fail()(e.into_error()))?;
    file.sync_all().map_err(fail())?;
    temp_path.persist(path).map_err(|e| fail()(e.error))?;
    // Make the rename itself durable; the file is complete either way.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_checked_without_echoing_secrets() {
        assert!(parse_token_id("0123456789abcdef").is_ok());
        let shown = |text: &str| match parse_token_id(text) {
            Err(e @ AdminError::InvalidTokenId(_)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(shown("0123456789ABCDEF").contains("\"0123456789ABCDEF\" is not a valid token id"));
        assert!(shown("bad\nid").contains("\"bad\\nid\""));
        let token = stamps_core::StaticToken::generate();
        let secret = token.secret().expose_secret();
        for text in [
            ExposeSecret::expose_secret(&token.to_secret_string()).to_owned(),
            secret.to_owned(),
        ] {
            let message = shown(&text);
            assert!(!message.contains(secret), "{message}");
            assert!(message.contains("not a valid token id"), "{message}");
        }
    }

    #[test]
    fn private_files_replace_the_target_whole() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let failed = write_private_file(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");

        write_private_file(&path, |w| w.write_all(b"new\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.jsonl"]);
    }
}
