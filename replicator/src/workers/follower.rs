//! Following the local database's changes feed for the daemon's lifetime:
//! replies go to the calls waiting for them, resource documents to the
//! runner and the replication manager. The feed position is checkpointed in
//! a `_local` document once everything before it has been handled, so a
//! restarted daemon resumes where it stopped without skipping work.

use std::time::Duration;

use cheops_model::{history_of, DocumentKind, ReplyDocument, ResourceDocument};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::db::couch::{Change, ChangesFeed, Written};
use crate::node::context::Context;
use crate::node::events::NodeEvent;
use crate::node::feed::{cap_output, Event, EventType};
use crate::node::runner::Runner;
use crate::workers::liveness::Liveness;
use crate::workers::replications::Replications;
use crate::workers::worker::{Worker, WorkerState};
use crate::{ReplicatorError, ReplyHub};

/// How often the checkpoint may be written.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

pub struct Follower {
    pub ctx: Context,
    pub hub: ReplyHub,
    pub runner: Runner,
    pub replications: Replications,
    pub liveness: Liveness,
    pub checkpoint: Checkpoint,
}

impl Worker for Follower {
    /// Connects to the feed when not connected, then hands over one change
    /// a step (or saves the checkpoint when it is time). The backoff starts
    /// over once a connection works.
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let stepped = if self.checkpoint.feed.is_some() {
            self.step().await
        } else {
            self.connect().await
        };
        if let Err(error) = &stepped {
            self.checkpoint.feed = None;
            let error = error.to_string();
            self.ctx.set_health(|h| {
                h.follower_live = false;
                h.couchdb_reachable = false;
                h.last_error = Some(error);
            });
        }
        stepped.map(|()| WorkerState::Busy)
    }

    async fn wait_for_work(&mut self) {}
}

impl Follower {
    fn checkpoint_id(&self) -> String {
        format!("cheops-follower-{}", self.ctx.site)
    }

    /// Opens the feed from the last checkpoint.
    async fn connect(&mut self) -> Result<(), ReplicatorError> {
        let id = self.checkpoint_id();
        let checkpoint = &mut self.checkpoint;
        if checkpoint.rev.is_none() {
            if let Some(saved) = self.ctx.couch.get::<Value>(&["_local", &id], &[]).await? {
                checkpoint.saved = saved.get("seq").cloned();
                checkpoint.rev = saved.get("_rev").and_then(Value::as_str).map(str::to_owned);
                checkpoint.seen = checkpoint.saved.clone();
            }
        }
        self.ctx.metrics.handled(checkpoint.seen.as_ref());
        checkpoint.feed = Some(self.ctx.couch.changes(checkpoint.seen.as_ref()).await?);
        // What happened while the feed was away is replayed, but not, say, a
        // database deleted and created again.
        self.ctx.ledger.forget_all();
        self.ctx.set_health(|h| {
            h.follower_live = true;
            h.couchdb_reachable = true;
            h.last_error = None;
        });
        info!(site = %self.ctx.site, since = ?self.checkpoint.seen, "following changes");
        Ok(())
    }

    /// Hands over the next change, or saves the checkpoint when it is time.
    async fn step(&mut self) -> Result<(), ReplicatorError> {
        let Some(feed) = self.checkpoint.feed.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            change = feed.next() => {
                let Some(change) = change? else {
                    return Err(ReplicatorError::Interrupted("the changes feed ended"));
                };
                self.dispatch(&change).await;
                // Only after the change was handed over, so that an idle
                // runner means everything up to `seen` is handled.
                self.ctx.metrics.handled(Some(&change.seq));
                self.checkpoint.seen = Some(change.seq);
            }
            _ = self.checkpoint.tick.tick() => self.save_checkpoint().await?,
        }
        Ok(())
    }

    /// Hands a change over to what it concerns; waits only while the runner
    /// has too many resources scheduled.
    async fn dispatch(&self, change: &Change) {
        let Some(doc) = change.doc.as_deref() else {
            return;
        };
        // Each reader decodes what it needs from the document's text: a
        // history document's payload is skipped, never held.
        let kind = DocumentKind::deserialize(doc).unwrap_or_default();
        if change.deleted && !kind.is_resource() {
            // Perhaps a reply or a history document: its tombstone no
            // longer says whose.
            self.ctx.ledger.forget_all();
            // A history document is deleted only by a node of before,
            // when its operation was refused in the end; its id says which.
            if let Some((resource, request)) = history_of(&change.id) {
                self.ctx.feed.note(Event::new(
                    EventType::OperationRefused,
                    resource,
                    request,
                    &[],
                ));
            }
        } else if kind.is_reply() {
            match ReplyDocument::deserialize(doc) {
                Ok(mut reply) => {
                    // Streamed to callers as the original streams replies:
                    // without CouchDB's bookkeeping.
                    reply.id = None;
                    reply.rev = None;
                    self.ctx.ledger.saw_reply(&reply);
                    // A reply carrying its operation announces it, as a
                    // history document does; the operation is never
                    // streamed.
                    if let Some(operation) = reply.operation.take() {
                        self.ctx.feed.note(Event::accepted(
                            &reply.resource_id,
                            &reply.request_id,
                            &reply.locations,
                            operation.op_type,
                            Some(reply.site.clone()),
                        ));
                    }
                    let mut event = Event::new(
                        EventType::Reply,
                        &reply.resource_id,
                        &reply.request_id,
                        &reply.locations,
                    );
                    event.site = Some(reply.site.clone());
                    event.status = Some(reply.status);
                    event.ran_at = Some(reply.execution_time);
                    event.output = Some(cap_output(&reply.output));
                    if reply.rebuild {
                        let mut rerun = event.clone();
                        rerun.kind = EventType::Rerun;
                        rerun.output = None;
                        self.ctx.feed.note(rerun);
                    }
                    self.ctx.feed.note(event);
                    self.ctx.events.send(NodeEvent::Reply {
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
                Ok(history) => {
                    let (resource, request) = (&history.resource_id, &history.operation.request_id);
                    self.ctx.ledger.saw_history(resource, request);
                    self.ctx.feed.note(Event::accepted(
                        resource,
                        request,
                        history.locations.as_deref().unwrap_or_default(),
                        history.operation.op_type,
                        history.site,
                    ));
                }
                Err(error) => warn!(id = %change.id, %error, "unreadable history document"),
            }
        } else if kind.is_resource() && !change.deleted {
            match ResourceDocument::deserialize(doc) {
                Ok(resource) => {
                    self.replications.ensure(&resource.locations);
                    self.liveness.track(&resource.locations);
                    self.ctx.events.send(NodeEvent::Resource {
                        id: resource.id.clone(),
                    });
                    if resource.lives_on(&self.ctx.site) {
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
    async fn save_checkpoint(&mut self) -> Result<(), ReplicatorError> {
        let id = self.checkpoint_id();
        let checkpoint = &mut self.checkpoint;
        let seen = checkpoint.seen.clone();
        if seen.is_none() || seen == checkpoint.saved || !self.runner.is_idle() {
            return Ok(());
        }
        // The events of the changes up to `seen` must outlive the
        // checkpoint: they are not derived again past it.
        self.ctx.feed.sync().await?;
        let mut doc = json!({ "seq": seen });
        if let Some(rev) = &checkpoint.rev {
            doc["_rev"] = Value::from(rev.as_str());
        }
        match self.ctx.couch.put(&["_local", &id], &doc).await? {
            Written::Rev(rev) => {
                checkpoint.rev = Some(rev);
                checkpoint.saved = seen;
                // Documents arrived and the runner is idle: a good time.
                self.ctx.ledger.want_index();
            }
            // Reread at the next connection; progress is only delayed.
            Written::Conflict => checkpoint.rev = None,
        }
        Ok(())
    }
}

/// What the ledger and the changes feed read of a history document,
/// without its payload.
#[derive(Deserialize)]
struct HistoryKey {
    #[serde(rename = "ResourceId")]
    resource_id: String,
    /// `null` in documents the original wrote for no site.
    #[serde(rename = "Locations", default)]
    locations: Option<Vec<String>>,
    #[serde(rename = "Operation")]
    operation: RequestKey,
    #[serde(rename = "Site", default)]
    site: Option<String>,
}

#[derive(Deserialize)]
struct RequestKey {
    #[serde(rename = "RequestId")]
    request_id: String,
    #[serde(rename = "Type", default)]
    op_type: String,
}

/// Where the follower is in the feed.
pub struct Checkpoint {
    /// The feed, while connected.
    feed: Option<ChangesFeed>,
    /// When to save the checkpoint next.
    tick: tokio::time::Interval,
    /// The last change handed over.
    seen: Option<Value>,
    /// The last position written to CouchDB.
    saved: Option<Value>,
    /// The checkpoint document's revision.
    rev: Option<String>,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            feed: None,
            tick: tokio::time::interval(CHECKPOINT_EVERY),
            seen: None,
            saved: None,
            rev: None,
        }
    }
}
