//! The hooks file (`--hooks FILE`): a JSON array of hooks, each naming the
//! events it wants, the resources they concern, where to POST them and the
//! secret that signs them. A file that does not read is refused whole, with
//! the line at fault: a node never runs half of what its operator wrote.

use std::collections::BTreeSet;
use std::path::Path;

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use reqwest::Url;
use serde::Deserialize;

use crate::hooks::signature::Secret;
use crate::node::feed::EventType;
use crate::ReplicatorError;

/// One hook: where some events of some resources are delivered.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Its name in logs, metrics, receipts and its place in the deliveries:
    /// the same on every node that carries it.
    pub name: String,
    pub url: Url,
    pub secret: Secret,
    pub events: BTreeSet<EventType>,
    /// Which resources: their ids as a pattern where `*` stands for any text.
    pub resources: Pattern,
}

impl Hook {
    /// Whether `kind` events of `resource` go to this hook.
    pub fn wants(&self, kind: EventType, resource: &str) -> bool {
        self.events.contains(&kind) && self.resources.matches(resource)
    }

    /// Whether `other` delivers the same events to the same place (its
    /// secret aside).
    pub fn same_deliveries(&self, other: &Hook) -> bool {
        self.url == other.url && self.events == other.events && self.resources == other.resources
    }
}

/// A resource id pattern: `*` stands for any text, anything else for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn matches(&self, id: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = id.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            // No `*`: the whole id.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// A hook as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default)]
    name: Option<String>,
    url: String,
    secret: String,
    events: Vec<EventType>,
    #[serde(default)]
    resources: Option<String>,
}

impl TryFrom<Written> for Hook {
    type Error = String;

    fn try_from(written: Written) -> Result<Self, String> {
        let url = Url::parse(&written.url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url: {} is not http or https", url.scheme()));
        }
        let secret = Secret::parse(&written.secret)?;
        if written.events.is_empty() {
            return Err("events: name at least one event".into());
        }
        let name = match written.name {
            Some(name) => check_name(name)?,
            // The URL's path may be a credential: the name never shows it.
            None => {
                let digest = Blake2b::<U16>::digest(url.as_str().as_bytes());
                let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                format!("hook-{hex}")
            }
        };
        Ok(Hook {
            name,
            url,
            secret,
            events: written.events.into_iter().collect(),
            resources: Pattern(written.resources.unwrap_or_else(|| "*".into())),
        })
    }
}

/// A name of letters, digits, `.`, `_` and `-`: it goes into document
/// ids, metric labels and file keys as it is.
fn check_name(name: String) -> Result<String, String> {
    let fits = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fits {
        Ok(name)
    } else {
        Err(format!(
            "name {name:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// Reads the hooks of `text`, or says what is wrong and on which line.
pub fn parse(text: &str) -> Result<Vec<Hook>, String> {
    let written: Vec<Written> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let lines = element_lines(text);
    let mut hooks = Vec::with_capacity(written.len());
    let mut names = BTreeSet::new();
    for (at, written) in written.into_iter().enumerate() {
        let line = lines.get(at).copied().unwrap_or_default();
        let hook = Hook::try_from(written).map_err(|e| format!("the hook at line {line}: {e}"))?;
        if !names.insert(hook.name.clone()) {
            return Err(format!(
                "the hook at line {line}: another hook is named {:?}",
                hook.name
            ));
        }
        hooks.push(hook);
    }
    Ok(hooks)
}

/// The line (from 1) where each element of the JSON array `text` starts;
/// `text` is known to read.
fn element_lines(text: &str) -> Vec<usize> {
    let (mut lines, mut line, mut depth) = (Vec::new(), 1, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                if depth == 1 {
                    lines.push(line);
                }
                depth += 1;
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    lines
}

/// Reads the hooks file at `path`.
pub fn load(path: &Path) -> Result<Vec<Hook>, ReplicatorError> {
    let refused = |reason: String| ReplicatorError::Hooks {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| refused(e.to_string()))?;
    parse(&text).map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_file_reads_with_its_defaults() {
        let text = format!(
            r#"[
  {{"name": "deploys", "events": ["operation-complete", "reply"],
    "url": "https://example.org/hook", "secret": "{SECRET}", "resources": "deploy-*"}},
  {{"events": ["operation"], "url": "http://127.0.0.1:9/secret-path", "secret": "{SECRET}"}}
]"#
        );
        let hooks = parse(&text).unwrap();
        assert_eq!(hooks[0].name, "deploys");
        assert!(hooks[0].wants(EventType::Reply, "deploy-web"));
        assert!(!hooks[0].wants(EventType::Operation, "deploy-web"));
        assert!(!hooks[0].wants(EventType::Reply, "web"));
        assert!(hooks[1].name.starts_with("hook-"));
        assert!(!hooks[1].name.contains("secret"));
        assert!(hooks[1].wants(EventType::Operation, "anything"));
    }

    #[test]
    fn a_bad_file_is_refused_with_the_line_at_fault() {
        let cases = [
            (format!("[\n{{\"events\": [\"reply\"],\n \"url\": \"ftp://x\", \"secret\": \"{SECRET}\"}}\n]"), "line 2", "not http"),
            (format!("[\n{{\"events\": [\"replied\"], \"url\": \"http://x\", \"secret\": \"{SECRET}\"}}]"), "line 2", "unknown variant"),
            ("[\n\n{\"events\": [\"reply\"], \"url\": \"http://x\", \"secret\": \"abc\"}]".to_owned(), "line 3", "whsec_"),
            (format!("[{{\"events\": [], \"url\": \"http://x\", \"secret\": \"{SECRET}\"}}]"), "line 1", "at least one"),
            (format!("[{{\"events\": [\"reply\"], \"url\": \"http://x\", \"secret\": \"{SECRET}\",\n \"retries\": 3}}]"), "line 2", "unknown field"),
            (format!("[{{\"name\": \"a b\", \"events\": [\"reply\"], \"url\": \"http://x\", \"secret\": \"{SECRET}\"}}]"), "line 1", "letters"),
            ("[{".to_owned(), "line 1", "EOF"),
        ];
        for (text, line, what) in cases {
            let error = parse(&text).map(|_| ()).unwrap_err();
            assert!(
                error.contains(line) && error.contains(what),
                "{text}: {error}"
            );
        }
        let twice = format!(
            r#"[{{"name": "a", "events": ["reply"], "url": "http://x", "secret": "{SECRET}"}},
                {{"name": "a", "events": ["reply"], "url": "http://y", "secret": "{SECRET}"}}]"#
        );
        let error = parse(&twice).map(|_| ()).unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("another hook"),
            "{error}"
        );
    }

    #[test]
    fn patterns_match_as_globs() {
        let cases = [
            ("*", "anything", true),
            ("deploy-*", "deploy-web", true),
            ("deploy-*", "deploy-", true),
            ("deploy-*", "web-deploy", false),
            ("*-db", "users-db", true),
            ("*-db", "-d", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, id, expected) in cases {
            assert_eq!(
                Pattern(pattern.into()).matches(id),
                expected,
                "{pattern} on {id}"
            );
        }
    }
}
