//! Choosing which operations of a block a site must run.

use std::collections::{HashMap, HashSet};

use cheops_model::{Operation, ResolutionResult, ResourceConfig, Timestamp};
use serde::Deserialize;

/// The original's rule (pinned by the conformance corpus; the daemon decides
/// with [`plan`]): the operations of `block` a site must run now, in order,
/// knowing the request ids it has already `replied` to.
///
/// - When every operation not yet replied comes after every replied one, the
///   site's state is the state of the replied prefix: run the tail.
/// - Otherwise (never for a block of one) a merge inserted an operation before ones already run. If the
///   block's first two operations must keep their order, the state built so
///   far is wrong and the whole block is re-run; else the operations commute
///   and only those not yet replied are run.
pub fn operations_to_run<'a>(
    block: &'a [Operation],
    replied: &HashSet<&str>,
    config: &ResourceConfig,
) -> Vec<&'a Operation> {
    let is_replied = |op: &Operation| replied.contains(op.request_id.as_str());
    let first_not_replied = block
        .iter()
        .position(|op| !is_replied(op))
        .unwrap_or(block.len());
    let after_last_replied = block.iter().rposition(is_replied).map_or(0, |i| i + 1);

    if first_not_replied >= after_last_replied {
        return block[first_not_replied..].iter().collect();
    }
    if config.lookup(&block[0].op_type, &block[1].op_type)
        == Some(ResolutionResult::TakeBothKeepOrder)
    {
        return block.iter().collect();
    }
    block.iter().filter(|op| !is_replied(op)).collect()
}

/// A run this site recorded: one of its own replies (read from a reply
/// document or from what the replies view emits of it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Run {
    #[serde(rename = "RequestId")]
    pub request: String,
    /// When, by this site's clock: its runs never share a time.
    #[serde(rename = "ExecutionTime")]
    pub time: Timestamp,
    /// The run began a rebuild of the block (its reply says so).
    #[serde(rename = "Rebuild", default)]
    pub rebuild: bool,
}

impl Run {
    /// What a reply of this site records of its run.
    pub fn of(reply: &cheops_model::ReplyDocument) -> Run {
        Run {
            request: reply.request_id.clone(),
            time: reply.execution_time,
            rebuild: reply.rebuild,
        }
    }
}

/// What a site must run now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// In order, in one batch.
    pub operations: Vec<&'a Operation>,
    /// The operations are the whole block, run to rebuild a state that is
    /// not the block's: the first one's reply records it, and what the site
    /// ran before it no longer counts.
    pub rebuild: bool,
    /// The block lacks operations this site ran since its last reset,
    /// which no reset can have dropped: it is not the whole resource yet
    /// (see [`plan`]). Nothing runs until a fuller revision arrives.
    pub incomplete: bool,
}

/// The daemon's decision (Rule 3 of CONSISTENCY.md): what this site runs
/// now, knowing the `block` and its own runs of the resource (`ran`, in any
/// order).
///
/// The site's state is made of what it ran since its last reset: a run of
/// an operation that [`resets`], or a rebuild. When those runs are
/// operations of the block, each once, and the missing ones all come after
/// them, the site runs the missing ones. When some pair ends up out of the
/// block's order, it runs them alone only if such pairs commute and the
/// block's first operation does not reset. Otherwise it rebuilds: it runs
/// the whole block from its first operation.
///
/// This departs from [`operations_to_run`], the original's rule: that one
/// counts every reply ever written, decides from the block's first two
/// operations alone, and never notices an operation that a merge dropped
/// after it ran.
pub fn plan<'a>(block: &'a [Operation], ran: &[Run], config: &ResourceConfig) -> Plan<'a> {
    decide(block, ran, config, false)
}

/// [`plan`], taking the block for the whole resource even when it lacks
/// what ran: what a site does once it has waited long enough for the rest
/// (a configuration changed since those operations ran can make a block
/// look partial for good).
pub fn plan_anyway<'a>(block: &'a [Operation], ran: &[Run], config: &ResourceConfig) -> Plan<'a> {
    decide(block, ran, config, true)
}

fn decide<'a>(
    block: &'a [Operation],
    ran: &[Run],
    config: &ResourceConfig,
    trust_block: bool,
) -> Plan<'a> {
    let Some(first) = block.first() else {
        return Plan::default();
    };
    let position: HashMap<&str, usize> = block
        .iter()
        .enumerate()
        .map(|(index, op)| (op.request_id.as_str(), index))
        .collect();
    let mut history: Vec<&Run> = ran.iter().collect();
    history.sort_by_key(|run| run.time);
    let resets_state = |run: &&Run| {
        run.rebuild
            || position
                .get(run.request.as_str())
                .is_some_and(|&index| resets(config, &block[index].op_type))
    };
    let state = &history[history.iter().rposition(resets_state).unwrap_or(0)..];
    if !trust_block && lacks_what_ran(state, &position, config) {
        return Plan {
            incomplete: true,
            ..Plan::default()
        };
    }

    // The rank of each operation of the block in the state, if it is part
    // of it; `foreign` when the state holds anything else.
    let mut rank: Vec<Option<usize>> = vec![None; block.len()];
    let mut foreign = false;
    for (order, run) in state.iter().enumerate() {
        match position.get(run.request.as_str()) {
            Some(&index) if rank[index].is_none() => rank[index] = Some(order),
            // Dropped from the block (or forgotten by a reset that has not
            // run here yet), or ran twice since the reset.
            _ => foreign = true,
        }
    }
    // A reset by an operation of the block makes those before it irrelevant
    // to the block's state too: they are not missing.
    let start = state
        .first()
        .and_then(|run| position.get(run.request.as_str()).copied())
        .filter(|&index| resets(config, &block[index].op_type))
        .unwrap_or(0);
    let missing = |index: usize| index >= start && rank[index].is_none();
    // Missing operations run after the state's, in block order: a pair ends
    // up out of the block's order when its later operation ran and its
    // earlier one did not, or ran after it. Whether it matters depends on the
    // types only, so each operation is checked against the types before it:
    // whether one of them is missing, and the greatest rank among those run.
    let mut earlier: HashMap<&str, (bool, Option<usize>)> = HashMap::new();
    let (mut out_of_order, mut commuting) = (false, true);
    for (index, (op, &rank)) in block.iter().zip(&rank).enumerate() {
        if let Some(rank) = rank {
            for (&before, &(missing, greatest)) in &earlier {
                if missing || greatest.is_some_and(|g| g > rank) {
                    out_of_order = true;
                    commuting &= commute(config, before, &op.op_type);
                }
            }
        }
        let seen = earlier.entry(&op.op_type).or_default();
        seen.0 |= missing(index);
        seen.1 = seen.1.max(rank);
    }
    // Out of order, the missing operations may run alone only if they
    // commute with those that ran, and only if the block's first operation
    // does not reset: from a reset, a rebuild gives the block's exact order
    // whatever the matrix claims (appends to a file, which the matrix lets
    // commute, do not), and without one, a rebuild would reset nothing.
    let rebuilds = resets(config, &first.op_type);
    if !foreign && (!out_of_order || (commuting && !rebuilds)) {
        return Plan {
            operations: block
                .iter()
                .enumerate()
                .filter(|&(index, _)| missing(index))
                .map(|(_, op)| op)
                .collect(),
            rebuild: false,
            incomplete: false,
        };
    }
    // Nothing of the block ran since the reset and its first operation
    // resets: running the block is no rebuild, only its first run here.
    let fresh = rank.iter().all(Option::is_none) && rebuilds;
    Plan {
        operations: block.iter().collect(),
        rebuild: !fresh,
        incomplete: false,
    }
}

/// Whether the block lacks an operation of the site's `state` (its runs
/// since its last reset) although nothing can have dropped it. Only a type
/// that resets removes an operation from a block: Rule 1's reset and a
/// `take-one` merge. Under a matrix where no type resets, a block lacking
/// an operation that ran here is a partial view of the resource: a replica
/// that received the deletion of the branch it ran before the merge that
/// replaces it. Rebuilding from it would run again everything it holds.
fn lacks_what_ran(
    state: &[&Run],
    position: &HashMap<&str, usize>,
    config: &ResourceConfig,
) -> bool {
    let nothing_resets = !config.resolution_matrix.iter().any(|entry| {
        matches!(
            entry.result,
            ResolutionResult::TakeOne | ResolutionResult::TakeBothReverseOrder
        )
    });
    nothing_resets
        && state
            .iter()
            .any(|run| !position.contains_key(run.request.as_str()))
}

/// Whether running an operation of `op_type` resets the state, so that
/// nothing run before it counts. The matrix says so when it lets the type
/// replace what came before it: the later operation of a take-one or
/// take-both-reverse-order pair (Rule 1 forgets everything before it), and
/// either operation of a take-one pair (a merge keeps either).
fn resets(config: &ResourceConfig, op_type: &str) -> bool {
    config
        .resolution_matrix
        .iter()
        .any(|entry| match entry.result {
            ResolutionResult::TakeOne => entry.before == op_type || entry.after == op_type,
            ResolutionResult::TakeBothReverseOrder => entry.after == op_type,
            ResolutionResult::TakeBothAnyOrder | ResolutionResult::TakeBothKeepOrder => false,
        })
}

/// Whether operations of types `a` and `b` give the same state in either
/// order: neither resets, and the matrix says any order (or nothing) both
/// ways.
fn commute(config: &ResourceConfig, a: &str, b: &str) -> bool {
    let any_order = |before: &str, after: &str| {
        matches!(
            config.lookup(before, after),
            None | Some(ResolutionResult::TakeBothAnyOrder)
        )
    };
    !resets(config, a) && !resets(config, b) && any_order(a, b) && any_order(b, a)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use cheops_model::Resolution;

    use crate::consistency::counter::{counter_config, op, request_ids};

    fn matrix(entries: &[(&str, &str, ResolutionResult)]) -> ResourceConfig {
        let entry = |&(before, after, result): &(&str, &str, ResolutionResult)| Resolution {
            before: before.into(),
            after: after.into(),
            result,
        };
        ResourceConfig {
            resolution_matrix: entries.iter().map(entry).collect(),
        }
    }

    fn config() -> ResourceConfig {
        matrix(&[
            ("inc", "inc", ResolutionResult::TakeBothAnyOrder),
            ("set", "inc", ResolutionResult::TakeBothKeepOrder),
        ])
    }

    fn run(block: &[Operation], replied: &[&str]) -> Vec<String> {
        let replied: HashSet<&str> = replied.iter().copied().collect();
        let chosen: Vec<Operation> = operations_to_run(block, &replied, &config())
            .into_iter()
            .cloned()
            .collect();
        request_ids(&chosen)
    }

    fn set_inc_inc() -> Vec<Operation> {
        vec![op("set", "set"), op("inc", "inc1"), op("inc", "inc2")]
    }

    #[test]
    fn a_new_block_of_one_is_run() {
        assert_eq!(run(&[op("set", "set")], &[]), ["set"]);
    }

    #[test]
    fn nothing_runs_when_everything_replied() {
        assert!(run(&[op("set", "set"), op("inc", "inc1")], &["set", "inc1"]).is_empty());
    }

    #[test]
    fn a_gap_after_a_keep_order_start_reruns_the_whole_block() {
        assert_eq!(
            run(&set_inc_inc(), &["set", "inc2"]),
            ["set", "inc1", "inc2"]
        );
    }

    #[test]
    fn a_block_never_run_is_run_whole() {
        assert_eq!(run(&set_inc_inc(), &[]), ["set", "inc1", "inc2"]);
    }

    #[test]
    fn only_the_new_tail_runs() {
        assert_eq!(run(&set_inc_inc(), &["set", "inc1"]), ["inc2"]);
    }

    fn at(seconds: usize) -> Timestamp {
        Timestamp::from_str(&format!("2024-01-01T00:00:{seconds:02}Z")).unwrap_or_default()
    }

    /// The runs `ran`, oldest first; a `*` marks a rebuild.
    fn runs(ran: &[&str]) -> Vec<Run> {
        ran.iter()
            .enumerate()
            .map(|(time, request)| Run {
                request: request.trim_start_matches('*').to_owned(),
                time: at(time),
                rebuild: request.starts_with('*'),
            })
            .rev()
            .collect()
    }

    /// What `plan` runs after the runs `ran` (see [`runs`]), and whether it
    /// rebuilds.
    fn planned(block: &[Operation], config: &ResourceConfig, ran: &[&str]) -> (Vec<String>, bool) {
        let plan = plan(block, &runs(ran), config);
        let ids = plan
            .operations
            .iter()
            .map(|op| op.request_id.clone())
            .collect();
        (ids, plan.rebuild)
    }

    /// Whether `plan` finds the block lacking what ran, after `ran`.
    fn incomplete(block: &[Operation], config: &ResourceConfig, ran: &[&str]) -> bool {
        plan(block, &runs(ran), config).incomplete
    }

    fn none() -> (Vec<String>, bool) {
        (Vec::new(), false)
    }

    fn only(ids: &[&str]) -> (Vec<String>, bool) {
        (ids.iter().map(|id| id.to_string()).collect(), false)
    }

    fn rebuild(ids: &[&str]) -> (Vec<String>, bool) {
        (ids.iter().map(|id| id.to_string()).collect(), true)
    }

    /// A merge put another site's operation first, and the site ran it
    /// after its own: its own must not run again.
    #[test]
    fn a_first_operation_that_does_not_reset_leaves_earlier_runs_counted() {
        let block = [op("add", "7480"), op("add", "d41e")];
        let config = ResourceConfig::default();
        assert_eq!(planned(&block, &config, &["d41e"]), only(&["7480"]));
        assert_eq!(planned(&block, &config, &["d41e", "7480"]), none());
    }

    #[test]
    fn missing_operations_that_commute_with_what_ran_run_alone() {
        let block = [op("inc", "A"), op("inc", "B"), op("inc", "C")];
        let config = counter_config();
        assert_eq!(planned(&block, &config, &["A", "C"]), only(&["B"]));
        assert_eq!(planned(&block, &config, &["A", "C", "B"]), none());
    }

    /// The worked example, step 4: C is missing before D. Incs commute, but
    /// the block starts with a set: a rebuild gives its exact order.
    #[test]
    fn from_a_reset_anything_out_of_order_rebuilds() {
        let block = [
            op("set", "A"),
            op("inc", "B"),
            op("inc", "C"),
            op("inc", "D"),
        ];
        let config = counter_config();
        let all = ["A", "B", "C", "D"];
        assert_eq!(planned(&block, &config, &["A", "B", "D"]), rebuild(&all));
        assert_eq!(
            planned(&block, &config, &["A", "B", "D", "*A", "B", "C", "D"]),
            none()
        );
    }

    #[test]
    fn an_operation_missing_before_one_it_must_precede_rebuilds() {
        let block = [op("set", "s"), op("inc", "i")];
        let config = counter_config();
        // i ran before the set that must come first (a reverse-order merge).
        assert_eq!(planned(&block, &config, &["i"]), rebuild(&["s", "i"]));
        assert_eq!(planned(&block, &config, &["i", "*s", "i"]), none());
    }

    #[test]
    fn an_operation_run_after_the_first_and_dropped_since_rebuilds() {
        let block = [op("set", "a"), op("add", "c")];
        let config = counter_config();
        // Ran set A, then set B (which the merge dropped).
        assert_eq!(planned(&block, &config, &["a", "b"]), rebuild(&["a", "c"]));
        assert_eq!(planned(&block, &config, &["a", "b", "*a", "c"]), none());
        // A rebuild cut short by a failure: only the rest runs.
        assert_eq!(planned(&block, &config, &["a", "b", "*a"]), only(&["c"]));
    }

    #[test]
    fn a_block_lacking_what_ran_where_nothing_resets_runs_nothing() {
        // x3 ran here; a replica got the deletion of its branch before the
        // merge that holds it. No type resets: nothing can have dropped it.
        let adds = ResourceConfig::default();
        let block = [op("add", "x1"), op("add", "x2")];
        assert!(incomplete(&block, &adds, &["x1", "x2", "x3"]));
        assert_eq!(planned(&block, &adds, &["x1", "x2", "x3"]), none());
        let pushes = matrix(&[("push", "push", ResolutionResult::TakeBothKeepOrder)]);
        let block = [op("push", "p1"), op("push", "p2")];
        assert!(incomplete(&block, &pushes, &["p1", "p3"]));
        // Waited long enough: the block is taken as it is.
        let anyway = plan_anyway(&block, &runs(&["p1", "p3"]), &pushes);
        assert!(!anyway.incomplete && anyway.rebuild);
        // Once the merge arrives, the missing operation runs.
        let block = [op("push", "p1"), op("push", "p3"), op("push", "p2")];
        assert!(!incomplete(&block, &pushes, &["p1", "p3"]));
        assert_eq!(planned(&block, &pushes, &["p1", "p3"]), only(&["p2"]));
    }

    #[test]
    fn a_block_lacking_what_ran_where_a_type_resets_rebuilds() {
        // A set appended after x, then dropped by a take-one merge, took x
        // with it: the block rightly lacks it.
        let config = counter_config();
        let block = [op("set", "s"), op("add", "c")];
        assert!(!incomplete(&block, &config, &["s", "x"]));
        assert_eq!(planned(&block, &config, &["s", "x"]), rebuild(&["s", "c"]));
    }

    #[test]
    fn a_block_restarted_elsewhere_runs_from_its_reset_without_rebuilding() {
        let block = [op("set", "s2"), op("inc", "i2")];
        let config = counter_config();
        assert_eq!(planned(&block, &config, &["s1", "i1"]), only(&["s2", "i2"]));
        // What ran before the reset does not count, even when in the block.
        let block = [op("set", "s"), op("inc", "i")];
        assert_eq!(planned(&block, &config, &["i", "s"]), only(&["i"]));
    }

    #[test]
    fn a_rebuild_whose_first_operation_does_not_reset_still_counts_as_one() {
        let config = matrix(&[("push", "push", ResolutionResult::TakeBothKeepOrder)]);
        let block = [op("push", "p1"), op("push", "p2")];
        assert_eq!(planned(&block, &config, &["p2"]), rebuild(&["p1", "p2"]));
        assert_eq!(planned(&block, &config, &["p2", "*p1", "p2"]), none());
    }

    #[test]
    fn an_operation_run_twice_since_the_reset_rebuilds() {
        let block = [op("set", "s"), op("inc", "i")];
        let config = counter_config();
        assert_eq!(
            planned(&block, &config, &["s", "i", "i"]),
            rebuild(&["s", "i"])
        );
    }

    /// A pair absent from the matrix commutes, unless one of them resets:
    /// then its order decides what the other one's effect is.
    #[test]
    fn an_operation_that_resets_commutes_with_nothing() {
        let config = matrix(&[("set", "set", ResolutionResult::TakeOne)]);
        let block = [op("add", "a"), op("set", "s"), op("add", "b")];
        assert_eq!(
            planned(&block, &config, &["a", "b"]),
            rebuild(&["a", "s", "b"])
        );
    }

    /// A `set` appended after an `add` (the matrix has no entry for the
    /// pair): once it ran, the `add` before it no longer matters.
    #[test]
    fn operations_before_a_reset_of_the_block_are_not_missing() {
        let config = matrix(&[("set", "set", ResolutionResult::TakeOne)]);
        let block = [op("add", "a"), op("set", "s"), op("add", "b")];
        assert_eq!(planned(&block, &config, &[]), only(&["a", "s", "b"]));
        assert_eq!(planned(&block, &config, &["s"]), only(&["b"]));
        assert_eq!(planned(&block, &config, &["a", "s", "b"]), none());
        // An operation from before the reset that ran after it: rebuild.
        assert_eq!(
            planned(&block, &config, &["s", "a"]),
            rebuild(&["a", "s", "b"])
        );
        assert_eq!(
            planned(&block, &config, &["s", "a", "*a", "s", "b"]),
            none()
        );
    }

    #[test]
    fn an_empty_block_runs_nothing() {
        assert_eq!(planned(&[], &counter_config(), &["x"]), none());
    }

    #[test]
    fn a_gap_in_commuting_operations_runs_only_the_missing_one() {
        let block = [op("inc", "inc"), op("inc", "inc1"), op("inc", "inc2")];
        assert_eq!(run(&block, &["inc1", "inc2"]), ["inc"]);
    }
}
