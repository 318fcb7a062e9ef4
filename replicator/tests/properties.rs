//! Laws of the consistency functions, checked on generated blocks.
//!
//! Request ids are drawn from a small pool so that blocks share operations,
//! as concurrent revisions of one resource do.

use std::collections::HashSet;

use cheops_model::{
    Operation, Resolution, ResolutionResult, ResourceConfig, ResourceDocument, Timestamp,
};
use cheops_replicator::consistency::{
    add_operation, operations_to_run, plan, resolve_conflicts, Run,
};
use proptest::prelude::*;

const TYPES: [&str; 4] = ["set", "inc", "dec", "add"];

fn operation() -> impl Strategy<Value = Operation> {
    (0..TYPES.len(), 0u8..12).prop_map(|(t, id)| Operation {
        op_type: TYPES[t].to_owned(),
        request_id: format!("r{id}"),
        ..Operation::default()
    })
}

/// A block as the daemon writes it: each request id at most once.
fn block() -> impl Strategy<Value = Vec<Operation>> {
    prop::collection::vec(operation(), 0..8).prop_map(|mut ops| {
        let mut seen = HashSet::new();
        ops.retain(|op| seen.insert(op.request_id.clone()));
        ops
    })
}

fn config() -> impl Strategy<Value = ResourceConfig> {
    let entry = (0..TYPES.len(), 0..TYPES.len(), 0..4usize).prop_map(|(b, a, r)| Resolution {
        before: TYPES[b].to_owned(),
        after: TYPES[a].to_owned(),
        result: ResolutionResult::ALL[r],
    });
    prop::collection::vec(entry, 0..10)
        .prop_map(|resolution_matrix| ResourceConfig { resolution_matrix })
}

fn revision() -> impl Strategy<Value = ResourceDocument> {
    (block(), config()).prop_map(|(operations, config)| ResourceDocument {
        id: "res".into(),
        operations,
        config,
        ..ResourceDocument::default()
    })
}

fn ids(ops: &[Operation]) -> Vec<&str> {
    ops.iter().map(|op| op.request_id.as_str()).collect()
}

proptest! {
    #[test]
    fn a_resolved_block_never_holds_a_request_twice(
        winner in revision(),
        losers in prop::collection::vec(revision(), 1..4),
    ) {
        let resolved = resolve_conflicts(&winner, &losers);
        let ids = ids(&resolved.operations);
        let unique: HashSet<&str> = ids.iter().copied().collect();
        prop_assert_eq!(unique.len(), ids.len(), "{:?}", ids);
    }

    /// Each call builds hash sets with fresh random seeds: equal results show
    /// that no hash order leaks into the block every site must agree on.
    #[test]
    fn resolving_is_deterministic(
        winner in revision(),
        losers in prop::collection::vec(revision(), 1..4),
    ) {
        let copy_winner = winner.clone();
        let copy_losers = losers.clone();
        prop_assert_eq!(
            resolve_conflicts(&winner, &losers),
            resolve_conflicts(&copy_winner, &copy_losers)
        );
    }

    #[test]
    fn resolving_loses_only_what_take_one_drops(
        winner in revision(),
        losers in prop::collection::vec(revision(), 1..4),
    ) {
        let resolved = resolve_conflicts(&winner, &losers);
        let kept: HashSet<&str> = ids(&resolved.operations).into_iter().collect();
        for op in &winner.operations {
            prop_assert!(kept.contains(op.request_id.as_str()), "lost {} of the winner", op.request_id);
        }
        for loser in &losers {
            for op in loser.operations.iter().skip(1) {
                prop_assert!(kept.contains(op.request_id.as_str()), "lost {} of a loser", op.request_id);
            }
        }
    }

    #[test]
    fn a_new_operation_ends_the_block_and_keeps_or_resets_the_rest(
        config in config(),
        existing in block(),
        new in operation(),
    ) {
        let next = add_operation(&config, &existing, new.clone());
        prop_assert_eq!(next.last(), Some(&new));
        let before = &next[..next.len() - 1];
        prop_assert!(before.is_empty() || before == existing.as_slice());
    }

    #[test]
    fn a_site_runs_every_pending_operation_in_block_order(
        config in config(),
        block in block(),
        replied_mask in prop::collection::vec(any::<bool>(), 8),
    ) {
        let replied: HashSet<&str> = block
            .iter()
            .zip(&replied_mask)
            .filter(|(_, &r)| r)
            .map(|(op, _)| op.request_id.as_str())
            .collect();
        let chosen = operations_to_run(&block, &replied, &config);
        let mut positions = chosen.iter().map(|c| {
            block.iter().position(|op| op.request_id == c.request_id).unwrap_or(usize::MAX)
        });
        let mut last = None;
        for position in positions.by_ref() {
            prop_assert!(position != usize::MAX && Some(position) > last);
            last = Some(position);
        }
        for op in &block {
            if !replied.contains(op.request_id.as_str()) {
                prop_assert!(chosen.iter().any(|c| c.request_id == op.request_id));
            }
        }
    }

    /// Whatever the matrix, the block and what a site ran (operations of
    /// the pool, some no longer in the block, some twice), running what
    /// `plan` says leaves nothing to run: a site never loops.
    #[test]
    fn once_a_site_ran_its_plan_nothing_is_left_to_run(
        config in config(),
        block in block(),
        ran in prop::collection::vec((operation(), any::<bool>()), 0..10),
    ) {
        let mut runs: Vec<Run> = Vec::new();
        for (op, rebuild) in &ran {
            record(&mut runs, &op.request_id, *rebuild);
        }
        let first = plan(&block, &runs, &config);
        let mut seen = HashSet::new();
        prop_assert!(first.operations.iter().all(|op| seen.insert(&op.request_id)));
        let planned: Vec<(String, bool)> = first
            .operations
            .iter()
            .enumerate()
            .map(|(index, op)| (op.request_id.clone(), first.rebuild && index == 0))
            .collect();
        for (request, rebuild) in &planned {
            record(&mut runs, request, *rebuild);
        }
        let again = plan(&block, &runs, &config);
        prop_assert!(again.operations.is_empty(), "{:?} then {:?}", planned, ids_of(&again.operations));
    }
}

/// Adds a run to `runs`, after the others.
fn record(runs: &mut Vec<Run>, request: &str, rebuild: bool) {
    let time = format!("2026-01-01T00:00:00.{:09}Z", runs.len())
        .parse::<Timestamp>()
        .unwrap();
    runs.push(Run {
        request: request.to_owned(),
        time,
        rebuild,
    });
}

fn ids_of<'a>(ops: &[&'a Operation]) -> Vec<&'a str> {
    ops.iter().map(|op| op.request_id.as_str()).collect()
}
