//! The harness that starts local Cheops clusters: real CouchDB-compatible
//! sidecars (PouchDB Server) and `cheops serve` daemons on free ports, and
//! helpers to drive and observe them. The integration tests, the benchmark
//! and the local cluster all start their clusters through it, so a tool
//! never depends on the test crate.
//!
//! Everything a [`Cluster`] starts is killed when it is dropped, including
//! when a test panics.

mod cluster;
pub mod convergence;
pub mod counter_app;
pub mod network;
mod process;
pub mod python;
pub mod scheduler;
pub mod scrape;
pub mod tls;
mod wait;
pub mod webhooks;

pub use cluster::{
    absent_peer, authorized_client, Cluster, ClusterOptions, Exec, NodeInfo, Process, TOKEN_FILE,
    TOKEN_FILES,
};
pub use process::{
    cheops_binary, find_program, free_port, release_cheops_binary, workspace, REDIS_HINT,
};
pub use wait::{eventually, until};
