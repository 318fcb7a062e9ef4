//! Why a command of a batch could not be run at all.

use std::io;
use std::path::PathBuf;

use cheops_model::{NestedFileNames, RefusedFileName};
use thiserror::Error;

/// Why a command could not be run. A command that runs and exits with a
/// non-zero status is not an error: it is a [`crate::Outcome::Failed`] result.
///
/// The message becomes the command's output, so it names what went wrong in
/// words a user can act on and includes the cause.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The name could write outside the command's temporary directory or is
    /// not a plain relative path; nothing of the command was written or run.
    #[error(transparent)]
    RefusedFileName(#[from] RefusedFileName),

    /// One attached file's name is a directory in another's; nothing of the
    /// command was written or run.
    #[error(transparent)]
    NestedFileNames(#[from] NestedFileNames),

    #[error("could not create a temporary directory in {}: {source}", root.display())]
    TempDir { root: PathBuf, source: io::Error },

    #[error("could not write attached file {name:?}: {source}")]
    WriteFile { name: String, source: io::Error },

    /// The task preparing the temporary directory panicked.
    #[error("could not prepare the temporary directory: {0}")]
    Prepare(tokio::task::JoinError),

    #[error("could not connect the command's output: {0}")]
    OutputPipe(io::Error),

    #[error("could not start {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },

    #[error("could not read the command's output: {0}")]
    ReadOutput(io::Error),

    /// The operation cannot be sent as it is (an HTTP method or path that
    /// is not one, a Redis operation without its command).
    #[error("{0}")]
    Refused(String),

    #[error("could not wait for the command to end: {0}")]
    Wait(io::Error),
}

impl BackendError {
    /// True when the command never started: the node could not give it a
    /// temporary directory, its files, a pipe or a process (out of file
    /// descriptors, memory or disk). Nothing of it ran, so it is run
    /// again later rather than answered.
    pub fn before_start(&self) -> bool {
        matches!(
            self,
            BackendError::TempDir { .. }
                | BackendError::WriteFile { .. }
                | BackendError::Prepare(_)
                | BackendError::OutputPipe(_)
                | BackendError::Spawn { .. }
        )
    }

    /// True when the daemon's environment, not the operation, is to blame:
    /// those are logged as warnings, the others are the user's to fix.
    pub fn is_internal(&self) -> bool {
        !matches!(
            self,
            BackendError::RefusedFileName(_)
                | BackendError::NestedFileNames(_)
                | BackendError::Refused(_)
        )
    }
}
