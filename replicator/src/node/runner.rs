//! Running what a resource needs when its document changes: merge its
//! conflicts, or run the operations this site has not run yet, one reply
//! per operation (see `runner/pass.rs`).
//!
//! A pass works on the document the changes feed delivered, however stale:
//! every state it delivers is one the database was in, and a later one
//! schedules another pass. Passes of one resource never overlap (a change
//! arriving meanwhile waits, the newest only); different resources run
//! concurrently up to a bound, and past a bound of scheduled resources
//! [`Runner::schedule`], and so the feed, waits. Each reply is journaled as
//! its command ends, before the next starts, and only then written to
//! CouchDB. Resources waiting together share their reads of the replies
//! view (see [`Batcher`]), and their `_bulk_docs` with the resources
//! `/exec` stores meanwhile (`node/writes.rs`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cheops_backends::{Backend, CommandResult};
use cheops_model::{Command, ResourceDocument};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::consistency::Run;
use crate::node::batch::Batcher;
use crate::node::context::Context;
use crate::workers::status::Task;
use crate::ReplicatorError;

mod pass;
mod pending;
mod recorder;
#[cfg(test)]
mod tests;

use pending::Pending;

/// How long a resource whose block lacks operations this site ran waits
/// for the rest before its block is taken as it is. The merge that holds
/// them usually comes with the next replication batch; a partition can hold
/// it back, and a configuration changed since they ran can make the wait
/// endless.
const MERGE_WAIT: Duration = Duration::from_secs(60);

/// How many resources may be scheduled (waiting or running) at once.
const SCHEDULED: usize = 256;
/// Resources whose replies one view request reads at most.
const READ_BATCH: usize = 128;
/// View requests in flight at once: the sidecar answers one while it
/// reads the index for another.
const READS_IN_FLIGHT: usize = 3;

/// What a request shared by several passes answers each.
type Shared<T> = Result<T, Arc<ReplicatorError>>;

/// Schedules and runs per-resource work.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    backend: Arc<dyn Backend>,
    /// Replies larger than this, as JSON, have their output cut.
    max_reply_bytes: usize,
    /// The largest resource document a merge may write.
    max_document_size: usize,
    /// Set once the node shuts down: no new pass, no new command.
    stopping: watch::Sender<bool>,
    /// The passes running, and a wake-up when one ends.
    passes: Mutex<JoinSet<()>>,
    pass_ended: Notify,
    /// Where failed passes are shown, once [`Runner::run`] started.
    task: Mutex<Option<Task>>,
    /// Resources running commands, or merging conflicts, at once.
    permits: Semaphore,
    concurrency: usize,
    /// Resources scheduled at once: a permit per entry of `pending`.
    scheduled: Arc<Semaphore>,
    pending: Mutex<Pending>,
    /// Counts the documents handed over to resources already scheduled: a
    /// pass waiting for the rest of its resource looks whether its own
    /// arrived when it moves.
    offered: watch::Sender<u64>,
    /// Reads of this site's replies, by resource, shared between passes.
    reads: Batcher<String, Shared<Vec<Run>>>,
}

impl Runner {
    /// A runner of `ctx`'s site running commands with `backend`, on
    /// `concurrency` resources at once at most.
    pub fn new(
        ctx: Context,
        backend: Arc<dyn Backend>,
        max_reply_bytes: usize,
        max_document_size: usize,
        concurrency: usize,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Runner {
            inner: Arc::new(Inner {
                ctx,
                backend,
                max_reply_bytes,
                max_document_size,
                stopping: watch::Sender::new(false),
                passes: Mutex::new(JoinSet::new()),
                pass_ended: Notify::new(),
                task: Mutex::new(None),
                permits: Semaphore::new(concurrency),
                concurrency,
                scheduled: Arc::new(Semaphore::new(SCHEDULED.max(concurrency))),
                pending: Mutex::new(Pending::default()),
                offered: watch::Sender::new(0),
                reads: Batcher::new(READ_BATCH, READS_IN_FLIGHT),
            }),
        }
    }

    /// Asks for the resource to be handled in the state `doc` (as the feed
    /// delivered it). The work is done on its own task; this waits only
    /// while too many resources are scheduled. Once the runner stops, the
    /// document is left for the feed to deliver again after a restart.
    pub async fn schedule(&self, doc: ResourceDocument) {
        if self.inner.is_stopping() {
            return;
        }
        let doc = {
            // One critical section: the run cannot end between the check
            // and the hand-over.
            let mut pending = self.inner.lock();
            if pending.is_scheduled(&doc.id) {
                pending.offer(doc);
                self.inner.offered.send_modify(|offered| *offered += 1);
                return;
            }
            doc
        };
        let Ok(slot) = Arc::clone(&self.inner.scheduled).acquire_owned().await else {
            // The semaphore is never closed.
            return;
        };
        // Scheduled meanwhile (by another caller): handed over to its run.
        let Some(doc) = self.inner.lock().offer(doc) else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        self.inner.lock_passes().spawn(async move {
            /// Tells the watcher when the pass ends, even by a panic.
            struct Ended(Arc<Inner>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    self.0.pass_ended.notify_one();
                }
            }
            let ended = Ended(inner);
            ended.0.run_until_settled(doc).await;
            drop(slot);
        });
    }

    /// Runs one command outside any resource (`/show_local`) under the
    /// limit of the passes, so that `--concurrency` bounds every command
    /// this node runs at once. Once the node stops, nothing runs.
    pub async fn run_alone(&self, command: Command) -> CommandResult {
        let Ok(_turn) = self.inner.permits.acquire().await else {
            return CommandResult::skipped();
        };
        let mut results = self.inner.backend.run(std::slice::from_ref(&command)).await;
        results.pop().unwrap_or_else(CommandResult::skipped)
    }

    /// Resources scheduled (waiting or running), and commands running.
    pub fn load(&self) -> (usize, usize) {
        let scheduled = self.inner.lock().len();
        let running = self
            .inner
            .concurrency
            .saturating_sub(self.inner.permits.available_permits());
        (scheduled, running)
    }

    /// Watches the passes until `shutdown`: a pass that panics leaves its
    /// resource scheduled forever (the follower's checkpoint would stop),
    /// so it ends this task, which is vital. At shutdown, no new pass or
    /// command starts; running commands get `drain` to end (their replies
    /// are journaled as they do), then are stopped. `task` shows failed
    /// passes.
    pub async fn run(self, task: Task, mut shutdown: watch::Receiver<bool>, drain: Duration) {
        *self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        loop {
            tokio::select! {
                () = self.inner.pass_ended.notified() => {
                    if let Some(panic) = self.inner.reap() {
                        error!(site = %self.inner.ctx.site, %panic, "a pass panicked");
                        return;
                    }
                    if self.inner.ctx.ledger.reads_stale() {
                        self.inner.ctx.ledger.want_index();
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        self.inner.stopping.send_replace(true);
        let mut passes = std::mem::take(&mut *self.inner.lock_passes());
        info!(site = %self.inner.ctx.site, running = passes.len(), ?drain, "draining running operations");
        let drained =
            tokio::time::timeout(drain, async { while passes.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            warn!(site = %self.inner.ctx.site, left = passes.len(), "operations still running at the drain deadline; stopping them");
            passes.shutdown().await;
        }
    }

    /// True when no resource is scheduled or running: every change handed
    /// to [`Runner::schedule`] so far has been fully handled. Never again
    /// once the runner stops, since it drops what it is handed then: no
    /// checkpoint may pass a change it dropped.
    pub fn is_idle(&self) -> bool {
        !self.inner.is_stopping() && self.inner.lock().is_empty()
    }
}

impl Inner {
    fn lock_passes(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        // Spawning and reaping cannot leave the set inconsistent.
        self.passes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Collects the passes that ended; the panic of one, if any.
    fn reap(&self) -> Option<tokio::task::JoinError> {
        let mut passes = self.lock_passes();
        while let Some(ended) = passes.try_join_next() {
            if let Err(error) = ended {
                if error.is_panic() {
                    return Some(error);
                }
            }
        }
        None
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    fn report(&self, result: Result<(), &ReplicatorError>) {
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            match result {
                Ok(()) => task.succeeded(),
                Err(error) => {
                    task.failed(error);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // No critical section can panic between two changes to the map: it
        // is never left inconsistent.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
