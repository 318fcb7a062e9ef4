//! Backends run a resource's operations against the application: an ordered
//! batch of commands in, one result per command out.
//!
//! Each kind of operation has its backend, one implementation of [`Run`]:
//! [`ShellBackend`] (shell commands), [`HttpBackend`] (a request to the
//! site's application) and [`RedisBackend`] (a command to the site's
//! Redis). [`Backends`] holds those a site serves and runs a batch, each
//! command by the backend of its kind. A batch stops at its first failure:
//! the commands after it are reported as [`Outcome::Skipped`], so a caller
//! always gets exactly one result per command, in order. Each result is
//! also handed to a [`Progress`] as soon as its command ends, before the
//! next one starts: a caller can make it durable at once.

mod batch;
mod error;
mod http;
mod kinds;
mod output;
mod redis;
mod shell;

use std::future::Future;
use std::pin::Pin;

use cheops_model::{Command, Kind, Status};

pub use error::BackendError;
pub use http::HttpBackend;
pub use kinds::Backends;
pub use redis::{render as render_redis, RedisBackend};
pub use shell::{
    command_env, may_hold_credential, ShellBackend, DEFAULT_COMMAND_ENV, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_OUTPUT_LIMIT,
};

/// The future returned by [`Backend::run`]: boxed so that backends can be
/// held as `Arc<dyn Backend>` and the batch run on any task.
pub type BatchFuture<'a> = Pin<Box<dyn Future<Output = Vec<CommandResult>> + Send + 'a>>;

/// The future returned by [`Run::run_one`].
pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = CommandResult> + Send + 'a>>;

/// The future returned by [`Progress::finished`].
pub type ProgressFuture<'a> = Pin<Box<dyn Future<Output = Next> + Send + 'a>>;

/// Whether a batch goes on after a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run the next command.
    Continue,
    /// Run no more: the rest come back as [`Outcome::Skipped`] (the daemon
    /// is shutting down).
    Stop,
}

/// Told of each command's result as soon as the command ends.
pub trait Progress: Send + Sync {
    /// Command `index` of the batch ended with `result` (never a skipped
    /// one). The next command starts only once this future is done, so a
    /// caller that records the result here loses at most the command that is
    /// running if the process dies.
    fn finished<'a>(&'a self, index: usize, result: &'a CommandResult) -> ProgressFuture<'a>;
}

/// A [`Progress`] that records nothing and lets every batch run to its end.
pub struct Ignore;

impl Progress for Ignore {
    fn finished<'a>(&'a self, _: usize, _: &'a CommandResult) -> ProgressFuture<'a> {
        Box::pin(std::future::ready(Next::Continue))
    }
}

/// One kind of backend: runs one command against the application.
///
/// Cancellation: dropping the future stops the command (a shell command's
/// processes are killed; a request or a Redis command may have reached the
/// application).
pub trait Run: Send + Sync {
    fn run_one<'a>(&'a self, command: &'a Command) -> CommandFuture<'a>;
}

/// Something that runs batches of operations' commands.
pub trait Backend: Send + Sync {
    /// Whether it runs operations of `kind` (a site refuses at `/exec` an
    /// operation of a kind it does not serve).
    fn serves(&self, kind: Kind) -> bool {
        kind == Kind::Shell
    }

    /// Runs `batch` in order and returns one result per command, in the same
    /// order. After a command fails, or when `progress` says stop, the rest
    /// are not run and come back as [`Outcome::Skipped`]. Each command's
    /// result goes to `progress` before the next command starts.
    ///
    /// Cancellation: dropping the future stops the command that is running
    /// (and every process it started) and removes what the backend wrote for
    /// it; commands that already ran keep their effects on the application,
    /// and `progress` has been told of each of them.
    fn run_with<'a>(&'a self, batch: &'a [Command], progress: &'a dyn Progress) -> BatchFuture<'a>;

    /// [`Backend::run_with`], telling no one.
    fn run<'a>(&'a self, batch: &'a [Command]) -> BatchFuture<'a> {
        self.run_with(batch, &Ignore)
    }
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
    /// The node could not start the command (see
    /// [`BackendError::before_start`]): nothing of it ran, it gets no
    /// reply, and it is run again later.
    NotStarted,
}

impl Outcome {
    /// The status written in the reply: only a command that ran successfully
    /// is OK.
    pub fn status(self) -> Status {
        match self {
            Outcome::Ok => Status::Ok,
            Outcome::Failed | Outcome::Skipped | Outcome::NotStarted => Status::Ko,
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
    /// The output given to every command left out because the batch was
    /// stopped.
    pub const STOPPED_OUTPUT: &'static str = "skipped: the batch was stopped";

    /// The result of a command that could not be run.
    pub fn not_run(error: &BackendError) -> Self {
        CommandResult {
            outcome: if error.before_start() {
                Outcome::NotStarted
            } else {
                Outcome::Failed
            },
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

    /// The result of a command left out because the batch was stopped.
    pub fn stopped() -> Self {
        CommandResult {
            outcome: Outcome::Skipped,
            output: Self::STOPPED_OUTPUT.to_owned(),
        }
    }

    /// Shorthand for `self.outcome.status()`.
    pub fn status(&self) -> Status {
        self.outcome.status()
    }
}
