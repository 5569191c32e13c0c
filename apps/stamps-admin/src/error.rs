//! Why a command failed.

use std::fmt;

use stamps_store::StoreError;

/// A failed command. The store is unchanged: store operations are atomic,
/// and nothing is written before the input is known to be good.
#[derive(Debug)]
pub enum AdminError {
    /// The store refused or failed.
    Store(StoreError),
    /// A token id given on the command line is not one. Holds what to show
    /// of it (nothing if it may be a secret).
    InvalidTokenId(Option<String>),
    /// The configuration file named by `--config` is invalid.
    Settings(stamps_http::settings::SettingsError),
    /// The configuration names something this build cannot do.
    Unsupported(&'static str),
    /// Reading or writing a file or a standard stream failed.
    Io {
        /// What was being done, such as `cannot read export.jsonl`.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
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

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

impl From<stamps_http::settings::SettingsError> for AdminError {
    fn from(e: stamps_http::settings::SettingsError) -> Self {
        AdminError::Settings(e)
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Store(e) => e.fmt(f),
            AdminError::InvalidTokenId(shown) => {
                if let Some(shown) = shown {
                    write!(f, "{shown} is not a valid token id: ")?;
                } else {
                    f.write_str(
                        "not a valid token id (not repeated here: it may hold a secret): ",
                    )?;
                }
                f.write_str(
                    "a token id is the 16 characters after `stmp_` (0-9 and a-z \
                     without i, l, o, u), as `token list` shows it",
                )
            }
            AdminError::Settings(e) => e.fmt(f),
            AdminError::Unsupported(what) => f.write_str(what),
            AdminError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Store(e) => Some(e),
            AdminError::Settings(e) => Some(e),
            AdminError::InvalidTokenId(_) | AdminError::Unsupported(_) => None,
            AdminError::Io { source, .. } => Some(source),
        }
    }
}
