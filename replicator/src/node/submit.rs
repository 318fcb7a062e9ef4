//! `/exec`'s path: storing an operation in its resource's block, pruning
//! what every location ran.

use std::collections::{BTreeSet, HashMap};

use cheops_model::{Operation, ResourceConfig, ResourceDocument};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::consistency::{add_operation, prunable, prune_payloads, Seen};
use crate::db::couch::Written;
use crate::db::queries;
use crate::node::feed::{Event, EventType};
use crate::node::resolution::dropped_history;
use crate::node::writes;
use crate::node::Node;
use crate::{ReplicatorError, Submission, Submitted};

/// Requests looked up in one query of the requests view when pruning.
const PRUNE_LOOKUP_KEYS: usize = 200;

/// How many times a write that lost a race is retried before giving up.
const WRITE_ATTEMPTS: u32 = 50;

impl Node {
    /// Stores an operation, creating the resource if needed, and returns the
    /// channel its replies will arrive on. A concurrent write to the same
    /// resource is retried on the new revision, never surfaced. The document
    /// this node stored last is taken as current without reading it (see
    /// [`crate::node::recent::Recent`]).
    ///
    /// Cancellation: if dropped before it returns, the operation may or may
    /// not have been stored; if stored, it runs everywhere regardless.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, ReplicatorError> {
        let Submission {
            resource_id,
            sites,
            mut operation,
            config,
        } = submission;
        if !sites.contains(&self.ctx.site) {
            return Err(ReplicatorError::InvalidRequest(format!(
                "this node ({}) is not one of the sites: {}",
                self.ctx.site,
                sites.join(", ")
            )));
        }
        self.check_sites(&sites)?;
        if let Some(over) = self.ctx.over_size(&resource_id) {
            return Err(ReplicatorError::OverSize {
                resource: resource_id,
                bytes: over.bytes,
                limit: over.limit,
            });
        }
        let kind = operation.command.kind;
        if !self.backend.serves(kind) {
            return Err(ReplicatorError::InvalidRequest(format!(
                "this node ({}) does not serve {kind} operations: an operation is sent through a site that runs its kind",
                self.ctx.site
            )));
        }
        operation.site = self.ctx.site.clone();
        // Subscribed before writing: no reply can come before we listen.
        let replies = self.hub.subscribe(&operation.request_id);
        // Before writing too: whatever is stored about it from now on, the
        // feed brings.
        self.ctx
            .ledger
            .submitting(&resource_id, &operation.request_id);

        let locations = self
            .store(&resource_id, &sites, &operation, config.as_ref())
            .await?;
        self.ctx.feed.note(Event::accepted(
            &resource_id,
            &operation.request_id,
            &locations,
            operation.op_type.clone(),
            Some(self.ctx.site.clone()),
        ));
        Ok(Submitted {
            resource_id,
            request_id: operation.request_id.clone(),
            locations,
            input: operation.command.describe(),
            replies,
        })
    }

    /// Stores `operation` in the block of `resource_id`, retrying writes
    /// that lost a race; returns the resource's locations.
    async fn store(
        &self,
        resource_id: &str,
        sites: &[String],
        operation: &Operation,
        config: Option<&ResourceConfig>,
    ) -> Result<Vec<String>, ReplicatorError> {
        // What the requests view said, kept across attempts.
        let mut seen = HashMap::new();
        let creates = !operation.command.is_empty();
        for attempt in 0..WRITE_ATTEMPTS {
            let mut doc = match self.recent.take(resource_id) {
                // This node's own last write, not read again: a lookup
                // before writing on it loses a race only when another
                // writer came meanwhile, and the next attempt reads afresh.
                Some(doc) => {
                    self.look_up(&doc, &operation.request_id, &mut seen).await;
                    same_locations(resource_id, sites, doc)?
                }
                None => {
                    let doc = self.current(resource_id, sites, creates).await?;
                    // The lookup happens between two reads, not between the
                    // read and the write, which would lose more races to
                    // other writers.
                    if self.look_up(&doc, &operation.request_id, &mut seen).await {
                        self.current(resource_id, sites, creates).await?
                    } else {
                        doc
                    }
                }
            };
            if let Some(config) = config.filter(|c| !c.is_empty()) {
                if doc.rev.is_some() && !doc.config.same_rules(config) {
                    return Err(ReplicatorError::ConfigChanged(resource_id.to_owned()));
                }
                doc.config = config.clone();
            }
            let operations = add_operation(&doc.config, &doc.operations, operation.clone());
            let known = |request: &str| {
                seen.get(request).is_some_and(|s: &Seen| s.history)
                    || self
                        .ctx
                        .ledger
                        .known(resource_id, request)
                        .is_some_and(|known| known.seen.history)
            };
            let dropped = dropped_history(
                resource_id,
                &doc.locations,
                &doc.operations,
                &operations,
                known,
            )?;
            doc.operations = operations;
            let pruned = prune_seen(&mut doc, &operation.request_id, &seen);
            // The limit applies to each document of the request.
            let size = json_len(&doc);
            if size > self.config.max_document_size {
                return Err(ReplicatorError::TooLarge {
                    resource: resource_id.to_owned(),
                    size,
                    limit: self.config.max_document_size,
                });
            }
            // Before the block that drops their operations: none is ever
            // out of every block and of the history at once.
            self.store_dropped(resource_id, &dropped).await?;
            // The first attempt shares a request with the replies waiting;
            // one after a lost race is sent alone, at once.
            let saved = if attempt == 0 {
                writes::resource(&self.ctx, doc).await
            } else {
                let written = self.ctx.couch.save(&doc).await;
                written.map(|written| (doc, written))
            };
            match saved {
                Ok((mut doc, Written::Rev(rev))) => {
                    self.ctx.metrics.accepted();
                    info!(resource = %resource_id, request = %operation.request_id, site = %self.ctx.site, rev = %rev, "operation stored");
                    let locations = doc.locations.clone();
                    doc.rev = Some(rev);
                    self.recent.stored(doc, size);
                    self.ctx
                        .ledger
                        .pruned(resource_id, pruned.iter().map(String::as_str));
                    for request in &pruned {
                        let mut event =
                            Event::new(EventType::Pruned, resource_id, request, &locations);
                        event.site = Some(self.ctx.site.clone());
                        self.ctx.feed.note(event);
                    }
                    return Ok(locations);
                }
                Ok((_, Written::Conflict)) => {}
                // CouchDB configured with a lower limit than the node.
                Err(ReplicatorError::Couch {
                    status: 413, body, ..
                }) => {
                    return Err(ReplicatorError::RefusedTooLarge {
                        resource: resource_id.to_owned(),
                        size,
                        limit: self.config.max_document_size,
                        reason: couch_reason(&body),
                    })
                }
                Err(error) => return Err(error),
            }
        }
        Err(ReplicatorError::Contended {
            resource: resource_id.to_owned(),
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// Writes the history documents of the operations a resetting
    /// operation drops from the block (see [`dropped_history`]).
    async fn store_dropped(
        &self,
        resource_id: &str,
        dropped: &[Value],
    ) -> Result<(), ReplicatorError> {
        if dropped.is_empty() {
            return Ok(());
        }
        let results = self.ctx.couch.bulk_docs(dropped, false).await?;
        match results.iter().find(|r| r.error.is_some()) {
            Some(failed) => Err(ReplicatorError::Couch {
                status: 0,
                context: format!(
                    "storing the history of the operations an operation of {resource_id} drops"
                ),
                body: format!("{:?}: {:?}", failed.error, failed.reason),
            }),
            None => {
                debug!(resource = %resource_id, site = %self.ctx.site, dropped = dropped.len(), "history documents of the operations dropped stored");
                Ok(())
            }
        }
    }

    /// The resource `resource_id` as stored, or a new one on `sites` when
    /// there is none and the operation `creates` it (has a command).
    async fn current(
        &self,
        resource_id: &str,
        sites: &[String],
        creates: bool,
    ) -> Result<ResourceDocument, ReplicatorError> {
        match self.read_live(resource_id).await? {
            Some(doc) => same_locations(resource_id, sites, doc),
            None if !creates => Err(ReplicatorError::InvalidRequest(format!(
                "resource {resource_id} does not exist, and an empty command does not create one"
            ))),
            None => Ok(ResourceDocument {
                id: resource_id.to_owned(),
                locations: sites.to_vec(),
                ..ResourceDocument::default()
            }),
        }
    }

    /// Adds to `seen` what this database holds about the unpruned
    /// operations of `doc`'s block but `new` that `seen` does not hold yet:
    /// from the ledger when what it knows is complete or already proves the
    /// operation prunable, from the requests view otherwise. True when it
    /// queried the view. Only those operations are looked up, so the cost
    /// follows the block's unpruned operations, not the resource's history,
    /// and in the steady state the feed has answered them all. Pruning saves
    /// space and decides nothing: when the lookup fails, nothing new is
    /// learnt.
    async fn look_up(
        &self,
        doc: &ResourceDocument,
        new: &str,
        seen: &mut HashMap<String, Seen>,
    ) -> bool {
        let unknown: Vec<&str> = doc
            .operations
            .iter()
            .filter(|op| !op.pruned && op.request_id != new && !seen.contains_key(&op.request_id))
            .map(|op| op.request_id.as_str())
            .collect();
        let mut lookups = Vec::new();
        for request in unknown {
            match self.ctx.ledger.known(&doc.id, request) {
                Some(known) if known.complete || prunable(&doc.locations, &known.seen) => {
                    seen.insert(request.to_owned(), known.seen);
                }
                _ => lookups.push(request),
            }
        }
        for chunk in lookups.chunks(PRUNE_LOOKUP_KEYS) {
            let found = match queries::requests(&self.ctx.couch, &doc.id, chunk).await {
                Ok(found) => found,
                Err(error) => {
                    warn!(resource = %doc.id, site = %self.ctx.site, %error, "cannot look up which operations ran everywhere; pruning nothing new");
                    return true;
                }
            };
            for (request, view) in found {
                self.ctx.ledger.learnt(&doc.id, &request, &view);
                // With what the feed brought meanwhile.
                let known = self.ctx.ledger.known(&doc.id, &request);
                seen.insert(request, known.map_or(view, |k| k.seen));
            }
        }
        !lookups.is_empty()
    }

    /// Refuses sites that are not site names or that this node cannot
    /// reach: it would replicate to them with its credentials.
    fn check_sites(&self, sites: &[String]) -> Result<(), ReplicatorError> {
        if sites.len() > cheops_model::MAX_SITES {
            return Err(ReplicatorError::InvalidRequest(format!(
                "{} sites are named; a resource has at most {}",
                sites.len(),
                cheops_model::MAX_SITES
            )));
        }
        for site in sites.iter().filter(|s| **s != self.ctx.site) {
            self.config
                .sites
                .resolve(site)
                .map_err(ReplicatorError::InvalidRequest)?;
        }
        Ok(())
    }
}

/// Prunes the payload of every operation of `doc`'s block but `new` that
/// every location has run, from sites that read history documents, and
/// that is here whole (a reply carrying it, or its history document), as
/// `seen` says (CONSISTENCY.md, "Pruning"); returns their request ids.
fn prune_seen(doc: &mut ResourceDocument, new: &str, seen: &HashMap<String, Seen>) -> Vec<String> {
    let locations = &doc.locations;
    let mut pruned = Vec::new();
    prune_payloads(&mut doc.operations, |op| {
        let prune = op.request_id != new
            && seen
                .get(&op.request_id)
                .is_some_and(|s| prunable(locations, s));
        if prune {
            pruned.push(op.request_id.clone());
        }
        prune
    });
    if !pruned.is_empty() {
        debug!(resource = %doc.id, pruned = pruned.len(), "payloads pruned from the block");
    }
    pruned
}

/// The length of `doc` as JSON, as CouchDB measures it against its limit.
fn json_len(doc: &impl serde::Serialize) -> usize {
    serde_json::to_vec(doc).map_or(0, |json| json.len())
}

/// What CouchDB said in an error's body: its `reason` (with its `error`),
/// or the body as it came.
fn couch_reason(body: &str) -> String {
    let said: Option<Value> = serde_json::from_str(body).ok();
    let field = |name| {
        said.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
    };
    match (field("error"), field("reason")) {
        (Some(error), Some(reason)) => format!("{error}: {reason}"),
        (None, Some(reason)) => reason.to_owned(),
        _ => body.to_owned(),
    }
}

/// `doc`, when its locations are `sites` (in any order): locations never
/// change.
fn same_locations(
    resource_id: &str,
    sites: &[String],
    doc: ResourceDocument,
) -> Result<ResourceDocument, ReplicatorError> {
    let wanted: BTreeSet<&String> = sites.iter().collect();
    let stored: BTreeSet<&String> = doc.locations.iter().collect();
    if wanted != stored {
        return Err(ReplicatorError::InvalidRequest(format!(
            "sites ({}) differ from the locations of resource {resource_id} ({}); locations never change",
            sites.join(", "),
            doc.locations.join(", ")
        )));
    }
    Ok(doc)
}
