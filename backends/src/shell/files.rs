//! Attached files: how they are written into a command's directory and how
//! `{name}` in the command becomes their path (which names are accepted,
//! and what a group is, are `cheops_model`'s rules, shared with the client).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use cheops_model::rewrite_groups;

use crate::BackendError;

/// Writes every file under `dir`, creating the directories their names
/// contain. Names must have passed [`cheops_model::check_file_name`]. A file is never written
/// over: two names that collide (`a` and `a/b`) are an error.
pub(crate) fn write_all(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), BackendError> {
    for (name, content) in files {
        let fail = |source| BackendError::WriteFile {
            name: name.clone(),
            source,
        };
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(fail)?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| file.write_all(content))
            .map_err(fail)?;
    }
    Ok(())
}

/// Replaces each `{name}` of `command` by the path under `dir` of the
/// attached file `name`, or of the directory `name` when attached files are
/// named `name/…`. Any other `{…}` (shell syntax such as `${HOME}` or
/// `{a,b}`, or a name nothing was attached under) is left as written.
///
/// Groups are cut by [`rewrite_groups`]. Paths are inserted unquoted, as
/// the original does.
pub(crate) fn substitute(command: &str, files: &BTreeMap<String, Vec<u8>>, dir: &Path) -> String {
    let rewritten = rewrite_groups(command, |group| {
        Ok::<_, Infallible>(
            is_attached(group.text, files)
                .then(|| dir.join(group.text).to_string_lossy().into_owned()),
        )
    });
    match rewritten {
        Ok(script) => script,
        Err(never) => match never {},
    }
}

/// Whether `name` is an attached file or a directory holding some.
fn is_attached(name: &str, files: &BTreeMap<String, Vec<u8>>) -> bool {
    if name.is_empty() {
        return false;
    }
    if files.contains_key(name) {
        return true;
    }
    // Names under `name/` sort together, right from `name/` on.
    let prefix = format!("{name}/");
    files
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(file, _)| file.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> BTreeMap<String, Vec<u8>> {
        names.iter().map(|n| (n.to_string(), Vec::new())).collect()
    }

    #[test]
    fn attached_names_become_paths_and_others_stay_as_written() {
        let dir = Path::new("/t/cheops.1");
        let files = files(&["a.txt", "mydir/sub/f", "b"]);
        let cases = [
            ("cat {a.txt}", "cat /t/cheops.1/a.txt"),
            (
                "cat {a.txt} {a.txt}",
                "cat /t/cheops.1/a.txt /t/cheops.1/a.txt",
            ),
            (
                "ls {mydir} {mydir/sub}",
                "ls /t/cheops.1/mydir /t/cheops.1/mydir/sub",
            ),
            ("cat {mydir/sub/f}", "cat /t/cheops.1/mydir/sub/f"),
            (
                "echo {x} ${HOME} {a,b} {} {my}",
                "echo {x} ${HOME} {a,b} {} {my}",
            ),
            ("echo {mydir/}", "echo {mydir/}"),
            ("echo {{b}}", "echo {/t/cheops.1/b}"),
            ("echo {b", "echo {b"),
            ("echo b} {", "echo b} {"),
            ("é{b}é", "é/t/cheops.1/bé"),
        ];
        for (command, expected) in cases {
            assert_eq!(substitute(command, &files, dir), expected, "{command}");
        }
    }

    #[test]
    fn a_directory_prefix_must_end_at_a_slash() {
        let files = files(&["mydir2/f", "mydir.txt"]);
        assert_eq!(substitute("{mydir}", &files, Path::new("/t")), "{mydir}");
    }
}
