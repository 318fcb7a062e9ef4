//! A Cheops node: the local database, the background tasks that follow it,
//! and the operations users submit to it.

pub mod batch;
pub mod by_use;
pub mod context;
pub mod events;
pub mod feed;
pub mod health;
pub mod history;
pub mod hub;
pub mod journal;
pub mod ledger;
pub mod oversize;
mod read;
pub mod recent;
pub mod resolution;
pub mod runner;
pub mod seam;
mod start;
pub mod store;
pub mod submission;
mod submit;
pub mod writes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cheops_backends::{Backend, CommandResult};
use cheops_model::Command;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::db::bootstrap::DatabaseAccess;
use crate::db::couch::CouchClient;
use crate::db::documents::{self, Reading};
use crate::hooks::board::Board;
use crate::hooks::config::Hook;
use crate::metrics::{Metrics, Snapshot};
use crate::node::context::Context;
use crate::node::events::{NodeEvent, PeerLiveness};
use crate::node::feed::Feed;
use crate::node::history::{read_history, HistoryQuery, HistoryStream};
use crate::node::journal::Journal;
use crate::node::recent::Recent;
use crate::node::runner::Runner;
use crate::workers::liveness::Liveness;
use crate::workers::replications::Replications;
use crate::workers::status::Tasks;
use crate::{ClientOptions, Documents, Health, ReplicatorError, ReplyHub, Sites};

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
    /// The hooks, as the hooks file said at start.
    pub hooks: Vec<Hook>,
    /// How long each site standing by for an operation's completion waits,
    /// per turn, for the sites before it to deliver it.
    pub hook_standby: Duration,
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
    /// The hooks, as the hooks file last said.
    hooks: Arc<watch::Sender<Arc<Vec<Hook>>>>,
    /// Each hook's deliveries.
    board: Board,
}

/// The longest a liveness probe waits for a peer's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `/health` waits for CouchDB: health checkers give up after
/// a few seconds, and a late "yes" is a "no" to them.
const HEALTH_PING_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Opens the journal (failing if it cannot be read) and builds the
    /// parts; nothing runs before its [`Node::starter`] works.
    pub fn new(config: NodeConfig, backend: Arc<dyn Backend>) -> Result<Self, ReplicatorError> {
        let metrics = Metrics::default();
        let couch = CouchClient::with_options(&config.couch_url, &config.client)?
            .with_metrics(metrics.clone());
        let journal = Journal::open(&config.data_dir, &config.site)?;
        let feed = Feed::open(&config.data_dir, &config.site)?;
        let ctx = Context::new(config.site.clone(), couch, metrics, journal, feed);
        let runner = Runner::new(
            ctx.clone(),
            Arc::clone(&backend),
            config.max_reply_bytes,
            config.max_document_size,
            config.concurrency,
        );
        let replications = Replications::new(
            config.site.clone(),
            ctx.couch.clone(),
            config.couch_url.clone(),
            config.sites.clone(),
            config.client.clone(),
            config.replication_check,
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
        let config_hooks = config.hooks.clone();
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
            hooks: Arc::new(watch::channel(Arc::new(config_hooks)).0),
            board: Board::default(),
        })
    }

    /// Replaces the hooks (the hooks file was read again); deliveries go
    /// on from where each hook stood, a new one starting now.
    pub fn set_hooks(&self, hooks: Vec<Hook>) {
        self.hooks.send_replace(Arc::new(hooks));
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
        health.replications = self.replications.statuses();
        health.hooks = self.board.snapshot();
        health
    }

    /// Runs one command here, outside any resource (for `/show_local`),
    /// within `--concurrency` with the resources' passes.
    pub async fn run_local(&self, command: Command) -> CommandResult {
        self.runner.run_alone(command).await
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

    /// The resources and replies a page shows: see [`Reading`].
    pub async fn documents(&self, reading: &Reading) -> Result<Documents, ReplicatorError> {
        documents::read(&self.ctx.couch, &self.ctx.site, reading).await
    }

    /// The node's metrics in Prometheus's text format: the counters, and
    /// gauges read now (the database's sequence, within
    /// [`HEALTH_PING_TIMEOUT`], left out when CouchDB does not answer in
    /// time) or as last checked (the replications).
    ///
    /// The follower's position is read first, the database's sequence
    /// next, the runner's load last: a lag of 0 with nothing scheduled then
    /// means every change the database held was fully handled.
    pub async fn metrics(&self) -> String {
        let handled = self.ctx.metrics.last_handled();
        let update_seq = tokio::time::timeout(HEALTH_PING_TIMEOUT, self.ctx.couch.update_seq())
            .await
            .ok()
            .and_then(Result::ok);
        let replications = self.replications.statuses();
        let (scheduled, running) = self.runner.load();
        self.ctx.metrics.render(Snapshot {
            handled,
            update_seq,
            replications,
            tasks: self.tasks.snapshot(),
            hooks: self.board.snapshot(),
            scheduled,
            running,
            unstored: self.ctx.journal.unstored(),
            oversize: self.ctx.health().oversize.len(),
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
