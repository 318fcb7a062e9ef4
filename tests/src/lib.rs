//! Multi-node integration tests of Cheops: a harness that starts real
//! CouchDB-compatible sidecars (PouchDB Server) and `cheops serve` daemons on
//! free ports, and helpers to drive and observe them.
//!
//! Everything a [`Cluster`] starts is killed when it is dropped, including
//! when a test panics.

mod cluster;
pub mod convergence;
pub mod network;
mod process;
pub mod python;
pub mod scrape;
pub mod tls;
mod wait;

pub use cluster::{
    absent_peer, authorized_client, Cluster, ClusterOptions, Exec, NodeInfo, Process, TOKEN_FILE,
    TOKEN_FILES,
};
pub use process::{
    cheops_binary, find_program, free_port, release_cheops_binary, workspace, REDIS_HINT,
};
pub use wait::eventually;
