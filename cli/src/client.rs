//! `cheops exec`, `http`, `redis`, `show`, `history`, `wait` and `watch`:
//! the command-line client of a node's API.
//!
//! Everything that can be checked locally (flags, files, the config, where
//! the node is) is checked before a request is sent, so that a usage error
//! never leaves half an operation behind.

mod args;
mod changes;
mod exec;
mod history;
mod http;
mod items;
mod local;
mod node_url;
mod outcome;
mod progress;
mod show;
mod token;
mod uploads;

use std::fmt;
use std::process::ExitCode;

pub use args::{ExecArgs, HistoryArgs, HttpArgs, RedisArgs, ShowArgs, WaitArgs, WatchArgs};

/// Some site answered KO.
pub(crate) const EXIT_KO: u8 = 1;
/// Some site did not answer in time, and none answered KO.
pub(crate) const EXIT_TIMEOUT: u8 = 2;
/// The node refused the request or could not be reached.
pub(crate) const EXIT_REFUSED: u8 = 3;
/// The command line is wrong (EX_USAGE); nothing was sent.
pub(crate) const EXIT_USAGE: u8 = 64;

/// Why the client stopped before having every site's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Detected locally, before anything was sent.
    Usage(String),
    /// The node was unreachable, refused the request, or broke off.
    Refused(String),
    /// The node could not be reached, or holds no such resource: another
    /// site may answer.
    NotHere(String),
    /// The node no longer keeps the events after the token asked for.
    Gone(String),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Refused(_) | Failure::NotHere(_) | Failure::Gone(_) => EXIT_REFUSED,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message)
            | Failure::Refused(message)
            | Failure::NotHere(message)
            | Failure::Gone(message) => f.write_str(message),
        }
    }
}

/// Runs `cheops exec`; the exit status says how the sites fared.
pub fn exec(mut args: ExecArgs) -> ExitCode {
    local::fill(&mut args.node);
    finish(exec::prepare(args).and_then(|request| block_on(exec::send(request))?))
}

/// Runs `cheops http`; the exit status is `exec`'s.
pub fn http_operation(mut args: HttpArgs) -> ExitCode {
    local::fill(&mut args.operation.node);
    finish(exec::prepare_http(args).and_then(|request| block_on(exec::send(request))?))
}

/// Runs `cheops redis`; the exit status is `exec`'s.
pub fn redis_operation(mut args: RedisArgs) -> ExitCode {
    local::fill(&mut args.operation.node);
    finish(exec::prepare_redis(args).and_then(|request| block_on(exec::send(request))?))
}

/// Runs `cheops show`; the exit status says how the sites fared.
pub fn show(mut args: ShowArgs) -> ExitCode {
    local::fill(&mut args.node);
    finish(show::prepare(args).and_then(|request| block_on(show::send(request))?))
}

/// Runs `cheops history`; the exit status says whether all of it came.
pub fn history(mut args: HistoryArgs) -> ExitCode {
    local::fill(&mut args.node);
    finish(history::prepare(args).and_then(|request| block_on(history::send(request))?))
}

/// Runs `cheops wait`; the exit status says how the sites fared.
pub fn wait(mut args: WaitArgs) -> ExitCode {
    local::fill(&mut args.node);
    finish(changes::prepare_wait(args).and_then(|wait| block_on(changes::wait(wait))?))
}

/// Runs `cheops watch` until interrupted or refused.
pub fn watch(mut args: WatchArgs) -> ExitCode {
    local::fill(&mut args.node);
    finish(changes::prepare_watch(args).and_then(|watch| block_on(changes::watch(watch))?))
}

/// The client does one request at a time: a single-threaded runtime is
/// enough.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Refused(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(future))
}

fn finish(result: Result<ExitCode, Failure>) -> ExitCode {
    result.unwrap_or_else(|failure| {
        eprintln!("cheops: {failure}");
        failure.exit_code()
    })
}
