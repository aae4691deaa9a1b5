//! Error types shared by the library.

use std::fmt::Display;

/// An impossible setting, rejected before any work starts.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name} = {value}: expected {allowed}")]
pub struct ConfigError {
    /// The flag or quantity, as the user knows it (e.g. `--dropout`).
    pub name: String,
    pub value: String,
    pub allowed: String,
}

impl ConfigError {
    pub fn new(name: &str, value: impl Display, allowed: impl Display) -> ConfigError {
        ConfigError {
            name: name.to_string(),
            value: value.to_string(),
            allowed: allowed.to_string(),
        }
    }
}
