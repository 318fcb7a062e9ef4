//! The shell backend: each command is fed to `sh` in a fresh temporary
//! directory holding its attached files.

pub(crate) mod files;
mod process_group;
mod program;
mod temp_dir;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cheops_model::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::Command as Process;
use tracing::{debug, info, warn};

use crate::batch::run_batch;
use crate::output::end_line;
use crate::{
    Backend, BackendError, BatchFuture, CommandFuture, CommandResult, Outcome, Progress, Run,
};
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
/// waited for until it closes it (or the timeout kills it): daemons started
/// by a command should have their output redirected.
#[derive(Debug, Clone)]
pub struct ShellBackend {
    shell: PathBuf,
    env: HashMap<String, String>,
    temp_root: PathBuf,
    timeout: Duration,
    output_limit: usize,
}

/// How long a command may run by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// How many bytes of a command's output are kept by default (1 MiB).
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;

/// How much of the pipe is read at a time.
const READ_CHUNK: usize = 8192;

impl Default for ShellBackend {
    fn default() -> Self {
        ShellBackend {
            shell: PathBuf::from("sh"),
            env: HashMap::new(),
            temp_root: std::env::temp_dir(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }
}

impl ShellBackend {
    /// `sh` from the daemon's `PATH`, an empty environment, directories in
    /// the system's temporary directory (`TMPDIR`, else `/tmp`), the default
    /// timeout and output limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shell program; it must be POSIX, as its `kill` builtin also stops
    /// abandoned commands.
    pub fn with_shell(mut self, shell: impl Into<PathBuf>) -> Self {
        self.shell = shell.into();
        self
    }

    /// A variable set for every command (see [`command_env`] for passing
    /// the daemon's own).
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// How long a command may run before it is killed.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many bytes of a command's output are kept.
    pub fn with_output_limit(mut self, limit: usize) -> Self {
        self.output_limit = limit;
        self
    }

    /// Where the commands' temporary directories are created.
    pub fn with_temp_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.temp_root = root.into();
        self
    }

    /// Runs one command in its own temporary directory, removed afterwards.
    ///
    /// Cancellation: dropping the future kills the shell and everything it
    /// started, and removes the directory (right away, or when the task
    /// writing the attached files finishes).
    async fn run_command(&self, command: &Command) -> Result<CommandResult, BackendError> {
        for name in command.files.keys() {
            cheops_model::check_file_name(name)?;
        }
        cheops_model::check_file_names(command.files.keys().map(String::as_str))?;
        let dir = self.prepare_dir(command).await?;
        let script = files::substitute(&command.command, &command.files, dir.path());
        debug!(dir = %dir.path().display(), command = %script, "running command");

        let ran = self.run_script(&script, dir.path()).await;

        // A directory the command filled takes a while to remove: off the
        // async threads. Even if this wait is cancelled, the blocking task
        // removes it.
        if let Some(dir) = dir.remove_if_empty() {
            let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
        }

        let ran = ran?;
        let mut output = String::from_utf8_lossy(&ran.output).into_owned();
        if ran.dropped > 0 {
            info!(
                kept = ran.output.len(),
                dropped = ran.dropped,
                "command output over the limit"
            );
            end_line(&mut output);
            output.push_str(&format!(
                "[cheops: output truncated: {} more bytes dropped after the first {} \
                 (--command-output-limit)]\n",
                ran.dropped, self.output_limit
            ));
        }
        let outcome = match ran.status {
            // The runner logs each operation's outcome: a success needs no
            // second line, a failure's exit status does.
            Some(status) if status.success() => {
                debug!(%status, "command ran");
                Outcome::Ok
            }
            Some(status) => {
                info!(%status, "command failed");
                Outcome::Failed
            }
            None => {
                warn!(timeout = ?self.timeout, "command timed out and was killed");
                end_line(&mut output);
                output.push_str(&format!(
                    "[cheops: timed out after {} s (--command-timeout): the command and every \
                     process it started were killed]\n",
                    self.timeout.as_secs_f64()
                ));
                Outcome::Failed
            }
        };
        Ok(CommandResult { outcome, output })
    }

    /// Creates the command's directory with its files, on a blocking thread
    /// when there are files (copied, so that the blocking task owns what it
    /// writes); without, the one system call is made here.
    async fn prepare_dir(&self, command: &Command) -> Result<TempDir, BackendError> {
        if command.files.is_empty() {
            let root = &self.temp_root;
            return TempDir::create_in(root).map_err(|source| BackendError::TempDir {
                root: root.clone(),
                source,
            });
        }
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

    /// Feeds `script` to the shell in `dir` and returns its exit status
    /// (`None` when it timed out and was killed) and its standard output and
    /// error as one stream, capped.
    async fn run_script(&self, script: &str, dir: &Path) -> Result<Ran, BackendError> {
        // One pipe for both streams keeps their writes in order.
        let (writer, mut reader) =
            tokio::net::unix::pipe::pipe().map_err(BackendError::OutputPipe)?;
        let stdout: OwnedFd = writer
            .into_blocking_fd()
            .map_err(BackendError::OutputPipe)?;
        let stderr = stdout.try_clone().map_err(BackendError::OutputPipe)?;

        // The `Command` holds our copies of the pipe's write end: it must be
        // gone once the child has spawned, or reading never sees the end.
        let program = program::locate(&self.shell, self.env.get("PATH").map(OsStr::new));
        let mut child = {
            let mut shell = Process::new(&program);
            shell
                .current_dir(dir)
                .env_clear()
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
        let mut killer = GroupKiller::new(program, child.id());

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
        let mut output = Output::new(self.output_limit);
        let read = output.read_all(&mut reader);
        let ran = tokio::time::timeout(self.timeout, async {
            tokio::join!(feed, read, child.wait())
        })
        .await;
        let Ok(((), read, status)) = ran else {
            // `killer`, still armed, kills the whole group as it drops.
            drop(killer);
            return Ok(Ran {
                status: None,
                output: output.kept,
                dropped: output.dropped,
            });
        };

        killer.disarm();
        read.map_err(BackendError::ReadOutput)?;
        let status = status.map_err(BackendError::Wait)?;
        Ok(Ran {
            status: Some(status),
            output: output.kept,
            dropped: output.dropped,
        })
    }
}

/// What came of running a script.
struct Ran {
    /// Its exit status; `None` when it timed out and was killed.
    status: Option<ExitStatus>,
    /// Its output, up to the limit.
    output: Vec<u8>,
    /// How many bytes of output came after the limit.
    dropped: u64,
}

/// A command's output as it is read: the first `limit` bytes kept, the rest
/// counted and dropped, so memory never grows past the limit and a chunk.
struct Output {
    kept: Vec<u8>,
    dropped: u64,
    limit: usize,
}

impl Output {
    fn new(limit: usize) -> Self {
        Output {
            kept: Vec::with_capacity(limit.min(READ_CHUNK)),
            dropped: 0,
            limit,
        }
    }

    /// Reads `reader` to its end. Reading on past the limit lets the
    /// command finish (a writer to a full pipe would block forever).
    ///
    /// Cancellation: what was read so far stays in `self`.
    async fn read_all(&mut self, reader: &mut pipe::Receiver) -> std::io::Result<()> {
        let mut chunk = vec![0; READ_CHUNK];
        loop {
            let read = reader.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            let keep = read.min(self.limit - self.kept.len());
            self.kept.extend_from_slice(&chunk[..keep]);
            self.dropped += (read - keep) as u64;
        }
    }
}

/// The variables of `vars` (the daemon's environment) that commands see:
/// those named by [`DEFAULT_COMMAND_ENV`] or `extra`, where a name ending
/// with `*` stands for every name starting with what precedes it, but never
/// one that may hold a credential ([`may_hold_credential`]). Variables
/// whose name or value is not UTF-8 are left out.
pub fn command_env(
    extra: &[String],
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(String, String)> {
    let allowed = |name: &str| {
        DEFAULT_COMMAND_ENV
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    };
    vars.into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, value)| allowed(name) && !may_hold_credential(name, value))
        .collect()
}

/// Words that, in a variable's name, say it may hold a secret.
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "AUTH",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "COOKIE",
    "SESSION",
];

/// Whether a variable may hold a credential, so that no command ever sees
/// it whatever `--command-env` says: the daemon's own settings
/// (`CHEOPS_*`), a name holding a secret's word (`GITHUB_TOKEN`,
/// `PGPASSWORD`, `AWS_SECRET_ACCESS_KEY`), or a URL with a password in it
/// (`DATABASE_URL=postgres://app:pw@db/app`).
pub fn may_hold_credential(name: &str, value: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("CHEOPS_")
        || SECRET_WORDS.iter().any(|word| upper.contains(word))
        || url_with_password(value)
}

/// Whether `value` holds a URL whose authority carries `user:password@`.
fn url_with_password(value: &str) -> bool {
    value.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// The variables of the daemon's environment every command sees: what
/// programs need to run as the daemon's user, nothing that could be a
/// secret.
pub const DEFAULT_COMMAND_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR",
];

impl Run for ShellBackend {
    fn run_one<'a>(&'a self, command: &'a Command) -> CommandFuture<'a> {
        Box::pin(async move {
            self.run_command(command).await.unwrap_or_else(|error| {
                if error.is_internal() {
                    warn!(%error, "command could not be run");
                } else {
                    info!(%error, "command refused");
                }
                CommandResult::not_run(&error)
            })
        })
    }
}

impl Backend for ShellBackend {
    fn run_with<'a>(&'a self, batch: &'a [Command], progress: &'a dyn Progress) -> BatchFuture<'a> {
        Box::pin(run_batch(self, batch, progress))
    }
}
