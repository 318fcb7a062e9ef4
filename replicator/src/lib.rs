//! The Cheops replicator: the consistency algorithm and, around it, the
//! node that follows CouchDB, merges conflicts, runs what must run and
//! keeps one replication per peer site.
//!
//! Layers, each using only those above it:
//! - [`consistency`]: the pure rules (no I/O);
//! - `db`: the CouchDB client and the one design document;
//! - `node`: the node and what it holds: the ledger, the journal, the
//!   runner, `/exec`'s submit path, the history reader, the seam the HTTP
//!   layers use;
//! - `hooks`: webhooks' configuration, signatures, duties and receipts;
//! - `workers`: background work under one supervisor (the follower, the
//!   flusher, replication repair, liveness, idle indexing, the hooks'
//!   deliveries);
//! - [`metrics`] and `config` (sites, HTTP clients), used by all.

mod config;
pub mod consistency;
mod db;
mod error;
mod hooks;
pub mod metrics;
mod node;
#[cfg(test)]
mod testing;
mod workers;

pub use config::clients::ClientOptions;
pub use config::sites::{SiteUrls, Sites, Templates};
pub use db::bootstrap::DatabaseAccess;
pub use db::documents::{Documents, Reading, Runs};
pub use error::ReplicatorError;
pub use hooks::board::{Delivery as HookDelivery, HookStatus};
pub use hooks::config::{load as load_hooks, parse as parse_hooks, Hook};
pub use node::events::{NodeEvent, PeerLiveness};
pub use node::feed::{Event, EventType, Feed, Page as FeedPage, OUTPUT_CAP};
pub use node::health::{Health, OversizeResource};
pub use node::history::{HistoryQuery, HistoryStream, PAGE as HISTORY_PAGE};
pub use node::hub::{ReplyHub, ReplyReceiver};
pub use node::seam::{BoxFuture, NodeSeam};
pub use node::submission::{Submission, Submitted};
pub use node::{Node, NodeConfig, COUCHDB_MAX_DOCUMENT_SIZE, DEFAULT_MAX_REPLY_BYTES};
pub use workers::replications::{ReplicationStatus, Resend};
pub use workers::status::{Task, TaskState, TaskStatus, Tasks};
pub use workers::supervisor::{Ending, Spawner, Supervisor};
