//! Adding a new operation to a resource's current block.

use cheops_model::{Operation, ResolutionResult, ResourceConfig};

/// The block after `new` is received, given the current `block`.
///
/// The pair (last operation's type, new type) decides: take-one and
/// take-both-reverse-order mean the new operation resets the state, so the
/// block restarts with it alone; any other result (or no entry) appends it.
pub fn add_operation(
    config: &ResourceConfig,
    block: &[Operation],
    new: Operation,
) -> Vec<Operation> {
    let restarts = block.last().is_some_and(|last| {
        matches!(
            config.lookup(&last.op_type, &new.op_type),
            Some(ResolutionResult::TakeOne | ResolutionResult::TakeBothReverseOrder)
        )
    });
    if restarts {
        return vec![new];
    }
    let mut next = Vec::with_capacity(block.len() + 1);
    next.extend_from_slice(block);
    next.push(new);
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consistency::counter::{counter_config, op, request_ids};

    fn add(block: &[Operation], new: Operation) -> Vec<String> {
        request_ids(&add_operation(&counter_config(), block, new))
    }

    #[test]
    fn set_after_set_replaces_the_block() {
        assert_eq!(
            add(&[op("set", "set-init")], op("set", "set-new")),
            ["set-new"]
        );
    }

    #[test]
    fn inc_after_set_is_appended() {
        assert_eq!(add(&[op("set", "set")], op("inc", "inc")), ["set", "inc"]);
    }

    #[test]
    fn set_after_dec_restarts_the_block() {
        assert_eq!(add(&[op("dec", "dec")], op("set", "set")), ["set"]);
    }

    #[test]
    fn a_pair_absent_from_the_matrix_is_appended() {
        assert_eq!(add(&[op("dec", "dec")], op("inc", "inc")), ["dec", "inc"]);
    }

    #[test]
    fn the_first_operation_starts_the_block() {
        assert_eq!(add(&[], op("inc", "inc")), ["inc"]);
    }
}
