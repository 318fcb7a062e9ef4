//! The state of a node's background work, for `/health` and Chephren.

use serde::Serialize;

use crate::hooks::board::HookStatus;
use crate::workers::replications::ReplicationStatus;
use crate::workers::status::{TaskState, TaskStatus};

/// A snapshot of what a node can and cannot do right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The local CouchDB answered the last request made to it.
    pub couchdb_reachable: bool,
    /// The changes follower is connected and reading the feed.
    pub follower_live: bool,
    /// The follower's last error, if its connection failed since.
    pub last_error: Option<String>,
    /// Every background task of the node, by name.
    pub tasks: Vec<TaskStatus>,
    /// The replication to each peer, as its last check saw it. One that
    /// is broken leaves the node healthy: it still accepts operations, and
    /// its peers get them once the replication is repaired.
    pub replications: Vec<ReplicationStatus>,
    /// Each hook's deliveries.
    pub hooks: Vec<HookStatus>,
    /// Resources whose concurrent blocks merge into a document over
    /// `--max-document-size`: left unmerged, they accept no operation.
    pub oversize: Vec<OversizeResource>,
}

/// A resource whose merge would be over the document size limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OversizeResource {
    pub resource: String,
    /// The merged document's size, as JSON.
    pub bytes: usize,
    /// `--max-document-size`.
    pub limit: usize,
}

impl Health {
    /// The states alone, for a caller without a token: no error text, no
    /// delivery and no resource over size, which can name hosts, paths and
    /// resources.
    pub fn states_only(mut self) -> Health {
        self.last_error = None;
        for task in &mut self.tasks {
            task.last_error = None;
        }
        for hook in &mut self.hooks {
            hook.last.clear();
        }
        self.oversize.clear();
        self
    }

    /// Healthy means able to accept and replicate operations: no vital
    /// task has died.
    pub fn is_healthy(&self) -> bool {
        self.couchdb_reachable
            && self.follower_live
            && !self
                .tasks
                .iter()
                .any(|task| task.vital && task.state == TaskState::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(vital: bool, state: TaskState) -> TaskStatus {
        TaskStatus {
            name: "runner".into(),
            vital,
            state,
            failures: 0,
            last_error: None,
            last_error_at: None,
        }
    }

    #[test]
    fn a_failed_vital_task_makes_the_node_unhealthy() {
        let mut health = Health {
            hooks: Vec::new(),
            oversize: Vec::new(),
            couchdb_reachable: true,
            follower_live: true,
            last_error: None,
            tasks: vec![
                task(false, TaskState::Failed),
                task(true, TaskState::Retrying),
            ],
            // A broken replication: the node still takes operations.
            replications: vec![ReplicationStatus {
                peer: "site2".into(),
                state: "crashing",
                write_failures: 1,
                resend: crate::workers::replications::Resend::Due,
                checked: cheops_model::Timestamp::now(),
            }],
        };
        assert!(
            health.is_healthy(),
            "a failed helper or a retrying vital task is not fatal"
        );
        health.tasks.push(task(true, TaskState::Failed));
        assert!(!health.is_healthy());
    }
}
