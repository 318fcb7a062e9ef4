//! Errors of the replicator, sorted by what a caller can do about them.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplicatorError {
    /// The request cannot be honoured as sent; the message says why. Nothing
    /// was stored.
    #[error("{0}")]
    InvalidRequest(String),
    /// CouchDB could not be reached or did not answer in time: try later.
    #[error("CouchDB is unreachable: {0}")]
    Unavailable(#[source] reqwest::Error),
    /// CouchDB answered with an unexpected status.
    #[error("CouchDB answered {status} to {context}: {body}")]
    Couch {
        status: u16,
        context: String,
        body: String,
    },
    /// CouchDB sent something that is not the expected JSON.
    #[error("unexpected answer from CouchDB to {context}: {source}")]
    Decode {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ReplicatorError {
    /// True when the cause is CouchDB being away (maps to 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ReplicatorError::Unavailable(_))
    }
}
