//! Starting a node: the database prepared, then its background work.

use std::sync::Arc;

use tracing::{error, info};

use crate::db::bootstrap::bootstrap;
use crate::hooks::delivery;
use crate::hooks::positions::Positions;
use crate::node::Node;
use crate::workers::flusher::Flusher;
use crate::workers::follower::{Checkpoint, Follower};
use crate::workers::hooks::Deliveries;
use crate::workers::indexing::IdleIndexing;
use crate::workers::supervisor::Spawner;
use crate::workers::worker::{Worker, WorkerState};
use crate::ReplicatorError;

/// Prepares the database, then starts the node's workers; done once they
/// run.
pub struct Starter {
    node: Node,
    spawner: Spawner,
}

impl Worker for Starter {
    async fn work(&mut self) -> Result<WorkerState, ReplicatorError> {
        let node = &self.node;
        match bootstrap(&node.ctx.couch, node.config.access).await {
            Ok(identity) => node.ctx.set_origin(identity),
            Err(error) => {
                node.ctx.set_health(|h| {
                    h.couchdb_reachable = !error.is_unavailable();
                    h.last_error = Some(error.to_string());
                });
                info!(site = %node.ctx.site, db = %node.ctx.couch.db_url(), %error, "waiting for CouchDB");
                return Err(error);
            }
        }
        node.start_workers(&self.spawner);
        Ok(WorkerState::Done)
    }

    async fn wait_for_work(&mut self) {}
}

impl Node {
    /// The worker that prepares the database (retried as long as CouchDB
    /// is away), then starts the node's background work with `spawner`:
    /// the follower, the runner (vital: without them nothing runs), the
    /// journal's flusher, the replications' repair, the liveness probes
    /// and the replies view's idle indexing.
    pub fn starter(&self, spawner: Spawner) -> Starter {
        Starter {
            node: self.clone(),
            spawner,
        }
    }

    pub(super) fn start_workers(&self, spawner: &Spawner) {
        info!(site = %self.ctx.site, db = %self.ctx.couch.db_url(), journal = %self.ctx.journal.path().display(), "database ready");
        let follower = Follower {
            ctx: self.ctx.clone(),
            hub: self.hub.clone(),
            runner: self.runner.clone(),
            replications: self.replications.clone(),
            liveness: self.liveness.clone(),
            checkpoint: Checkpoint::default(),
        };
        spawner.spawn_worker("follower", true, follower);
        let (runner, stop, drain) = (self.runner.clone(), spawner.shutdown(), self.config.drain);
        spawner.spawn("runner", true, |task| runner.run(task, stop, drain));
        let flusher = Flusher {
            ctx: self.ctx.clone(),
        };
        spawner.spawn_worker("journal", true, flusher);
        let repair = self.replications.repair();
        spawner.spawn_worker("replications", true, repair);
        spawner.spawn_worker(
            "liveness",
            false,
            self.liveness.probes(self.config.peer_check),
        );
        let indexing = IdleIndexing {
            runner: self.runner.clone(),
            ledger: Arc::clone(&self.ctx.ledger),
        };
        spawner.spawn_worker("indexing", false, indexing);
        match delivery::client(&self.config.client) {
            Ok(http) => {
                let deliveries = Deliveries::new(
                    self.ctx.clone(),
                    http,
                    self.hooks.subscribe(),
                    Positions::open(&self.config.data_dir, &self.ctx.site),
                    self.board.clone(),
                    self.config.hook_standby,
                );
                spawner.spawn_worker("hooks", false, deliveries);
            }
            Err(error) => {
                error!(site = %self.ctx.site, %error, "no client to deliver hooks with; hooks are off");
            }
        }
    }
}
