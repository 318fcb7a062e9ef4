//! The Cheops replicator: the consistency algorithm and, around it, the
//! daemon's loop that follows CouchDB, merges conflicts, runs what must run
//! and keeps one replication per peer site.

mod backoff;
mod batch;
mod bootstrap;
mod by_use;
mod clients;
pub mod consistency;
mod context;
pub mod couch;
mod documents;
mod error;
mod events;
mod follower;
mod health;
mod history;
mod hub;
mod journal;
mod ledger;
mod liveness;
pub mod metrics;
mod node;
mod oversize;
mod recent;
mod replications;
mod resolution;
mod runner;
mod seam;
mod sites;
mod store;
mod submission;
mod supervisor;
mod worker;

pub use bootstrap::DatabaseAccess;
pub use clients::ClientOptions;
pub use documents::Documents;
pub use error::ReplicatorError;
pub use events::{NodeEvent, PeerLiveness};
pub use health::Health;
pub use history::{HistoryQuery, HistoryStream, PAGE as HISTORY_PAGE};
pub use hub::{ReplyHub, ReplyReceiver};
pub use node::{Node, NodeConfig, COUCHDB_MAX_DOCUMENT_SIZE, DEFAULT_MAX_REPLY_BYTES};
pub use seam::{BoxFuture, NodeApi, NodeWatch};
pub use sites::{SiteUrls, Sites, Templates};
pub use submission::{Submission, Submitted};
pub use supervisor::{Ending, Spawner, Supervisor, Task, TaskState, TaskStatus, Tasks};
