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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cheops_backends::{Backend, Outcome};
use cheops_model::{Operation, ReplyDocument, ResourceDocument, ShellCommand, Timestamp};
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::bootstrap::{DESIGN, REPLIES_VIEW};
use crate::consistency::{current_state, operations_to_run};
use crate::couch::CouchClient;
use crate::replied::{Ran, Replied};
use crate::resolution::resolution_docs;
use crate::{backoff, ReplicatorError};

/// How many resources may be scheduled (waiting or running) at once.
const SCHEDULED: usize = 256;

/// Schedules and runs per-resource work.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    site: String,
    couch: CouchClient,
    backend: Arc<dyn Backend>,
    /// Passes running at once.
    permits: Semaphore,
    /// Resources scheduled at once: a permit per entry of `pending`.
    scheduled: Arc<Semaphore>,
    pending: Mutex<Pending>,
    /// This site's replies to the resources handled lately.
    replied: Replied,
}

impl Runner {
    pub fn new(
        site: String,
        couch: CouchClient,
        backend: Arc<dyn Backend>,
        concurrency: usize,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Runner {
            inner: Arc::new(Inner {
                site,
                couch,
                backend,
                permits: Semaphore::new(concurrency),
                scheduled: Arc::new(Semaphore::new(SCHEDULED.max(concurrency))),
                pending: Mutex::new(Pending::default()),
                replied: Replied::default(),
            }),
        }
    }

    /// Asks for the resource to be handled in the state `doc` (as the feed
    /// delivered it). The work is done on its own task; this waits only
    /// while too many resources are scheduled.
    pub async fn schedule(&self, doc: ResourceDocument) {
        let doc = {
            // One critical section: the run cannot end between the check
            // and the hand-over.
            let mut pending = self.inner.lock();
            if pending.is_scheduled(&doc.id) {
                pending.offer(doc);
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
        tokio::spawn(async move {
            inner.run_until_settled(doc).await;
            drop(slot);
        });
    }

    /// True when no resource is scheduled or running: every change handed
    /// to [`Runner::schedule`] so far has been fully handled.
    pub fn is_idle(&self) -> bool {
        self.inner.lock().is_empty()
    }

    /// Notes a reply stored in the database, as the feed delivered it.
    pub fn saw_reply(&self, reply: &ReplyDocument) {
        if reply.site == self.inner.site {
            self.inner
                .replied
                .saw(&reply.resource_id, &reply.request_id, reply.execution_time);
        }
    }

    /// Forgets what is known of this site's replies: the database changed
    /// in a way the feed does not tie to a resource (a document deleted, a
    /// feed resumed).
    pub fn forget_replies(&self) {
        self.inner.replied.forget_all();
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
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // No critical section can panic between two changes to the map: it
        // is never left inconsistent.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles the resource until no change arrived during the last pass.
    /// A pass that fails (CouchDB away) is retried with backoff: the resource
    /// stays scheduled, so the follower's checkpoint cannot move past it.
    async fn run_until_settled(&self, mut doc: ResourceDocument) {
        let mut failures = 0;
        loop {
            let outcome = match self.permits.acquire().await {
                Ok(_permit) => self.handle(&doc).await,
                // The semaphore is never closed.
                Err(_) => return,
            };
            let settled = match outcome {
                Ok(Pass::Settled) => {
                    failures = 0;
                    true
                }
                // Operations skipped after a failure: run them now.
                Ok(Pass::Unfinished) => {
                    failures = 0;
                    false
                }
                Err(error) => {
                    failures += 1;
                    let delay = backoff::delay(failures);
                    warn!(resource = %doc.id, site = %self.site, %error, ?delay, "resource handling failed; retrying");
                    tokio::time::sleep(delay).await;
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
    /// Cancellation: operations run but whose replies were not written are
    /// run again at the next pass, as after a crash.
    async fn handle(&self, doc: &ResourceDocument) -> Result<Pass, ReplicatorError> {
        let resource = doc.id.as_str();
        if !doc.lives_on(&self.site) {
            return Ok(Pass::Settled);
        }
        if !doc.conflicts.is_empty() {
            self.merge(doc).await?;
            return Ok(Pass::Settled);
        }

        let ran = match self.replied.get(resource) {
            Some(ran) => ran,
            None => {
                let ran = self.read_replies(resource).await?;
                self.replied.fill(resource, &ran);
                ran
            }
        };
        let ran_at: Vec<(&str, Timestamp)> = ran
            .iter()
            .map(|(request, time)| (request.as_str(), *time))
            .collect();
        let to_run: Vec<&Operation> = match current_state(&doc.operations, &ran_at) {
            Some(replied) => operations_to_run(&doc.operations, &replied, &doc.config),
            None => {
                info!(resource, site = %self.site, "ran an operation the merge dropped; running the block again");
                doc.operations.iter().collect()
            }
        };
        if to_run.is_empty() {
            debug!(resource, site = %self.site, "nothing to run");
            return Ok(Pass::Settled);
        }

        let commands: Vec<ShellCommand> = to_run.iter().map(|op| op.command.clone()).collect();
        let results = self.backend.run(&commands).await;
        let ran = results
            .iter()
            .filter(|r| r.outcome != Outcome::Skipped)
            .count();
        // Skipped operations did not run: no reply, and the next pass runs
        // them. Whether an operation runs must not depend on which others
        // shared its batch, or sites that batched differently diverge.
        let pass = if ran < to_run.len() {
            Pass::Unfinished
        } else {
            Pass::Settled
        };
        // Rule 3 orders this site's runs by its replies' times.
        let mut time = ran_at.iter().map(|(_, time)| *time).max();
        let replies: Vec<ReplyDocument> = to_run
            .iter()
            .zip(results)
            .take(ran)
            .map(|(op, result)| {
                let execution_time = Timestamp::now_after(time);
                time = Some(execution_time);
                info!(resource, request = %op.request_id, site = %self.site, status = %result.status(), "operation ran");
                ReplyDocument {
                    locations: doc.locations.clone(),
                    site: self.site.clone(),
                    request_id: op.request_id.clone(),
                    resource_id: resource.to_owned(),
                    status: result.status(),
                    input: op.command.command.clone(),
                    output: result.output,
                    execution_time,
                    ..ReplyDocument::default()
                }
            })
            .collect();
        let written: Vec<Ran> = replies
            .iter()
            .map(|r| (r.request_id.clone(), r.execution_time))
            .collect();
        // Known before the feed can echo them.
        self.replied.add(resource, &written);
        match self.couch.bulk_docs(&replies, true).await {
            Ok(rows) if rows.iter().all(|row| row.error.is_none()) => {}
            Ok(_) => self.replied.forget(resource),
            Err(error) => {
                self.replied.forget(resource);
                return Err(error);
            }
        }
        Ok(pass)
    }

    /// This site's replies to `resource`, as the replies view lists them.
    async fn read_replies(&self, resource: &str) -> Result<Vec<Ran>, ReplicatorError> {
        let replies: Vec<ReplyDocument> = self
            .couch
            .view_docs(DESIGN, REPLIES_VIEW, &json!([resource, self.site]))
            .await?;
        Ok(replies
            .into_iter()
            .map(|r| (r.request_id, r.execution_time))
            .collect())
    }

    async fn merge(&self, doc: &ResourceDocument) -> Result<(), ReplicatorError> {
        let mut losers = Vec::with_capacity(doc.conflicts.len());
        for rev in &doc.conflicts {
            // A revision deleted meanwhile is simply left out.
            if let Some(loser) = self
                .couch
                .get::<ResourceDocument>(&[&doc.id], &[("rev", rev)])
                .await?
            {
                losers.push(loser);
            }
        }
        let docs = resolution_docs(doc, &losers)?;
        let results = self.couch.bulk_docs(&docs, false).await?;
        if let Some(failed) = results.iter().find(|r| r.error.is_some()) {
            return Err(ReplicatorError::Couch {
                status: 0,
                context: format!("resolving the conflict of {}", doc.id),
                body: format!("{:?}: {:?}", failed.error, failed.reason),
            });
        }
        info!(resource = %doc.id, site = %self.site, losers = losers.len(), "conflict resolved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(rev(pending.take("r")), Some("2-b".into()));
        assert!(pending.is_scheduled("r"));
    }
}
