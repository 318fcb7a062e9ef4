//! A command's temporary working directory, removed when dropped.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

/// Distinguishes the directories one daemon creates within the same
/// nanosecond; the pid distinguishes daemons sharing a temporary root.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An empty directory of our own, removed with its content when dropped —
/// including when the future using it is cancelled or panics.
#[derive(Debug)]
pub(crate) struct TempDir {
    /// Always absolute, so that paths inside it stay valid whatever the
    /// current directory.
    path: PathBuf,
    /// Already removed: nothing left to do when dropped.
    removed: bool,
}

impl TempDir {
    /// Creates `cheops.<pid>.<counter>.<nanos>` in `root`, readable by us
    /// only: attached files may be private.
    pub(crate) fn create_in(root: &Path) -> io::Result<TempDir> {
        let root = std::path::absolute(root)?;
        let mut last_error = None;
        // A name can only be taken by a foreign process (or a daemon whose
        // pid was reused); a few fresh names are enough to get past it.
        for _ in 0..8 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let name = format!(
                "cheops.{}.{}.{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = root.join(name);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(TempDir {
                        path,
                        removed: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory at once when it is empty (one system call, as
    /// after most commands); otherwise gives it back, for its content to be
    /// removed where blocking does no harm.
    pub(crate) fn remove_if_empty(mut self) -> Option<TempDir> {
        match std::fs::remove_dir(&self.path) {
            Ok(()) => {
                self.removed = true;
                None
            }
            Err(_) => Some(self),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            if error.kind() != io::ErrorKind::NotFound {
                warn!(dir = %self.path.display(), %error, "could not remove a temporary directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_distinct_private_and_removed_with_their_content() {
        let root = TempDir::create_in(&std::env::temp_dir()).unwrap();
        let a = TempDir::create_in(root.path()).unwrap();
        let b = TempDir::create_in(root.path()).unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_absolute());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(a.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);

        std::fs::create_dir(a.path().join("sub")).unwrap();
        std::fs::write(a.path().join("sub/file"), b"x").unwrap();
        let a_path = a.path().to_owned();
        drop(a);
        assert!(!a_path.exists());
        assert!(b.path().exists());

        let b_path = b.path().to_owned();
        assert!(
            b.remove_if_empty().is_none(),
            "an empty directory goes at once"
        );
        assert!(!b_path.exists());
        let c = TempDir::create_in(root.path()).unwrap();
        std::fs::write(c.path().join("file"), b"x").unwrap();
        let c = c
            .remove_if_empty()
            .expect("a directory with content is given back");
        let c_path = c.path().to_owned();
        drop(c);
        assert!(!c_path.exists());
    }
}
