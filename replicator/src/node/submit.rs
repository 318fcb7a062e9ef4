//! `/exec`'s path: storing an operation in its resource's block, with its
//! history document, pruning what every location ran.

use std::collections::{BTreeSet, HashMap};

use cheops_model::{history_id, HistoryDocument, Operation, ResourceConfig, ResourceDocument};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::consistency::{add_operation, prunable, prune_payloads, Seen};
use crate::db::couch::Written;
use crate::db::origin::Stamped;
use crate::db::queries;
use crate::node::feed::{Event, EventType};
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
            operation,
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
        // Subscribed before writing: no reply can come before we listen.
        let replies = self.hub.subscribe(&operation.request_id);
        // Before writing too: whatever is stored about it from now on, the
        // feed brings.
        self.ctx
            .ledger
            .submitting(&resource_id, &operation.request_id);

        let mut left = Left::default();
        match self
            .store(&resource_id, &sites, &operation, config.as_ref(), &mut left)
            .await
        {
            Ok(locations) => Ok(Submitted {
                resource_id,
                request_id: operation.request_id.clone(),
                locations,
                input: operation.command.describe(),
                replies,
            }),
            Err(error) => {
                if let Some(rev) = left.history.filter(|_| !left.maybe_stored) {
                    self.unstore_history(&resource_id, &sites, &operation.request_id, rev)
                        .await;
                }
                Err(error)
            }
        }
    }

    /// Stores `operation` in the block of `resource_id`, retrying writes
    /// that lost a race; returns the resource's locations. `left` says
    /// what its writes left in CouchDB, for a refusal to take back.
    async fn store(
        &self,
        resource_id: &str,
        sites: &[String],
        operation: &Operation,
        config: Option<&ResourceConfig>,
        left: &mut Left,
    ) -> Result<Vec<String>, ReplicatorError> {
        // What the requests view said, kept across attempts.
        let mut seen = HashMap::new();
        let creates = !operation.command.is_empty();
        for _ in 0..WRITE_ATTEMPTS {
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
            doc.operations = add_operation(&doc.config, &doc.operations, operation.clone());
            let pruned = prune_seen(&mut doc, &operation.request_id, &seen);
            let new_history = left.history.is_none().then(|| {
                HistoryDocument::new(resource_id, &doc.locations, operation, &self.ctx.site)
            });
            // The limit applies to each document of the request.
            let size = json_len(&doc).max(
                new_history
                    .as_ref()
                    .map_or(0, |h| json_len(&Stamped::new(h, self.ctx.origin()))),
            );
            let too_large = || ReplicatorError::TooLarge {
                resource: resource_id.to_owned(),
                size,
                limit: self.config.max_document_size,
            };
            if size > self.config.max_document_size {
                return Err(too_large());
            }

            let written = match &new_history {
                Some(new_history) => self.put_with_history(&doc, new_history).await,
                None => self
                    .ctx
                    .couch
                    .put(&[resource_id], &doc)
                    .await
                    .map(|w| (w, None)),
            };
            match written {
                Ok((Written::Rev(rev), _)) => {
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
                Ok((Written::Conflict, stored)) => {
                    if stored.is_some() {
                        left.history = stored;
                    }
                }
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
                Err(error) => {
                    // Unanswered, the write may have stored the operation,
                    // and its history document is then its own.
                    left.maybe_stored = error.is_unavailable();
                    return Err(error);
                }
            }
        }
        Err(ReplicatorError::Contended {
            resource: resource_id.to_owned(),
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// Writes the resource document and the history document of the
    /// operation it newly holds in one request. Returns how the resource
    /// was written, and the history document's revision once it is stored
    /// (empty when an earlier attempt stored it). A history document
    /// CouchDB refuses otherwise is only logged: its operation is stored
    /// all the same, and stays unpruned, since pruning needs it.
    async fn put_with_history(
        &self,
        doc: &ResourceDocument,
        history: &HistoryDocument,
    ) -> Result<(Written, Option<String>), ReplicatorError> {
        let encode = |value: Result<Value, serde_json::Error>| {
            value.map_err(|source| ReplicatorError::Decode {
                context: "a document to write".into(),
                source,
            })
        };
        let docs = [
            encode(serde_json::to_value(doc))?,
            encode(serde_json::to_value(Stamped::new(
                history,
                self.ctx.origin(),
            )))?,
        ];
        let results = self.ctx.couch.bulk_docs(&docs, true).await?;
        let row = |id: &str| results.iter().find(|r| r.id.as_deref() == Some(id));
        let history_stored = match row(&history.id) {
            Some(r) if r.error.is_none() => Some(r.rev.clone().unwrap_or_default()),
            Some(r) if r.error.as_deref() == Some("conflict") => Some(String::new()),
            other => {
                warn!(resource = %doc.id, request = %history.operation.request_id, site = %self.ctx.site, answer = ?other.map(|r| (&r.error, &r.reason)), "history document not stored; its operation keeps its payload");
                None
            }
        };
        let written = match row(&doc.id) {
            Some(r) if r.error.as_deref() == Some("conflict") => Written::Conflict,
            Some(r) if r.error.is_none() => Written::Rev(r.rev.clone().unwrap_or_default()),
            // A row CouchDB refused as over its max_document_size.
            Some(r) if matches!(r.error.as_deref(), Some("too_large" | "document_too_large")) => {
                return Err(ReplicatorError::Couch {
                    status: 413,
                    context: format!("POST _bulk_docs storing an operation of {}", doc.id),
                    body: serde_json::json!({"error": r.error, "reason": r.reason}).to_string(),
                })
            }
            other => {
                return Err(ReplicatorError::Couch {
                    status: 0,
                    context: format!("POST _bulk_docs storing an operation of {}", doc.id),
                    body: format!("{:?}", other.map(|r| (&r.error, &r.reason))),
                })
            }
        };
        Ok((written, history_stored))
    }

    /// Deletes the history document of an operation that was not stored,
    /// so that no reader lists it, here or on the other `sites`. At worst it
    /// stays: logged.
    async fn unstore_history(
        &self,
        resource_id: &str,
        sites: &[String],
        request: &str,
        rev: String,
    ) {
        let id = history_id(resource_id, request);
        let rev = match rev {
            rev if !rev.is_empty() => Some(rev),
            _ => match self.ctx.couch.get::<Value>(&[&id], &[]).await {
                Ok(doc) => {
                    doc.and_then(|d| d.get("_rev").and_then(Value::as_str).map(str::to_owned))
                }
                Err(_) => None,
            },
        };
        let deleted = match rev {
            Some(rev) => {
                let tombstone = serde_json::json!({
                    "_rev": rev,
                    "_deleted": true,
                    // Kept so that the replication filter lets the deletion through.
                    "Locations": sites,
                    "ResourceId": resource_id,
                    "Type": "HISTORY",
                });
                self.ctx.couch.put(&[&id], &tombstone).await.ok()
            }
            None => None,
        };
        if !matches!(deleted, Some(Written::Rev(_))) {
            warn!(resource = %resource_id, request, site = %self.ctx.site, "the history document of an operation not stored could not be deleted");
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

/// What an exec's writes left in CouchDB.
#[derive(Debug, Default)]
struct Left {
    /// The revision of the operation's history document once stored (empty
    /// when an earlier attempt stored it unseen). Written with the first
    /// attempt and kept by the next ones.
    history: Option<String>,
    /// A write of the resource went unanswered: the operation may be stored.
    maybe_stored: bool,
}

/// Prunes the payload of every operation of `doc`'s block but `new` that
/// every location has run, from sites that read history documents, and
/// whose history document is here, as `seen` says (CONSISTENCY.md,
/// "Pruning"); returns their request ids.
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
