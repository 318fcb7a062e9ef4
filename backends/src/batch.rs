//! The batch loop every backend shares: commands in order, each result to
//! the progress before the next starts, the rest skipped after a failure
//! or stopped when the progress says so. A command the node could not
//! start goes to no progress (it gets no reply): the batch stops there.

use cheops_model::Command;
use tracing::{info, info_span, Instrument};

use crate::{CommandResult, Next, Outcome, Progress, Run};

/// Runs `batch` with `runner`, as [`crate::Backend::run_with`] says.
pub async fn run_batch(
    runner: &dyn Run,
    batch: &[Command],
    progress: &dyn Progress,
) -> Vec<CommandResult> {
    let mut results = Vec::with_capacity(batch.len());
    for (index, command) in batch.iter().enumerate() {
        let span = info_span!("command", index, of = batch.len(), kind = %command.kind);
        let result = runner.run_one(command).instrument(span).await;
        if result.outcome == Outcome::NotStarted {
            results.push(result);
            results.resize_with(batch.len(), CommandResult::stopped);
            break;
        }
        let failed = result.outcome != Outcome::Ok;
        let next = progress.finished(index, &result).await;
        results.push(result);
        if next == Next::Stop && !failed {
            info!(index, "batch stopped");
            results.resize_with(batch.len(), CommandResult::stopped);
            break;
        }
        if failed {
            let skipped = batch.len() - index - 1;
            if skipped > 0 {
                info!(
                    index,
                    skipped, "command failed, skipping the rest of its batch"
                );
            }
            results.resize_with(batch.len(), CommandResult::skipped);
            break;
        }
    }
    results
}
