//! Running what a resource needs when its document changes: merge its
//! conflicts, or run the operations this site has not run yet and write one
//! reply per operation.
//!
//! A pass works on the document the changes feed delivered (with its
//! conflicts), not on a fresh read: every state the feed delivers is a state
//! the database was in, and a later one schedules another pass.
//!
//! Runs of one resource never overlap: a change arriving during a run is
//! kept, the newest only, and handled when the run ends. Different resources
//! run concurrently, up to a bound. How many resources may be scheduled at
//! once is bounded too, so that memory does not grow with the number of
//! resources: past that bound [`Runner::schedule`] waits, and so does the
//! changes feed.
//!
//! Each reply goes to the [`Journal`] as soon as its command ends, before
//! the next command starts, and only then to CouchDB: an operation whose
//! command ended is never run again by this site, whatever fails after.
//! Passes run on tasks the runner owns: [`Runner::run`] watches them and, at
//! shutdown, lets them end their current command within a deadline.
//!
//! Requests to CouchDB are shared between resources (see [`Batcher`]): a
//! resource whose replies are not known has them read while it waits for
//! its turn, in one view request with every other resource waiting, and
//! passes that end while replies are being written have theirs written
//! together by the next `_bulk_docs`. A daemon catching up on thousands of
//! resources thus makes a few requests per hundred resources, not two per
//! resource.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cheops_backends::{Backend, CommandResult, Next, Outcome, Progress, ProgressFuture};
use cheops_model::{
    history_id, HistoryDocument, Operation, ReplyDocument, ResourceDocument, ShellCommand,
    Timestamp,
};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::consistency::{payloads, plan, plan_anyway, Run};
use crate::node::batch::Batcher;
use crate::node::context::Context;
use crate::node::journal::reply_id;
use crate::node::oversize::fit;
use crate::node::resolution::resolution_docs;
use crate::node::store::store_replies;
use crate::workers::backoff;
use crate::workers::status::Task;
use crate::ReplicatorError;

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
/// Reply writes in flight at once: passes that end while one is written
/// need not wait for it (one at a time, a restarted daemon caught up on
/// 10,000 resources in 46 s; with four, 35 s).
const WRITES_IN_FLIGHT: usize = 4;

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
    /// Writes of the replies of passes, shared between passes.
    writes: Batcher<Vec<ReplyDocument>, Shared<()>>,
}

impl Runner {
    /// A runner of `ctx`'s site running commands with `backend`, on
    /// `concurrency` resources at once at most.
    pub fn new(
        ctx: Context,
        backend: Arc<dyn Backend>,
        max_reply_bytes: usize,
        concurrency: usize,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Runner {
            inner: Arc::new(Inner {
                ctx,
                backend,
                max_reply_bytes,
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
                writes: Batcher::new(SCHEDULED, WRITES_IN_FLIGHT),
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

    /// Resources scheduled (waiting or running), and resources running.
    pub fn load(&self) -> (usize, usize) {
        let scheduled = self.inner.lock().0.len();
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
    /// to [`Runner::schedule`] so far has been fully handled.
    pub fn is_idle(&self) -> bool {
        self.inner.lock().is_empty()
    }
}

/// The resources scheduled or running, each with the newest document the
/// feed delivered that no pass has taken yet.
#[derive(Debug, Default)]
struct Pending(HashMap<String, Option<ResourceDocument>>);

impl Pending {
    fn is_scheduled(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hands `doc` over; gives it back when its resource was not scheduled:
    /// the caller then starts a run with it. Otherwise it replaces any
    /// document still waiting, which it is newer than.
    fn offer(&mut self, doc: ResourceDocument) -> Option<ResourceDocument> {
        match self.0.get_mut(&doc.id) {
            Some(waiting) => {
                *waiting = Some(doc);
                None
            }
            None => {
                self.0.insert(doc.id.clone(), None);
                Some(doc)
            }
        }
    }

    /// Whether a document arrived for `id` since the last one was taken.
    fn has_newer(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(Option::is_some)
    }

    /// The document that arrived for `id` since the last one was taken.
    fn take(&mut self, id: &str) -> Option<ResourceDocument> {
        self.0.get_mut(id).and_then(Option::take)
    }

    /// After a pass that settled `id`: the document to handle next, or
    /// `None` when none arrived, and the resource is no longer scheduled.
    fn finish(&mut self, id: &str) -> Option<ResourceDocument> {
        let next = self.take(id);
        if next.is_none() {
            self.0.remove(id);
        }
        next
    }
}

/// Where a pass over a resource left it.
enum Pass {
    /// Nothing left to do until the document changes.
    Settled,
    /// Operations are left to run.
    Unfinished,
    /// A pruned operation must run, and its history document has not
    /// arrived yet (the one named).
    AwaitingHistory(String),
    /// The block lacks operations this site ran: the rest of the resource
    /// has not arrived yet.
    AwaitingMerge,
}

/// Makes each result of a batch a reply, durable in the journal before the
/// next command starts.
struct Recorder<'a> {
    inner: &'a Inner,
    doc: &'a ResourceDocument,
    to_run: &'a [&'a Operation],
    /// Their commands: a pruned operation's from its history document.
    commands: &'a [ShellCommand],
    /// What this site ran before the batch.
    ran: &'a [Run],
    /// The batch rebuilds the block: its first reply says so.
    rebuild: bool,
    /// The time of this site's last reply to the resource.
    last_time: Mutex<Option<Timestamp>>,
    replies: Mutex<Vec<ReplyDocument>>,
    /// Set when the journal could not be written: the batch stops, as
    /// nothing more could be run safely.
    journal_error: Mutex<Option<ReplicatorError>>,
}

impl Recorder<'_> {
    fn reply(&self, index: usize, op: &Operation, result: &CommandResult) -> ReplyDocument {
        let mut last = self
            .last_time
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let execution_time = Timestamp::now_after(*last);
        *last = Some(execution_time);
        let site = &self.inner.ctx.site;
        let reply = ReplyDocument {
            id: Some(reply_id(site, &op.request_id, execution_time)),
            locations: self.doc.locations.clone(),
            site: site.clone(),
            request_id: op.request_id.clone(),
            resource_id: self.doc.id.clone(),
            status: result.status(),
            input: self
                .commands
                .get(index)
                .map(|c| c.command.clone())
                .unwrap_or_default(),
            output: result.output.clone(),
            execution_time,
            rebuild: self.rebuild && index == 0,
            reads_history: true,
            ..ReplyDocument::default()
        };
        fit(reply, self.inner.max_reply_bytes)
    }
}

impl Progress for Recorder<'_> {
    fn finished<'a>(&'a self, index: usize, result: &'a CommandResult) -> ProgressFuture<'a> {
        Box::pin(async move {
            let Some(op) = self.to_run.get(index) else {
                return Next::Stop;
            };
            let reply = self.reply(index, op, result);
            let resource = self.doc.id.as_str();
            let recorded = self.inner.ctx.journal.record(&reply).await;
            let again = self.ran.iter().any(|run| run.request == op.request_id);
            self.inner.ctx.metrics.ran(reply.status, again);
            // Known before the feed can echo it.
            self.inner.ctx.ledger.ran(&reply);
            info!(resource, request = %op.request_id, site = %self.inner.ctx.site, status = %reply.status, "operation ran");
            self.replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(reply);
            if let Err(error) = recorded {
                error!(resource, site = %self.inner.ctx.site, %error, "cannot journal a reply; running no more until it can");
                *self
                    .journal_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error);
                return Next::Stop;
            }
            if self.inner.is_stopping() {
                Next::Stop
            } else {
                Next::Continue
            }
        })
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

    /// Handles the resource until no change arrived during the last pass.
    /// A pass that fails (CouchDB away) is retried with backoff: the resource
    /// stays scheduled, so the follower's checkpoint cannot move past it.
    ///
    /// Once the runner stops, the loop ends after the current pass: the
    /// resource stays scheduled, and the feed delivers it again after a
    /// restart (the checkpoint cannot have passed it).
    async fn run_until_settled(&self, mut doc: ResourceDocument) {
        let (mut failures, mut waits) = (0, 0);
        // Since when the block has lacked operations this site ran.
        let mut lacking: Option<tokio::time::Instant> = None;
        let mut stopping = self.stopping.subscribe();
        let mut history_seen = self.ctx.ledger.histories();
        let mut offered = self.offered.subscribe();
        loop {
            if self.is_stopping() {
                return;
            }
            // From here on, a history document arriving wakes a wait below.
            history_seen.borrow_and_update();
            self.prefetch(&doc).await;
            let trust_block = lacking.is_some_and(|since| since.elapsed() >= MERGE_WAIT);
            let outcome = self.handle(&doc, trust_block).await;
            self.report(outcome.as_ref().map(|_| ()));
            if !matches!(outcome, Ok(Pass::AwaitingMerge)) {
                lacking = None;
            }
            let settled = match outcome {
                Ok(Pass::Settled) => {
                    (failures, waits) = (0, 0);
                    true
                }
                Ok(Pass::AwaitingMerge) => {
                    failures = 0;
                    waits += 1;
                    lacking.get_or_insert_with(tokio::time::Instant::now);
                    // Until the backoff ends, or a newer state of this
                    // resource arrives (the merge, most often).
                    let sleep = tokio::time::sleep(backoff::delay(waits));
                    tokio::pin!(sleep);
                    offered.borrow_and_update();
                    while !self.lock().has_newer(&doc.id) {
                        tokio::select! {
                            () = &mut sleep => break,
                            _ = offered.changed() => {}
                            _ = stopping.wait_for(|stop| *stop) => return,
                        }
                    }
                    false
                }
                Ok(Pass::AwaitingHistory(request)) => {
                    failures = 0;
                    waits += 1;
                    let delay = backoff::delay(waits);
                    debug!(resource = %doc.id, request = %request, site = %self.ctx.site, ?delay, "waiting for the history document of a pruned operation");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = history_seen.changed() => {}
                        _ = stopping.wait_for(|stop| *stop) => return,
                    }
                    false
                }
                // Operations skipped after a failure: run them now.
                Ok(Pass::Unfinished) => {
                    failures = 0;
                    false
                }
                Err(error) => {
                    failures += 1;
                    let delay = backoff::delay(failures);
                    warn!(resource = %doc.id, site = %self.ctx.site, %error, ?delay, "resource handling failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stopping.wait_for(|stop| *stop) => return,
                    }
                    false
                }
            };
            let next = if settled {
                self.lock().finish(&doc.id)
            } else {
                // Again, on the newest state known.
                Some(self.lock().take(&doc.id).unwrap_or(doc))
            };
            match next {
                Some(next) => doc = next,
                None => return,
            }
        }
    }

    /// One pass over a resource: merge its conflicts if it has some (the
    /// merged revision comes back through the feed and is run then),
    /// otherwise run what this site has not run yet.
    ///
    /// Cancellation: the command running is stopped and may run again at
    /// the next pass; every command that ended has its reply in the journal.
    async fn handle(
        &self,
        doc: &ResourceDocument,
        trust_block: bool,
    ) -> Result<Pass, ReplicatorError> {
        let resource = doc.id.as_str();
        if !doc.lives_on(&self.ctx.site) {
            return Ok(Pass::Settled);
        }
        let Ok(turn) = self.permits.acquire().await else {
            // The semaphore is never closed.
            return Ok(Pass::Unfinished);
        };
        if self.is_stopping() {
            // Stopped while waiting for its turn: start nothing.
            return Ok(Pass::Unfinished);
        }
        if !doc.conflicts.is_empty() {
            self.merge(doc).await?;
            return Ok(Pass::Settled);
        }

        let ran = self.ran_so_far(resource).await?;
        let plan = if trust_block {
            warn!(resource, site = %self.ctx.site, wait = ?MERGE_WAIT, "the block still lacks operations this site ran; taking it as it is");
            plan_anyway(&doc.operations, &ran, &doc.config)
        } else {
            plan(&doc.operations, &ran, &doc.config)
        };
        if plan.incomplete {
            self.ctx.metrics.found_incomplete();
            info!(resource, site = %self.ctx.site, "the block lacks operations this site ran; waiting for the rest of the resource");
            return Ok(Pass::AwaitingMerge);
        }
        if plan.rebuild {
            self.ctx.metrics.rebuilt();
            info!(resource, site = %self.ctx.site, "rebuilding the state: running the block again");
        }
        let to_run = plan.operations;
        if to_run.is_empty() {
            debug!(resource, site = %self.ctx.site, "nothing to run");
            return Ok(Pass::Settled);
        }

        let commands = match payloads(&to_run, &self.history_of(resource, &to_run).await?) {
            Ok(commands) => commands,
            Err(request) => return Ok(Pass::AwaitingHistory(request)),
        };
        let recorder = Recorder {
            inner: self,
            doc,
            to_run: &to_run,
            commands: &commands,
            ran: &ran,
            rebuild: plan.rebuild,
            // Rule 3 orders this site's runs by its replies' times.
            last_time: Mutex::new(ran.iter().map(|run| run.time).max()),
            replies: Mutex::new(Vec::new()),
            journal_error: Mutex::new(None),
        };
        let results = self.backend.run_with(&commands, &recorder).await;
        // Every reply is in the journal: another resource may run its
        // commands while these are written to CouchDB.
        drop(turn);
        // Skipped operations did not run: no reply, and the next pass runs
        // them. Whether an operation runs must not depend on which others
        // shared its batch, or sites that batched differently diverge.
        let pass = if results.iter().any(|r| r.outcome == Outcome::Skipped) {
            Pass::Unfinished
        } else {
            Pass::Settled
        };
        let replies = recorder
            .replies
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let journal_error = recorder
            .journal_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let made = replies.len();
        match self.store(replies).await {
            Ok(()) => {}
            Err(error) if journal_error.is_none() => {
                // In the journal: the flusher writes them when it can.
                warn!(resource, site = %self.ctx.site, %error, replies = made, "replies kept in the journal until CouchDB takes them");
                self.ctx.unstored.notify_one();
            }
            Err(error) => {
                // Neither in the journal nor in CouchDB: run them again.
                self.ctx.ledger.forget_runs(resource);
                return Err(error);
            }
        }
        match journal_error {
            Some(error) => Err(error),
            None => Ok(pass),
        }
    }

    /// The operations whole of the pruned ones among `ops`, by request id,
    /// read from their history documents (those here: one request for all).
    async fn history_of(
        &self,
        resource: &str,
        ops: &[&Operation],
    ) -> Result<HashMap<String, Operation>, ReplicatorError> {
        let ids: Vec<String> = ops
            .iter()
            .filter(|op| op.pruned)
            .map(|op| history_id(resource, &op.request_id))
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.ctx.couch.get_many::<HistoryDocument>(&ids).await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter(|history| history.resource_id == resource)
            .map(|history| (history.operation.request_id.clone(), history.operation))
            .collect())
    }

    /// Reads this site's replies to the resource of `doc`, unless known,
    /// before its pass waits for its turn: resources waiting together share
    /// one view request. A failure is left for the pass to meet again.
    async fn prefetch(&self, doc: &ResourceDocument) {
        if !doc.lives_on(&self.ctx.site) || !doc.conflicts.is_empty() {
            return;
        }
        if let Err(error) = self.ran_so_far(&doc.id).await {
            debug!(resource = %doc.id, site = %self.ctx.site, %error, "cannot read the replies yet");
        }
    }

    /// This site's runs of `resource`: known to the ledger, or read with
    /// those of the other resources waiting for a read, and then known.
    async fn ran_so_far(&self, resource: &str) -> Result<Vec<Run>, ReplicatorError> {
        if let Some(runs) = self.ctx.ledger.runs(resource) {
            return Ok(runs);
        }
        let read = self
            .reads
            .submit(resource.to_owned(), |resources| async move {
                match self.ctx.ledger.read_runs(&resources).await {
                    Ok(read) => read.into_iter().map(Ok).collect(),
                    Err(error) => {
                        let error = Arc::new(error);
                        resources.iter().map(|_| Err(Arc::clone(&error))).collect()
                    }
                }
            })
            .await;
        let runs = match read {
            Some(runs) => runs.map_err(ReplicatorError::Shared)?,
            None => return Err(ReplicatorError::Interrupted("reading the replies")),
        };
        self.ctx.ledger.fill(resource, &runs);
        Ok(runs)
    }

    /// Writes `replies` (journaled) to CouchDB with those of the other
    /// passes that ended meanwhile, in one `_bulk_docs`; fails when some
    /// reply of that request could not be written (they stay in the
    /// journal).
    async fn store(&self, replies: Vec<ReplyDocument>) -> Result<(), ReplicatorError> {
        if replies.is_empty() {
            return Ok(());
        }
        let stored = self
            .writes
            .submit(replies, |passes| async move {
                let count = passes.len();
                let replies: Vec<ReplyDocument> = passes.into_iter().flatten().collect();
                let stored = store_replies(&self.ctx, &replies).await.map_err(Arc::new);
                vec![stored; count]
            })
            .await;
        match stored {
            Some(stored) => stored.map_err(ReplicatorError::Shared),
            None => Err(ReplicatorError::Interrupted("writing the replies")),
        }
    }

    async fn merge(&self, doc: &ResourceDocument) -> Result<(), ReplicatorError> {
        let mut losers = Vec::with_capacity(doc.conflicts.len());
        for rev in &doc.conflicts {
            // A revision deleted meanwhile is simply left out.
            if let Some(loser) = self
                .ctx
                .couch
                .get::<ResourceDocument>(&[&doc.id], &[("rev", rev)])
                .await?
            {
                losers.push(loser);
            }
        }
        let docs = resolution_docs(doc, &losers)?;
        let results = self.ctx.couch.bulk_docs(&docs, false).await?;
        if let Some(failed) = results.iter().find(|r| r.error.is_some()) {
            return Err(ReplicatorError::Couch {
                status: 0,
                context: format!("resolving the conflict of {}", doc.id),
                body: format!("{:?}: {:?}", failed.error, failed.reason),
            });
        }
        self.ctx.metrics.merged();
        info!(resource = %doc.id, site = %self.ctx.site, losers = losers.len(), "conflict resolved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(id: &str, rev: &str) -> ResourceDocument {
        ResourceDocument {
            id: id.into(),
            rev: Some(rev.into()),
            ..ResourceDocument::default()
        }
    }

    fn rev(doc: Option<ResourceDocument>) -> Option<String> {
        doc.and_then(|d| d.rev)
    }

    /// Runs each command at once, successfully, counting them.
    #[derive(Default)]
    struct Succeeds {
        ran: std::sync::atomic::AtomicUsize,
    }

    impl Backend for Succeeds {
        fn run_with<'a>(
            &'a self,
            batch: &'a [ShellCommand],
            progress: &'a dyn Progress,
        ) -> cheops_backends::BatchFuture<'a> {
            Box::pin(async move {
                let mut results = Vec::new();
                for index in 0..batch.len() {
                    let result = CommandResult {
                        outcome: Outcome::Ok,
                        output: String::new(),
                    };
                    self.ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let next = progress.finished(index, &result).await;
                    results.push(result);
                    if next == Next::Stop {
                        break;
                    }
                }
                results
            })
        }
    }

    /// Requests a fake CouchDB received, by kind, and the replies stored.
    #[derive(Default)]
    struct Seen {
        views: usize,
        keys: usize,
        bulks: usize,
        replies: Vec<String>,
    }

    /// A CouchDB that knows the replies view (no reply stored before) and
    /// `_bulk_docs`, counting what it is asked; it answers a `_bulk_docs`
    /// only while `writes` is open.
    async fn fake_couch(seen: Arc<Mutex<Seen>>, writes: watch::Receiver<bool>) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cheops", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let mut writes = writes.clone();
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    loop {
                        let mut request_line = String::new();
                        if socket.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            socket.read_line(&mut line).await.unwrap();
                            match line.trim_end().split_once(':') {
                                Some((name, value))
                                    if name.eq_ignore_ascii_case("content-length") =>
                                {
                                    length = value.trim().parse().unwrap();
                                }
                                None => break,
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        socket.read_exact(&mut body).await.unwrap();
                        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        if !request_line.contains("/_view/") {
                            writes.wait_for(|open| *open).await.unwrap();
                        }
                        let answer = {
                            let mut seen = seen.lock().unwrap();
                            if request_line.contains("/_view/") {
                                seen.views += 1;
                                seen.keys += body["keys"].as_array().unwrap().len();
                                json!({"rows": []})
                            } else {
                                seen.bulks += 1;
                                let docs = body["docs"].as_array().unwrap();
                                let rows: Vec<_> = docs
                                    .iter()
                                    .map(|doc| json!({"id": doc["_id"], "ok": true, "rev": "1-a"}))
                                    .collect();
                                seen.replies.extend(
                                    docs.iter()
                                        .map(|doc| doc["ResourceId"].as_str().unwrap().to_owned()),
                                );
                                json!(rows)
                            }
                        }
                        .to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        socket
                            .get_mut()
                            .write_all(response.as_bytes())
                            .await
                            .unwrap();
                    }
                });
            }
        });
        url
    }

    /// A runner of site1 on the fake CouchDB at `url`, its journal in `dir`.
    fn runner(
        url: &str,
        dir: &std::path::Path,
        backend: Arc<Succeeds>,
        concurrency: usize,
    ) -> Runner {
        // Longer than any wait of these tests: a request held by the fake
        // never fails.
        let couch = crate::db::couch::CouchClient::with_options(
            url,
            &crate::ClientOptions {
                couch_timeout: Duration::from_secs(600),
                ..crate::ClientOptions::default()
            },
        )
        .unwrap();
        let journal = crate::node::journal::Journal::open(dir, "site1").unwrap();
        let metrics = crate::metrics::Metrics::default();
        let ctx = Context::new("site1".into(), couch, metrics, journal);
        Runner::new(ctx, backend, 1 << 20, concurrency)
    }

    /// Resource `res{n}` of site1, with one operation to run.
    fn resource(n: usize) -> ResourceDocument {
        let operation = Operation {
            request_id: format!("req{n}"),
            time: Timestamp::now(),
            ..Operation::default()
        };
        ResourceDocument {
            id: format!("res{n}"),
            locations: vec!["site1".into()],
            operations: vec![operation],
            ..ResourceDocument::default()
        }
    }

    /// Waits, a minute at most, until `done`.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("{what}: not within a minute"));
    }

    #[tokio::test]
    async fn resources_caught_up_together_share_their_requests() {
        const RESOURCES: usize = 200;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (_open, writes) = watch::channel(true);
        let url = fake_couch(Arc::clone(&seen), writes).await;
        let dir = std::env::temp_dir().join(format!("cheops-runner-batch-{}", std::process::id()));
        let runner = runner(&url, &dir, Arc::default(), 8);
        for n in 0..RESOURCES {
            runner.schedule(resource(n)).await;
        }
        until("every resource handled", || runner.is_idle()).await;
        let _ = std::fs::remove_dir_all(&dir);
        let seen = seen.lock().unwrap();
        let mut replied = seen.replies.clone();
        replied.sort();
        replied.dedup();
        assert_eq!(replied.len(), RESOURCES, "one reply per resource");
        assert_eq!(seen.replies.len(), RESOURCES, "each written once");
        assert_eq!(seen.keys, RESOURCES, "each resource's replies read once");
        assert!(
            seen.views <= RESOURCES / 20,
            "{} view requests for {RESOURCES} resources",
            seen.views
        );
        assert!(
            seen.bulks <= RESOURCES / 2,
            "{} _bulk_docs for {RESOURCES} resources",
            seen.bulks
        );
    }

    #[tokio::test]
    async fn a_resource_runs_while_the_replies_of_another_are_written() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (open, writes) = watch::channel(false);
        let url = fake_couch(Arc::clone(&seen), writes).await;
        let dir = std::env::temp_dir().join(format!("cheops-runner-turn-{}", std::process::id()));
        let backend = Arc::new(Succeeds::default());
        let runner = runner(&url, &dir, Arc::clone(&backend), 1);
        runner.schedule(resource(0)).await;
        runner.schedule(resource(1)).await;
        // One turn, and CouchDB holds the first reply's write: the second
        // resource runs all the same.
        until("both resources ran", || {
            backend.ran.load(std::sync::atomic::Ordering::SeqCst) == 2
        })
        .await;
        open.send_replace(true);
        until("every reply written", || runner.is_idle()).await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(seen.lock().unwrap().replies.len(), 2);
    }

    #[test]
    fn an_idle_resource_starts_a_run_with_its_document() {
        let mut pending = Pending::default();
        assert_eq!(rev(pending.offer(doc("r", "1-a"))), Some("1-a".into()));
        assert!(pending.is_scheduled("r"));
        assert_eq!(rev(pending.finish("r")), None, "nothing arrived meanwhile");
        assert!(!pending.is_scheduled("r") && pending.is_empty());
    }

    #[test]
    fn changes_during_a_run_leave_the_newest_for_the_next_pass() {
        let mut pending = Pending::default();
        pending.offer(doc("r", "1-a"));
        assert!(pending.offer(doc("r", "2-b")).is_none());
        assert!(pending.offer(doc("r", "3-c")).is_none());
        assert!(pending.offer(doc("other", "1-x")).is_some());
        assert_eq!(rev(pending.finish("r")), Some("3-c".into()));
        assert!(pending.is_scheduled("r"), "still running its next pass");
        assert_eq!(rev(pending.finish("r")), None);
        assert!(!pending.is_scheduled("r"));
        assert!(!pending.is_empty(), "other is still scheduled");
    }

    #[test]
    fn a_retry_takes_a_newer_document_and_keeps_the_resource_scheduled() {
        let mut pending = Pending::default();
        pending.offer(doc("r", "1-a"));
        assert_eq!(rev(pending.take("r")), None);
        pending.offer(doc("r", "2-b"));
        assert!(pending.has_newer("r"), "a waiting pass wakes for it");
        assert_eq!(rev(pending.take("r")), Some("2-b".into()));
        assert!(!pending.has_newer("r"));
        assert!(pending.is_scheduled("r"));
    }
}
