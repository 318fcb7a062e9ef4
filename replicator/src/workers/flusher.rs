//! Storing what the journal holds: at start-up, and whenever a pass left
//! replies behind (CouchDB away, a reply refused), until it is empty.

use tracing::info;

use crate::node::context::Context;
use crate::node::store::store_replies;
use crate::workers::worker::{Worker, WorkerState};
use crate::ReplicatorError;

/// The flusher: writes what the journal holds at start-up, and again
/// whenever `unstored` is notified, until the journal is empty.
pub struct Flusher {
    pub ctx: Context,
}

impl Worker for Flusher {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let ctx = &self.ctx;
        let pending = ctx.journal.pending();
        if pending.is_empty() {
            return Ok(WorkerState::Idle);
        }
        store_replies(ctx, &pending).await?;
        info!(replies = pending.len(), "journaled replies stored");
        Ok(WorkerState::Busy)
    }

    async fn wait_for_work(&mut self) {
        self.ctx.unstored.notified().await;
    }
}
