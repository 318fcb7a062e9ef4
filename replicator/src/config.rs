//! Where the other sites are, and how the node's HTTP clients connect.

pub mod clients;
pub mod sites;
