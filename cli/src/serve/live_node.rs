//! The replicator's node as the HTTP layers (API, Chephren) see it.

use cheops_api::BoxFuture;
use cheops_backends::CommandResult;
use cheops_model::ShellCommand;
use cheops_replicator::{
    Health, Node, NodeEvent, PeerLiveness, ReplicatorError, Submission, Submitted,
};
use tokio::sync::broadcast;

/// Adapts [`Node`] to [`cheops_api::Node`] and [`cheops_chephren::Source`].
pub struct LiveNode(pub Node);

impl cheops_api::Node for LiveNode {
    fn site(&self) -> &str {
        self.0.site()
    }

    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<Submitted, ReplicatorError>> {
        Box::pin(self.0.submit(submission))
    }

    fn locations<'a>(
        &'a self,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, ReplicatorError>> {
        Box::pin(self.0.locations(resource_id))
    }

    fn run_local(&self, command: ShellCommand) -> BoxFuture<'_, CommandResult> {
        Box::pin(self.0.run_local(command))
    }

    fn api_url(&self, site: &str) -> Result<String, String> {
        let urls = self.0.sites().resolve(site)?;
        Ok(urls.api.trim_end_matches('/').to_owned())
    }

    fn dump(&self) -> BoxFuture<'_, Result<serde_json::Value, ReplicatorError>> {
        Box::pin(self.0.dump())
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(self.0.check_health())
    }
}

impl cheops_chephren::Source for LiveNode {
    fn site(&self) -> &str {
        self.0.site()
    }

    fn documents(
        &self,
    ) -> cheops_chephren::BoxFuture<'_, Result<serde_json::Value, ReplicatorError>> {
        Box::pin(self.0.dump())
    }

    fn peers(&self) -> Vec<PeerLiveness> {
        self.0.peers()
    }

    fn health(&self) -> Health {
        self.0.health()
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.0.subscribe()
    }
}
