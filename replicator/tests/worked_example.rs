//! The worked example of CONSISTENCY.md, step by step: if this test changes,
//! the document must change with it.

use std::collections::HashSet;

use cheops_model::{
    Operation, Resolution, ResolutionResult, ResourceConfig, ResourceDocument, Timestamp,
};
use cheops_replicator::consistency::{
    add_operation, operations_to_run, plan, resolve_conflicts, Run,
};

/// set resets the counter; inc adds to it. inc/inc is absent: any order.
fn counter() -> ResourceConfig {
    let entry = |before: &str, after: &str, result| Resolution {
        before: before.into(),
        after: after.into(),
        result,
    };
    ResourceConfig {
        resolution_matrix: vec![
            entry("set", "set", ResolutionResult::TakeOne),
            entry("set", "inc", ResolutionResult::TakeBothKeepOrder),
            entry("inc", "set", ResolutionResult::TakeBothReverseOrder),
        ],
    }
}

fn op(op_type: &str, id: &str) -> Operation {
    Operation {
        op_type: op_type.into(),
        request_id: id.into(),
        ..Operation::default()
    }
}

fn ids(ops: &[Operation]) -> Vec<&str> {
    ops.iter().map(|op| op.request_id.as_str()).collect()
}

fn revision(ops: &[Operation]) -> ResourceDocument {
    ResourceDocument {
        id: "counter".into(),
        locations: vec!["site1".into(), "site2".into()],
        operations: ops.to_vec(),
        config: counter(),
        ..ResourceDocument::default()
    }
}

/// What the original runs, knowing what a site `replied` to.
fn original<'a>(block: &'a [Operation], replied: &[&str]) -> Vec<&'a str> {
    let replied: HashSet<&str> = replied.iter().copied().collect();
    operations_to_run(block, &replied, &counter())
        .into_iter()
        .map(|op| op.request_id.as_str())
        .collect()
}

/// What the daemon runs after a site ran `ran`, oldest first (a `*` marks
/// a rebuild's first run), and whether it rebuilds.
fn to_run<'a>(block: &'a [Operation], ran: &[&str]) -> (Vec<&'a str>, bool) {
    let runs: Vec<Run> = ran
        .iter()
        .enumerate()
        .map(|(n, request)| Run {
            request: request.trim_start_matches('*').to_owned(),
            time: format!("2026-01-01T00:00:00.{n:09}Z")
                .parse::<Timestamp>()
                .unwrap(),
            rebuild: request.starts_with('*'),
        })
        .collect();
    let plan = plan(block, &runs, &counter());
    let ids = plan.operations.iter().map(|op| op.request_id.as_str());
    (ids.collect(), plan.rebuild)
}

#[test]
fn the_counter_of_consistency_md() {
    let config = counter();

    // 1. A block: set 10, then inc 2 appended (set → inc keeps order).
    let block = add_operation(&config, &[], op("set", "A"));
    let block = add_operation(&config, &block, op("inc", "B"));
    assert_eq!(ids(&block), ["A", "B"]);
    // A later set restarts the block (inc → set is reverse order).
    assert_eq!(ids(&add_operation(&config, &block, op("set", "X"))), ["X"]);

    // 2. Both sites ran A and B. Partition: site1 adds inc 3 (C), site2 inc 4 (D).
    let site1 = add_operation(&config, &block, op("inc", "C"));
    let site2 = add_operation(&config, &block, op("inc", "D"));
    assert_eq!(ids(&site1), ["A", "B", "C"]);
    assert_eq!(ids(&site2), ["A", "B", "D"]);

    // 3. Heal: CouchDB elects site1's revision everywhere; every site merges alike.
    let merged = resolve_conflicts(&revision(&site1), &[revision(&site2)]);
    assert_eq!(ids(&merged.operations), ["A", "B", "C", "D"]);

    // 4. site1 ran A, B, C: it runs the tail D. site2 ran A, B, D: a gap at
    //    C, and the block starts with a set: it rebuilds, as the original
    //    does (set → inc keeps order).
    let all = vec!["A", "B", "C", "D"];
    assert_eq!(
        to_run(&merged.operations, &["A", "B", "C"]),
        (vec!["D"], false)
    );
    assert_eq!(
        to_run(&merged.operations, &["A", "B", "D"]),
        (all.clone(), true)
    );
    assert_eq!(original(&merged.operations, &["A", "B", "D"]), all);
    // Both counters are now 10 + 2 + 3 + 4 = 19.

    // 5. Concurrent sets: site1 sets 0 (E) while site2 sets 7 (F) → take-one,
    //    the winning revision's set stays, the other is dropped.
    let site1 = add_operation(&config, &merged.operations, op("set", "E"));
    let site2 = add_operation(&config, &merged.operations, op("set", "F"));
    assert_eq!(ids(&site1), ["E"]);
    let merged = resolve_conflicts(&revision(&site2), &[revision(&site1)]);
    assert_eq!(ids(&merged.operations), ["F"]);
    let site1_ran = ["A", "B", "C", "D", "E"];
    let site2_ran = ["A", "B", "D", "*A", "B", "C", "D", "F"];
    assert_eq!(to_run(&merged.operations, &site2_ran), (vec![], false));
    assert_eq!(to_run(&merged.operations, &site1_ran), (vec!["F"], false));

    // 6. A set concurrent with an inc. site1 incs (G) on [F]; site2 sets 1
    //    (H), which restarts its block. The merge compares the first
    //    operations, F and H: set → set is take-one, so the winning
    //    revision's set stays and G follows it. Which set survives depends on
    //    the revision CouchDB elects, but it elects the same one everywhere.
    let site1 = add_operation(&config, &merged.operations, op("inc", "G"));
    let site2 = add_operation(&config, &merged.operations, op("set", "H"));
    assert_eq!(ids(&site2), ["H"]);
    let site2_wins = resolve_conflicts(&revision(&site2), &[revision(&site1)]);
    let site1_wins = resolve_conflicts(&revision(&site1), &[revision(&site2)]);
    assert_eq!(ids(&site2_wins.operations), ["H", "G"]);
    assert_eq!(ids(&site1_wins.operations), ["F", "G"]);
    // site1 ran F then G; site2 ran F then H.
    let site1_ran = [&site1_ran[..], &["F", "G"]].concat();
    let site2_ran = [&site2_ran[..], &["H"]].concat();
    // [H, G]: site1 rebuilds (H, then G again), site2 runs G.
    let block = &site2_wins.operations;
    assert_eq!(to_run(block, &site1_ran), (vec!["H", "G"], true));
    assert_eq!(to_run(block, &site2_ran), (vec!["G"], false));
    // [F, G]: site2 ran H, which the merge dropped, after F: it rebuilds.
    let block = &site1_wins.operations;
    assert_eq!(to_run(block, &site1_ran), (vec![], false));
    assert_eq!(to_run(block, &site2_ran), (vec!["F", "G"], true));
}
