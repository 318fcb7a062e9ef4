//! One resource's passes: merge its conflicts, or run what this site has
//! not run yet, until no newer state of it waits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use cheops_backends::Outcome;
use cheops_model::{history_id, HistoryDocument, Operation, ReplyDocument, ResourceDocument};
use tracing::{debug, info, warn};

use super::recorder::Recorder;
use super::{Inner, MERGE_WAIT};
use crate::consistency::{payloads, plan, plan_anyway, Run};
use crate::db::queries;
use crate::node::feed::{Event, EventType};
use crate::node::health::OversizeResource;
use crate::node::resolution::{history_docs, resolution_docs};
use crate::node::writes;
use crate::workers::backoff;
use crate::ReplicatorError;

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

impl Inner {
    /// Handles the resource until no change arrived during the last pass.
    /// A pass that fails (CouchDB away) is retried with backoff: the resource
    /// stays scheduled, so the follower's checkpoint cannot move past it.
    ///
    /// Once the runner stops, the loop ends after the current pass: the
    /// resource stays scheduled, and the feed delivers it again after a
    /// restart (the checkpoint cannot have passed it).
    pub(super) async fn run_until_settled(&self, mut doc: ResourceDocument) {
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
        let ran_before: HashSet<&str> = ran.iter().map(|run| run.request.as_str()).collect();
        // The reply that carries an operation may come after the operation:
        // this site announces it before its first run.
        for op in to_run
            .iter()
            .filter(|op| !op.pruned && !ran_before.contains(op.request_id.as_str()))
        {
            self.ctx.feed.note(Event::accepted(
                resource,
                &op.request_id,
                &doc.locations,
                op.op_type.clone(),
                (!op.site.is_empty()).then(|| op.site.clone()),
            ));
        }
        let recorder = Recorder {
            inner: self,
            doc,
            to_run: &to_run,
            commands: &commands,
            ran: &ran_before,
            rebuild: plan.rebuild,
            // Rule 3 orders this site's runs by its replies' times.
            last_time: Mutex::new(ran.iter().map(|run| run.time).max()),
            replies: Mutex::new(Vec::new()),
            too_large_to_carry: Mutex::new(Vec::new()),
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
        // A command the node could not start has no reply: the pass fails,
        // and is retried with backoff, once the replies made are stored.
        let not_started = results
            .iter()
            .find(|r| r.outcome == Outcome::NotStarted)
            .map(|r| ReplicatorError::CommandNotStarted {
                resource: resource.to_owned(),
                reason: r.output.clone(),
            });
        if not_started.is_some() {
            self.ctx.metrics.not_started();
        }
        let replies = recorder
            .replies
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let journal_error = recorder
            .journal_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let uncarried = recorder
            .too_large_to_carry
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        self.store_history(doc, &uncarried).await;
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
        match journal_error.or(not_started) {
            Some(error) => Err(error),
            None => Ok(pass),
        }
    }

    /// The operations whole of the pruned ones among `ops`, by request id,
    /// read from their history documents (those here: one request for all),
    /// or else from replies that carry them (one more request).
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
        let mut whole: HashMap<String, Operation> = found
            .into_iter()
            .flatten()
            .filter(|history| history.resource_id == resource)
            .map(|history| (history.operation.request_id.clone(), history.operation))
            .collect();
        let missing: Vec<&str> = ops
            .iter()
            .filter(|op| op.pruned && !whole.contains_key(&op.request_id))
            .map(|op| op.request_id.as_str())
            .collect();
        if !missing.is_empty() {
            whole.extend(queries::carried(&self.ctx.couch, resource, &missing).await?);
        }
        Ok(whole)
    }

    /// Writes the history documents of `ops`, operations of `doc` too large
    /// for a reply to carry. Only logged when it fails: such an operation
    /// then keeps its payload in the block, and gets its history document
    /// from whichever site drops it from the block.
    async fn store_history(&self, doc: &ResourceDocument, ops: &[Operation]) {
        if ops.is_empty() {
            return;
        }
        let written = match history_docs(&doc.id, &doc.locations, ops) {
            Ok(docs) => self.ctx.couch.bulk_docs(&docs, false).await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            warn!(resource = %doc.id, site = %self.ctx.site, %error, "cannot store the history documents of operations too large to carry; they keep their payload");
        }
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

    /// Writes `replies` (journaled) to CouchDB with what else waits to be
    /// written (`node/writes.rs`); fails when some reply of that request
    /// could not be written (they stay in the journal).
    async fn store(&self, replies: Vec<ReplyDocument>) -> Result<(), ReplicatorError> {
        writes::replies(&self.ctx, replies).await
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
        let known = |request: &str| {
            self.ctx
                .ledger
                .known(&doc.id, request)
                .is_some_and(|known| known.seen.history)
        };
        let resolution = resolution_docs(doc, &losers, known)?;
        // Every site merges alike, so none can write a merge that does not
        // fit: the resource is left as it is, and refuses operations.
        let bytes = resolution.merged_bytes;
        if bytes > self.max_document_size {
            if self.ctx.over_size(&doc.id).is_none() {
                warn!(resource = %doc.id, site = %self.ctx.site, bytes, limit = self.max_document_size, "the merge of concurrent blocks is over the document size limit; the resource is left unmerged and refuses operations");
            }
            self.ctx.set_over_size(
                &doc.id,
                Some(OversizeResource {
                    resource: doc.id.clone(),
                    bytes,
                    limit: self.max_document_size,
                }),
            );
            return Ok(());
        }
        self.ctx.set_over_size(&doc.id, None);
        let results = self.ctx.couch.bulk_docs(&resolution.docs, false).await?;
        if let Some(failed) = results.iter().find(|r| r.error.is_some()) {
            return Err(ReplicatorError::Couch {
                status: 0,
                context: format!("resolving the conflict of {}", doc.id),
                body: format!("{:?}: {:?}", failed.error, failed.reason),
            });
        }
        self.ctx.metrics.merged();
        let mut merged = Event::new(EventType::Merge, &doc.id, "", &doc.locations);
        merged.site = Some(self.ctx.site.clone());
        merged.rev = results
            .iter()
            .find(|r| r.id.as_deref() == Some(doc.id.as_str()))
            .and_then(|r| r.rev.clone());
        merged.merged = Some(losers.len() + 1);
        self.ctx.feed.note(merged);
        info!(resource = %doc.id, site = %self.ctx.site, losers = losers.len(), "conflict resolved");
        Ok(())
    }
}
