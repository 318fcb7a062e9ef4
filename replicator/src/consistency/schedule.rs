//! Choosing which operations of a block a site must run.

use std::collections::HashSet;

use cheops_model::{Operation, ResolutionResult, ResourceConfig};

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

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_gap_in_commuting_operations_runs_only_the_missing_one() {
        let block = [op("inc", "inc"), op("inc", "inc1"), op("inc", "inc2")];
        assert_eq!(run(&block, &["inc1", "inc2"]), ["inc"]);
    }
}
