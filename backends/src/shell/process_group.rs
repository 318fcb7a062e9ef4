//! Killing every process a command started when its run is abandoned.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tracing::{debug, warn};

/// Kills the process group `pgid` when dropped unless disarmed first.
///
/// The command's shell leads its own group, which its children join, so
/// killing the group also ends what the shell started (`sleep` in
/// `sleep 100; echo done`), which killing the shell alone would leave
/// running. Declared after the child, this guard drops first: the shell is
/// not yet reaped, so its pid cannot have been reused for another group.
///
/// Without `libc` (and with `unsafe` forbidden) there is no `killpg` here: the
/// shell's own `kill` builtin does it, which also works where no `kill`
/// binary is installed.
pub(crate) struct GroupKiller {
    shell: PathBuf,
    pgid: Option<u32>,
}

impl GroupKiller {
    pub(crate) fn new(shell: PathBuf, pgid: Option<u32>) -> Self {
        GroupKiller { shell, pgid }
    }

    /// The command ran to its end: processes it left in the background on
    /// purpose (with their output redirected) are not ours to kill.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else {
            return;
        };
        debug!(pgid, "killing the process group of an abandoned command");
        // Waited for, so that it leaves no zombie; a shell starting and
        // running one builtin takes milliseconds.
        let killed = Command::new(&self.shell)
            .arg("-c")
            .arg(format!("kill -s KILL -- -{pgid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match killed {
            Ok(status) if status.success() => {}
            // The group may already be gone: nothing left to kill.
            Ok(status) => debug!(pgid, %status, "kill found no process group"),
            Err(error) => warn!(pgid, %error, "could not kill an abandoned command's processes"),
        }
    }
}
