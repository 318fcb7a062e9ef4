//! The local database: the CouchDB client (the node talks to CouchDB only
//! through it), the one design document with every view and filter and
//! the typed queries of them, the database's preparation, and the
//! documents read whole for the UI.

pub mod bootstrap;
pub mod couch;
pub mod design;
pub mod documents;
pub mod origin;
pub mod queries;
