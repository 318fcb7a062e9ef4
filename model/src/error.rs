//! Errors raised while reading documents.

use thiserror::Error;

/// Why a value could not be read as part of a Cheops document.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid time {value:?}: {reason}")]
    Timestamp { value: String, reason: &'static str },
}
