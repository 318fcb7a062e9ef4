//! The Cheops replicator: the consistency algorithm and, around it, the
//! daemon's loop that follows CouchDB and runs what must run.

pub mod consistency;
