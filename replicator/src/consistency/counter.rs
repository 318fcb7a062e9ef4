//! The original's test fixture: a counter with set, inc and dec, where a set
//! resets the counter and inc/dec apply on top of it.

use cheops_model::{Operation, Resolution, ResolutionResult, ResourceConfig};

pub fn counter_config() -> ResourceConfig {
    let entry = |before: &str, after: &str, result| Resolution {
        before: before.into(),
        after: after.into(),
        result,
    };
    ResourceConfig {
        resolution_matrix: vec![
            entry("set", "inc", ResolutionResult::TakeBothKeepOrder),
            entry("inc", "set", ResolutionResult::TakeBothReverseOrder),
            entry("set", "dec", ResolutionResult::TakeBothKeepOrder),
            entry("dec", "set", ResolutionResult::TakeBothReverseOrder),
            entry("set", "set", ResolutionResult::TakeOne),
        ],
    }
}

pub fn op(op_type: &str, request_id: &str) -> Operation {
    Operation {
        op_type: op_type.into(),
        request_id: request_id.into(),
        ..Operation::default()
    }
}

pub fn request_ids(ops: &[Operation]) -> Vec<String> {
    ops.iter().map(|op| op.request_id.clone()).collect()
}
