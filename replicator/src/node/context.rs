//! What every part of a node shares: its site, its database and the writes
//! waiting for it, its journal, its ledger, its metrics, its events, its
//! changes feed and its health. The node, the runner and the workers each
//! receive one.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::Notify;

use crate::db::couch::CouchClient;
use crate::metrics::Metrics;
use crate::node::events::Events;
use crate::node::feed::Feed;
use crate::node::health::OversizeResource;
use crate::node::journal::Journal;
use crate::node::ledger::Ledger;
use crate::node::writes::{writes, Writes};
use crate::Health;

#[derive(Clone)]
pub struct Context {
    /// This node's site name.
    pub site: String,
    /// The local database; it counts its requests in `metrics`.
    pub couch: CouchClient,
    /// Replies and resources waiting to be written together
    /// (`node/writes.rs`).
    pub writes: Arc<Writes>,
    pub metrics: Metrics,
    /// This site's replies until CouchDB holds them.
    pub journal: Journal,
    /// Who replied to what.
    pub ledger: Arc<Ledger>,
    pub events: Events,
    /// What happened to the resources, numbered, kept across restarts.
    pub feed: Feed,
    health: Arc<Mutex<Health>>,
    /// Woken when the journal holds replies CouchDB does not.
    pub unstored: Arc<Notify>,
    /// The local database's identity, once prepared: the `Origin` of what
    /// this node writes (`db/origin.rs`).
    origin: Arc<OnceLock<String>>,
}

impl Context {
    pub fn new(
        site: String,
        couch: CouchClient,
        metrics: Metrics,
        journal: Journal,
        feed: Feed,
    ) -> Self {
        let ledger = Ledger::new(site.clone(), couch.clone(), journal.clone());
        Context {
            site,
            couch,
            writes: Arc::new(writes()),
            metrics,
            journal,
            ledger: Arc::new(ledger),
            events: Events::default(),
            feed,
            health: Arc::default(),
            unstored: Arc::new(Notify::new()),
            origin: Arc::default(),
        }
    }

    /// The `Origin` of the documents this node writes; `None` before the
    /// database is prepared (they then go everywhere).
    pub fn origin(&self) -> Option<&str> {
        self.origin.get().map(String::as_str)
    }

    /// Sets the database's identity as its preparation read it. A database
    /// deleted under a running node keeps the identity read first: what the
    /// node writes then goes everywhere, as a document of no origin would.
    pub fn set_origin(&self, identity: String) {
        let _ = self.origin.set(identity);
    }

    fn lock_health(&self) -> MutexGuard<'_, Health> {
        // Each update sets fields: never left inconsistent.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_health(&self, update: impl FnOnce(&mut Health)) {
        update(&mut self.lock_health());
    }

    pub fn health(&self) -> Health {
        self.lock_health().clone()
    }

    /// Whether `resource` is over size: its merge does not fit a document.
    pub fn over_size(&self, resource: &str) -> Option<OversizeResource> {
        let health = self.lock_health();
        health
            .oversize
            .iter()
            .find(|o| o.resource == resource)
            .cloned()
    }

    /// Marks a resource over size (`Some`), or no longer (`None`).
    pub fn set_over_size(&self, resource: &str, marked: Option<OversizeResource>) {
        let mut health = self.lock_health();
        health.oversize.retain(|o| o.resource != resource);
        health.oversize.extend(marked);
    }
}
