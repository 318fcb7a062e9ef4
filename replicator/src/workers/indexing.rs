//! Indexing the replies view while the runner is idle, when the ledger
//! wants it: PouchDB Server indexes a view only when it is queried, and the
//! next read of a resource not handled lately would otherwise wait for
//! everything stored meanwhile (seconds, after a burst of documents).

use std::sync::Arc;

use crate::node::ledger::Ledger;
use crate::node::runner::Runner;
use crate::workers::worker::{Worker, WorkerState};
use crate::ReplicatorError;

pub struct IdleIndexing {
    pub runner: Runner,
    pub ledger: Arc<Ledger>,
}

impl Worker for IdleIndexing {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        if self.runner.is_idle() {
            self.ledger.index().await;
        }
        Ok(WorkerState::Idle)
    }

    async fn wait_for_work(&mut self) {
        self.ledger.index_wanted().await;
    }
}
