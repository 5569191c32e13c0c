//! The settings of the store a command line names: what the key files
//! (the JWT key, the imported tokens' lookup key) are found by.

use stamps_config::{Settings, StoreSettings};

use crate::cli::StoreLocation;
use crate::error::AdminError;

/// The settings of the store location: the configuration file's, or the
/// defaults (and STAMPS_... variables) with the given data directory.
pub fn settings(location: &StoreLocation) -> Result<Settings, AdminError> {
    Ok(match location {
        StoreLocation::Config(file) => Settings::load(Some(file))?,
        StoreLocation::Postgres(url) => {
            let mut settings = Settings::load(None)?;
            settings.store = StoreSettings::Postgres {
                url: url.0.clone().into(),
            };
            settings
        }
        StoreLocation::DataDir(dir) => {
            let mut settings = Settings::load(None)?;
            settings.data_dir = dir.clone();
            settings
        }
    })
}
