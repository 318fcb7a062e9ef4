//! Writing the journal's replies to CouchDB: right after a batch, and by
//! the flusher task for whatever that left behind (CouchDB away, a reply
//! refused), with a backoff, until the journal is empty.
//!
//! Writing is idempotent: a reply's `_id` is fixed by the journal, so a
//! reply CouchDB already holds comes back as a conflict, which counts as
//! stored. A reply refused as too large (413, or `too_large` for its row)
//! is cut to [`FALLBACK_MAX_REPLY_BYTES`] and written again: it is stored
//! cut rather than its operation run again.

use std::sync::Arc;

use cheops_model::ReplyDocument;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::couch::CouchClient;
use crate::journal::Journal;
use crate::oversize::{fit, FALLBACK_MAX_REPLY_BYTES};
use crate::supervisor::Task;
use crate::ReplicatorError;

/// Writes `replies` (journaled, `_id` set) to CouchDB and drops from the
/// journal those it holds. Fails when some could not be written; they stay
/// in the journal.
///
/// Cancellation: replies written but not yet dropped from the journal are
/// written again later, as conflicts.
pub async fn store_replies(
    couch: &CouchClient,
    journal: &Journal,
    replies: &[ReplyDocument],
) -> Result<(), ReplicatorError> {
    if replies.is_empty() {
        return Ok(());
    }
    let mut stored = Vec::with_capacity(replies.len());
    let written = write(couch, replies, &mut stored).await;
    journal.stored(stored).await?;
    written
}

/// Writes `replies`, pushing the `_id` of each CouchDB holds to `stored`.
async fn write(
    couch: &CouchClient,
    replies: &[ReplyDocument],
    stored: &mut Vec<String>,
) -> Result<(), ReplicatorError> {
    let rows = match couch.bulk_docs(replies, true).await {
        Ok(rows) => rows,
        Err(error) if is_too_large(&error) => {
            if let [reply] = replies {
                return write_cut(couch, reply, stored).await;
            }
            // Which one is too large: each on its own.
            let mut failed = None;
            for reply in replies {
                if let Err(error) =
                    Box::pin(write(couch, std::slice::from_ref(reply), stored)).await
                {
                    failed = Some(error);
                }
            }
            return failed.map_or(Ok(()), Err);
        }
        Err(error) => return Err(error),
    };
    let mut failed = None;
    for (reply, row) in replies.iter().zip(rows) {
        let id = reply.id.clone().unwrap_or_default();
        match row.error.as_deref() {
            None | Some("conflict") => stored.push(id),
            Some("too_large" | "document_too_large") => {
                if let Err(error) = write_cut(couch, reply, stored).await {
                    failed = Some(error);
                }
            }
            Some(other) => {
                failed = Some(ReplicatorError::Couch {
                    status: 0,
                    context: format!("storing the reply {id}"),
                    body: format!("{other}: {}", row.reason.unwrap_or_default()),
                });
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Writes `reply` with its output cut to the fallback size.
async fn write_cut(
    couch: &CouchClient,
    reply: &ReplyDocument,
    stored: &mut Vec<String>,
) -> Result<(), ReplicatorError> {
    let cut = fit(reply.clone(), FALLBACK_MAX_REPLY_BYTES);
    if cut == *reply {
        return Err(ReplicatorError::Couch {
            status: 413,
            context: format!(
                "storing the reply {}",
                reply.id.as_deref().unwrap_or_default()
            ),
            body: "refused as too large even when cut".into(),
        });
    }
    info!(resource = %reply.resource_id, request = %reply.request_id, site = %reply.site, "reply refused as too large; storing it cut");
    let rows = couch.bulk_docs(std::slice::from_ref(&cut), true).await?;
    match rows.first().and_then(|row| row.error.as_deref()) {
        None | Some("conflict") => {
            stored.push(cut.id.unwrap_or_default());
            Ok(())
        }
        Some(other) => Err(ReplicatorError::Couch {
            status: 0,
            context: format!("storing the cut reply {}", cut.id.unwrap_or_default()),
            body: other.to_owned(),
        }),
    }
}

fn is_too_large(error: &ReplicatorError) -> bool {
    matches!(error, ReplicatorError::Couch { status: 413, .. })
}

/// The flusher task: writes what the journal holds at start-up, and again
/// whenever `unstored` is notified, retrying with the task's backoff until
/// the journal is empty.
pub async fn flush_loop(
    couch: CouchClient,
    journal: Journal,
    unstored: Arc<Notify>,
    task: Task,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let pending = journal.pending();
        if !pending.is_empty() {
            match store_replies(&couch, &journal, &pending).await {
                Ok(()) => {
                    task.succeeded();
                    info!(replies = pending.len(), "journaled replies stored");
                }
                Err(error) => {
                    let delay = task.failed(&error);
                    warn!(%error, left = journal.pending().len(), ?delay, "cannot store journaled replies yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        tokio::select! {
            () = unstored.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
