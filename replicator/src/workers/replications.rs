//! One continuous, filtered replication from the local database to each peer
//! site, shared by all resources. Each lives in `_replicator` under a
//! deterministic id and is created the first time a resource names its
//! site. The repair worker checks each one every period: it recreates one
//! deleted, pointing to another URL, or broken (`failed`, `error`,
//! `crashing`: each time after a longer wait); and when one could not write
//! documents, it sends them again with a one-shot replication from the
//! start, until one writes them all. Each check reads the peer database's
//! identity too: documents that came from it are not sent back
//! (`db/origin.rs`).

mod document;
mod peer;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use cheops_model::Timestamp;
use serde_json::Value;
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::document::{Ends, FIELDS};
use self::peer::{is_broken, Peer};
use crate::db::bootstrap;
use crate::db::couch::{CouchClient, Written};
use crate::workers::worker::{Worker, WorkerState};
use crate::{ClientOptions, ReplicatorError, Sites};

pub use self::peer::{ReplicationStatus, Resend};

/// The longest a check waits for a peer's identity: a peer cut off would
/// otherwise hold every other peer's check.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The connections the reads of a peer's identity go over, kept from
    /// one check to the next, and how long such a read may take.
    http: reqwest::Client,
    peer_timeout: Duration,
    /// The check period, and the unit of the waits between repairs.
    every: Duration,
    /// Each peer whose replication is in place, as last checked.
    peers: Mutex<BTreeMap<String, Peer>>,
    /// Whether the server has CouchDB 3's scheduler, once known.
    scheduler: OnceLock<bool>,
    /// The local database's identity, once read.
    identity: OnceCell<String>,
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
    /// Replications from the local database (`source`, with credentials)
    /// to the peers `sites` names, reached with `client`, checked every
    /// `every`.
    pub fn new(
        site: String,
        couch: CouchClient,
        source: String,
        sites: Sites,
        client: ClientOptions,
        every: Duration,
    ) -> Self {
        let peer_timeout = client.couch_timeout.min(PEER_TIMEOUT);
        let peers = ClientOptions {
            couch_timeout: peer_timeout,
            ..client
        };
        // The same options made the node's own client: this build succeeds
        // as that one did.
        let http = peers.builder().build().unwrap_or_default();
        Replications {
            inner: Arc::new(Inner {
                site,
                couch,
                source,
                sites,
                http,
                peer_timeout,
                every,
                peers: Mutex::default(),
                scheduler: OnceLock::new(),
                identity: OnceCell::new(),
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
            if *peer == self.inner.site || self.inner.peers().contains_key(peer) {
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
        if self.inner.peers().contains_key(peer) {
            self.inner.enqueue(peer, true);
        }
    }

    /// The replication to each peer in place, as its last check saw it.
    pub fn statuses(&self) -> Vec<ReplicationStatus> {
        self.inner
            .peers()
            .values()
            .map(|peer| peer.status.clone())
            .collect()
    }

    /// The worker that sets up the replications queued, and checks every
    /// one in place each period.
    pub fn repair(&self) -> Repair {
        Repair {
            replications: self.clone(),
            next_check: Instant::now() + self.inner.every,
        }
    }
}

/// Sets up, checks and restarts replications, one queued job a step.
pub struct Repair {
    replications: Replications,
    next_check: Instant,
}

impl Worker for Repair {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let inner = &self.replications.inner;
        let Some(job) = inner.queue().pop_front() else {
            return Ok(WorkerState::Idle);
        };
        if let Err(error) = inner.check(&job.peer, job.restart).await {
            // First again, with whatever was asked for its peer meanwhile.
            let mut queue = inner.queue();
            let restart = job.restart || queue.iter().any(|j| j.peer == job.peer && j.restart);
            queue.retain(|j| j.peer != job.peer);
            queue.push_front(Job { restart, ..job });
            return Err(error);
        }
        Ok(WorkerState::Busy)
    }

    async fn wait_for_work(&mut self) {
        tokio::select! {
            () = self.replications.inner.queued.notified() => {}
            () = tokio::time::sleep_until(self.next_check) => {
                let inner = &self.replications.inner;
                self.next_check = Instant::now() + inner.every;
                let peers: Vec<String> = inner.peers().keys().cloned().collect();
                for peer in peers {
                    inner.enqueue(&peer, false);
                }
            }
        }
    }
}

impl Inner {
    fn peers(&self) -> MutexGuard<'_, BTreeMap<String, Peer>> {
        // Each critical section reads or replaces one entry.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Checks the replication to `name`, and its resend if one is owed;
    /// what it saw is kept once the replication is in place.
    async fn check(&self, name: &str, restart: bool) -> Result<(), ReplicatorError> {
        let known = self.peers().get(name).cloned();
        let first = known.is_none();
        let mut peer = known.unwrap_or_else(|| Peer::new(name, Instant::now()));
        let checked = async {
            self.check_continuous(name, restart, &mut peer).await?;
            self.check_resend(name, first, &mut peer).await
        }
        .await;
        if checked.is_ok() || !first {
            self.peers().insert(name.to_owned(), peer);
        }
        checked
    }

    /// Makes the replication to `name` exist as wanted. One that is missing
    /// is created; one that differs, or any with `restart`, is deleted and
    /// created again (PouchDB Server refuses to update a running one), and
    /// so is a broken one when its wait is over.
    async fn check_continuous(
        &self,
        name: &str,
        mut restart: bool,
        peer: &mut Peer,
    ) -> Result<(), ReplicatorError> {
        let id = document::continuous_id(&self.site, name);
        let database = self.identity().await?;
        let target = self.target(name)?;
        let now = Instant::now();
        let mut read = self.read(&id).await?;
        let known = read
            .0
            .as_ref()
            .and_then(|doc| doc.pointer("/query_params/target"))
            .and_then(Value::as_str);
        self.peer_identity(name, peer, known).await;
        let wanted = document::continuous(&id, &self.ends(name, &target, database, peer));
        loop {
            let (current, job) = read;
            let state = document::state(current.as_ref(), job.as_ref());
            let failures = document::write_failures(current.as_ref(), job.as_ref());
            if peer.saw(state, failures, now) {
                warn!(site = %self.site, peer = name, state, failures, "replication could not write documents; they will be sent again");
            }
            if let Some(current) = current {
                let same = FIELDS.iter().all(|k| current.get(k) == wanted.get(k));
                let repair = is_broken(state) && peer.recreate_broken(self.every, now);
                if same && !restart && !repair {
                    return Ok(());
                }
                restart = false;
                info!(site = %self.site, peer = name, state, "recreating replication");
                self.couch.delete_replication(&id, &current).await?;
            } else {
                info!(site = %self.site, peer = name, "creating replication");
                if self.create(&id, wanted.clone()).await? {
                    peer.saw("none", 0, now);
                    return Ok(());
                }
            }
            read = self.read(&id).await?;
        }
    }

    /// Moves a resend owed to `name` on: starts it when due, and ends it
    /// when its replication did. On a peer's `first` check, a resend left
    /// by an earlier run of the node is looked for too.
    async fn check_resend(
        &self,
        name: &str,
        first: bool,
        peer: &mut Peer,
    ) -> Result<(), ReplicatorError> {
        let now = Instant::now();
        let id = document::resend_id(&self.site, name);
        if peer.resend_due(now) {
            let (current, _) = self.read(&id).await?;
            if let Some(current) = current {
                self.couch.delete_replication(&id, &current).await?;
            }
            let stamp = Timestamp::now().to_string();
            let database = self.identity().await?;
            let target = self.target(name)?;
            let doc = document::resend(&id, &self.ends(name, &target, database, peer), &stamp);
            if self.create(&id, doc).await? {
                info!(site = %self.site, peer = name, "sending again what the replication could not write");
                peer.resend_started();
            }
            return Ok(());
        }
        if peer.status.resend != Resend::Running && !first {
            return Ok(());
        }
        let (current, job) = self.read(&id).await?;
        if first && current.is_some() && peer.status.resend == Resend::None {
            // Left by an earlier run of the node: followed to its end.
            peer.resend_started();
        }
        if peer.status.resend != Resend::Running {
            return Ok(());
        }
        let clean = match document::state(current.as_ref(), job.as_ref()) {
            "completed" => document::write_failures(current.as_ref(), job.as_ref()) == 0,
            // Deleted by someone else: what it would have sent is still owed.
            "failed" | "missing" => false,
            _ => return Ok(()),
        };
        peer.resend_ended(clean, self.every, now);
        if clean {
            info!(site = %self.site, peer = name, "every document the replication could not write is sent");
        } else {
            warn!(site = %self.site, peer = name, "a resend could not write every document; trying again later");
        }
        if let Some(current) = current {
            self.couch.delete_replication(&id, &current).await?;
        }
        Ok(())
    }

    /// The peer's CouchDB, as replications reach it.
    fn target(&self, name: &str) -> Result<String, ReplicatorError> {
        self.sites.couch_url(name).ok_or_else(|| {
            ReplicatorError::InvalidRequest(format!("site {name:?} is not a known peer"))
        })
    }

    /// Creates the `_replicator` document `doc` under `id`; `false` when
    /// another daemon on this database created one meanwhile.
    async fn create(&self, id: &str, mut doc: Value) -> Result<bool, ReplicatorError> {
        // A creation time makes each document new to PouchDB Server, which
        // otherwise may take it for one deleted earlier (by plain DELETE)
        // and never start it. Not compared.
        doc["cheops_created"] = Value::from(Timestamp::now().to_string());
        Ok(match self.couch.put_replication(id, &doc).await? {
            Written::Rev(_) => true,
            Written::Conflict => false,
        })
    }

    /// The ends of the replication to `name` (at `target`), as `peer`
    /// knows them.
    fn ends<'a>(
        &'a self,
        name: &'a str,
        target: &'a str,
        database: &'a str,
        peer: &'a Peer,
    ) -> Ends<'a> {
        Ends {
            source: &self.source,
            target,
            peer: name,
            database,
            peer_database: peer.identity.as_deref(),
        }
    }

    /// Learns the identity of `name`'s database into `peer`. A peer that
    /// does not answer keeps the identity known before, or the one its
    /// replication carries (`known`), so that a partition recreates
    /// nothing; a peer whose database has none (not prepared by this
    /// port, or not yet) gets every document.
    async fn peer_identity(&self, name: &str, peer: &mut Peer, known: Option<&str>) {
        let read = match self.target(name) {
            Ok(url) => match CouchClient::through(&url, self.http.clone(), self.peer_timeout) {
                Ok(couch) => bootstrap::read_identity(&couch).await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match read {
            Ok(identity) => peer.identity = identity,
            Err(error) => {
                if peer.identity.is_none() {
                    peer.identity = known.map(str::to_owned);
                }
                debug!(site = %self.site, peer = name, %error, "peer database's identity unread; kept as known");
            }
        }
    }

    /// The local database's identity (see [`bootstrap::identity`]).
    async fn identity(&self) -> Result<&str, ReplicatorError> {
        self.identity
            .get_or_try_init(|| bootstrap::identity(&self.couch))
            .await
            .map(String::as_str)
    }

    /// The `_replicator` document `id`, and what the scheduler says of its
    /// job when the server has a scheduler and the document exists.
    async fn read(&self, id: &str) -> Result<(Option<Value>, Option<Value>), ReplicatorError> {
        let doc = self.couch.get_replication(id).await?;
        if doc.is_none() || self.scheduler.get() == Some(&false) {
            return Ok((doc, None));
        }
        let job = self.couch.scheduler_doc(id).await?;
        if job.is_none() && self.scheduler.get().is_none() {
            let has = self.couch.has_scheduler().await?;
            let _ = self.scheduler.set(has);
        }
        Ok((doc, job))
    }
}
