//! Child processes the harness owns: free ports, the `cheops` binary, the
//! sidecar, and killing them all on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// The `cheops` binary, built once per test process (the tests crate cannot
/// depend on a binary, so it asks cargo for it).
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
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug").join("cheops")
    })
}

/// The sidecar's start script, installing its packages once if needed.
pub fn sidecar_script() -> &'static Path {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let dir = workspace().join("deploy/sidecar");
        if !dir.join("node_modules/.bin/pouchdb-server").exists() {
            let status = Command::new(dir.join("install"))
                .status()
                .expect("cannot run deploy/sidecar/install");
            assert!(status.success(), "installing the sidecar failed");
        }
        dir.join("start")
    })
}

/// A child process killed (and reaped) on drop.
pub struct Owned(pub Option<Child>);

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
        Owned(Some(child))
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
