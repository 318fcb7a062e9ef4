//! The Python tools some tests drive (schemathesis, PyYAML), installed on
//! first use into a virtual environment under `target/py/tests`, as pinned
//! by `tests/python/requirements.txt`: a fresh machine needs only `python3`
//! and PyPI, like the sidecar needs only Node.js and npm.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::process::workspace;

/// How long a test waits for another test process installing the
/// environment before giving up.
const INSTALL_WAIT: Duration = Duration::from_secs(600);

/// The `bin` directory of the tests' Python environment (its `python`,
/// `schemathesis`…), installed or brought up to date with the requirements
/// file first. Blocks while installing; panics, saying what failed, when it
/// cannot install: such a test fails, it never skips.
pub fn python_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(install)
}

/// The folder of the tests' Python files (requirements, hooks, settings).
pub fn python_dir() -> PathBuf {
    workspace().join("tests/python")
}

fn install() -> PathBuf {
    let requirements_file = python_dir().join("requirements.txt");
    let requirements = fs::read_to_string(&requirements_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements_file.display()));
    let root = target_dir().join("py");
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let venv = root.join("tests");
    // What the environment was installed from: it is reinstalled when the
    // pins change, and is complete only once this is written.
    let stamp = venv.join("installed-requirements.txt");
    let _lock = InstallLock::acquire(root.join("tests.lock"));
    if fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return venv.join("bin");
    }
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "creating a Python virtual environment with `python3 -m venv` \
         (on Debian: apt-get install python3 python3-venv)",
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "--quiet"])
            .arg("--requirement")
            .arg(&requirements_file),
        &format!(
            "installing {} from PyPI into {}",
            requirements_file.display(),
            venv.display()
        ),
    );
    fs::write(&stamp, &requirements)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    venv.join("bin")
}

/// Where cargo builds, as `cheops_binary` finds it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} failed: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Keeps other test processes (cargo runs test binaries one after the
/// other, nextest at once) from installing into the same environment at the
/// same time: a directory that exists while its creator installs, holding
/// the creator's pid so that one left by a killed process is taken over.
struct InstallLock(PathBuf);

impl InstallLock {
    fn acquire(path: PathBuf) -> InstallLock {
        let deadline = Instant::now() + INSTALL_WAIT;
        loop {
            match fs::create_dir(&path) {
                Ok(()) => {
                    let _ = fs::write(path.join("pid"), std::process::id().to_string());
                    return InstallLock(path);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if holder_is_gone(&path) {
                        let _ = fs::remove_dir_all(&path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "another test process has been installing the Python tools for \
                         {INSTALL_WAIT:?}; if none is, remove {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }
}

/// Whether the process that made the lock is no more: its pid is not
/// running, or it died before writing its pid (the lock is then older than
/// writing a pid can take).
fn holder_is_gone(lock: &Path) -> bool {
    match fs::read_to_string(lock.join("pid")) {
        Ok(pid) => !Path::new("/proc").join(pid.trim()).exists(),
        Err(_) => fs::metadata(lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|made| SystemTime::now().duration_since(made).ok())
            .is_some_and(|age| age > Duration::from_secs(10)),
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
