//! Files attached to an operation, as the client and the node both see
//! them: which names are accepted, and the `{…}` groups of a command. The
//! client rewrites `{local/path}` into `{name}` of an upload, the node's
//! shell backend rewrites `{name}` into a path: both must cut a command into
//! the same groups, so both use [`rewrite_groups`].

use std::collections::HashSet;
use std::fmt;

/// Why an attached file's name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedFileName {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for RefusedFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused file name {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for RefusedFileName {}

/// Accepts only plain relative paths (`a.txt`, `dir/sub/a.txt`): every
/// component a real name, none empty, `.` or `..`. Written under the
/// command's fresh directory, such a name cannot land outside it, and each
/// file has a single spelling for `{name}` to refer to.
pub fn check_file_name(name: &str) -> Result<(), RefusedFileName> {
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
        Some(reason) => Err(RefusedFileName {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// Two attached files of which one is named as a directory of the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedFileNames {
    pub file: String,
    pub nested: String,
}

impl fmt::Display for NestedFileNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attached files {:?} and {:?} collide: {:?} cannot be both a file and a directory",
            self.file, self.nested, self.file
        )
    }
}

impl std::error::Error for NestedFileNames {}

/// Refuses a set of names where one is a directory of another (`a` and
/// `a/b`): both cannot be written, so such an operation could only fail on
/// every site. Each name must have passed [`check_file_name`].
pub fn check_file_names<'a>(
    names: impl IntoIterator<Item = &'a str> + Clone,
) -> Result<(), NestedFileNames> {
    let all: HashSet<&str> = names.clone().into_iter().collect();
    for name in names {
        if let Some(dir) = name
            .match_indices('/')
            .map(|(end, _)| &name[..end])
            .find(|dir| all.contains(dir))
        {
            return Err(NestedFileNames {
                file: dir.to_owned(),
                nested: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// A `{…}` group of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    /// What stands between the braces.
    pub text: &'a str,
    /// Whether a `$` stands right before the `{` (`${HOME}`).
    pub after_dollar: bool,
}

/// Rewrites the `{…}` groups of `command`: `replace` returns the text that
/// stands for a group, braces included, or `None` to leave it as written.
///
/// A group runs from a `{` to the next `}`. When one is left as written,
/// the scan resumes just after its `{`, so `{{a}}` still finds `{a}`; text
/// a replacement produced is never scanned again.
pub fn rewrite_groups<'a, E>(
    command: &'a str,
    mut replace: impl FnMut(Group<'a>) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(command.len());
    let mut at = 0;
    while let Some(offset) = command[at..].find('{') {
        let open = at + offset;
        out.push_str(&command[at..open]);
        let Some(length) = command[open + 1..].find('}') else {
            at = open;
            break;
        };
        let group = Group {
            text: &command[open + 1..open + 1 + length],
            after_dollar: command[..open].ends_with('$'),
        };
        match replace(group)? {
            Some(replacement) => {
                out.push_str(&replacement);
                at = open + 1 + length + 1;
            }
            None => {
                out.push('{');
                at = open + 1;
            }
        }
    }
    out.push_str(&command[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(command: &str) -> String {
        rewrite_groups(command, |group| {
            Ok::<_, ()>(
                (!group.after_dollar
                    && !group.text.is_empty()
                    && group.text.chars().all(|c| c.is_ascii_lowercase()))
                .then(|| format!("<{}>", group.text.to_uppercase())),
            )
        })
        .unwrap()
    }

    #[test]
    fn groups_are_found_and_left_ones_resume_after_their_brace() {
        for (command, expected) in [
            ("cat {a} {b}", "cat <A> <B>"),
            ("{{a}}", "{<A>}"),
            ("${home} {x y} {}", "${home} {x y} {}"),
            ("a {b", "a {b"),
            ("a} {", "a} {"),
            ("é{a}é", "é<A>é"),
            ("{a}{b}", "<A><B>"),
        ] {
            assert_eq!(upper(command), expected, "{command}");
        }
    }

    #[test]
    fn a_replacement_is_not_scanned_again() {
        let out = rewrite_groups("{a}", |_| Ok::<_, ()>(Some("{a}".to_owned()))).unwrap();
        assert_eq!(out, "{a}");
    }

    #[test]
    fn the_first_error_stops_the_rewrite() {
        let seen = rewrite_groups("{a} {b}", |group| Err::<Option<String>, _>(group.text));
        assert_eq!(seen, Err("a"));
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
            check_file_name(name).unwrap();
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
            let err = check_file_name(name).unwrap_err().to_string();
            assert!(err.starts_with("refused file name "), "{name:?}: {err}");
            assert!(err.contains(reason), "{name:?}: {err}");
        }
    }
}
