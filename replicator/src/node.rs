//! A Cheops node: the local database, the background tasks that follow it,
//! and the operations users submit to it.

pub mod batch;
pub mod by_use;
pub mod context;
pub mod events;
pub mod health;
pub mod history;
pub mod hub;
pub mod journal;
pub mod ledger;
pub mod oversize;
pub mod recent;
pub mod resolution;
pub mod runner;
pub mod seam;
pub mod store;
pub mod submission;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cheops_backends::{Backend, CommandResult};
use cheops_model::{DocumentKind, HistoryDocument, ResourceDocument, ShellCommand};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::consistency::{add_operation, prunable, prune_payloads, Seen, SeenReply};
use crate::db::bootstrap::{bootstrap, DatabaseAccess};
use crate::db::couch::{CouchClient, Stored, Written};
use crate::db::design::{DESIGN, REQUESTS_VIEW};
use crate::metrics::{replication_state, Metrics, Snapshot};
use crate::node::context::Context;
use crate::node::events::{NodeEvent, PeerLiveness};
use crate::node::history::{read_history, HistoryQuery, HistoryStream};
use crate::node::journal::Journal;
use crate::node::recent::Recent;
use crate::node::runner::Runner;
use crate::workers::flusher::Flusher;
use crate::workers::follower::{Checkpoint, Follower};
use crate::workers::indexing::IdleIndexing;
use crate::workers::liveness::Liveness;
use crate::workers::replications::Replications;
use crate::workers::status::Tasks;
use crate::workers::supervisor::Spawner;
use crate::workers::worker::{Worker, WorkerState};
use crate::{
    ClientOptions, Documents, Health, ReplicatorError, ReplyHub, Sites, Submission, Submitted,
};

pub use crate::node::oversize::DEFAULT_MAX_REPLY_BYTES;

/// What a node needs to know.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's site name.
    pub site: String,
    /// The local database, credentials included.
    pub couch_url: String,
    /// Where the other sites are.
    pub sites: Sites,
    /// How many resources may run at once.
    pub concurrency: usize,
    /// How often the replications to peers are checked and repaired.
    pub replication_check: Duration,
    /// How often each peer is probed for liveness.
    pub peer_check: Duration,
    /// Who may read and write the database (`_security`).
    pub access: DatabaseAccess,
    /// Where the node keeps its journal of results.
    pub data_dir: PathBuf,
    /// Replies larger than this, as JSON, are stored with their output cut.
    pub max_reply_bytes: usize,
    /// How long running operations get to end at shutdown.
    pub drain: Duration,
    /// The largest resource document written, in bytes as JSON: CouchDB 3
    /// refuses larger ones (its `max_document_size`, 8 MB by default) and
    /// PouchDB Server does not check, so the node does.
    pub max_document_size: usize,
    /// The roots trusted and the CouchDB timeout of every HTTP client.
    pub client: ClientOptions,
}

/// Prepares the database, then starts the node's workers; done once they
/// run.
pub struct Starter {
    node: Node,
    spawner: Spawner,
}

impl Worker for Starter {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let node = &self.node;
        if let Err(error) = bootstrap(&node.ctx.couch, node.config.access).await {
            node.ctx.set_health(|h| {
                h.couchdb_reachable = !error.is_unavailable();
                h.last_error = Some(error.to_string());
            });
            info!(site = %node.ctx.site, db = %node.ctx.couch.db_url(), %error, "waiting for CouchDB");
            return Err(error);
        }
        node.start_workers(&self.spawner);
        Ok(WorkerState::Done)
    }

    async fn wait_for_work(&mut self) {}
}

/// CouchDB 3's default `max_document_size`, in bytes.
pub const COUCHDB_MAX_DOCUMENT_SIZE: usize = 8_000_000;

/// A running node, shared by the HTTP handlers.
#[derive(Clone)]
pub struct Node {
    ctx: Context,
    config: Arc<NodeConfig>,
    hub: ReplyHub,
    runner: Runner,
    replications: Replications,
    liveness: Liveness,
    backend: Arc<dyn Backend>,
    tasks: Tasks,
    /// The resource documents this node stored lately.
    recent: Arc<Recent>,
}

/// The longest a liveness probe waits for a peer's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `/health` waits for CouchDB: health checkers give up after
/// a few seconds, and a late "yes" is a "no" to them.
const HEALTH_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests looked up in one query of the requests view when pruning.
const PRUNE_LOOKUP_KEYS: usize = 200;

/// How long a read waits for a resource whose every leaf is a deletion to
/// get a live one: replication usually brings the merge within a second.
const SETTLING_WAIT: Duration = Duration::from_secs(5);
/// The first and the longest pause between two reads of such a resource.
const SETTLING_POLL: Duration = Duration::from_millis(20);
const SETTLING_POLL_MAX: Duration = Duration::from_millis(500);

/// How many times a write that lost a race is retried before giving up.
const WRITE_ATTEMPTS: u32 = 50;

impl Node {
    /// Opens the journal (failing if it cannot be read) and builds the
    /// parts; nothing runs before [`Node::start`].
    pub fn new(config: NodeConfig, backend: Arc<dyn Backend>) -> Result<Self, ReplicatorError> {
        let metrics = Metrics::default();
        let couch = CouchClient::with_options(&config.couch_url, &config.client)?
            .with_metrics(metrics.clone());
        let journal = Journal::open(&config.data_dir, &config.site)?;
        let ctx = Context::new(config.site.clone(), couch, metrics, journal);
        let runner = Runner::new(
            ctx.clone(),
            Arc::clone(&backend),
            config.max_reply_bytes,
            config.concurrency,
        );
        let replications = Replications::new(
            config.site.clone(),
            ctx.couch.clone(),
            config.couch_url.clone(),
            config.sites.clone(),
        );
        let liveness = Liveness::new(
            config.site.clone(),
            config.sites.clone(),
            ClientOptions {
                couch_timeout: PROBE_TIMEOUT.min(config.peer_check),
                ..config.client.clone()
            },
            ctx.events.clone(),
            replications.clone(),
        );
        Ok(Node {
            ctx,
            config: Arc::new(config),
            hub: ReplyHub::default(),
            runner,
            replications,
            liveness,
            backend,
            tasks: Tasks::default(),
            recent: Arc::default(),
        })
    }

    /// The statuses of the node's background tasks, shared with the
    /// [`crate::Supervisor`] that runs them.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn site(&self) -> &str {
        &self.ctx.site
    }

    pub fn sites(&self) -> &Sites {
        &self.config.sites
    }

    /// The worker that prepares the database (retried as long as CouchDB
    /// is away), then starts the node's background work with `spawner`:
    /// the follower, the runner (vital: without them nothing runs), the
    /// journal's flusher, the replications' repair, the liveness probes
    /// and the replies view's idle indexing.
    pub fn starter(&self, spawner: Spawner) -> Starter {
        Starter {
            node: self.clone(),
            spawner,
        }
    }

    fn start_workers(&self, spawner: &Spawner) {
        info!(site = %self.ctx.site, db = %self.ctx.couch.db_url(), journal = %self.ctx.journal.path().display(), "database ready");
        let follower = Follower {
            ctx: self.ctx.clone(),
            hub: self.hub.clone(),
            runner: self.runner.clone(),
            replications: self.replications.clone(),
            liveness: self.liveness.clone(),
            checkpoint: Checkpoint::default(),
        };
        spawner.spawn_worker("follower", true, follower);
        let (runner, stop, drain) = (self.runner.clone(), spawner.shutdown(), self.config.drain);
        spawner.spawn("runner", true, |task| runner.run(task, stop, drain));
        let flusher = Flusher {
            ctx: self.ctx.clone(),
        };
        spawner.spawn_worker("journal", true, flusher);
        let repair = self.replications.repair(self.config.replication_check);
        spawner.spawn_worker("replications", true, repair);
        spawner.spawn_worker(
            "liveness",
            false,
            self.liveness.probes(self.config.peer_check),
        );
        let indexing = IdleIndexing {
            runner: self.runner.clone(),
            ledger: Arc::clone(&self.ctx.ledger),
        };
        spawner.spawn_worker("indexing", false, indexing);
    }

    /// The liveness of every peer site probed so far.
    pub fn peers(&self) -> Vec<PeerLiveness> {
        self.liveness.snapshot()
    }

    /// Everything that happens on this node from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.ctx.events.subscribe()
    }

    pub fn health(&self) -> Health {
        let mut health = self.ctx.health();
        health.tasks = self.tasks.snapshot();
        health
    }

    /// Stores an operation, creating the resource if needed, and returns the
    /// channel its replies will arrive on. A concurrent write to the same
    /// resource is retried on the new revision, never surfaced. The document
    /// this node stored last is taken as current without reading it (see
    /// [`Recent`]).
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
        // Subscribed before writing: no reply can come before we listen.
        let replies = self.hub.subscribe(&operation.request_id);
        // Before writing too: whatever is stored about it from now on, the
        // feed brings.
        self.ctx
            .ledger
            .submitting(&resource_id, &operation.request_id);

        // Written with the first attempt, and kept by the next ones.
        let mut history_stored = false;
        // What the requests view said, kept across attempts.
        let mut seen = HashMap::new();
        let creates = !operation.command.command.trim().is_empty();
        for _ in 0..WRITE_ATTEMPTS {
            let mut doc = match self.recent.take(&resource_id) {
                // This node's own last write, not read again: a lookup
                // before writing on it loses a race only when another
                // writer came meanwhile, and the next attempt reads afresh.
                Some(doc) => {
                    self.look_up(&doc, &operation.request_id, &mut seen).await;
                    same_locations(&resource_id, &sites, doc)?
                }
                None => {
                    let doc = self.current(&resource_id, &sites, creates).await?;
                    // The lookup happens between two reads, not between the
                    // read and the write, which would lose more races to
                    // other writers.
                    if self.look_up(&doc, &operation.request_id, &mut seen).await {
                        self.current(&resource_id, &sites, creates).await?
                    } else {
                        doc
                    }
                }
            };
            if let Some(config) = config.as_ref().filter(|c| !c.is_empty()) {
                doc.config = config.clone();
            }
            doc.operations = add_operation(&doc.config, &doc.operations, operation.clone());
            let pruned = prune_seen(&mut doc, &operation.request_id, &seen);
            let history = (!history_stored)
                .then(|| HistoryDocument::new(&resource_id, &doc.locations, &operation));
            // The limit applies to each document of the request.
            let size = serde_json::to_vec(&doc).map_or(0, |json| json.len()).max(
                history
                    .as_ref()
                    .map_or(0, |h| serde_json::to_vec(h).map_or(0, |json| json.len())),
            );
            let too_large = || ReplicatorError::TooLarge {
                resource: resource_id.clone(),
                size,
                limit: self.config.max_document_size,
            };
            if size > self.config.max_document_size {
                return Err(too_large());
            }

            let written = match &history {
                Some(history) => self.put_with_history(&doc, history).await,
                None => self
                    .ctx
                    .couch
                    .put(&[&resource_id], &doc)
                    .await
                    .map(|w| (w, true)),
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
                        .pruned(&resource_id, pruned.iter().map(String::as_str));
                    return Ok(Submitted {
                        resource_id,
                        request_id: operation.request_id.clone(),
                        locations,
                        input: operation.command.command.clone(),
                        replies,
                    });
                }
                Ok((Written::Conflict, stored)) => history_stored |= stored,
                // CouchDB configured with a lower limit than the node.
                Err(ReplicatorError::Couch { status: 413, .. }) => return Err(too_large()),
                Err(error) => return Err(error),
            }
        }
        Err(ReplicatorError::Contended {
            resource: resource_id,
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// Writes the resource document and the history document of the
    /// operation it newly holds in one request. Returns how the resource
    /// was written, and whether the history document is stored (written
    /// now, or by an earlier attempt). A history document CouchDB refuses
    /// otherwise is only logged: its operation is stored all the same, and
    /// stays unpruned, since pruning needs it.
    async fn put_with_history(
        &self,
        doc: &ResourceDocument,
        history: &HistoryDocument,
    ) -> Result<(Written, bool), ReplicatorError> {
        let encode = |value: Result<Value, serde_json::Error>| {
            value.map_err(|source| ReplicatorError::Decode {
                context: "a document to write".into(),
                source,
            })
        };
        let docs = [
            encode(serde_json::to_value(doc))?,
            encode(serde_json::to_value(history))?,
        ];
        let results = self.ctx.couch.bulk_docs(&docs, true).await?;
        let row = |id: &str| results.iter().find(|r| r.id.as_deref() == Some(id));
        let history_stored = match row(&history.id) {
            Some(r) if r.error.is_none() || r.error.as_deref() == Some("conflict") => true,
            other => {
                warn!(resource = %doc.id, request = %history.operation.request_id, site = %self.ctx.site, answer = ?other.map(|r| (&r.error, &r.reason)), "history document not stored; its operation keeps its payload");
                false
            }
        };
        let written = match row(&doc.id) {
            Some(r) if r.error.as_deref() == Some("conflict") => Written::Conflict,
            Some(r) if r.error.is_none() => Written::Rev(r.rev.clone().unwrap_or_default()),
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

    /// The stored resource `resource_id`, `None` when it was never stored
    /// here. A resource whose every leaf is a deletion is not missing: the
    /// merge that goes with those deletions is on its way (resources are
    /// never deleted otherwise), so the read waits for it, up to
    /// [`SETTLING_WAIT`], rather than start the resource again from
    /// nothing. An error when the id is another kind of document's.
    async fn read_live(
        &self,
        resource_id: &str,
    ) -> Result<Option<ResourceDocument>, ReplicatorError> {
        let started = tokio::time::Instant::now();
        let mut delay = SETTLING_POLL;
        loop {
            let doc = match self
                .ctx
                .couch
                .get_stored::<Value>(&[resource_id], &[])
                .await?
            {
                Stored::Found(doc) => doc,
                Stored::Missing => return Ok(None),
                Stored::Deleted => {
                    self.ctx.metrics.read_deleted();
                    if started.elapsed() >= SETTLING_WAIT {
                        return Err(ReplicatorError::Settling {
                            resource: resource_id.to_owned(),
                        });
                    }
                    debug!(resource = %resource_id, site = %self.ctx.site, "every leaf is a deletion; waiting for the merge");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(SETTLING_POLL_MAX);
                    continue;
                }
            };
            let kind: DocumentKind = decode_stored(resource_id, doc.clone())?;
            if !kind.is_resource() {
                return Err(ReplicatorError::IdTaken(resource_id.to_owned()));
            }
            return decode_stored(resource_id, doc).map(Some);
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
        let mut keys = Vec::new();
        for request in unknown {
            match self.ctx.ledger.known(&doc.id, request) {
                Some(known) if known.complete || prunable(&doc.locations, &known.seen) => {
                    seen.insert(request.to_owned(), known.seen);
                }
                _ => keys.push(json!([doc.id, request])),
            }
        }
        for chunk in keys.chunks(PRUNE_LOOKUP_KEYS) {
            let rows = self
                .ctx
                .couch
                .view_rows_by_keys::<(String, String), RequestRow>(DESIGN, REQUESTS_VIEW, chunk)
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    warn!(resource = %doc.id, site = %self.ctx.site, %error, "cannot look up which operations ran everywhere; pruning nothing new");
                    return true;
                }
            };
            let mut found: HashMap<String, Seen> = chunk
                .iter()
                .filter_map(|key| key[1].as_str())
                .map(|request| (request.to_owned(), Seen::default()))
                .collect();
            for ((_, request), row) in rows {
                let entry = found.entry(request).or_default();
                match row.site {
                    Some(site) => entry.replies.push(SeenReply {
                        site,
                        reads_history: row.reads_history,
                    }),
                    None => entry.history |= row.history,
                }
            }
            for (request, view) in found {
                self.ctx.ledger.learnt(&doc.id, &request, &view);
                // With what the feed brought meanwhile.
                let known = self.ctx.ledger.known(&doc.id, &request);
                seen.insert(request, known.map_or(view, |k| k.seen));
            }
        }
        !keys.is_empty()
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

    /// The locations of a resource, `None` when it does not exist.
    pub async fn locations(
        &self,
        resource_id: &str,
    ) -> Result<Option<Vec<String>>, ReplicatorError> {
        Ok(self.read_live(resource_id).await?.map(|doc| doc.locations))
    }

    /// Runs one command here, outside any resource (for `/show_local`).
    pub async fn run_local(&self, command: ShellCommand) -> CommandResult {
        let mut results = self.backend.run(std::slice::from_ref(&command)).await;
        results.pop().unwrap_or_else(CommandResult::skipped)
    }

    /// The history of a resource, oldest first (see [`crate::node::history`]);
    /// `None` when the resource is not stored here.
    pub async fn history(
        &self,
        resource_id: &str,
        query: HistoryQuery,
    ) -> Result<Option<HistoryStream>, ReplicatorError> {
        let Some(doc) = self.read_live(resource_id).await? else {
            return Ok(None);
        };
        Ok(Some(read_history(self.ctx.couch.clone(), doc, query)))
    }

    /// Every document of the local database.
    pub async fn dump(&self) -> Result<Value, ReplicatorError> {
        self.ctx.couch.all_docs().await
    }

    /// Every resource and reply of the local database, read in one request.
    pub async fn documents(&self) -> Result<Documents, ReplicatorError> {
        Ok(Documents::from_all_docs(&self.ctx.couch.all_docs().await?))
    }

    /// The node's metrics in Prometheus's text format: the counters, and
    /// gauges read now (the database's sequence and the replications' states
    /// from CouchDB, within [`HEALTH_PING_TIMEOUT`]; left out when CouchDB
    /// does not answer in time).
    pub async fn metrics(&self) -> String {
        let read = async {
            let (update_seq, replications) =
                tokio::join!(self.ctx.couch.update_seq(), self.replications.documents());
            let replications = replications.map(|docs| {
                docs.iter()
                    .map(|(peer, doc)| (peer.clone(), replication_state(doc.as_ref())))
                    .collect()
            });
            (update_seq.ok(), replications.unwrap_or_default())
        };
        let (update_seq, replications) = tokio::time::timeout(HEALTH_PING_TIMEOUT, read)
            .await
            .unwrap_or_default();
        let (scheduled, running) = self.runner.load();
        self.ctx.metrics.render(Snapshot {
            update_seq,
            replications,
            tasks: self.tasks.snapshot(),
            scheduled,
            running,
            unstored: self.ctx.journal.unstored(),
        })
    }

    /// Whether CouchDB answers right now, with the follower's state; never
    /// longer than [`HEALTH_PING_TIMEOUT`] (or the CouchDB timeout).
    pub async fn check_health(&self) -> Health {
        let reachable = tokio::time::timeout(HEALTH_PING_TIMEOUT, self.ctx.couch.ping())
            .await
            .is_ok_and(|pinged| pinged.is_ok());
        self.ctx.set_health(|h| h.couchdb_reachable = reachable);
        self.health()
    }
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

/// A row of the requests view: a reply's site and capability, or the mark
/// of a history document.
#[derive(Debug, Deserialize)]
struct RequestRow {
    #[serde(rename = "Site")]
    site: Option<String>,
    #[serde(rename = "ReadsHistory", default)]
    reads_history: bool,
    #[serde(rename = "History", default)]
    history: bool,
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

/// A stored document read as `T`.
fn decode_stored<T: serde::de::DeserializeOwned>(
    resource_id: &str,
    doc: Value,
) -> Result<T, ReplicatorError> {
    serde_json::from_value(doc).map_err(|source| ReplicatorError::Decode {
        context: format!("GET {resource_id}"),
        source,
    })
}
