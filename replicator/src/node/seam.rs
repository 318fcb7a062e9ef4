//! The node as the HTTP layers see it (the API, the dump listener and the
//! web UI), so that they never talk to CouchDB or read its rows
//! themselves. [`Node`] implements it; tests of the HTTP layers implement
//! it with fakes.

use cheops_backends::CommandResult;
use cheops_model::Command;
use serde_json::Value;
use tokio::sync::broadcast;

pub use futures::future::BoxFuture;

use crate::{
    Documents, Feed, Health, HistoryQuery, HistoryStream, Node, NodeEvent, PeerLiveness, Reading,
    ReplicatorError, Submission, Submitted,
};

/// What the HTTP layers ask of a node: store operations, run show
/// commands, find the other sites, read a resource's history, follow what
/// happens, and dump the database.
pub trait NodeSeam: Send + Sync + 'static {
    /// This node's site name.
    fn site(&self) -> &str;

    /// Stores the operation (creating the resource if needed), having
    /// subscribed to its replies first so that none is missed.
    ///
    /// `ReplicatorError::InvalidRequest` means nothing was stored and the
    /// message tells the caller why.
    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<Submitted, ReplicatorError>>;

    /// The Locations of a stored resource, `None` when it does not exist.
    fn locations<'a>(
        &'a self,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, ReplicatorError>>;

    /// The history of a resource, oldest first, read a page at a time (see
    /// `history.rs`); `None` when the resource is not stored here.
    fn history<'a>(
        &'a self,
        resource_id: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<HistoryStream>, ReplicatorError>>;

    /// Runs one command locally through the backend (for `/show_local`); it
    /// is neither stored nor replicated.
    fn run_local(&self, command: Command) -> BoxFuture<'_, CommandResult>;

    /// The API base URL of a site (for `/show` fan-out), such as
    /// `http://127.0.0.1:7001`; or, for a site that is not a site name or
    /// that the operator did not configure, why it cannot be asked.
    fn api_url(&self, site: &str) -> Result<String, String>;

    /// Every document of the local database: the raw
    /// `_all_docs?include_docs=true` JSON, which the dump serves as is.
    fn dump(&self) -> BoxFuture<'_, Result<Value, ReplicatorError>>;

    /// Whether CouchDB answers right now, with the state of the node's
    /// background work.
    fn check_health(&self) -> BoxFuture<'_, Health>;
    /// The node's metrics, in Prometheus's text format (0.0.4).
    fn metrics(&self) -> BoxFuture<'_, String>;

    /// The resources (with their conflicts) and replies a page shows.
    fn documents<'a>(
        &'a self,
        reading: &'a Reading,
    ) -> BoxFuture<'a, Result<Documents, ReplicatorError>>;

    /// The last probe of every peer probed so far.
    fn peers(&self) -> Vec<PeerLiveness>;

    /// The state of this node's background work, as last seen.
    fn health(&self) -> Health;

    /// What changes on this node from now on.
    fn subscribe(&self) -> broadcast::Receiver<NodeEvent>;

    /// The node's changes feed: what happened to its resources, numbered.
    fn feed(&self) -> Feed;
}

impl NodeSeam for Node {
    fn site(&self) -> &str {
        Node::site(self)
    }

    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<Submitted, ReplicatorError>> {
        Box::pin(Node::submit(self, submission))
    }

    fn locations<'a>(
        &'a self,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, ReplicatorError>> {
        Box::pin(Node::locations(self, resource_id))
    }

    fn history<'a>(
        &'a self,
        resource_id: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<HistoryStream>, ReplicatorError>> {
        Box::pin(Node::history(self, resource_id, query))
    }

    fn run_local(&self, command: Command) -> BoxFuture<'_, CommandResult> {
        Box::pin(Node::run_local(self, command))
    }

    fn api_url(&self, site: &str) -> Result<String, String> {
        let urls = self.sites().resolve(site)?;
        Ok(urls.api.trim_end_matches('/').to_owned())
    }

    fn dump(&self) -> BoxFuture<'_, Result<Value, ReplicatorError>> {
        Box::pin(Node::dump(self))
    }

    fn check_health(&self) -> BoxFuture<'_, Health> {
        Box::pin(Node::check_health(self))
    }
    fn metrics(&self) -> BoxFuture<'_, String> {
        Box::pin(Node::metrics(self))
    }

    fn documents<'a>(
        &'a self,
        reading: &'a Reading,
    ) -> BoxFuture<'a, Result<Documents, ReplicatorError>> {
        Box::pin(Node::documents(self, reading))
    }

    fn peers(&self) -> Vec<PeerLiveness> {
        Node::peers(self)
    }

    fn health(&self) -> Health {
        Node::health(self)
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        Node::subscribe(self)
    }

    fn feed(&self) -> Feed {
        self.ctx.feed.clone()
    }
}
