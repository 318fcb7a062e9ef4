//! Whether each peer site is reachable, probed with a short timeout. A peer
//! is online when both its CouchDB (what replication needs) and its Cheops
//! API answer. When a peer comes back online, the replication to it is
//! restarted at once: CouchDB and PouchDB Server retry a failing replication
//! with a backoff that grows to minutes, which would otherwise delay
//! convergence long after the network healed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cheops_model::Timestamp;
use futures::future::join_all;
use tracing::{info, warn};

use crate::db::couch::CouchClient;
use crate::node::events::{Events, NodeEvent, PeerLiveness};
use crate::workers::replications::Replications;
use crate::workers::worker::{Worker, WorkerState};
use crate::{ClientOptions, ReplicatorError, Sites};

/// The probes of every known peer, shared by the node and its tasks.
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

struct Inner {
    site: String,
    sites: Sites,
    /// How long a probe may take.
    timeout: Duration,
    /// The probes' connections, kept from one probe to the next.
    http: reqwest::Client,
    events: Events,
    replications: Replications,
    /// Every peer to probe, with its last state (`None` before the first probe).
    peers: Mutex<BTreeMap<String, Option<PeerLiveness>>>,
}

impl Liveness {
    /// Probes the sites given explicitly from the start, and the others once
    /// [`Liveness::track`]ed.
    pub fn new(
        site: String,
        sites: Sites,
        client: ClientOptions,
        events: Events,
        replications: Replications,
    ) -> Self {
        let peers = sites
            .known()
            .filter(|peer| *peer != site)
            .map(|peer| (peer.to_owned(), None))
            .collect();
        let http = client
            .builder()
            .timeout(client.couch_timeout)
            .build()
            .unwrap_or_default();
        Liveness {
            inner: Arc::new(Inner {
                site,
                sites,
                timeout: client.couch_timeout,
                http,
                events,
                replications,
                peers: Mutex::new(peers),
            }),
        }
    }

    /// Adds the peers among `locations` not probed yet.
    pub fn track(&self, locations: &[String]) {
        let mut peers = self.inner.lock();
        for site in locations {
            // A site that does not resolve was refused on this node; named
            // by a resource replicated from a differently configured one, it
            // is not probed: its URL would be made up.
            let resolves = self.inner.sites.urls(site).is_some();
            if *site != self.inner.site && resolves && !peers.contains_key(site) {
                peers.insert(site.clone(), None);
            }
        }
    }

    /// The last known state of every probed peer, by site name.
    pub fn snapshot(&self) -> Vec<PeerLiveness> {
        self.inner.lock().values().flatten().cloned().collect()
    }

    /// The worker that probes every peer each `every` period.
    pub fn probes(&self, every: Duration) -> Probes {
        Probes {
            liveness: self.clone(),
            every,
        }
    }
}

/// Probes every peer, then waits for the next period.
pub struct Probes {
    liveness: Liveness,
    every: Duration,
}

impl Worker for Probes {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let inner = &self.liveness.inner;
        let sites: Vec<String> = inner.lock().keys().cloned().collect();
        for probe in join_all(sites.iter().map(|site| inner.probe(site))).await {
            inner.record(probe);
        }
        Ok(WorkerState::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.every).await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Option<PeerLiveness>>> {
        // Each critical section is one lookup or insert: never inconsistent.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn probe(&self, site: &str) -> (String, bool, bool) {
        let Some(urls) = self.sites.urls(site) else {
            return (site.to_owned(), false, false);
        };
        let couch = async {
            match CouchClient::through(&urls.couch, self.http.clone(), self.timeout) {
                Ok(client) => client.ping().await.is_ok(),
                Err(_) => false,
            }
        };
        let api = async {
            let url = format!("{}/health", urls.api.trim_end_matches('/'));
            self.http.get(url).send().await.is_ok()
        };
        let (couch, api) = tokio::join!(couch, api);
        (site.to_owned(), couch, api)
    }

    /// Stores a probe's result; announces a change of state, and restarts
    /// the replication to a peer that came back.
    fn record(&self, (site, couchdb, api): (String, bool, bool)) {
        let now = Timestamp::now();
        let online = couchdb && api;
        let mut peers = self.lock();
        let Some(entry) = peers.get_mut(&site) else {
            return;
        };
        let previous = entry.as_ref().map(|p| (p.online, p.couchdb));
        let since = match entry {
            Some(p) if p.online == online => p.since,
            _ => now,
        };
        let state = PeerLiveness {
            site: site.clone(),
            online,
            couchdb,
            api,
            since,
            checked: now,
        };
        *entry = Some(state.clone());
        drop(peers);
        if previous.map(|(was_online, _)| was_online) != Some(online) {
            if online {
                info!(site = %self.site, peer = %site, "peer online");
            } else {
                warn!(site = %self.site, peer = %site, couchdb, api, "peer offline");
            }
            self.events.send(NodeEvent::Peer(state));
        }
        if previous.is_some_and(|(_, couch_was_up)| !couch_was_up) && couchdb {
            self.replications.restart(&site);
        }
    }
}
