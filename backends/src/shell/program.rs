//! Finding the shell's file before each spawn.
//!
//! The standard library spawns with `posix_spawn`, which shares the
//! daemon's memory until `exec`, only when it need not search `PATH` itself;
//! given a bare name with a `PATH` of its own, or a cleared environment, it
//! forks, copying the daemon's page tables for every command. So the name is
//! looked up here, as `execvp` would look it up in the command's
//! environment.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where `execvp` looks when the environment has no `PATH` (glibc's
/// `_CS_PATH`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The file `program` names when run with `path` as `PATH` (`None`: not
/// set): itself when it holds a `/`, else the first executable file of that
/// name in `path`'s directories. A name found nowhere is given back as it
/// is, for the spawn to report.
pub fn locate(program: &Path, path: Option<&OsStr>) -> PathBuf {
    if program.as_os_str().is_empty() || program.to_string_lossy().contains('/') {
        return program.to_path_buf();
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| program.to_path_buf())
}

fn is_executable(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::temp_dir::TempDir;

    #[test]
    fn a_bare_name_is_found_in_the_path_given() {
        let dir = TempDir::create_in(&std::env::temp_dir()).expect("a temporary directory");
        let plain = dir.path().join("tool");
        std::fs::write(&plain, "").expect("written");
        let runnable = dir.path().join("run");
        std::fs::write(&runnable, "").expect("written");
        std::fs::set_permissions(&runnable, std::fs::Permissions::from_mode(0o755))
            .expect("made executable");
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();

        assert_eq!(locate(Path::new("run"), Some(&path)), runnable);
        // Not executable, or nowhere: left for the spawn to report.
        assert_eq!(locate(Path::new("tool"), Some(&path)), Path::new("tool"));
        assert_eq!(locate(Path::new("nope"), Some(&path)), Path::new("nope"));
        // A path is never searched for.
        assert_eq!(locate(Path::new("./run"), Some(&path)), Path::new("./run"));
    }

    #[test]
    fn without_a_path_the_system_default_is_searched() {
        assert_eq!(locate(Path::new("sh"), None), Path::new("/bin/sh"));
    }
}
