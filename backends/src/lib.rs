//! Backends run a resource's operations against the application: an ordered
//! batch of commands in, one result per command out.
//!
//! The only backend today is [`ShellBackend`]. A batch stops at its first
//! failure: the commands after it are reported as [`Outcome::Skipped`], so a
//! caller always gets exactly one result per command, in order.

mod error;
mod shell;

use std::future::Future;
use std::pin::Pin;

use cheops_model::{ShellCommand, Status};

pub use error::BackendError;
pub use shell::ShellBackend;

/// The future returned by [`Backend::run`]: boxed so that backends can be
/// held as `Arc<dyn Backend>` and the batch run on any task.
pub type BatchFuture<'a> = Pin<Box<dyn Future<Output = Vec<CommandResult>> + Send + 'a>>;

/// Something that runs batches of operations' commands.
pub trait Backend: Send + Sync {
    /// Runs `batch` in order and returns one result per command, in the same
    /// order. After a command fails, the rest are not run and come back as
    /// [`Outcome::Skipped`].
    ///
    /// Cancellation: dropping the future stops the command that is running
    /// (and every process it started) and removes what the backend wrote for
    /// it; commands that already ran keep their effects on the application.
    fn run<'a>(&'a self, batch: &'a [ShellCommand]) -> BatchFuture<'a>;
}

/// What became of one command of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The command ran and exited with status 0.
    Ok,
    /// The command exited with another status, or could not be run at all.
    Failed,
    /// The command was not run because an earlier one of its batch failed.
    Skipped,
}

impl Outcome {
    /// The status written in the reply: only a command that ran successfully
    /// is OK.
    pub fn status(self) -> Status {
        match self {
            Outcome::Ok => Status::Ok,
            Outcome::Failed | Outcome::Skipped => Status::Ko,
        }
    }
}

/// The result of one command of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub outcome: Outcome,
    /// What the command wrote on standard output and error, interleaved as
    /// written (invalid UTF-8 replaced by U+FFFD); or, when it did not run,
    /// why not.
    pub output: String,
}

impl CommandResult {
    /// The output given to every command after a failure.
    pub const SKIPPED_OUTPUT: &'static str = "skipped: an earlier command of this batch failed";

    /// The result of a command that could not be run.
    pub fn not_run(error: &BackendError) -> Self {
        CommandResult {
            outcome: Outcome::Failed,
            output: error.to_string(),
        }
    }

    /// The result of a command left out after an earlier failure.
    pub fn skipped() -> Self {
        CommandResult {
            outcome: Outcome::Skipped,
            output: Self::SKIPPED_OUTPUT.to_owned(),
        }
    }

    /// Shorthand for `self.outcome.status()`.
    pub fn status(&self) -> Status {
        self.outcome.status()
    }
}
