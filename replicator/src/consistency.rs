//! The consistency algorithm, as pure functions: how a new operation joins a
//! resource's block, how concurrent revisions of a resource are merged, and
//! which operations a site must (re)run. CONSISTENCY.md explains the model;
//! the conformance corpus pins these functions to the original's behaviour.
//!
//! Every function here is deterministic and depends only on its arguments, so
//! that every site, given the same documents, reaches the same block.

mod block;
mod config_hash;
mod merge;
mod prune;
mod schedule;

pub use block::add_operation;
pub use merge::resolve_conflicts;
pub use prune::{dropped, payloads, prunable, prune_as_any, prune_payloads, Seen, SeenReply};
pub use schedule::{operations_to_run, plan, plan_anyway, Plan, Run};

#[cfg(test)]
mod counter;
