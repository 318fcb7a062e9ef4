//! A node that keeps everything in memory and records what it is asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cheops_backends::{CommandResult, Outcome};
use cheops_model::{Command, HistoryEntry, ReplyDocument, Status};
use cheops_replicator::{
    BoxFuture, Documents, Feed, Health, HistoryQuery, HistoryStream, NodeEvent, NodeSeam,
    PeerLiveness, Reading, ReplicatorError, ReplyHub, Submission, Submitted,
};
use futures::StreamExt;
use tokio::sync::broadcast;

pub struct FakeNode {
    site: String,
    pub hub: ReplyHub,
    submissions: Mutex<Vec<Submission>>,
    /// The error the next submit fails with, if any.
    refusal: Mutex<Option<ReplicatorError>>,
    /// Resource id → locations.
    resources: Mutex<HashMap<String, Vec<String>>>,
    local_runs: Mutex<Vec<Command>>,
    api_urls: Mutex<BTreeMap<String, String>>,
    health: Mutex<Health>,
    /// Histories fail after their first entry.
    broken_history: Mutex<bool>,
    /// The changes feed, which tests add events to.
    pub feed: Feed,
}

impl FakeNode {
    pub fn new(site: &str) -> Arc<Self> {
        Self::with_feed(site, Feed::in_memory())
    }

    /// A node whose changes feed is `feed` (one kept in a file).
    pub fn with_feed(site: &str, feed: Feed) -> Arc<Self> {
        Arc::new(FakeNode {
            site: site.to_owned(),
            hub: ReplyHub::default(),
            submissions: Mutex::default(),
            refusal: Mutex::default(),
            resources: Mutex::default(),
            local_runs: Mutex::default(),
            api_urls: Mutex::default(),
            broken_history: Mutex::default(),
            feed,
            health: Mutex::new(Health {
                couchdb_reachable: true,
                follower_live: true,
                last_error: None,
                ..Health::default()
            }),
        })
    }

    pub fn submissions(&self) -> Vec<Submission> {
        self.submissions.lock().unwrap().clone()
    }

    pub fn local_runs(&self) -> Vec<Command> {
        self.local_runs.lock().unwrap().clone()
    }

    pub fn refuse_next_submit(&self, error: ReplicatorError) {
        *self.refusal.lock().unwrap() = Some(error);
    }

    pub fn add_resource(&self, id: &str, locations: &[&str]) {
        self.resources.lock().unwrap().insert(
            id.to_owned(),
            locations.iter().map(|s| s.to_string()).collect(),
        );
    }

    pub fn set_api_url(&self, site: &str, url: &str) {
        self.api_urls
            .lock()
            .unwrap()
            .insert(site.to_owned(), url.to_owned());
    }

    pub fn break_history(&self) {
        *self.broken_history.lock().unwrap() = true;
    }

    pub fn set_health(&self, health: Health) {
        *self.health.lock().unwrap() = health;
    }

    /// A reply from `site` to the only submission so far.
    pub fn reply_from(&self, site: &str, status: Status, output: &str) {
        let submission = self.submissions().pop().expect("a submission");
        self.hub.deliver(ReplyDocument {
            locations: submission.sites.clone(),
            site: site.to_owned(),
            request_id: submission.operation.request_id.clone(),
            resource_id: submission.resource_id.clone(),
            status,
            input: submission.operation.command.command.clone(),
            output: output.to_owned(),
            ..ReplyDocument::default()
        });
    }
}

impl NodeSeam for FakeNode {
    fn site(&self) -> &str {
        &self.site
    }

    fn submit(&self, submission: Submission) -> BoxFuture<'_, Result<Submitted, ReplicatorError>> {
        Box::pin(async move {
            if let Some(error) = self.refusal.lock().unwrap().take() {
                return Err(error);
            }
            let locations = self
                .resources
                .lock()
                .unwrap()
                .entry(submission.resource_id.clone())
                .or_insert_with(|| submission.sites.clone())
                .clone();
            let request_id = submission.operation.request_id.clone();
            let submitted = Submitted {
                resource_id: submission.resource_id.clone(),
                replies: self.hub.subscribe(&request_id),
                request_id,
                locations,
                input: submission.operation.command.command.clone(),
            };
            self.submissions.lock().unwrap().push(submission);
            Ok(submitted)
        })
    }

    fn locations<'a>(
        &'a self,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, ReplicatorError>> {
        Box::pin(async move { Ok(self.resources.lock().unwrap().get(resource_id).cloned()) })
    }

    /// One entry per operation submitted for the resource, in order; the
    /// files' contents only when asked for.
    fn history<'a>(
        &'a self,
        resource_id: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<HistoryStream>, ReplicatorError>> {
        Box::pin(async move {
            if !self.resources.lock().unwrap().contains_key(resource_id) {
                return Ok(None);
            }
            let mut entries: Vec<Result<HistoryEntry, ReplicatorError>> = self
                .submissions()
                .into_iter()
                .filter(|s| s.resource_id == resource_id)
                .map(|s| Ok(HistoryEntry::new(&s.operation, true, query.files, &[])))
                .collect();
            if *self.broken_history.lock().unwrap() {
                entries.truncate(1);
                entries.push(Err(ReplicatorError::Couch {
                    status: 500,
                    context: "view".into(),
                    body: "broken".into(),
                }));
            }
            Ok(Some(futures::stream::iter(entries).boxed()))
        })
    }

    /// "Runs" a command by echoing it; a command containing `false` fails.
    fn run_local(&self, command: Command) -> BoxFuture<'_, CommandResult> {
        Box::pin(async move {
            let outcome = if command.command.contains("false") {
                Outcome::Failed
            } else {
                Outcome::Ok
            };
            let output = format!("{} ran {}", self.site, command.command);
            self.local_runs.lock().unwrap().push(command);
            CommandResult { outcome, output }
        })
    }

    /// Only the sites given a URL are known.
    fn api_url(&self, site: &str) -> Result<String, String> {
        self.api_urls
            .lock()
            .unwrap()
            .get(site)
            .cloned()
            .ok_or_else(|| format!("site {site:?} is not a known peer"))
    }

    fn dump(&self) -> BoxFuture<'_, Result<serde_json::Value, ReplicatorError>> {
        Box::pin(async move {
            Ok(serde_json::json!({
                "total_rows": 1,
                "offset": 0,
                "rows": [{"id": "r1", "key": "r1", "value": {"rev": "1-a"},
                          "doc": {"_id": "r1", "_rev": "1-a", "Type": "RESOURCE"}}]
            }))
        })
    }

    fn check_health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move { self.health.lock().unwrap().clone() })
    }

    fn metrics(&self) -> BoxFuture<'_, String> {
        Box::pin(async move { "# TYPE cheops_fake gauge\ncheops_fake 1\n".to_owned() })
    }

    // The API reads neither the documents nor the events: the web UI's.

    fn documents<'a>(
        &'a self,
        _: &'a Reading,
    ) -> BoxFuture<'a, Result<Documents, ReplicatorError>> {
        Box::pin(async { Ok(Documents::default()) })
    }

    fn peers(&self) -> Vec<PeerLiveness> {
        Vec::new()
    }

    fn health(&self) -> Health {
        self.health.lock().unwrap().clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        broadcast::channel(1).1
    }

    fn feed(&self) -> Feed {
        self.feed.clone()
    }
}
