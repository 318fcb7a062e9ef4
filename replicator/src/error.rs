//! Errors of the replicator, sorted by what a caller can do about them.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplicatorError {
    /// The request cannot be honoured as sent; the message says why. Nothing
    /// was stored.
    #[error("{0}")]
    InvalidRequest(String),
    /// The resource document would be larger than this node writes (its
    /// `--max-document-size`, CouchDB's default `max_document_size`).
    /// Nothing was stored.
    #[error(
        "resource {resource} would be {size} bytes as a document, over this node's limit of \
         {limit} bytes (--max-document-size)"
    )]
    TooLarge {
        resource: String,
        size: usize,
        limit: usize,
    },
    /// CouchDB refused the resource document as too large: its
    /// `max_document_size` is below the node's. Nothing was stored.
    #[error(
        "CouchDB refused resource {resource} ({size} bytes as a document) as too large: \
         {reason} (its max_document_size is below this node's --max-document-size, {limit} bytes)"
    )]
    RefusedTooLarge {
        resource: String,
        size: usize,
        limit: usize,
        /// CouchDB's own words.
        reason: String,
    },
    /// The id is already that of another kind of document (a reply, whose
    /// ids CouchDB chooses). Nothing was stored.
    #[error("id {0:?} is taken by a document that is not a resource (a reply); choose another id")]
    IdTaken(String),
    /// The operation came with a config other than the stored resource's:
    /// a resource's config is set once, when it is created, since another
    /// would change how every site reads what it already ran. Nothing was
    /// stored.
    #[error(
        "resource {0} has another config: a resource's resolution matrix is set by the exec that \
         creates it, since another would change how the sites read the operations they ran; \
         send the same config, or none"
    )]
    ConfigChanged(String),
    /// The resource's concurrent blocks merge into a document over the
    /// limit: its sites cannot merge it, and it accepts no operation.
    /// Nothing was stored.
    #[error(
        "resource {resource} cannot take operations: its concurrent blocks merge into {bytes} \
         bytes, over this node's --max-document-size ({limit} bytes), so its sites cannot merge \
         them (see /health); the operations already stored stay as they are"
    )]
    OverSize {
        resource: String,
        bytes: usize,
        limit: usize,
    },
    /// This node could not start a command of the resource (out of file
    /// descriptors, memory or disk): nothing of it ran, and it runs at a
    /// later pass.
    #[error("could not start a command of resource {resource}: {reason}")]
    CommandNotStarted { resource: String, reason: String },
    /// Other writers to the resource won every attempt to store the
    /// operation: try again shortly. Nothing was stored.
    #[error(
        "resource {resource} changed under {attempts} attempts to store the operation; try again"
    )]
    Contended { resource: String, attempts: u32 },
    /// Every leaf of the resource's revision tree is a deletion here, and
    /// stayed so while the node waited: replication brought the deletions
    /// of a merge before the merged revision, which is on its way (or cut
    /// off by a partition). The resource is not taken for a missing one and
    /// started again from nothing. Nothing was stored: try again shortly.
    #[error(
        "resource {resource} has no live revision on this site at the moment: its replicas \
         are being merged, and the merge has not arrived yet; nothing was stored, try again"
    )]
    Settling { resource: String },
    /// CouchDB could not be reached or did not answer in time: try later.
    #[error("CouchDB is unreachable: {0}")]
    Unavailable(#[source] reqwest::Error),
    /// CouchDB kept a connection open but sent nothing for too long (a
    /// frozen server, or a network that drops packets silently).
    #[error("CouchDB sent nothing to {context} for {after:?}")]
    Stalled {
        context: String,
        after: std::time::Duration,
    },
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
    /// The journal of results could not be read or written: the node cannot
    /// promise not to run an operation twice.
    #[error("journal {}: {source}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the journal, not the last, cannot be read: it may record
    /// an operation that ran, so the node does not start.
    #[error("journal {} is damaged at line {line}: {reason}; move it aside to start anyway (its operations may then run again)", path.display())]
    JournalCorrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The changes feed's file could not be read or written.
    #[error("changes feed {path}: {source}")]
    Feed {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The hooks file does not read, or the hooks' positions cannot be
    /// written.
    #[error("hooks {path}: {reason}")]
    Hooks { path: String, reason: String },
    /// The request that would have answered this caller, made for several
    /// at once, was dropped before it answered: the node is stopping.
    #[error("{0} was interrupted")]
    Interrupted(&'static str),
    /// A request made for several callers at once (see the runner's
    /// batched reads and writes) failed: each of them gets its error.
    #[error(transparent)]
    Shared(std::sync::Arc<ReplicatorError>),
}

impl ReplicatorError {
    /// True when the caller may simply try again: not a failure of the
    /// node (maps to 503 with the message and `Retry-After`).
    pub fn is_deferred(&self) -> bool {
        matches!(
            self,
            ReplicatorError::Contended { .. } | ReplicatorError::Settling { .. }
        )
    }

    /// True when the cause is CouchDB being away (maps to 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            ReplicatorError::Unavailable(_) | ReplicatorError::Stalled { .. } => true,
            ReplicatorError::Shared(error) => error.is_unavailable(),
            _ => false,
        }
    }
}
