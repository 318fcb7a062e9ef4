//! `{path}` in a command: the local files and directories it names, read
//! for upload, and the command rewritten to the names they are uploaded
//! under, which the node's shell backend turns into paths.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cheops_model::rewrite_groups;

use super::Failure;

/// A command ready to send: `{path}`s rewritten to `{name}`s, and the files
/// to attach, each under the name the backend writes it to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub command: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Reads every local path `command` names (relative ones from `cwd`) and
/// rewrites the command. Groups are cut by the rule the node's backend uses
/// ([`rewrite_groups`]), so both sides agree on what a group is.
pub(crate) fn prepare(command: &str, cwd: &Path) -> Result<Prepared, Failure> {
    let mut uploads = Uploads {
        cwd,
        names: BTreeSet::new(),
        by_path: HashMap::new(),
        files: Vec::new(),
    };
    let command = rewrite_groups(command, |group| {
        if names_a_path(group.text) && !group.after_dollar {
            Ok(Some(format!("{{{}}}", uploads.add(group.text)?)))
        } else {
            Ok(None)
        }
    })?;
    Ok(Prepared {
        command,
        files: uploads.files,
    })
}

/// Whether a group is meant as a local path rather than shell syntax: not
/// empty, no whitespace (`{ print $1 }`), no `$` (`{$x}`), no `,`
/// (`{a,b}`), no `{` (`{{a}}` then finds `{a}`). A group right after a
/// `$` (`${HOME}`) is shell syntax too: the caller checks that.
fn names_a_path(group: &str) -> bool {
    !group.is_empty()
        && !group
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '$' | ',' | '{'))
}

struct Uploads<'a> {
    cwd: &'a Path,
    /// Top-level names taken: a file's name, a directory's first component.
    names: BTreeSet<String>,
    /// The name each local path went under, so that a path written twice is
    /// uploaded once.
    by_path: HashMap<PathBuf, String>,
    files: Vec<(String, Vec<u8>)>,
}

impl Uploads<'_> {
    /// Uploads what `written` names and returns the name `{…}` now holds.
    fn add(&mut self, written: &str) -> Result<String, Failure> {
        let path = self.cwd.join(written);
        let metadata = fs::metadata(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Failure::Usage(format!(
                "file not found: {written} (named by {{{written}}} in the command; a {{…}} \
                 that is not a local path must hold a space, e.g. {{ {written} }})"
            )),
            _ => Failure::Usage(format!("cannot read {written}: {e}")),
        })?;
        let canonical = fs::canonicalize(&path)
            .map_err(|e| Failure::Usage(format!("cannot read {written}: {e}")))?;
        if let Some(name) = self.by_path.get(&canonical) {
            return Ok(name.clone());
        }
        // The name as written (`link.txt`, not its target's), except where
        // it has none (`.`, `..`).
        let base = path
            .file_name()
            .or_else(|| canonical.file_name())
            .ok_or_else(|| Failure::Usage(format!("{written} has no name to upload it under")))?;
        let base = utf8(base, written)?;
        let name = self.unique(base);
        if metadata.is_file() {
            let content = read(&path, written)?;
            self.push(name.clone(), content)?;
        } else if metadata.is_dir() {
            let before = self.files.len();
            self.add_dir(&path, &name, written)?;
            if self.files.len() == before {
                return Err(Failure::Usage(format!(
                    "directory {written} holds no file to upload"
                )));
            }
        } else {
            return Err(Failure::Usage(format!(
                "{written} is neither a regular file nor a directory"
            )));
        }
        self.names.insert(name.clone());
        self.by_path.insert(canonical, name.clone());
        Ok(name)
    }

    /// `base`, or `base.1`, `base.2`… for the first one not taken.
    fn unique(&self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut n = 0;
        while self.names.contains(&name) {
            n += 1;
            name = format!("{base}.{n}");
        }
        name
    }

    /// Every regular file under `dir`, named `prefix/relative/path`, in name
    /// order. A symbolic link to a file is read as that file; one to a
    /// directory is refused rather than followed, as it could loop.
    fn add_dir(&mut self, dir: &Path, prefix: &str, written: &str) -> Result<(), Failure> {
        let top = self.cwd.join(written);
        let shown = |path: &Path| {
            Path::new(written)
                .join(path.strip_prefix(&top).unwrap_or(path))
                .display()
                .to_string()
        };
        let failed =
            |path: &Path, e: io::Error| Failure::Usage(format!("cannot read {}: {e}", shown(path)));
        let mut entries = fs::read_dir(dir)
            .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
            .map_err(|e| failed(dir, e))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = entry.path();
            let name = format!("{prefix}/{}", utf8(&entry.file_name(), &shown(&path))?);
            let kind = entry.file_type().map_err(|e| failed(&path, e))?;
            if kind.is_dir() {
                self.add_dir(&path, &name, written)?;
            } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                let content = read(&path, &shown(&path))?;
                self.push(name, content)?;
            } else if kind.is_symlink() && path.is_dir() {
                return Err(Failure::Usage(format!(
                    "{} is a symbolic link to a directory, which is not uploaded",
                    shown(&path)
                )));
            } else {
                return Err(Failure::Usage(format!(
                    "{} is neither a regular file nor a directory",
                    shown(&path)
                )));
            }
        }
        Ok(())
    }

    /// Adds a file, once its name can travel and the backend would accept
    /// it. A name travels as is between the quotes of its part's header,
    /// which the node reads without unescaping: a quote, a backslash or a
    /// control character there would change it.
    fn push(&mut self, name: String, content: Vec<u8>) -> Result<(), Failure> {
        if let Some(c) = name
            .chars()
            .find(|c| c.is_control() || matches!(c, '"' | '\\'))
        {
            return Err(Failure::Usage(format!(
                "cannot upload {name:?}: a file name may not hold {c:?}"
            )));
        }
        cheops_model::check_file_name(&name).map_err(|e| Failure::Usage(e.to_string()))?;
        self.files.push((name, content));
        Ok(())
    }
}

fn read(path: &Path, shown: &str) -> Result<Vec<u8>, Failure> {
    fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {shown}: {e}")))
}

/// Names travel as form field names, which are text.
fn utf8<'a>(name: &'a std::ffi::OsStr, shown: &str) -> Result<&'a str, Failure> {
    name.to_str()
        .ok_or_else(|| Failure::Usage(format!("{shown}: the name is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory holding `files` (name → content).
    fn tree(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cheops-uploads-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (name, content) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(prepared: &Prepared) -> Vec<&str> {
        prepared.files.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_file_is_uploaded_under_its_base_name() {
        let dir = tree("file", &[("conf/recipe.yml", "kind: x")]);
        let prepared = prepare("kubectl apply -f {conf/recipe.yml}", &dir).unwrap();
        assert_eq!(prepared.command, "kubectl apply -f {recipe.yml}");
        assert_eq!(prepared.files, [("recipe.yml".into(), b"kind: x".to_vec())]);
        let absolute = format!("cat {{{}}}", dir.join("conf/recipe.yml").display());
        assert_eq!(
            prepare(&absolute, Path::new("/")).unwrap().command,
            "cat {recipe.yml}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn repeated_base_names_are_numbered_and_one_path_is_sent_once() {
        let dir = tree("repeat", &[("a/x", "A"), ("b/x", "B"), ("c/x/f", "C")]);
        let prepared = prepare("cat {a/x} {b/x} {./a/x}; ls {c/x}", &dir).unwrap();
        assert_eq!(prepared.command, "cat {x} {x.1} {x}; ls {x.2}");
        assert_eq!(names(&prepared), ["x", "x.1", "x.2/f"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_is_uploaded_file_by_file() {
        let dir = tree(
            "dir",
            &[
                ("site/index.html", "i"),
                ("site/css/a.css", "a"),
                ("site/b", "b"),
            ],
        );
        let prepared = prepare("cp -r {site} /srv && cat {site}/b", &dir).unwrap();
        assert_eq!(prepared.command, "cp -r {site} /srv && cat {site}/b");
        assert_eq!(
            names(&prepared),
            ["site/b", "site/css/a.css", "site/index.html"]
        );
        let prepared = prepare("ls {.}", &dir.join("site")).unwrap();
        assert_eq!(prepared.command, "ls {site}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn shell_syntax_is_left_as_written() {
        let dir = tree("shell", &[("a", "A")]);
        for command in [
            "echo ${HOME} $${a}",
            "awk '{ print $1 }'",
            "cp x{,.bak}",
            "find . -exec rm {} +",
            "echo {$a}",
            "echo { a } {a",
            "echo a} {",
        ] {
            let prepared = prepare(command, &dir).unwrap();
            assert_eq!(prepared.command, command);
            assert!(prepared.files.is_empty(), "{command}");
        }
        assert_eq!(prepare("echo {{a}}", &dir).unwrap().command, "echo {{a}}");
        assert_eq!(names(&prepare("echo {{a}}", &dir).unwrap()), ["a"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_that_cannot_travel_as_is_are_refused() {
        let dir = tree("quotes", &[("a\"b", "x"), ("d/c\\", "y")]);
        for command in ["cat {a\"b}", "ls {d}"] {
            let err = prepare(command, &dir).unwrap_err();
            assert!(err.to_string().starts_with("cannot upload"), "{err}");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_path_or_an_empty_directory_is_a_usage_error() {
        let dir = tree("missing", &[]);
        fs::create_dir_all(dir.join("empty/sub")).unwrap();
        let err = prepare("cat {nope.txt}", &dir).unwrap_err();
        assert!(matches!(err, Failure::Usage(_)));
        assert!(
            err.to_string().starts_with("file not found: nope.txt"),
            "{err}"
        );
        let err = prepare("ls {empty}", &dir).unwrap_err();
        assert!(err.to_string().contains("holds no file"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
