//! The node's metrics, rendered in Prometheus's text format (0.0.4) for
//! `GET /metrics`, through the Prometheus project's own client
//! (`prometheus-client`).
//!
//! Counters are moved where the work happens (the runner, the follower,
//! the reply store, and [`crate::db::couch::CouchClient`] for every request to
//! CouchDB); gauges are read when rendering. Every label takes its value
//! from a fixed set or from the operator's configuration (site and task
//! names): never a resource, request or document id, a URL or a
//! credential, so that the number of series stays bounded.

mod lag;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cheops_model::Status;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::hooks::board::HookStatus;
use crate::workers::replications::{ReplicationStatus, Resend};
use crate::workers::status::{TaskState, TaskStatus};
use crate::ReplicatorError;

use lag::changes_lag;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the request latency buckets, in seconds: from a cached
/// read on loopback (under a millisecond) to the default CouchDB timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// What a request to CouchDB is about: the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The server's welcome (`GET /`).
    Server,
    /// The database itself (`PUT /db`, `GET /db`).
    Database,
    /// `/db/_security`.
    Security,
    /// A document by id (resources, replies).
    Doc,
    /// A `_local` document (the follower's checkpoint).
    Local,
    /// A design document.
    Design,
    BulkDocs,
    View,
    AllDocs,
    Changes,
    /// A document of the server's `_replicator` database.
    Replicator,
    /// The `_replicator` database itself.
    ReplicatorDb,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Server => "server",
            RequestKind::Database => "database",
            RequestKind::Security => "security",
            RequestKind::Doc => "doc",
            RequestKind::Local => "local",
            RequestKind::Design => "design",
            RequestKind::BulkDocs => "bulk_docs",
            RequestKind::View => "view",
            RequestKind::AllDocs => "all_docs",
            RequestKind::Changes => "changes",
            RequestKind::Replicator => "replicator",
            RequestKind::ReplicatorDb => "replicator_db",
        }
    }

    /// The kind of a request to `path`, below the database.
    pub fn of_path(path: &[&str]) -> RequestKind {
        match path.first().copied() {
            Some("_local") => RequestKind::Local,
            Some("_design") => RequestKind::Design,
            Some("_security") => RequestKind::Security,
            _ => RequestKind::Doc,
        }
    }
}

/// Why a request to CouchDB failed: the `error` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// No answer within the CouchDB timeout.
    Timeout,
    /// No connection, or one cut.
    Unreachable,
    /// A 4xx status the caller did not expect.
    Client,
    /// A 5xx status.
    Server,
    /// An answer that is not the JSON expected.
    Decode,
}

impl RequestError {
    fn as_str(self) -> &'static str {
        match self {
            RequestError::Timeout => "timeout",
            RequestError::Unreachable => "unreachable",
            RequestError::Client => "http_4xx",
            RequestError::Server => "http_5xx",
            RequestError::Decode => "decode",
        }
    }

    /// What a failed request's error says of it.
    pub fn of(error: &ReplicatorError) -> RequestError {
        match error {
            ReplicatorError::Unavailable(e) if e.is_timeout() => RequestError::Timeout,
            ReplicatorError::Stalled { .. } => RequestError::Timeout,
            ReplicatorError::Couch { status, .. } if *status >= 500 => RequestError::Server,
            ReplicatorError::Couch { .. } => RequestError::Client,
            ReplicatorError::Decode { .. } => RequestError::Decode,
            _ => RequestError::Unreachable,
        }
    }
}

/// The states a replication may be in, as the `state` label: what CouchDB
/// 3's scheduler says of its job, or else what its document's
/// `_replication_state` says (PouchDB Server), `none` for a document
/// without one yet, `missing` for no document, `other` for anything else.
const REPLICATION_STATES: [&str; 11] = [
    "initializing",
    "triggered",
    "running",
    "pending",
    "crashing",
    "completed",
    "error",
    "failed",
    "none",
    "missing",
    "other",
];

/// The `state` label of a replication: `exists` whether its document does,
/// `state` what the scheduler or the document says.
pub fn replication_state(exists: bool, state: Option<&str>) -> &'static str {
    match (exists, state) {
        (false, _) => "missing",
        (true, None) => "none",
        (true, Some(state)) => REPLICATION_STATES[..8]
            .iter()
            .find(|known| **known == state)
            .copied()
            .unwrap_or("other"),
    }
}

const TASK_STATES: [(TaskState, &str); 4] = [
    (TaskState::Running, "running"),
    (TaskState::Retrying, "retrying"),
    (TaskState::Stopped, "stopped"),
    (TaskState::Failed, "failed"),
];

type Labels<const N: usize> = [(&'static str, &'static str); N];
type OwnedLabels<const N: usize> = [(&'static str, String); N];

/// Gauges read when rendering, and what they are read from.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The last change the follower handed over ([`Metrics::last_handled`]),
    /// read before `update_seq` so that the lag is never under the truth.
    pub handled: Option<Value>,
    /// The database's `update_seq`, if it could be read.
    pub update_seq: Option<Value>,
    /// The replication to each peer, as last checked.
    pub replications: Vec<ReplicationStatus>,
    pub tasks: Vec<TaskStatus>,
    /// Each hook's deliveries.
    pub hooks: Vec<HookStatus>,
    /// Resources scheduled in the runner (waiting or running).
    pub scheduled: usize,
    /// Resources running operations right now.
    pub running: usize,
    /// Replies in the journal that CouchDB does not hold yet.
    pub unstored: usize,
    /// Resources left unmerged, their merge over the document size limit.
    pub oversize: usize,
}

/// The node's metrics; clones share them.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

struct Inner {
    /// Held while gauges are set and the text rendered, so that two scrapes
    /// do not interleave.
    registry: Mutex<Registry>,
    /// The last change the follower handed over.
    handled: Mutex<Option<Value>>,
    ops: Operations,
    couch: Requests,
    gauges: Gauges,
}

/// What happened to operations and replies here.
#[derive(Default)]
struct Operations {
    accepted: Counter,
    ran: Family<Labels<1>, Counter>,
    rerun: Counter,
    rebuilds: Counter,
    incomplete: Counter,
    not_started: Counter,
    deleted_reads: Counter,
    merges: Counter,
    replies_written: Counter,
    hooks: Family<OwnedLabels<2>, Counter>,
}

/// The requests to the local CouchDB.
struct Requests {
    requests: Family<Labels<2>, Counter>,
    latency: Family<Labels<2>, Histogram, fn() -> Histogram>,
    errors: Family<Labels<3>, Counter>,
}

/// What is read at each scrape.
#[derive(Default)]
struct Gauges {
    lag: Family<Labels<0>, Gauge>,
    replication: Family<OwnedLabels<2>, Gauge>,
    write_failures: Family<OwnedLabels<1>, Gauge>,
    resend: Family<OwnedLabels<1>, Gauge>,
    scheduled: Gauge,
    running: Gauge,
    unstored: Gauge,
    oversize: Gauge,
    task_state: Family<OwnedLabels<2>, Gauge>,
    task_failures: Family<OwnedLabels<1>, Gauge>,
    hook_backlog: Family<OwnedLabels<1>, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Inner {
    fn default() -> Self {
        let inner = Inner {
            registry: Mutex::new(Registry::with_prefix("cheops")),
            handled: Mutex::new(None),
            ops: Operations::default(),
            couch: Requests {
                requests: Family::default(),
                latency: Family::new_with_constructor(latency_histogram),
                errors: Family::default(),
            },
            gauges: Gauges::default(),
        };
        {
            let mut r = inner.lock();
            r.register(
                "operations_accepted",
                "Operations stored by this node's API (exec)",
                inner.ops.accepted.clone(),
            );
            r.register(
                "operations_run",
                "Operations whose command ran here, by status (OK or KO)",
                inner.ops.ran.clone(),
            );
            r.register(
                "operations_rerun",
                "Operations run here again, by a rebuild of their resource's block",
                inner.ops.rerun.clone(),
            );
            r.register(
                "rebuilds",
                "Passes that ran a resource's block again from its start",
                inner.ops.rebuilds.clone(),
            );
            r.register(
                "incomplete_blocks",
                "Passes that found a resource's block lacking operations this site ran, and waited for the rest",
                inner.ops.incomplete.clone(),
            );
            r.register(
                "commands_not_started",
                "Commands this node could not start (out of file descriptors, memory or disk): run again later, never answered",
                inner.ops.not_started.clone(),
            );
            r.register(
                "deleted_reads",
                "Reads of a resource whose every revision was a deletion (a merge on its way)",
                inner.ops.deleted_reads.clone(),
            );
            r.register(
                "merges",
                "Conflicts between revisions of a resource resolved here",
                inner.ops.merges.clone(),
            );
            r.register(
                "replies_written",
                "Replies this node wrote to CouchDB",
                inner.ops.replies_written.clone(),
            );
            r.register(
                "hook_deliveries",
                "Hook delivery outcomes, by hook and result (delivered, failed attempt, abandoned, delivered-elsewhere, lost)",
                inner.ops.hooks.clone(),
            );
            r.register(
                "couchdb_requests",
                "Requests to the local CouchDB, by kind and method",
                inner.couch.requests.clone(),
            );
            r.register(
                "couchdb_request_duration_seconds",
                "Time to a complete answer of the local CouchDB (to the headers for _changes)",
                inner.couch.latency.clone(),
            );
            r.register(
                "couchdb_errors",
                "Requests to the local CouchDB that failed, by kind, method and error",
                inner.couch.errors.clone(),
            );
            r.register(
                "changes_lag",
                "Changes of the database the follower has not handed over yet (absent when the sequences carry no number)",
                inner.gauges.lag.clone(),
            );
            r.register(
                "replication_state",
                "1 for the state of the replication to each peer, 0 for the other states",
                inner.gauges.replication.clone(),
            );
            r.register(
                "replication_write_failures",
                "Documents the replication to each peer could not write there (CouchDB 3's scheduler; 0 when unknown)",
                inner.gauges.write_failures.clone(),
            );
            r.register(
                "replication_resend",
                "1 while documents the replication to each peer could not write are to be sent again, or being sent",
                inner.gauges.resend.clone(),
            );
            r.register(
                "runner_scheduled",
                "Resources scheduled in the runner, waiting or running",
                inner.gauges.scheduled.clone(),
            );
            r.register(
                "runner_running",
                "Resources running operations right now",
                inner.gauges.running.clone(),
            );
            r.register(
                "journal_unstored",
                "Replies in the journal that CouchDB does not hold yet",
                inner.gauges.unstored.clone(),
            );
            r.register(
                "oversize_resources",
                "Resources left unmerged because their merge is over --max-document-size; they refuse operations",
                inner.gauges.oversize.clone(),
            );
            r.register(
                "task_state",
                "1 for the state of each background task, 0 for the other states",
                inner.gauges.task_state.clone(),
            );
            r.register(
                "task_failures",
                "Failures of each background task since its last success",
                inner.gauges.task_failures.clone(),
            );
            r.register(
                "hook_backlog",
                "Events of the changes feed each hook has not looked at yet",
                inner.gauges.hook_backlog.clone(),
            );
        }
        inner
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Registration and rendering cannot leave the registry half done.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A gauge value from a count.
fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// An operation was stored through the API.
    pub fn accepted(&self) {
        self.inner.ops.accepted.inc();
    }

    /// An operation's command ended with `status`; `again` when this site
    /// had run it before.
    pub fn ran(&self, status: Status, again: bool) {
        let status = match status {
            Status::Ok => "OK",
            _ => "KO",
        };
        self.inner
            .ops
            .ran
            .get_or_create(&[("status", status)])
            .inc();
        if again {
            self.inner.ops.rerun.inc();
        }
    }

    pub fn rebuilt(&self) {
        self.inner.ops.rebuilds.inc();
    }

    pub fn found_incomplete(&self) {
        self.inner.ops.incomplete.inc();
    }

    pub fn not_started(&self) {
        self.inner.ops.not_started.inc();
    }

    pub fn read_deleted(&self) {
        self.inner.ops.deleted_reads.inc();
    }

    pub fn merged(&self) {
        self.inner.ops.merges.inc();
    }

    /// A delivery to `hook` ended so, or an attempt failed.
    pub fn hook(&self, hook: &str, result: &'static str) {
        self.inner
            .ops
            .hooks
            .get_or_create(&[("hook", hook.to_owned()), ("result", result.to_owned())])
            .inc();
    }

    pub fn replies_written(&self, count: usize) {
        self.inner.ops.replies_written.inc_by(count as u64);
    }

    /// A request to CouchDB ended after `elapsed`, with `error` if it failed.
    pub fn request(
        &self,
        kind: RequestKind,
        method: &reqwest::Method,
        elapsed: Duration,
        error: Option<RequestError>,
    ) {
        let method = method_label(method);
        let labels = [("kind", kind.as_str()), ("method", method)];
        self.inner.couch.requests.get_or_create(&labels).inc();
        self.inner
            .couch
            .latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            let labels = [
                ("kind", kind.as_str()),
                ("method", method),
                ("error", error.as_str()),
            ];
            self.inner.couch.errors.get_or_create(&labels).inc();
        }
    }

    /// The follower handed over the change at `seq`, or resumes after it.
    pub fn handled(&self, seq: Option<&Value>) {
        *self
            .inner
            .handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = seq.cloned();
    }

    /// The change the follower handed over last ([`Metrics::handled`]).
    pub fn last_handled(&self) -> Option<Value> {
        self.inner
            .handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The metrics as Prometheus text, with the gauges set from `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let inner = &self.inner;
        let registry = inner.lock();
        inner.gauges.lag.clear();
        if let Some(lag) = snapshot
            .update_seq
            .as_ref()
            .and_then(|db| changes_lag(db, snapshot.handled.as_ref()))
        {
            inner
                .gauges
                .lag
                .get_or_create(&[])
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        inner.gauges.replication.clear();
        inner.gauges.write_failures.clear();
        inner.gauges.resend.clear();
        for replication in snapshot.replications {
            for state in REPLICATION_STATES {
                let labels = [
                    ("peer", replication.peer.clone()),
                    ("state", state.to_owned()),
                ];
                inner
                    .gauges
                    .replication
                    .get_or_create(&labels)
                    .set(i64::from(state == replication.state));
            }
            inner
                .gauges
                .write_failures
                .get_or_create(&[("peer", replication.peer.clone())])
                .set(i64::try_from(replication.write_failures).unwrap_or(i64::MAX));
            inner
                .gauges
                .resend
                .get_or_create(&[("peer", replication.peer)])
                .set(i64::from(replication.resend != Resend::None));
        }
        inner.gauges.task_state.clear();
        inner.gauges.task_failures.clear();
        for task in snapshot.tasks {
            for (state, name) in TASK_STATES {
                let labels = [("task", task.name.clone()), ("state", name.to_owned())];
                inner
                    .gauges
                    .task_state
                    .get_or_create(&labels)
                    .set(i64::from(state == task.state));
            }
            inner
                .gauges
                .task_failures
                .get_or_create(&[("task", task.name)])
                .set(i64::from(task.failures));
        }
        inner.gauges.hook_backlog.clear();
        for hook in snapshot.hooks {
            inner
                .gauges
                .hook_backlog
                .get_or_create(&[("hook", hook.name)])
                .set(i64::try_from(hook.backlog).unwrap_or(i64::MAX));
        }
        inner.gauges.scheduled.set(gauge(snapshot.scheduled));
        inner.gauges.running.set(gauge(snapshot.running));
        inner.gauges.unstored.set(gauge(snapshot.unstored));
        inner.gauges.oversize.set(gauge(snapshot.oversize));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }
}

fn method_label(method: &reqwest::Method) -> &'static str {
    match *method {
        reqwest::Method::GET => "GET",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::POST => "POST",
        reqwest::Method::DELETE => "DELETE",
        reqwest::Method::HEAD => "HEAD",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
