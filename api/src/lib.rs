//! The Cheops HTTP API (`/exec`, `/show`, `/show_local` and the dump
//! listener). It stands on the replicator and is served by `cheops serve`.
