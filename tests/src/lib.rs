//! Multi-node integration tests of Cheops: a harness that starts real
//! CouchDB-compatible sidecars and daemons on free ports, and the scenarios.
