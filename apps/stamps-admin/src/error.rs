//! Why a command failed.

use stamps_config::SettingsError;
use stamps_store::StoreError;

/// What a token id is, for the message refusing one.
const TOKEN_ID_HELP: &str = "a token id is the 16 characters after `stmp_` (0-9 and a-z \
     without i, l, o, u), as `token list` shows it";

/// A failed command. The store is unchanged: store operations are atomic,
/// and nothing is written before the input is known to be good.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A token id given on the command line is not one. Holds what to show
    /// of it (nothing if it may be a secret).
    #[error("{}", invalid_token_id(.0.as_deref()))]
    InvalidTokenId(Option<String>),
    /// The configuration file named by `--config` is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// An argument is not valid; the message says what is expected.
    #[error("{0}")]
    Invalid(String),
    /// `jwt inspect` or `token check` found the token not valid (the report
    /// is on stdout); the exit status says so.
    #[error("the token is not valid: {0}")]
    NotValid(String),
    /// Reading or writing a file or a standard stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, such as `cannot read export.jsonl`.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn invalid_token_id(shown: Option<&str>) -> String {
    match shown {
        Some(shown) => format!("{shown} is not a valid token id: {TOKEN_ID_HELP}"),
        None => format!(
            "not a valid token id (not repeated here: it may hold a secret): {TOKEN_ID_HELP}"
        ),
    }
}

impl AdminError {
    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        move |source| AdminError::Io {
            context: context.into(),
            source,
        }
    }
}
