//! Choosing which operations of a block a site must run.

use std::collections::HashSet;

use cheops_model::{Operation, ResolutionResult, ResourceConfig, Timestamp};

/// The operations of `block` this site must run now, in order, knowing the
/// request ids it has already `replied` to.
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

/// A run this site recorded: one of its own replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub request: String,
    /// When, by this site's clock: its runs never share a time.
    pub time: Timestamp,
    /// The run began a rebuild of the block (its reply says so).
    pub rebuild: bool,
}

/// What a site must run now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// In order, in one batch.
    pub operations: Vec<&'a Operation>,
    /// The operations are the whole block, run again from its first one to
    /// rebuild the state; the first one's reply records it.
    pub rebuild: bool,
}

/// The runner's decision: what this site runs now, knowing the `block` and
/// its own runs of the resource (`ran`, in any order).
pub fn plan<'a>(block: &'a [Operation], ran: &[Run], config: &ResourceConfig) -> Plan<'a> {
    let ran_at: Vec<(&str, Timestamp)> = ran
        .iter()
        .map(|run| (run.request.as_str(), run.time))
        .collect();
    match current_state(block, &ran_at) {
        Some(replied) => Plan {
            operations: operations_to_run(block, &replied, config),
            rebuild: false,
        },
        None => Plan {
            operations: block.iter().collect(),
            rebuild: true,
        },
    }
}

/// The operations this site's state is made of, from what it `ran`
/// (request id, time of its reply by its own clock): those it ran since it
/// last ran the block's first operation, which starts the block and so
/// resets the state; all it ran when it never ran that one. `None` when they
/// include an operation the block no longer has: the whole block must run
/// again.
///
/// Counting only what ran since the reset matters when a re-run of the block
/// was cut short (by a failure): replies older than the re-run no longer
/// describe the state.
///
/// A merge drops an operation when the matrix says `take-one`, comparing
/// the first operations of two blocks; but Rule 1 forgets what came before a
/// resetting operation, so the dropped one may have come *after* the other
/// (a site that knew `set A` sent `set B`, while another sent `add C` after
/// `set A`: the merge keeps `[set A, add C]`). The site that ran `set B` must
/// run the block again; the original did not, and kept `B`'s effect forever.
fn current_state<'a>(
    block: &[Operation],
    ran: &[(&'a str, Timestamp)],
) -> Option<HashSet<&'a str>> {
    let first = block.first().map(|op| op.request_id.as_str());
    let reset = ran
        .iter()
        .filter(|(request, _)| Some(*request) == first)
        .map(|(_, time)| *time)
        .max();
    let Some(reset) = reset else {
        return Some(ran.iter().map(|(request, _)| *request).collect());
    };
    let in_block: HashSet<&str> = block.iter().map(|op| op.request_id.as_str()).collect();
    let since: HashSet<&str> = ran
        .iter()
        .filter(|(_, time)| *time >= reset)
        .map(|(request, _)| *request)
        .collect();
    since
        .iter()
        .all(|request| in_block.contains(request))
        .then_some(since)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use cheops_model::Resolution;

    use crate::consistency::counter::{op, request_ids};

    fn config() -> ResourceConfig {
        let entry = |before: &str, after: &str, result| Resolution {
            before: before.into(),
            after: after.into(),
            result,
        };
        ResourceConfig {
            resolution_matrix: vec![
                entry("inc", "inc", ResolutionResult::TakeBothAnyOrder),
                entry("set", "inc", ResolutionResult::TakeBothKeepOrder),
            ],
        }
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

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_str(&format!("2024-01-01T00:00:{seconds:02}Z")).unwrap_or_default()
    }

    fn state(block: &[Operation], ran: &[(&'static str, i64)]) -> Option<Vec<&'static str>> {
        let ran: Vec<(&str, Timestamp)> = ran.iter().map(|(r, t)| (*r, at(*t))).collect();
        current_state(block, &ran).map(|set| {
            let mut ids: Vec<&str> = set.into_iter().collect();
            ids.sort_unstable();
            ids
        })
    }

    #[test]
    fn an_operation_run_after_the_first_and_dropped_since_taints_the_state() {
        let block = [op("set", "a"), op("add", "c")];
        // Ran set A, then set B (which the merge dropped).
        assert_eq!(state(&block, &[("a", 1), ("b", 2)]), None);
        // Ran the block again since: clean.
        assert_eq!(
            state(&block, &[("a", 1), ("b", 2), ("a", 3), ("c", 3)]),
            Some(vec!["a", "c"])
        );
    }

    #[test]
    fn only_what_ran_since_the_first_operation_counts() {
        // A re-run of [a, b, c] stopped after a: b and c ran before it only.
        let block = [op("set", "a"), op("add", "b"), op("add", "c")];
        assert_eq!(
            state(&block, &[("a", 1), ("b", 1), ("c", 1), ("a", 2)]),
            Some(vec!["a"])
        );
    }

    #[test]
    fn operations_forgotten_before_the_block_do_not_taint_it() {
        let block = [op("set", "b"), op("add", "c")];
        assert_eq!(state(&block, &[("a", 1), ("b", 2)]), Some(vec!["b"]));
        // The first operation never ran: running it resets the state.
        assert_eq!(state(&block, &[("x", 5)]), Some(vec!["x"]));
        assert_eq!(state(&[], &[("x", 5)]), Some(vec!["x"]));
    }

    #[test]
    fn a_gap_in_commuting_operations_runs_only_the_missing_one() {
        let block = [op("inc", "inc"), op("inc", "inc1"), op("inc", "inc2")];
        assert_eq!(run(&block, &["inc1", "inc2"]), ["inc"]);
    }
}
