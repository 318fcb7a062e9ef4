//! Where each hook's deliveries stand in the changes feed, kept in the data
//! directory (`hooks-{site}.json`) so that a restart resumes them: a
//! delivery is made before its position is saved, so a crash between the
//! two delivers an event again (under its one id), never skips one.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::node::journal::site_file;
use crate::ReplicatorError;

/// A hook's place in the feed: the last event each of its lanes is done
/// with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Events this node delivers at once.
    pub now: u64,
    /// Completions this node stands by for.
    pub standby: u64,
}

/// Every hook's position, by name.
#[derive(Debug)]
pub struct Positions {
    path: PathBuf,
    by_hook: BTreeMap<String, Position>,
    /// The file did not read: hooks without a position start at the oldest
    /// event kept rather than at the newest, delivering again rather than
    /// skipping.
    lost: bool,
    saved: BTreeMap<String, Position>,
}

impl Positions {
    /// Reads the positions of `site` in `dir`.
    pub fn open(dir: &Path, site: &str) -> Positions {
        let path = site_file(dir, "hooks", site).with_extension("json");
        let (by_hook, lost) = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(by_hook) => (by_hook, false),
                Err(error) => {
                    warn!(site, path = %path.display(), %error, "the hooks' positions do not read; their deliveries start again from the oldest event kept");
                    (BTreeMap::new(), true)
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), false),
            Err(error) => {
                warn!(site, path = %path.display(), %error, "the hooks' positions cannot be read; their deliveries start again from the oldest event kept");
                (BTreeMap::new(), true)
            }
        };
        Positions {
            path,
            saved: by_hook.clone(),
            by_hook,
            lost,
        }
    }

    /// The position of `hook`; a hook seen for the first time starts at
    /// `newest` (what happened before it existed is not its business), or
    /// at 0 when the positions were lost.
    pub fn of(&mut self, hook: &str, newest: u64) -> Position {
        let start = if self.lost { 0 } else { newest };
        *self.by_hook.entry(hook.to_owned()).or_insert(Position {
            now: start,
            standby: start,
        })
    }

    pub fn set(&mut self, hook: &str, position: Position) {
        self.by_hook.insert(hook.to_owned(), position);
    }

    /// Forgets the hooks not in `names` (removed from the file).
    pub fn keep_only<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
        self.by_hook.retain(|name, _| names.contains(name.as_str()));
    }

    /// Writes the positions, when they changed, whole or not at all.
    pub async fn save(&mut self) -> Result<(), ReplicatorError> {
        if self.by_hook == self.saved {
            return Ok(());
        }
        let path = self.path.clone();
        let text =
            serde_json::to_vec_pretty(&self.by_hook).map_err(|source| ReplicatorError::Decode {
                context: "the hooks' positions".into(),
                source,
            })?;
        let written = tokio::task::spawn_blocking(move || write_whole(&path, &text))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        written.map_err(|error| ReplicatorError::Hooks {
            path: self.path.display().to_string(),
            reason: error.to_string(),
        })?;
        self.saved = self.by_hook.clone();
        self.lost = false;
        Ok(())
    }
}

/// Writes `text` to `path` through a file renamed over it.
fn write_whole(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let fresh = path.with_extension("json.new");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    file.write_all(text)?;
    file.sync_data()?;
    std::fs::rename(&fresh, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cheops-hooks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn positions_survive_a_restart_and_new_hooks_start_at_the_newest() {
        let dir = dir("restart");
        let mut positions = Positions::open(&dir, "site1");
        assert_eq!(positions.of("a", 7), Position { now: 7, standby: 7 });
        positions.set("a", Position { now: 9, standby: 8 });
        positions.of("b", 7);
        positions.keep_only(["a"]);
        positions.save().await.unwrap();
        let mut again = Positions::open(&dir, "site1");
        assert_eq!(again.of("a", 20), Position { now: 9, standby: 8 });
        assert_eq!(
            again.of("b", 20),
            Position {
                now: 20,
                standby: 20
            },
            "b was removed"
        );
    }

    #[tokio::test]
    async fn positions_that_do_not_read_start_from_the_oldest() {
        let dir = dir("lost");
        std::fs::write(
            site_file(&dir, "hooks", "site1").with_extension("json"),
            "{",
        )
        .unwrap();
        let mut positions = Positions::open(&dir, "site1");
        assert_eq!(positions.of("a", 20), Position::default());
    }
}
