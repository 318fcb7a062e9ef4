//! Webhooks: the changes feed's events POSTed to the URLs of a hooks file,
//! signed as the Standard Webhooks specification says, each event by one
//! node of the cluster, under one id everywhere. The deliveries themselves
//! are a worker (`workers/hooks.rs`).

pub mod board;
pub mod config;
pub mod delivery;
pub mod duty;
pub mod positions;
pub mod receipts;
pub mod signature;
