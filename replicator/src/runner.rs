//! Running what a resource needs when its document changes: merge its
//! conflicts, or run the operations this site has not run yet and write one
//! reply per operation.
//!
//! Runs of one resource never overlap: a change arriving during a run marks
//! the resource to be looked at again when the run ends. Different resources
//! run concurrently, up to a bound.

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
use crate::resolution::resolution_docs;
use crate::{backoff, ReplicatorError};

/// Schedules and runs per-resource work.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    site: String,
    couch: CouchClient,
    backend: Arc<dyn Backend>,
    permits: Semaphore,
    /// Resources with a run in progress → whether to look again afterwards.
    active: Mutex<HashMap<String, bool>>,
}

impl Runner {
    pub fn new(
        site: String,
        couch: CouchClient,
        backend: Arc<dyn Backend>,
        concurrency: usize,
    ) -> Self {
        Runner {
            inner: Arc::new(Inner {
                site,
                couch,
                backend,
                permits: Semaphore::new(concurrency.max(1)),
                active: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Asks for the resource to be looked at. Returns at once; the work is
    /// done on its own task.
    pub fn schedule(&self, resource: &str) {
        let mut active = self.inner.lock();
        if let Some(again) = active.get_mut(resource) {
            *again = true;
            return;
        }
        active.insert(resource.to_owned(), false);
        drop(active);
        let inner = Arc::clone(&self.inner);
        let resource = resource.to_owned();
        tokio::spawn(async move { inner.run_until_settled(resource).await });
    }

    /// True when no resource is scheduled or running: every change handed
    /// to [`Runner::schedule`] so far has been fully handled.
    pub fn is_idle(&self) -> bool {
        self.inner.lock().is_empty()
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        // Each critical section is a single map operation: a panic cannot
        // leave the map inconsistent.
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles the resource until no change arrived during the last pass.
    /// A pass that fails (CouchDB away) is retried with backoff: the resource
    /// stays active, so the follower's checkpoint cannot move past it.
    async fn run_until_settled(&self, resource: String) {
        let mut failures = 0;
        loop {
            let outcome = match self.permits.acquire().await {
                Ok(_permit) => self.handle(&resource).await,
                // The semaphore is never closed.
                Err(_) => return,
            };
            match outcome {
                Ok(Pass::Settled) => failures = 0,
                // Operations skipped after a failure: run them now.
                Ok(Pass::Unfinished) => {
                    failures = 0;
                    continue;
                }
                Err(error) => {
                    failures += 1;
                    let delay = backoff::delay(failures);
                    warn!(resource = %resource, site = %self.site, %error, ?delay, "resource handling failed; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            let mut active = self.lock();
            match active.get_mut(&resource) {
                Some(again) if *again => *again = false,
                _ => {
                    active.remove(&resource);
                    return;
                }
            }
        }
    }

    /// One pass over a resource: merge its conflicts if it has some (the
    /// merged revision comes back through the feed and is run then),
    /// otherwise run what this site has not run yet.
    ///
    /// Cancellation: operations run but whose replies were not written are
    /// run again at the next pass, as after a crash.
    async fn handle(&self, resource: &str) -> Result<Pass, ReplicatorError> {
        let Some(doc) = self
            .couch
            .get::<ResourceDocument>(&[resource], &[("conflicts", "true")])
            .await?
        else {
            return Ok(Pass::Settled);
        };
        if !doc.lives_on(&self.site) {
            return Ok(Pass::Settled);
        }
        if !doc.conflicts.is_empty() {
            self.merge(&doc).await?;
            return Ok(Pass::Settled);
        }

        let replies: Vec<ReplyDocument> = self
            .couch
            .view_docs(DESIGN, REPLIES_VIEW, &json!([resource, self.site]))
            .await?;
        let ran_at: Vec<(&str, Timestamp)> = replies
            .iter()
            .map(|r| (r.request_id.as_str(), r.execution_time))
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
        self.couch.bulk_docs(&replies, true).await?;
        Ok(pass)
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
