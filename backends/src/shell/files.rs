//! Attached files: which names are accepted, how they are written into a
//! command's directory and how `{name}` in the command becomes their path.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::BackendError;

/// Accepts only plain relative paths (`a.txt`, `dir/sub/a.txt`): every
/// component a real name, none empty, `.` or `..`. Written under the
/// command's fresh directory, such a name cannot land outside it, and each
/// file has a single spelling for `{name}` to refer to.
pub fn check_name(name: &str) -> Result<(), BackendError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else if name.starts_with('/') {
        Some("it is absolute")
    } else {
        name.split('/').find_map(|component| match component {
            "" => Some("it has an empty component"),
            "." => Some("it has a \".\" component"),
            ".." => Some("it has a \"..\" component"),
            _ => None,
        })
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(BackendError::RefusedFileName {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// Writes every file under `dir`, creating the directories their names
/// contain. Names must have passed [`check_name`]. A file is never written
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
/// A name runs from a `{` to the next `}`; when it matches nothing the scan
/// resumes just after that `{`, so `{{a}}` still finds `{a}`. Paths are
/// inserted unquoted, as the original does.
pub(crate) fn substitute(command: &str, files: &BTreeMap<String, Vec<u8>>, dir: &Path) -> String {
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            rest = &rest[open..];
            break;
        };
        let name = &after[..close];
        if is_attached(name, files) {
            out.push_str(&dir.join(name).to_string_lossy());
            rest = &after[close + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
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
    fn plain_relative_names_are_accepted() {
        for name in [
            "a.txt",
            "mydir/sub/file.txt",
            "..hidden",
            "a..b",
            ".env",
            "x{y}",
        ] {
            check_name(name).unwrap();
        }
    }

    #[test]
    fn names_that_could_escape_or_are_ambiguous_are_refused() {
        for (name, reason) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("..", "\"..\""),
            ("../x", "\"..\""),
            ("a/../../x", "\"..\""),
            ("a/..", "\"..\""),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("./a", "\".\""),
            ("a\0b", "NUL"),
        ] {
            let err = check_name(name).unwrap_err().to_string();
            assert!(err.starts_with("refused file name "), "{name:?}: {err}");
            assert!(err.contains(reason), "{name:?}: {err}");
        }
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
