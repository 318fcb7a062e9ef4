//! One continuous, filtered replication from the local database to each peer
//! site, shared by all resources. Each lives in `_replicator` under a
//! deterministic id, is created the first time a resource names its site,
//! and is recreated when it has been deleted, has failed, or points to
//! another URL.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cheops_model::Timestamp;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::db::couch::{CouchClient, Written};
use crate::db::design::SITE_FILTER;
use crate::metrics::{replication_state, ReplicationGauge};
use crate::workers::worker::{Worker, WorkerState};
use crate::{ReplicatorError, Sites};

/// The replicator's TCP options (CouchDB 3 reads them per document; PouchDB
/// Server ignores them): without `nodelay`, each request of a replication
/// waits about 40 ms for Nagle's algorithm.
const SOCKET_OPTIONS: &str = "[{keepalive, true}, {nodelay, true}]";

/// The fields of a replication document this node sets: one that differs
/// makes it recreate the replication.
const FIELDS: [&str; 6] = [
    "source",
    "target",
    "filter",
    "query_params",
    "continuous",
    "socket_options",
];

#[derive(Clone)]
pub struct Replications {
    inner: Arc<Inner>,
}

struct Inner {
    site: String,
    couch: CouchClient,
    /// The local database URL with credentials, as the replication source.
    source: String,
    sites: Sites,
    /// Peers whose replication is in place.
    ensured: Mutex<HashSet<String>>,
    /// The repair worker's work: peers to set up, check or restart, in
    /// order, each once.
    queue: Mutex<VecDeque<Job>>,
    queued: Notify,
}

/// A replication to set up or check, or to start afresh.
#[derive(Debug, Clone)]
struct Job {
    peer: String,
    restart: bool,
}

impl Replications {
    pub fn new(site: String, couch: CouchClient, source: String, sites: Sites) -> Self {
        Replications {
            inner: Arc::new(Inner {
                site,
                couch,
                source,
                sites,
                ensured: Mutex::default(),
                queue: Mutex::default(),
                queued: Notify::new(),
            }),
        }
    }

    /// Makes sure a replication to each of `locations` (but this site)
    /// exists. Cheap for peers already set up; others are queued for the
    /// repair worker.
    pub fn ensure(&self, locations: &[String]) {
        for peer in locations {
            if *peer == self.inner.site || lock(&self.inner.ensured).contains(peer) {
                continue;
            }
            if self.inner.sites.couch_url(peer).is_none() {
                // Refused on this node; named by a resource replicated from a
                // differently configured one. Its URL would be made up, and
                // would receive this node's credentials.
                warn!(site = %self.inner.site, peer = %peer, "no replication to a site that is not a known peer");
                continue;
            }
            self.inner.enqueue(peer, false);
        }
    }

    /// Starts the replication to `peer` afresh, if there is one: a peer
    /// that was unreachable is retried with a backoff that may have grown
    /// to minutes; a new replication starts at once.
    pub fn restart(&self, peer: &str) {
        if lock(&self.inner.ensured).contains(peer) {
            self.inner.enqueue(peer, true);
        }
    }

    /// The replication to each peer replicated to or being set up, by peer
    /// name, as the server that runs it sees it.
    pub async fn gauges(&self) -> Result<Vec<ReplicationGauge>, ReplicatorError> {
        let mut peers: Vec<String> = lock(&self.inner.ensured).iter().cloned().collect();
        peers.extend(self.inner.queue().iter().map(|job| job.peer.clone()));
        peers.sort();
        peers.dedup();
        let mut gauges = Vec::with_capacity(peers.len());
        for peer in peers {
            let (doc, job) = self.inner.read(&self.inner.doc_id(&peer)).await?;
            gauges.push(gauge(peer, doc.as_ref(), job.as_ref()));
        }
        Ok(gauges)
    }

    /// The worker that sets up the replications queued, and checks every
    /// one in place each `every` period, to repair what was deleted or
    /// failed.
    pub fn repair(&self, every: Duration) -> Repair {
        Repair {
            replications: self.clone(),
            every,
            next_check: Instant::now() + every,
        }
    }
}

/// Sets up, checks and restarts replications, one queued job a step.
pub struct Repair {
    replications: Replications,
    every: Duration,
    next_check: Instant,
}

impl Worker for Repair {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let inner = &self.replications.inner;
        let Some(job) = inner.queue().pop_front() else {
            return Ok(WorkerState::Idle);
        };
        if let Err(error) = inner.ensure_one(&job.peer, job.restart).await {
            // First again, with whatever was asked for its peer meanwhile.
            let mut queue = inner.queue();
            let restart = job.restart || queue.iter().any(|j| j.peer == job.peer && j.restart);
            queue.retain(|j| j.peer != job.peer);
            queue.push_front(Job { restart, ..job });
            return Err(error);
        }
        lock(&inner.ensured).insert(job.peer);
        Ok(WorkerState::Busy)
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            () = self.replications.inner.queued.notified() => {}
            () = tokio::time::sleep_until(self.next_check) => {
                self.next_check = Instant::now() + self.every;
                let inner = &self.replications.inner;
                let peers: Vec<String> = lock(&inner.ensured).iter().cloned().collect();
                for peer in peers {
                    inner.enqueue(&peer, false);
                }
            }
        }
    }
}

/// A site name as it appears in a `_replicator` id: letters, digits, `-`
/// and `.` as they are, every other byte as `_` and two hex digits. The
/// escape is reversible, so two sites never share an id (`site_2` is
/// `site_5f2`, `site 2` is `site_202`), and the usual names (`site2`)
/// appear as they are.
fn escape_site(site: &str) -> String {
    let mut out = String::with_capacity(site.len());
    for byte in site.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

fn lock(set: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    // Single insert/remove/contains per critical section: never inconsistent.
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The replication to `peer` as its `_replicator` document `doc` and, on
/// CouchDB 3, its scheduler's `job` describe it: the scheduler knows states
/// the document never shows (`error`, `crashing`) and the documents the
/// replication could not write.
fn gauge(peer: String, doc: Option<&Value>, job: Option<&Value>) -> ReplicationGauge {
    ReplicationGauge {
        peer,
        state: replication_state(doc.is_some(), state_of(doc, job)),
        write_failures: job
            .and_then(|job| job.pointer("/info/doc_write_failures"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

/// What the scheduler says of a replication's job, or else its document.
fn state_of<'a>(doc: Option<&'a Value>, job: Option<&'a Value>) -> Option<&'a str> {
    job.and_then(|job| job.get("state"))
        .or_else(|| doc.and_then(|doc| doc.get("_replication_state")))
        .and_then(Value::as_str)
}

impl Inner {
    /// The `_replicator` document `id`, and what the scheduler says of its
    /// job when the server has one and the document exists.
    async fn read(&self, id: &str) -> Result<(Option<Value>, Option<Value>), ReplicatorError> {
        let doc = self.couch.get_replication(id).await?;
        let job = match doc {
            Some(_) => self.couch.scheduler_doc(id).await?,
            None => None,
        };
        Ok((doc, job))
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Job>> {
        // Each critical section leaves the queue whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job for `peer`, unless one is queued; a restart asked for
    /// makes the queued job a restart.
    fn enqueue(&self, peer: &str, restart: bool) {
        let mut queue = self.queue();
        match queue.iter_mut().find(|job| job.peer == peer) {
            Some(job) => job.restart |= restart,
            None => queue.push_back(Job {
                peer: peer.to_owned(),
                restart,
            }),
        }
        drop(queue);
        self.queued.notify_one();
    }

    /// The `_replicator` document id for the replication to `peer`.
    fn doc_id(&self, peer: &str) -> String {
        format!(
            "cheops-{}-to-{}",
            escape_site(&self.site),
            escape_site(peer)
        )
    }

    fn wanted(&self, id: &str, peer: &str) -> Result<Value, ReplicatorError> {
        let target = self.sites.couch_url(peer).ok_or_else(|| {
            ReplicatorError::InvalidRequest(format!("site {peer:?} is not a known peer"))
        })?;
        Ok(json!({
            "_id": id,
            "source": self.source,
            "target": target,
            "continuous": true,
            "filter": SITE_FILTER,
            "query_params": { "site": peer },
            "socket_options": SOCKET_OPTIONS,
        }))
    }

    /// Makes the replication to `peer` exist as wanted. One that is missing
    /// is created; one that failed or differs, or any with `restart`, is
    /// deleted and created again (PouchDB Server refuses to update a running
    /// one).
    async fn ensure_one(&self, peer: &str, mut restart: bool) -> Result<(), ReplicatorError> {
        let id = self.doc_id(peer);
        let wanted = self.wanted(&id, peer)?;
        loop {
            if let (Some(current), job) = self.read(&id).await? {
                let state = state_of(Some(&current), job.as_ref());
                let same = FIELDS.iter().all(|k| current.get(k) == wanted.get(k));
                let broken = matches!(state, Some("failed" | "error" | "crashing"));
                if same && !restart && !broken {
                    return Ok(());
                }
                restart = false;
                info!(site = %self.site, peer, state, "recreating replication");
                self.couch.delete_replication(&id, &current).await?;
                continue;
            }
            info!(site = %self.site, peer, "creating replication");
            // A creation time makes each document new to PouchDB Server,
            // which otherwise may take it for one deleted earlier (by plain
            // DELETE) and never start it. Not compared above.
            let mut created = wanted.clone();
            created["cheops_created"] = Value::from(Timestamp::now().to_string());
            match self.couch.put_replication(&id, &created).await? {
                Written::Rev(_) => return Ok(()),
                // Created by another daemon on this database meanwhile: look again.
                Written::Conflict => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replication document as PouchDB Server and CouchDB 3 write it.
    fn doc(state: Option<&str>) -> Value {
        let mut doc = json!({"_id": "cheops-site1-to-site2", "continuous": true});
        if let Some(state) = state {
            doc["_replication_state"] = json!(state);
        }
        doc
    }

    #[test]
    fn pouchdb_shows_the_state_its_document_holds() {
        let shown = gauge("site2".into(), Some(&doc(Some("triggered"))), None);
        assert_eq!((shown.state, shown.write_failures), ("triggered", 0));
        assert_eq!(gauge("site2".into(), None, None).state, "missing");
    }

    /// CouchDB 3 leaves `_replication_state` out of the document while a
    /// job runs or errs: its scheduler says what the job is doing, and how
    /// many documents it could not write.
    #[test]
    fn couchdbs_scheduler_tells_what_the_document_does_not() {
        let job = json!({
            "database": "_replicator",
            "doc_id": "cheops-site1-to-site2",
            "state": "crashing",
            "info": {"doc_write_failures": 2, "docs_written": 40},
            "error_count": 3
        });
        let shown = gauge("site2".into(), Some(&doc(None)), Some(&job));
        assert_eq!((shown.state, shown.write_failures), ("crashing", 2));
        assert_eq!(state_of(Some(&doc(None)), Some(&job)), Some("crashing"));
        assert_eq!(
            state_of(Some(&doc(Some("completed"))), None),
            Some("completed")
        );
    }

    /// The byte-wise inverse of [`escape_site`].
    fn unescape(escaped: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = escaped.bytes();
        while let Some(byte) = bytes.next() {
            if byte == b'_' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(byte);
            }
        }
        out
    }

    #[test]
    fn replication_ids_tell_every_site_apart() {
        assert_eq!(escape_site("site-1.example"), "site-1.example");
        assert_ne!(escape_site("site_2"), escape_site("site 2"));
        // Seeded: the same names on every run; a failure names its input.
        let alphabet = ['a', '_', ' ', '-', '.', '5', 'f', '%', 'é'];
        let mut state: u64 = 0x5eed_cafe;
        let mut seen = std::collections::HashMap::new();
        for _ in 0..5000 {
            let mut name = String::new();
            for _ in 0..(state % 6 + 1) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                name.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            let escaped = escape_site(&name);
            assert_eq!(unescape(&escaped), name.as_bytes(), "{name:?}");
            if let Some(other) = seen.insert(escaped.clone(), name.clone()) {
                assert_eq!(other, name, "{other:?} and {name:?} share {escaped:?}");
            }
        }
    }
}
