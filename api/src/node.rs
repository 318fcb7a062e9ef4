//! What the HTTP layer needs from a Cheops node, so that it never talks to
//! CouchDB itself: the daemon implements [`Node`] for its replicator, tests
//! implement it with fakes.

use std::future::Future;
use std::pin::Pin;

use cheops_backends::CommandResult;
use cheops_model::ShellCommand;
use cheops_replicator::{Health, ReplicatorError, Submission, Submitted};

/// A boxed future, so that [`Node`] can be used as `Arc<dyn Node>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One Cheops node, as the API sees it.
pub trait Node: Send + Sync + 'static {
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

    /// Runs one command locally through the backend (for `/show_local`); it
    /// is neither stored nor replicated.
    fn run_local(&self, command: ShellCommand) -> BoxFuture<'_, CommandResult>;

    /// The API base URL of a site (for `/show` fan-out), such as
    /// `http://127.0.0.1:7001`; or, for a site that is not a site name or
    /// that the operator did not configure, why it cannot be asked.
    fn api_url(&self, site: &str) -> Result<String, String>;

    /// Every document of the local database: the raw
    /// `_all_docs?include_docs=true` JSON.
    fn dump(&self) -> BoxFuture<'_, Result<serde_json::Value, ReplicatorError>>;

    /// The state of the node's background work.
    fn health(&self) -> BoxFuture<'_, Health>;
}
