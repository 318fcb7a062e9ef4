//! A Cheops node: the local database, the background tasks that follow it,
//! and the operations users submit to it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cheops_backends::{Backend, CommandResult};
use cheops_model::{DocumentKind, ResourceDocument, ShellCommand};
use serde_json::Value;
use tokio::sync::{broadcast, Notify};
use tracing::info;

use crate::bootstrap::{bootstrap, DatabaseAccess};
use crate::consistency::add_operation;
use crate::couch::{CouchClient, Written};
use crate::events::{Events, NodeEvent, PeerLiveness};
use crate::follower::Follower;
use crate::journal::Journal;
use crate::liveness::Liveness;
use crate::metrics::{replication_state, Metrics, Snapshot};
use crate::recent::Recent;
use crate::replications::Replications;
use crate::runner::{Runner, RunnerParts};
use crate::store::flush_loop;
use crate::supervisor::{Spawner, Tasks};
use crate::{
    backoff, ClientOptions, Documents, Health, ReplicatorError, ReplyHub, Sites, Submission,
    Submitted,
};

pub use crate::oversize::DEFAULT_MAX_REPLY_BYTES;

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

/// CouchDB 3's default `max_document_size`, in bytes.
pub const COUCHDB_MAX_DOCUMENT_SIZE: usize = 8_000_000;

/// A running node, shared by the HTTP handlers.
#[derive(Clone)]
pub struct Node {
    site: String,
    couch: CouchClient,
    hub: ReplyHub,
    runner: Runner,
    replications: Replications,
    backend: Arc<dyn Backend>,
    sites: Sites,
    replication_check: Duration,
    peer_check: Duration,
    access: DatabaseAccess,
    max_document_size: usize,
    health: Arc<Mutex<Health>>,
    events: Events,
    liveness: Liveness,
    journal: Journal,
    /// Woken when the journal holds replies CouchDB does not.
    unstored: Arc<Notify>,
    tasks: Tasks,
    drain: Duration,
    /// The resource documents this node stored lately.
    recent: Arc<Recent>,
}

/// The longest a liveness probe waits for a peer's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `/health` waits for CouchDB: health checkers give up after
/// a few seconds, and a late "yes" is a "no" to them.
const HEALTH_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a write that lost a race is retried before giving up.
const WRITE_ATTEMPTS: u32 = 50;

impl Node {
    /// Opens the journal (failing if it cannot be read) and builds the
    /// parts; nothing runs before [`Node::start`].
    pub fn new(config: NodeConfig, backend: Arc<dyn Backend>) -> Result<Self, ReplicatorError> {
        let couch = CouchClient::with_options(&config.couch_url, &config.client)?
            .with_metrics(Metrics::default());
        let journal = Journal::open(&config.data_dir, &config.site)?;
        let unstored = Arc::new(Notify::new());
        let runner = Runner::new(RunnerParts {
            site: config.site.clone(),
            couch: couch.clone(),
            backend: Arc::clone(&backend),
            journal: journal.clone(),
            max_reply_bytes: config.max_reply_bytes,
            unstored: Arc::clone(&unstored),
            concurrency: config.concurrency,
        });
        let replications = Replications::new(
            config.site.clone(),
            couch.clone(),
            config.couch_url.clone(),
            config.sites.clone(),
        );
        let events = Events::default();
        let liveness = Liveness::new(
            config.site.clone(),
            config.sites.clone(),
            ClientOptions {
                couch_timeout: PROBE_TIMEOUT.min(config.peer_check),
                ..config.client.clone()
            },
            events.clone(),
            replications.clone(),
        );
        Ok(Node {
            site: config.site,
            couch,
            hub: ReplyHub::default(),
            runner,
            replications,
            backend,
            sites: config.sites,
            replication_check: config.replication_check,
            peer_check: config.peer_check,
            access: config.access,
            max_document_size: config.max_document_size,
            health: Arc::new(Mutex::new(Health::default())),
            events,
            liveness,
            journal,
            unstored,
            tasks: Tasks::default(),
            drain: config.drain,
            recent: Arc::default(),
        })
    }

    /// The statuses of the node's background tasks, shared with the
    /// [`crate::Supervisor`] that runs them.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    /// Prepares the database (waiting for CouchDB as long as it takes, or
    /// until shutdown), then starts the background tasks with `spawner`:
    /// the follower, the runner (vital: without them nothing runs), the
    /// journal's flusher, the replications' repair and the liveness probes.
    pub async fn start(&self, spawner: &Spawner, task: crate::Task) {
        let mut shutdown = spawner.shutdown();
        loop {
            match bootstrap(&self.couch, self.access).await {
                Ok(()) => break,
                Err(error) => {
                    let delay = task.failed(&error).min(backoff::delay(4));
                    self.set_health(|h| {
                        h.couchdb_reachable = !error.is_unavailable();
                        h.last_error = Some(error.to_string());
                    });
                    info!(site = %self.site, db = %self.couch.db_url(), %error, ?delay, "waiting for CouchDB");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        task.succeeded();
        info!(site = %self.site, db = %self.couch.db_url(), journal = %self.journal.path().display(), "database ready");
        let follower = Follower {
            site: self.site.clone(),
            couch: self.couch.clone(),
            hub: self.hub.clone(),
            runner: self.runner.clone(),
            replications: self.replications.clone(),
            liveness: self.liveness.clone(),
            events: self.events.clone(),
            health: Arc::clone(&self.health),
        };
        let stop = spawner.shutdown();
        spawner.spawn("follower", true, |task| follower.run(task, stop));
        let (runner, stop, drain) = (self.runner.clone(), spawner.shutdown(), self.drain);
        spawner.spawn("runner", true, |task| runner.run(task, stop, drain));
        let (couch, journal, unstored) = (
            self.couch.clone(),
            self.journal.clone(),
            Arc::clone(&self.unstored),
        );
        let stop = spawner.shutdown();
        spawner.spawn("journal", true, |task| {
            flush_loop(couch, journal, unstored, task, stop)
        });
        let (replications, every, stop) = (
            self.replications.clone(),
            self.replication_check,
            spawner.shutdown(),
        );
        spawner.spawn("replications", true, |task| {
            replications.repair_loop(every, task, stop)
        });
        let (liveness, every, stop) = (self.liveness.clone(), self.peer_check, spawner.shutdown());
        spawner.spawn("liveness", false, |_| liveness.run(every, stop));
        task.done();
    }

    fn set_health(&self, update: impl FnOnce(&mut Health)) {
        update(&mut self.health.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The liveness of every peer site probed so far.
    pub fn peers(&self) -> Vec<PeerLiveness> {
        self.liveness.snapshot()
    }

    /// Everything that happens on this node from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub fn health(&self) -> Health {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
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
        if !sites.contains(&self.site) {
            return Err(ReplicatorError::InvalidRequest(format!(
                "this node ({}) is not one of the sites: {}",
                self.site,
                sites.join(", ")
            )));
        }
        self.check_sites(&sites)?;
        // Subscribed before writing: no reply can come before we listen.
        let replies = self.hub.subscribe(&operation.request_id);

        for _ in 0..WRITE_ATTEMPTS {
            let current = match self.recent.take(&resource_id) {
                Some(doc) => Some(doc),
                None => self.read_resource(&resource_id).await?,
            };
            let mut doc = match current {
                Some(doc) => {
                    let wanted: BTreeSet<&String> = sites.iter().collect();
                    let stored: BTreeSet<&String> = doc.locations.iter().collect();
                    if wanted != stored {
                        return Err(ReplicatorError::InvalidRequest(format!(
                            "sites ({}) differ from the locations of resource {resource_id} ({}); locations never change",
                            sites.join(", "),
                            doc.locations.join(", ")
                        )));
                    }
                    doc
                }
                None if operation.command.command.trim().is_empty() => {
                    return Err(ReplicatorError::InvalidRequest(format!(
                        "resource {resource_id} does not exist, and an empty command does not create one"
                    )));
                }
                None => ResourceDocument {
                    id: resource_id.clone(),
                    locations: sites.clone(),
                    ..ResourceDocument::default()
                },
            };
            if let Some(config) = config.as_ref().filter(|c| !c.is_empty()) {
                doc.config = config.clone();
            }
            doc.operations = add_operation(&doc.config, &doc.operations, operation.clone());
            let size = serde_json::to_vec(&doc).map_or(0, |json| json.len());
            let too_large = || ReplicatorError::TooLarge {
                resource: resource_id.clone(),
                size,
                limit: self.max_document_size,
            };
            if size > self.max_document_size {
                return Err(too_large());
            }

            match self.couch.put(&[&resource_id], &doc).await {
                Ok(Written::Rev(rev)) => {
                    self.couch.metrics().accepted();
                    info!(resource = %resource_id, request = %operation.request_id, site = %self.site, rev = %rev, "operation stored");
                    let locations = doc.locations.clone();
                    doc.rev = Some(rev);
                    self.recent.stored(doc, size);
                    return Ok(Submitted {
                        resource_id,
                        request_id: operation.request_id.clone(),
                        locations,
                        input: operation.command.command.clone(),
                        replies,
                    });
                }
                Ok(Written::Conflict) => continue,
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

    /// The stored resource `resource_id`, `None` when there is none; an
    /// error when the id is another kind of document's.
    async fn read_resource(
        &self,
        resource_id: &str,
    ) -> Result<Option<ResourceDocument>, ReplicatorError> {
        let Some(doc) = self.couch.get::<Value>(&[resource_id], &[]).await? else {
            return Ok(None);
        };
        let kind: DocumentKind = decode_stored(resource_id, doc.clone())?;
        if !kind.is_resource() {
            return Err(ReplicatorError::IdTaken(resource_id.to_owned()));
        }
        decode_stored(resource_id, doc).map(Some)
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
        for site in sites.iter().filter(|s| **s != self.site) {
            self.sites
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
        Ok(self
            .couch
            .get::<ResourceDocument>(&[resource_id], &[])
            .await?
            .map(|doc| doc.locations))
    }

    /// Runs one command here, outside any resource (for `/show_local`).
    pub async fn run_local(&self, command: ShellCommand) -> CommandResult {
        let mut results = self.backend.run(std::slice::from_ref(&command)).await;
        results.pop().unwrap_or_else(CommandResult::skipped)
    }

    /// Every document of the local database.
    pub async fn dump(&self) -> Result<Value, ReplicatorError> {
        self.couch.all_docs().await
    }

    /// Every resource and reply of the local database, read in one request.
    pub async fn documents(&self) -> Result<Documents, ReplicatorError> {
        Ok(Documents::from_all_docs(&self.couch.all_docs().await?))
    }

    /// The node's metrics in Prometheus's text format: the counters, and
    /// gauges read now (the database's sequence and the replications' states
    /// from CouchDB, within [`HEALTH_PING_TIMEOUT`]; left out when CouchDB
    /// does not answer in time).
    pub async fn metrics(&self) -> String {
        let read = async {
            let (update_seq, replications) =
                tokio::join!(self.couch.update_seq(), self.replications.documents());
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
        self.couch.metrics().render(Snapshot {
            update_seq,
            replications,
            tasks: self.tasks.snapshot(),
            scheduled,
            running,
            unstored: self.journal.unstored(),
        })
    }

    /// Whether CouchDB answers right now, with the follower's state; never
    /// longer than [`HEALTH_PING_TIMEOUT`] (or the CouchDB timeout).
    pub async fn check_health(&self) -> Health {
        let reachable = tokio::time::timeout(HEALTH_PING_TIMEOUT, self.couch.ping())
            .await
            .is_ok_and(|pinged| pinged.is_ok());
        self.set_health(|h| h.couchdb_reachable = reachable);
        self.health()
    }
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
