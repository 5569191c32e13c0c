//! The command line: what `stamps-admin` accepts, and its help texts.
//!
//! Parsing only; [`crate::commands`] runs what was parsed.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use stamps_store::AccountKind;

const EXAMPLES: &str = "\
Examples:
  stamps-admin --data-dir ./stamps-data merchant add --name 'My Merchant' --id 1
  stamps-admin --data-dir ./stamps-data user add --name user5870 --id 5870
  stamps-admin --data-dir ./stamps-data token create --user 5870 --merchant 1 --label 'till 3'
  stamps-admin --data-dir ./stamps-data --json token list --user 5870";

/// Manages the merchants, users and static tokens of a stamps store.
#[derive(Debug, Parser)]
#[command(
    name = "stamps-admin",
    version,
    long_about = "Manages the merchants, users and static tokens of a stamps store.\n\n\
        Every command opens the store, does one thing, and prints the result: a \
        table, or with --json exactly one JSON document (an object for one \
        record, an array for a list). On failure it prints one line \
        `error: ...` on stderr, exits with status 1, and the store is unchanged.\n\n\
        It works the same whether stamps-server is running on the data directory \
        or not: while it runs, commands go through its admin socket \
        (DIR/admin.sock) and a change takes effect in it at once.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Where the store is.
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print exactly one JSON document instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Which store to open: `--data-dir DIR`, or `--config FILE` (the
/// server's own configuration); at most one, and one for every command that
/// uses a store. [`StoreArgs::location`] is what the rest of the program
/// sees.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct StoreArgs {
    /// The data directory of the store (the one stamps-server uses);
    /// created, with mode 0700, if it does not exist. A server running on
    /// it is reached through its admin socket, DIR/admin.sock.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The server's configuration file (STAMPS_... environment variables
    /// apply over it, as for the server): the store it names is used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A PostgreSQL store's URL (postgres://user@host/db), as the servers'
    /// store.url. With none of these options, STAMPS_STORE__URL is used if
    /// set: the environment, where `ps` does not show it, suits a URL with
    /// a password best.
    #[arg(long, value_name = "URL")]
    pub store_url: Option<String>,
}

/// The variable naming a PostgreSQL store when no option names a store
/// (the servers' `store.url`).
pub const STORE_URL_VAR: &str = "STAMPS_STORE__URL";

/// Where a store lives, once the command line has said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An embedded sled store in this data directory.
    DataDir(PathBuf),
    /// Whatever this server configuration file names.
    Config(PathBuf),
    /// A PostgreSQL database.
    Postgres(StoreUrl),
}

/// A store URL, which may hold a password: never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(pub String);

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreUrl(..)")
    }
}

impl StoreArgs {
    /// The store these arguments name, if they name one.
    pub fn location(&self) -> Option<StoreLocation> {
        match (&self.data_dir, &self.config, &self.store_url) {
            (_, Some(config), _) => Some(StoreLocation::Config(config.clone())),
            (Some(dir), None, _) => Some(StoreLocation::DataDir(dir.clone())),
            (None, None, Some(url)) => Some(StoreLocation::Postgres(StoreUrl(url.clone()))),
            // Read here, not by clap: a variable set for the servers must
            // not conflict with an explicit --data-dir or --config.
            (None, None, None) => std::env::var(STORE_URL_VAR)
                .ok()
                .filter(|url| !url.is_empty())
                .map(|url| StoreLocation::Postgres(StoreUrl(url))),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Adds, lists, disables and enables merchants.
    #[command(subcommand)]
    Merchant(AccountCommand),

    /// Adds, lists, disables and enables users.
    #[command(subcommand)]
    User(AccountCommand),

    /// Creates, lists and revokes static tokens.
    #[command(
        subcommand,
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data token create --user 5870 --merchant 1"
    )]
    Token(TokenCommand),

    /// Revokes and inspects access tokens (JWTs).
    #[command(
        subcommand,
        after_help = "Examples:\n  stamps-admin --data-dir ./stamps-data jwt revoke 6a0a1ec3e1b94b2c8ea2bd1f3fd94b43\n  \
            stamps-admin --data-dir ./stamps-data jwt revoke-all --user 5870\n  \
            echo \"$JWT\" | stamps-admin --data-dir ./stamps-data jwt inspect -"
    )]
    Jwt(JwtCommand),
    /// Rotates the JWT signing key.
    #[command(
        subcommand,
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data key rotate"
    )]
    Key(KeyCommand),
    /// Shows the audit trail: who issued, revoked, rotated or changed what.
    #[command(
        long_about = "Shows the audit trail, oldest first: every static token created or \
            revoked, every access token (JWT) issued, every JWT revocation, key rotation, \
            merchant and user change and import, with when, who (the admin's uid, or the \
            client address of an API request) and what. Never a secret.",
        after_help = "Examples:\n  stamps-admin --data-dir ./stamps-data audit --since 1h\n  \
            stamps-admin --data-dir ./stamps-data --json audit --since 2026-11-28T00:00:00Z"
    )]
    Audit {
        /// Only events from this time on: an RFC 3339 time
        /// (2026-11-28T09:00:00Z) or a duration back from now (30m, 1h, 7d).
        #[arg(long, value_name = "T")]
        since: Option<String>,
    },
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  stamps-admin completions bash > /etc/bash_completion.d/stamps-admin\n  \
            stamps-admin completions zsh > \"${fpath[1]}/_stamps-admin\""
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff), for `man -l -` or /usr/share/man/man1.
    #[command(after_help = "Example:\n  stamps-admin man | man -l -")]
    Man,
    /// Writes the whole store as JSON lines (hashes, never secrets).
    #[command(
        long_about = "Writes the whole store as JSON lines: a header line, then one line per \
            merchant, user and token. Tokens travel as their argon2id hashes; secrets \
            are never stored, so they are never exported. Signing keys are not part \
            of an export either.\n\n\
            The output is JSON lines whatever --json says. With --output FILE the \
            file is created with mode 0600 and appears complete or not at all \
            (written beside it, then renamed into place).",
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data export --output stamps-backup.jsonl"
    )]
    Export {
        /// Write to this file (mode 0600) instead of stdout; `-` is stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },

    /// Loads an export into a store that holds no record yet.
    #[command(
        long_about = "Loads an export (see `export`) into a store that holds no record yet: \
            all of it or, if anything in it is wrong, nothing. Refuses a store that \
            already holds records. Prints how many merchants, users and tokens it loaded.",
        after_help = "Example:\n  stamps-admin --data-dir ./new-stamps-data import stamps-backup.jsonl\n  \
            ssh old-host stamps-admin --data-dir /var/lib/stamps export | stamps-admin --data-dir ./stamps-data import -"
    )]
    Import {
        /// The export to load; `-` reads stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// What can be done to merchants and users alike. The help texts name the
/// kind: [`command`] fills them in.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Adds one.
    Add {
        /// The display name: 1 to 200 characters, no control characters.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The id to give it (1 or more); the next free one if omitted.
        #[arg(long, value_name = "N")]
        id: Option<u64>,
    },
    /// Lists them all.
    List,
    /// Disables one.
    Disable {
        /// The id.
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// Enables one.
    Enable {
        /// The id.
        #[arg(value_name = "ID")]
        id: u64,
    },
}

/// Whom a created or imported token is for, and its note.
#[derive(Debug, Args)]
pub struct TokenOwner {
    /// The id of the user the token is for.
    #[arg(long, value_name = "U")]
    pub user: u64,
    /// The id of the merchant it grants access to.
    #[arg(long, value_name = "M")]
    pub merchant: u64,
    /// A note, such as where the token is deployed (1 to 200 characters).
    #[arg(long, value_name = "L")]
    pub label: Option<String>,
}

/// What can be done to static tokens.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a static token for a user at a merchant, and shows it once.
    #[command(
        long_about = "Creates a static token for a user at a merchant. The token is printed \
            once, now: the store keeps only an argon2id hash of its secret, so it can \
            never be shown again. Its public id (the part after `stmp_`) names it in \
            `token list` and `token revoke`. It never expires, unless created with \
            --expires-in or --expires-at: from that instant on it is refused (401 \
            token_expired), everywhere, with no further command.",
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data token create --user 5870 --merchant 1 --label 'till 3'"
    )]
    Create {
        #[command(flatten)]
        owner: TokenOwner,
        /// Expires this long from now (90d, 12h, 30m); without it or
        /// --expires-at the token never expires.
        #[arg(long, value_name = "D", value_parser = crate::args::duration, conflicts_with = "expires_at")]
        expires_in: Option<std::time::Duration>,
        /// Expires at this RFC 3339 instant, any offset
        /// (2027-01-31T00:00:00Z, 2027-01-31T09:00:00+05:30).
        #[arg(long, value_name = "T", value_parser = crate::args::expires_at)]
        expires_at: Option<stamps_core::UnixTime>,
    },
    /// Imports one token that clients already hold; its text is read from stdin.
    #[command(
        long_about = "Imports one static token that clients of an existing deployment already \
            hold (a Django REST framework key, or any text of 16 to 256 printable ASCII \
            characters without whitespace that does not start with stmp_), so that they \
            need not be reconfigured. Its text is read from stdin, one line, never from the \
            command line (where ps and shell history would keep it). It is stored as an \
            argon2id hash and found by a keyed digest (the lookup key: tokens.lookup_secret, \
            or on the embedded store <data_dir>/token-lookup-key), given a public id, and \
            works as an issued token does. Prints the record, never the text.",
        after_help = "Example:\n  printf '%s\\n' \"$TOKEN\" | stamps-admin --data-dir ./stamps-data token import --user 5870 --merchant 1 --label 'till 3'"
    )]
    Import {
        #[command(flatten)]
        owner: TokenOwner,
        /// Expires at this RFC 3339 instant, any offset; without it, never.
        #[arg(long, value_name = "T", value_parser = crate::args::expires_at)]
        expires_at: Option<stamps_core::UnixTime>,
    },
    /// Imports many tokens from JSON lines, all or nothing.
    #[command(
        name = "import-file",
        long_about = "Imports the tokens of a file (or stdin, for -) of JSON lines \
            {\"token\", \"user_id\", \"merchant_id\", \"label\"?, \"expires_at\"?} (expires_at an \
            RFC 3339 instant), all or nothing: a bad line, a token given twice or already \
            stored, an unknown user or merchant is refused by its line number (never its \
            text), and nothing is imported. Prints the records, never the texts.",
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data --json token import-file tokens.jsonl"
    )]
    ImportFile {
        /// The JSON lines file, or - for stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Lists tokens, oldest first (never their secrets).
    #[command(
        long_about = "Lists tokens, oldest first: id, kind (issued or imported), user, \
            merchant, label, creation time, whether revoked, expiry and last use (the last \
            successful authentication, at most a minute stale). Never their secrets, which \
            the store does not have. --unused-since D lists the live ones nobody used for D \
            (last used, or created if never used, more than D ago): candidates to revoke.",
        after_help = "Examples:\n  stamps-admin --data-dir ./stamps-data token list --user 5870 --merchant 1\n  \
            stamps-admin --data-dir ./stamps-data token list --unused-since 90d"
    )]
    List {
        /// Only the tokens of this user.
        #[arg(long, value_name = "U")]
        user: Option<u64>,
        /// Only the tokens for this merchant.
        #[arg(long, value_name = "M")]
        merchant: Option<u64>,
        /// Only the live (not revoked, not expired) tokens not used for
        /// this long (90d, 12h): last used, or created, before then.
        #[arg(long, value_name = "D", value_parser = crate::args::duration)]
        unused_since: Option<std::time::Duration>,
    },
    /// Revokes a token for good; prints it, now revoked.
    #[command(
        long_about = "Revokes a token for good: it stops working at once, also on a running \
            server. Revoking a revoked token is not an error. Prints the token, now revoked.",
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data token revoke 0123456789abcdef"
    )]
    Revoke {
        /// The token's public id, as `token list` shows it (16 characters).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Tells whether a (leaked) static token is live; --revoke revokes it.
    #[command(
        long_about = "Tells whether a static token, found in a leak or by a secret scanner, is \
            live: prints its id and one status (live, revoked, expired, wrong_secret, \
            unknown, user_disabled, merchant_disabled, malformed). Exits 0 if it was live, 1 if not. \
            With --revoke a live token is revoked at once (also on a running server). Pass \
            `-` to read the token from stdin.",
        after_help = "Example:\n  echo \"$LEAKED\" | stamps-admin --data-dir ./stamps-data --json token check --revoke -"
    )]
    Check {
        /// The whole static token (stmp_...), or `-` to read it from stdin.
        #[arg(value_name = "TOKEN")]
        token: String,
        /// Revoke the token if it is live.
        #[arg(long)]
        revoke: bool,
    },
}

/// What can be done to access tokens (JWTs).
#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Revokes one access token by its `jti`, at once, also on a running server.
    #[command(
        long_about = "Revokes one access token (JWT) by its `jti` claim: a running server \
            refuses it at once, with no store read per request. The revocation is kept \
            until the token would have expired anyway, then pruned.",
        after_help = "Example:\n  stamps-admin --data-dir ./stamps-data jwt revoke 6a0a1ec3e1b94b2c8ea2bd1f3fd94b43"
    )]
    Revoke {
        /// The token's `jti`: 32 lowercase hexadecimal characters.
        #[arg(value_name = "JTI")]
        jti: String,
    },
    /// Revokes every access token of a user or merchant issued until now.
    #[command(
        long_about = "Revokes every access token (JWT) of a user, or for a merchant, issued \
            until now (this second included): a running server refuses them at once. \
            Tokens issued afterwards work (a token asked for within the same second is \
            issued from the next one). Static tokens are not affected: revoke them with \
            `token revoke`, or disable the user or merchant.",
        after_help = "Examples:\n  stamps-admin --data-dir ./stamps-data jwt revoke-all --user 5870\n  \
            stamps-admin --data-dir ./stamps-data jwt revoke-all --merchant 1"
    )]
    #[group(id = "whose", required = true, multiple = false)]
    RevokeAll {
        /// Every JWT of this user.
        #[arg(long, value_name = "U", group = "whose")]
        user: Option<u64>,
        /// Every JWT for this merchant.
        #[arg(long, value_name = "M", group = "whose")]
        merchant: Option<u64>,
    },
    /// Decodes and checks an access token locally, and says why it is or is not valid.
    #[command(
        long_about = "Decodes an access token (JWT) and checks it here, with the server's keys \
            (the configured secret or DATA_DIR/jwt-secret, and the rotated keys in the \
            store): signature, expiry, revocations, and whether its user and merchant are \
            active. Prints the header, the claims and the verdict; exits 0 if the token is \
            valid and 1 if not. Nothing leaves this machine. Pass `-` to read the token from \
            stdin, which keeps it out of the shell history and the process list.",
        after_help = "Example:\n  echo \"$JWT\" | stamps-admin --data-dir ./stamps-data jwt inspect -"
    )]
    Inspect {
        /// The JWT, or `-` to read it from stdin.
        #[arg(value_name = "TOKEN")]
        token: String,
    },
}

/// What can be done to signing keys.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Makes a new signing key, which signs from now on.
    #[command(
        long_about = "Makes a new random JWT signing key, kept in the store: from now on it \
            signs, also after a restart, and a running server switches at once. The \
            configured secret and earlier keys keep verifying the tokens they signed before \
            the rotation (a token signed with one later, beyond the leeway, is refused: a \
            leaked old key forges nothing new) until those have expired (lifetime + \
            leeway), then are dropped. With --drop-previous (a key leaked: the emergency), \
            the configured secret and every earlier key stop verifying at once, and every \
            JWT they signed is refused: clients fetch new ones with their static tokens. \
            The JWT header does not change. Prints the new key's id and creation time, \
            never the key.",
        after_help = "Examples:\n  stamps-admin --data-dir ./stamps-data key rotate\n  \
            stamps-admin --data-dir ./stamps-data key rotate --drop-previous"
    )]
    Rotate {
        /// Every earlier key, the configured secret included, stops verifying
        /// at once: every JWT issued so far is refused.
        #[arg(long)]
        drop_previous: bool,
    },
}

/// The full command, with the merchant and user help texts filled in.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    for kind in [AccountKind::Merchant, AccountKind::User] {
        command = command.mut_subcommand(kind.as_str(), |c| account_help(c, kind));
    }
    command
}

/// Parses the process's arguments; on a usage error, `--help` or
/// `--version` prints what clap prints and exits (status 2 for errors).
pub fn parse() -> Cli {
    let mut command = command();
    let matches = command.clone().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit());
    if cli.command.needs_store() && cli.store.location().is_none() {
        command
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the store is not named: give --data-dir <DIR>, --config <FILE> or --store-url <URL>",
            )
            .exit();
    }
    cli
}

impl Command {
    /// Whether the command works on a store (all but completions and man).
    pub fn needs_store(&self) -> bool {
        !matches!(self, Command::Completions { .. } | Command::Man)
    }
}

/// Names the kind in the help of `merchant ...` or `user ...`: both share
/// [`AccountCommand`], so one code path serves both.
fn account_help(command: clap::Command, kind: AccountKind) -> clap::Command {
    let k = kind.as_str();
    let (id, name) = match kind {
        AccountKind::Merchant => ("1", "'My Merchant'"),
        AccountKind::User => ("5870", "user5870"),
    };
    let example =
        |rest: &str| format!("Example:\n  stamps-admin --data-dir ./stamps-data {k} {rest}");
    command
        .after_help(example("list"))
        .mut_subcommand("add", |c| {
            c.about(format!("Adds a {k}; prints it with its id"))
                .long_about(format!(
                    "Adds a {k}, active, with the id given or the next free one, and prints it. \
                     Refuses an id already taken, an id of 0, and a name that is empty, longer \
                     than 200 characters or holds a control character."
                ))
                .after_help(example(&format!("add --name {name} --id {id}")))
                .mut_arg("name", |a| {
                    a.help(format!(
                        "The {k}'s display name: 1 to 200 characters, no control characters"
                    ))
                })
                .mut_arg("id", |a| {
                    a.help(format!(
                        "The id to give the {k} (1 or more); the next free one if omitted"
                    ))
                })
        })
        .mut_subcommand("list", |c| {
            c.about(format!("Lists every {k}, by id"))
                .after_help(example("list"))
        })
        .mut_subcommand("disable", |c| {
            c.about(format!("Disables a {k}: its tokens stop working at once"))
                .long_about(format!(
                    "Disables a {k}: the static tokens and access tokens of a disabled {k} stop \
                     working at once, also on a running server, until it is enabled again. \
                     Prints the {k}."
                ))
                .after_help(example(&format!("disable {id}")))
                .mut_arg("id", |a| a.help(format!("The {k}'s id")))
        })
        .mut_subcommand("enable", |c| {
            c.about(format!("Enables a disabled {k} again"))
                .long_about(format!(
                    "Enables a disabled {k} again: its tokens that are not revoked work again. \
                     Prints the {k}."
                ))
                .after_help(example(&format!("enable {id}")))
                .mut_arg("id", |a| a.help(format!("The {k}'s id")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn account_commands_share_one_shape() {
        let parse = |args: &[&str]| {
            let matches = command().try_get_matches_from(args).unwrap();
            Cli::from_arg_matches(&matches).unwrap()
        };
        let cli = parse(&[
            "stamps-admin",
            "--data-dir",
            "d",
            "user",
            "add",
            "--name",
            "x",
            "--id",
            "5870",
        ]);
        assert_eq!(
            cli.store.location(),
            Some(StoreLocation::DataDir("d".into()))
        );
        assert!(matches!(
            cli.command,
            Command::User(AccountCommand::Add { ref name, id: Some(5870) }) if name == "x"
        ));
        let cli = parse(&[
            "stamps-admin",
            "--data-dir",
            "d",
            "merchant",
            "disable",
            "1",
            "--json",
        ]);
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Merchant(AccountCommand::Disable { id: 1 })
        ));
    }

    #[test]
    fn help_names_the_kind() {
        let mut command = command();
        for kind in ["merchant", "user"] {
            let Some(group) = command.find_subcommand_mut(kind) else {
                panic!("no {kind} command");
            };
            for sub in ["add", "list", "disable", "enable"] {
                let Some(sub) = group.find_subcommand_mut(sub) else {
                    panic!("no {kind} {sub}");
                };
                let help = sub.render_long_help().to_string();
                assert!(help.contains(kind), "{help}");
                assert!(help.contains("Example:"), "{help}");
            }
        }
    }
}
