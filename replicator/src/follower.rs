//! Following the local database's changes feed for the daemon's lifetime:
//! replies go to the calls waiting for them, resource documents to the
//! runner and the replication manager. The feed position is checkpointed in
//! a `_local` document once everything before it has been handled, so a
//! restarted daemon resumes where it stopped without skipping work.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cheops_model::{DocumentKind, ReplyDocument, ResourceDocument};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::couch::{Change, CouchClient, Written};
use crate::events::{Events, NodeEvent};
use crate::ledger::Ledger;
use crate::liveness::Liveness;
use crate::replications::Replications;
use crate::runner::Runner;
use crate::supervisor::Task;
use crate::{backoff, Health, ReplicatorError, ReplyHub};

/// How often the checkpoint may be written.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

pub struct Follower {
    pub site: String,
    pub couch: CouchClient,
    pub hub: ReplyHub,
    pub runner: Runner,
    pub replications: Replications,
    pub liveness: Liveness,
    pub events: Events,
    pub health: Arc<Mutex<Health>>,
    pub ledger: Arc<Ledger>,
}

impl Follower {
    fn checkpoint_id(&self) -> String {
        format!("cheops-follower-{}", self.site)
    }

    fn set_health(&self, update: impl FnOnce(&mut Health)) {
        update(&mut self.health.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Follows the feed until `shutdown`; never returns on an error. The
    /// backoff between reconnections starts over once a connection works.
    pub async fn run(self, task: Task, mut shutdown: watch::Receiver<bool>) {
        let mut checkpoint = Checkpoint::default();
        loop {
            let followed = tokio::select! {
                result = self.follow(&mut checkpoint, &task) => result,
                _ = shutdown.changed() => return,
            };
            let error = match followed {
                Ok(()) => "the feed ended".to_owned(),
                Err(error) => error.to_string(),
            };
            // Capped low: the feed is how this node notices everything, so
            // it reconnects within seconds of CouchDB coming back.
            let delay = task.failed(&error).min(backoff::delay(6));
            self.set_health(|h| {
                h.follower_live = false;
                h.couchdb_reachable = false;
                h.last_error = Some(error.clone());
            });
            warn!(site = %self.site, %error, ?delay, "changes feed interrupted; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One connection to the feed, from the last checkpoint.
    async fn follow(
        &self,
        checkpoint: &mut Checkpoint,
        task: &Task,
    ) -> Result<(), ReplicatorError> {
        if checkpoint.rev.is_none() {
            if let Some(saved) = self
                .couch
                .get::<Value>(&["_local", &self.checkpoint_id()], &[])
                .await?
            {
                checkpoint.saved = saved.get("seq").cloned();
                checkpoint.rev = saved.get("_rev").and_then(Value::as_str).map(str::to_owned);
                checkpoint.seen = checkpoint.saved.clone();
            }
        }
        self.couch.metrics().handled(checkpoint.seen.as_ref());
        let mut feed = self.couch.changes(checkpoint.seen.as_ref()).await?;
        // What happened while the feed was away is replayed, but not, say, a
        // database deleted and created again.
        self.ledger.forget_all();
        self.set_health(|h| {
            h.follower_live = true;
            h.couchdb_reachable = true;
            h.last_error = None;
        });
        task.succeeded();
        info!(site = %self.site, since = ?checkpoint.seen, "following changes");
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        loop {
            tokio::select! {
                change = feed.next() => {
                    let Some(change) = change? else { return Ok(()) };
                    self.dispatch(&change).await;
                    // Only after the change was handed over, so that an idle
                    // runner means everything up to `seen` is handled.
                    self.couch.metrics().handled(Some(&change.seq));
                    checkpoint.seen = Some(change.seq);
                }
                _ = tick.tick() => self.save_checkpoint(checkpoint).await?,
            }
        }
    }

    /// Hands a change over to what it concerns; waits only while the runner
    /// has too many resources scheduled.
    async fn dispatch(&self, change: &Change) {
        let Some(doc) = &change.doc else { return };
        // Read from the borrowed document: no copy of its (possibly large) files.
        let kind = DocumentKind::deserialize(doc).unwrap_or_default();
        if change.deleted && !kind.is_resource() {
            // Perhaps a reply or a history document: its tombstone no
            // longer says whose.
            self.ledger.forget_all();
        } else if kind.is_reply() {
            match ReplyDocument::deserialize(doc) {
                Ok(mut reply) => {
                    // Streamed to callers as the original streams replies:
                    // without CouchDB's bookkeeping.
                    reply.id = None;
                    reply.rev = None;
                    self.ledger.saw_reply(&reply);
                    self.events.send(NodeEvent::Reply {
                        resource: reply.resource_id.clone(),
                        request_id: reply.request_id.clone(),
                        site: reply.site.clone(),
                        status: reply.status,
                    });
                    self.hub.deliver(reply);
                }
                Err(error) => warn!(id = %change.id, %error, "unreadable reply"),
            }
        } else if kind.is_history() {
            match HistoryKey::deserialize(doc) {
                Ok(history) => self
                    .ledger
                    .saw_history(&history.resource_id, &history.operation.request_id),
                Err(error) => warn!(id = %change.id, %error, "unreadable history document"),
            }
        } else if kind.is_resource() && !change.deleted {
            match ResourceDocument::deserialize(doc) {
                Ok(resource) => {
                    self.replications.ensure(&resource.locations);
                    self.liveness.track(&resource.locations);
                    self.events.send(NodeEvent::Resource {
                        id: resource.id.clone(),
                    });
                    if resource.lives_on(&self.site) {
                        self.runner.schedule(resource).await;
                    }
                }
                Err(error) => warn!(resource = %change.id, %error, "unreadable resource document"),
            }
        } else {
            debug!(id = %change.id, "change ignored");
        }
    }

    /// Saves `seen` when the runner is idle (read in that order: see
    /// [`Follower::follow`]).
    async fn save_checkpoint(&self, checkpoint: &mut Checkpoint) -> Result<(), ReplicatorError> {
        let seen = checkpoint.seen.clone();
        if seen.is_none() || seen == checkpoint.saved || !self.runner.is_idle() {
            return Ok(());
        }
        let mut doc = json!({ "seq": seen });
        if let Some(rev) = &checkpoint.rev {
            doc["_rev"] = Value::from(rev.as_str());
        }
        match self
            .couch
            .put(&["_local", &self.checkpoint_id()], &doc)
            .await?
        {
            Written::Rev(rev) => {
                checkpoint.rev = Some(rev);
                checkpoint.saved = seen;
                // Documents arrived and the runner is idle: a good time.
                self.runner.index_replies();
            }
            // Reread at the next connection; progress is only delayed.
            Written::Conflict => checkpoint.rev = None,
        }
        Ok(())
    }
}

/// What identifies a history document's request, read without its payload.
#[derive(Deserialize)]
struct HistoryKey {
    #[serde(rename = "ResourceId")]
    resource_id: String,
    #[serde(rename = "Operation")]
    operation: RequestKey,
}

#[derive(Deserialize)]
struct RequestKey {
    #[serde(rename = "RequestId")]
    request_id: String,
}

/// Where the follower is in the feed.
#[derive(Default)]
struct Checkpoint {
    /// The last change handed over.
    seen: Option<Value>,
    /// The last position written to CouchDB.
    saved: Option<Value>,
    /// The checkpoint document's revision.
    rev: Option<String>,
}
