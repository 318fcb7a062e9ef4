//! Resolving a CouchDB conflict on a resource document.
//!
//! CouchDB picks the same winning revision on every site and lists the losing
//! ones in the same order, so merging them with a deterministic function makes
//! every site write the same resolved document.

use std::collections::HashSet;

use cheops_model::{Operation, ResolutionResult, ResourceConfig, ResourceDocument};

use super::config_hash::config_hash;
use super::prune::prune_as_any;

/// The document that replaces `winner` and its conflicting revisions
/// `losers` (in `_conflicts` order). It keeps the winner's id, revision and
/// locations; the caller writes it and deletes the losers.
///
/// Operations: start from the winner's block; for each loser, compare the
/// first operations of both through the matrix (same request → nothing;
/// take-one → keep ours; any-order, keep-order or no entry → theirs at index
/// 1; reverse-order → theirs at index 0), then append the loser's remaining
/// operations not already present. Every request id appears once: the
/// original could insert one twice, and the port keeps its first place.
/// An operation any revision has pruned is pruned in the result.
pub fn resolve_conflicts(
    winner: &ResourceDocument,
    losers: &[ResourceDocument],
) -> ResourceDocument {
    let config = choose_config(&winner.config, losers.iter().map(|l| &l.config));
    let mut ops = winner.operations.clone();
    for loser in losers {
        merge_block(&mut ops, &loser.operations, &config);
    }
    keep_first_of_each_request(&mut ops);
    prune_as_any(
        &mut ops,
        losers
            .iter()
            .map(|l| l.operations.as_slice())
            .chain([winner.operations.as_slice()]),
    );

    ResourceDocument {
        id: winner.id.clone(),
        rev: winner.rev.clone(),
        conflicts: Vec::new(),
        deleted: false,
        locations: winner.locations.clone(),
        operations: ops,
        config,
        kind: winner.kind,
    }
}

/// The config every site agrees on, quirks of the original included: an empty
/// current config takes the next one without updating the hash to beat, an
/// empty candidate never wins, otherwise the greater hash wins.
fn choose_config<'a>(
    winner: &'a ResourceConfig,
    losers: impl Iterator<Item = &'a ResourceConfig>,
) -> ResourceConfig {
    let mut chosen = winner;
    let mut best = config_hash(chosen);
    for candidate in losers {
        if chosen.is_empty() {
            chosen = candidate;
            continue;
        }
        if candidate.is_empty() {
            continue;
        }
        let hash = config_hash(candidate);
        if hash > best {
            chosen = candidate;
            best = hash;
        }
    }
    chosen.clone()
}

/// Folds one losing block into `ops`.
fn merge_block(ops: &mut Vec<Operation>, theirs: &[Operation], config: &ResourceConfig) {
    let Some((their_first, their_rest)) = theirs.split_first() else {
        return;
    };
    if ops.is_empty() {
        // The original indexes ops[0] here and panics; an empty block has
        // nothing to order against, so theirs is taken as it is.
        ops.extend_from_slice(theirs);
        return;
    }

    // Every matching entry applies, each against the current first operation,
    // exactly as the original iterates its matrix.
    let mut matched = false;
    for entry in &config.resolution_matrix {
        if entry.before != ops[0].op_type || entry.after != their_first.op_type {
            continue;
        }
        matched = true;
        if ops[0].request_id == their_first.request_id {
            break;
        }
        match entry.result {
            ResolutionResult::TakeOne => {}
            ResolutionResult::TakeBothAnyOrder | ResolutionResult::TakeBothKeepOrder => {
                ops.insert(1, their_first.clone());
            }
            ResolutionResult::TakeBothReverseOrder => ops.insert(0, their_first.clone()),
        }
    }
    if !matched {
        ops.insert(1, their_first.clone());
    }

    let mut present: HashSet<String> = ops.iter().map(|op| op.request_id.clone()).collect();
    for op in their_rest {
        if present.insert(op.request_id.clone()) {
            ops.push(op.clone());
        }
    }
}

/// Removes every later repeat of a request id.
fn keep_first_of_each_request(ops: &mut Vec<Operation>) {
    let mut seen = HashSet::new();
    ops.retain(|op| seen.insert(op.request_id.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consistency::counter::{counter_config, op, request_ids};

    fn doc(ops: Vec<Operation>, config: ResourceConfig) -> ResourceDocument {
        ResourceDocument {
            id: "counter".into(),
            operations: ops,
            config,
            ..ResourceDocument::default()
        }
    }

    fn merge(main: ResourceDocument, conflict: ResourceDocument) -> Vec<String> {
        request_ids(&resolve_conflicts(&main, &[conflict]).operations)
    }

    #[test]
    fn concurrent_inc_and_dec_without_config_are_both_kept() {
        let merged = merge(
            doc(vec![op("inc", "inc")], ResourceConfig::default()),
            doc(vec![op("dec", "dec")], ResourceConfig::default()),
        );
        assert_eq!(merged, ["inc", "dec"]);
    }

    #[test]
    fn dec_concurrent_with_set_goes_after_it() {
        let merged = merge(
            doc(vec![op("set", "set")], counter_config()),
            doc(vec![op("dec", "dec")], ResourceConfig::default()),
        );
        assert_eq!(merged, ["set", "dec"]);
    }

    #[test]
    fn set_concurrent_with_dec_goes_before_it() {
        let merged = merge(
            doc(vec![op("dec", "dec")], counter_config()),
            doc(vec![op("set", "set")], ResourceConfig::default()),
        );
        assert_eq!(merged, ["set", "dec"]);
    }

    #[test]
    fn two_concurrent_sets_keep_the_winner() {
        let merged = merge(
            doc(vec![op("set", "set-main")], counter_config()),
            doc(vec![op("set", "set-conflict")], ResourceConfig::default()),
        );
        assert_eq!(merged, ["set-main"]);
    }

    #[test]
    fn a_shared_prefix_keeps_both_tails() {
        let merged = merge(
            doc(
                vec![op("set", "set"), op("inc", "inc1"), op("inc", "inc-main")],
                counter_config(),
            ),
            doc(
                vec![
                    op("set", "set"),
                    op("inc", "inc1"),
                    op("inc", "inc-conflict"),
                ],
                ResourceConfig::default(),
            ),
        );
        assert_eq!(merged, ["set", "inc1", "inc-main", "inc-conflict"]);
    }

    #[test]
    fn the_conflict_config_applies_when_ours_is_empty() {
        let merged = merge(
            doc(
                vec![op("set", "set-0"), op("inc", "inc1")],
                ResourceConfig::default(),
            ),
            doc(
                vec![op("set", "set-1"), op("inc", "inc2")],
                counter_config(),
            ),
        );
        assert_eq!(merged, ["set-0", "inc1", "inc2"]);
    }

    #[test]
    fn a_concurrent_set_restarts_the_block_before_our_incs() {
        let merged = merge(
            doc(
                vec![op("inc", "inc-0"), op("inc", "inc-1")],
                ResourceConfig::default(),
            ),
            doc(
                vec![op("set", "set-1"), op("inc", "inc-2")],
                counter_config(),
            ),
        );
        assert_eq!(merged, ["set-1", "inc-0", "inc-1", "inc-2"]);
    }

    #[test]
    fn the_same_first_operation_with_no_matrix_entry_is_kept_once() {
        let merged = merge(
            doc(
                vec![op("inc", "a"), op("inc", "b")],
                ResourceConfig::default(),
            ),
            doc(
                vec![op("inc", "a"), op("inc", "c")],
                ResourceConfig::default(),
            ),
        );
        assert_eq!(merged, ["a", "b", "c"]);
    }

    #[test]
    fn an_empty_winning_block_takes_the_conflicts_block() {
        let merged = merge(
            doc(vec![], counter_config()),
            doc(
                vec![op("set", "s"), op("inc", "i")],
                ResourceConfig::default(),
            ),
        );
        assert_eq!(merged, ["s", "i"]);
    }

    #[test]
    fn an_operation_pruned_in_any_revision_is_pruned_in_the_merge() {
        let mut with_payload = op("inc", "a");
        with_payload.command.command = "echo a".into();
        let mut pruned = op("inc", "a");
        pruned.pruned = true;
        let winner = doc(vec![with_payload.clone(), op("inc", "b")], counter_config());
        let loser = doc(vec![pruned, op("inc", "c")], counter_config());
        for (main, conflict) in [(&winner, &loser), (&loser, &winner)] {
            let merged = resolve_conflicts(main, std::slice::from_ref(conflict));
            let a = &merged.operations[0];
            assert!(a.pruned && a.command.command.is_empty(), "{a:?}");
            assert_eq!(merged.operations.len(), 3);
        }
    }

    #[test]
    fn the_resolved_document_keeps_the_winners_identity_and_drops_conflicts() {
        let mut main = doc(vec![op("set", "s")], counter_config());
        main.rev = Some("3-abc".into());
        main.conflicts = vec!["3-abd".into()];
        main.locations = vec!["site1".into(), "site2".into()];
        let resolved = resolve_conflicts(&main, &[doc(vec![op("inc", "i")], counter_config())]);
        assert_eq!(resolved.id, "counter");
        assert_eq!(resolved.rev.as_deref(), Some("3-abc"));
        assert_eq!(resolved.locations, ["site1", "site2"]);
        assert!(resolved.conflicts.is_empty());
    }
}
