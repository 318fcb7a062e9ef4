//! The shell backend: each command is fed to `sh` in a fresh temporary
//! directory holding its attached files.

pub(crate) mod files;
mod process_group;
mod temp_dir;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use cheops_model::ShellCommand;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::{Backend, BackendError, BatchFuture, CommandResult, Next, Outcome, Progress};
use process_group::GroupKiller;
use temp_dir::TempDir;

/// Runs commands with a POSIX shell, as the original does.
///
/// For each command: a fresh directory is created under the temporary root
/// and the attached files are written in it (names with `/` create
/// directories); `{name}` of an attached file, or of a directory holding
/// some, becomes its absolute path; the command is written to the shell's
/// standard input, with that directory as working directory and the daemon's
/// environment plus the configured variables. Exit status 0 is success.
///
/// Since the script is read from standard input, a program in it that reads
/// its standard input consumes the rest of the script (as in the original).
/// A process left in the background with the command's output still open is
/// waited for until it closes it: daemons started by a command should have
/// their output redirected.
#[derive(Debug, Clone)]
pub struct ShellBackend {
    shell: PathBuf,
    env: HashMap<String, String>,
    temp_root: PathBuf,
}

impl Default for ShellBackend {
    fn default() -> Self {
        ShellBackend {
            shell: PathBuf::from("sh"),
            env: HashMap::new(),
            temp_root: std::env::temp_dir(),
        }
    }
}

impl ShellBackend {
    /// `sh` from `PATH`, no extra variables, directories in the system's
    /// temporary directory (`TMPDIR`, else `/tmp`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The shell program; it must be POSIX, as its `kill` builtin also stops
    /// abandoned commands.
    pub fn with_shell(mut self, shell: impl Into<PathBuf>) -> Self {
        self.shell = shell.into();
        self
    }

    /// A variable set for every command, on top of (or over) the inherited
    /// environment.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Where the commands' temporary directories are created.
    pub fn with_temp_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.temp_root = root.into();
        self
    }

    async fn run_batch(
        &self,
        batch: &[ShellCommand],
        progress: &dyn Progress,
    ) -> Vec<CommandResult> {
        let mut results = Vec::with_capacity(batch.len());
        for (index, command) in batch.iter().enumerate() {
            let span = info_span!("command", index, of = batch.len());
            let result = match self.run_command(command).instrument(span.clone()).await {
                Ok(result) => result,
                Err(error) => {
                    span.in_scope(|| {
                        if error.is_internal() {
                            warn!(%error, "command could not be run");
                        } else {
                            info!(%error, "command refused");
                        }
                    });
                    CommandResult::not_run(&error)
                }
            };
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

    /// Runs one command in its own temporary directory, removed afterwards.
    ///
    /// Cancellation: dropping the future kills the shell and everything it
    /// started, and removes the directory (right away, or when the task
    /// writing the attached files finishes).
    async fn run_command(&self, command: &ShellCommand) -> Result<CommandResult, BackendError> {
        for name in command.files.keys() {
            cheops_model::check_file_name(name)?;
        }
        let dir = self.prepare_dir(command).await?;
        let script = files::substitute(&command.command, &command.files, dir.path());
        debug!(dir = %dir.path().display(), command = %script, "running command");

        let ran = self.run_script(&script, dir.path()).await;

        // Large directories take a while to remove: off the async threads.
        // Even if this wait is cancelled, the blocking task removes it.
        let _ = tokio::task::spawn_blocking(move || drop(dir)).await;

        let (status, output) = ran?;
        let outcome = if status.success() {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        info!(?outcome, %status, "command ran");
        Ok(CommandResult {
            outcome,
            output: String::from_utf8_lossy(&output).into_owned(),
        })
    }

    /// Creates the command's directory with its files, on a blocking thread.
    /// The files are copied so that the blocking task owns what it writes.
    async fn prepare_dir(&self, command: &ShellCommand) -> Result<TempDir, BackendError> {
        let root = self.temp_root.clone();
        let files = command.files.clone();
        tokio::task::spawn_blocking(move || {
            let dir = TempDir::create_in(&root)
                .map_err(|source| BackendError::TempDir { root, source })?;
            // On error `dir` drops here, taking what was written with it.
            files::write_all(dir.path(), &files)?;
            Ok(dir)
        })
        .await
        .map_err(BackendError::Prepare)?
    }

    /// Feeds `script` to the shell in `dir` and returns its exit status and
    /// its standard output and error as one stream.
    async fn run_script(
        &self,
        script: &str,
        dir: &Path,
    ) -> Result<(ExitStatus, Vec<u8>), BackendError> {
        // One pipe for both streams keeps their writes in order.
        let (writer, mut reader) =
            tokio::net::unix::pipe::pipe().map_err(BackendError::OutputPipe)?;
        let stdout: OwnedFd = writer
            .into_blocking_fd()
            .map_err(BackendError::OutputPipe)?;
        let stderr = stdout.try_clone().map_err(BackendError::OutputPipe)?;

        // The `Command` holds our copies of the pipe's write end: it must be
        // gone once the child has spawned, or reading never sees the end.
        let mut child = {
            let mut shell = Command::new(&self.shell);
            shell
                .current_dir(dir)
                .envs(&self.env)
                .stdin(Stdio::piped())
                .stdout(stdout)
                .stderr(stderr)
                .process_group(0)
                .kill_on_drop(true);
            shell.spawn().map_err(|source| BackendError::Spawn {
                program: self.shell.clone(),
                source,
            })?
        };
        let mut killer = GroupKiller::new(self.shell.clone(), child.id());

        let mut stdin = child.stdin.take();
        let feed = async {
            if let Some(stdin) = stdin.as_mut() {
                // The shell may exit before reading everything (`exit 1` on
                // the first line): a broken pipe is not the command's failure.
                if let Err(error) = stdin.write_all(script.as_bytes()).await {
                    debug!(%error, "the shell stopped reading its script");
                }
            }
            // Closing standard input tells the shell the script is complete.
            drop(stdin);
        };
        let mut output = Vec::new();
        let read = reader.read_to_end(&mut output);
        let ((), read, status) = tokio::join!(feed, read, child.wait());

        killer.disarm();
        read.map_err(BackendError::ReadOutput)?;
        let status = status.map_err(BackendError::Wait)?;
        Ok((status, output))
    }
}

impl Backend for ShellBackend {
    fn run_with<'a>(
        &'a self,
        batch: &'a [ShellCommand],
        progress: &'a dyn Progress,
    ) -> BatchFuture<'a> {
        Box::pin(self.run_batch(batch, progress))
    }
}
