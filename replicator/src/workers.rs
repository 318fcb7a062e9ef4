//! The node's background work: the supervisor and its worker contract,
//! and each worker (the runner's passes are the node's; these feed it,
//! store its replies and keep the replications up).

pub mod backoff;
pub mod flusher;
pub mod follower;
pub mod hooks;
pub mod indexing;
pub mod liveness;
pub mod replications;
pub mod status;
pub mod supervisor;
pub mod worker;
