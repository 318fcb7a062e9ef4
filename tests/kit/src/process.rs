//! Child processes the harness owns: free ports, the `cheops` binary, the
//! sidecar, and killing them all on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The checkout whose files (the sidecar's scripts, the Python tools) the
/// harness runs: the first holding them among the running executable's
/// directories (`target/…` lies inside its checkout), the current
/// directory's, and the one this crate was compiled in. A checkout moved
/// after its build is thus still found.
pub fn workspace() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let starts = [std::env::current_exe(), std::env::current_dir()];
        let found = starts
            .into_iter()
            .flatten()
            .chain([compiled.clone()])
            .find_map(|start| {
                start
                    .ancestors()
                    .find(|dir| is_checkout(dir))
                    .map(Path::to_path_buf)
            });
        found.unwrap_or(compiled)
    })
    .clone()
}

/// Whether `dir` is a checkout of this repository.
fn is_checkout(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file() && dir.join(SIDECAR_INSTALL).is_file()
}

/// The sidecar's install script, from the checkout's root.
const SIDECAR_INSTALL: &str = "deploy/sidecar/install";

/// A port nobody listens on right now, never the same twice in a process.
///
/// Ports come from below Linux's ephemeral range (32768 and up): a port the
/// kernel hands out for `bind(0)` is also one it may give an outgoing
/// connection before the node binds it. The start depends on the process
/// id, so that test processes running at once seldom probe the same ports.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + seed.wrapping_add(offset) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + COUNT)
}

/// A listener on a free port of 127.0.0.1, for a server of the harness that
/// listens at once: a port found free may be taken by another process
/// before the bind, so another is tried then.
pub async fn listen_free() -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..16 {
        match tokio::net::TcpListener::bind(("127.0.0.1", free_port())).await {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => last = Some(error),
            bound => return bound,
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

/// The `cheops` binary, built once per process (a library cannot depend on
/// a binary, so it asks cargo for it).
pub fn cheops_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "cheops-cli", "--bin", "cheops"])
            .current_dir(workspace())
            .status()
            .expect("cannot run cargo");
        assert!(status.success(), "building cheops failed");
        target_dir().join("debug").join("cheops")
    })
}

/// The workspace's release `cheops`, brought up to date by cargo first (a
/// stale binary would measure old code): what `cheops-bench` runs.
pub fn release_cheops_binary() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "cheops-cli",
            "--bin",
            "cheops",
        ])
        .current_dir(workspace())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building cheops (release) failed".into());
    }
    Ok(target_dir().join("release").join("cheops"))
}

/// Where cargo builds the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The sidecar's start script, installing its packages once if needed.
pub fn sidecar_script() -> &'static Path {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let root = workspace();
        if !is_checkout(&root) {
            panic!(
                "no checkout of Cheops holds {SIDECAR_INSTALL} around {} or the current directory: \
                 run the tool from its checkout",
                std::env::current_exe().unwrap_or_default().display()
            );
        }
        let dir = root.join("deploy/sidecar");
        if !dir.join("node_modules/.bin/pouchdb-server").exists() {
            let status = Command::new(root.join(SIDECAR_INSTALL))
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run {}: {e}", root.join(SIDECAR_INSTALL).display())
                });
            assert!(status.success(), "installing the sidecar failed");
        }
        dir.join("start")
    })
}

/// A child process killed (and reaped) on drop.
pub struct Owned(pub Option<Child>, pub PathBuf);

impl Owned {
    pub fn spawn(command: &mut Command, log: &Path) -> Owned {
        let out = std::fs::File::create(log).expect("cannot create a log file");
        let err = out.try_clone().expect("cannot clone a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Owned(Some(child), log.to_path_buf())
    }

    /// Panics, naming its log, if the process has exited on its own.
    pub fn assert_running(&mut self, what: &str) {
        if let Err(exited) = self.running(what) {
            panic!("{exited}");
        }
    }

    /// Whether the process still runs; if it exited on its own, says so
    /// and names its log.
    pub fn running(&mut self, what: &str) -> Result<(), String> {
        if let Some(child) = self.0.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{what} exited ({status}); see {}",
                    self.1.display()
                ));
            }
        }
        Ok(())
    }

    /// Sends `signal` (a name `kill -s` takes: STOP, CONT…) to the process.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or("it is not running")?;
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -s {signal} {pid} failed ({status})"))
        }
    }

    /// The process id, while it has not been killed.
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Sends SIGTERM (with `kill`: no `libc` here) and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        if let Err(why) = self.signal("TERM") {
            panic!("{why}");
        }
        let mut child = self.0.take().expect("the process is running");
        child.wait().expect("cannot wait for the process")
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A program found on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// What to install for `redis-server` (Debian's package; `.ci/run`
/// installs it).
pub const REDIS_HINT: &str = "apt-get install redis-server (.ci/run does)";

/// `redis-server`, which the redis scenarios and `cheops-cluster up --redis`
/// need.
pub fn redis_server() -> PathBuf {
    find_program("redis-server")
        .unwrap_or_else(|| panic!("redis-server is not installed: {REDIS_HINT}"))
}
