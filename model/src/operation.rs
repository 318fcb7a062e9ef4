//! An operation: one user command on a resource (a shell command, an HTTP
//! request or a Redis command), with the files it needs.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Timestamp;

/// One operation of a resource's block, stored with everything needed to
/// run it again anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Operation {
    /// The user's tag (`set`, `inc`, …) that the resolution matrix refers to.
    #[serde(rename = "Type")]
    pub op_type: String,
    /// Unique per operation; replies refer to it.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "Command")]
    pub command: Command,
    /// When the operation was received.
    #[serde(rename = "Time")]
    pub time: Timestamp,
    /// Set once every location has run the operation and its command and
    /// files have left the block: they are in the reply that carries the
    /// operation or in its history document, and `Command` is empty.
    /// Absent otherwise, and unknown to the original (CONSISTENCY.md,
    /// "Pruning").
    #[serde(rename = "Pruned", skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    /// The site that accepted the operation: its first reply carries the
    /// operation whole (CONSISTENCY.md, "History documents"). Empty once
    /// pruned, in operations the original wrote, and after a Go node
    /// rewrote the block.
    #[serde(rename = "Site", skip_serializing_if = "String::is_empty")]
    pub site: String,
}

/// What an operation runs, in the original's shape (`Command` and `Files`)
/// with what the original does not know: `Kind`, and the HTTP request or
/// Redis command of an operation that is not a shell command. For those,
/// `Command` holds [`FOREIGN_SHELL`], which a Go node runs and answers KO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Command {
    #[serde(rename = "Command")]
    pub command: String,
    /// File name → content; written as base64, as Go writes `[]byte`.
    #[serde(rename = "Files", with = "base64_files")]
    pub files: BTreeMap<String, Vec<u8>>,
    #[serde(rename = "Kind", skip_serializing_if = "Kind::is_shell")]
    pub kind: Kind,
    /// The request of an `http` operation.
    #[serde(rename = "Http", skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequest>,
    /// The arguments of a `redis` operation, the command's name first.
    #[serde(rename = "Redis", skip_serializing_if = "Vec::is_empty")]
    pub redis: Vec<String>,
}

/// The shell line stored as `Command` for an operation of another kind:
/// what a node that runs only shell commands (the Go original) runs.
pub const FOREIGN_SHELL: &str =
    "echo 'cheops: this operation is not a shell command; this node runs shell commands only' >&2; exit 1";

/// Which backend runs an operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Shell,
    Http,
    Redis,
    /// A kind this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl Kind {
    pub fn is_shell(&self) -> bool {
        *self == Kind::Shell
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Http => "http",
            Kind::Redis => "redis",
            Kind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP request, sent by each site to its own application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpRequest {
    #[serde(rename = "Method")]
    pub method: String,
    /// The path below the site's application URL, with its query string.
    #[serde(rename = "Path")]
    pub path: String,
    /// Header names and values, in order.
    #[serde(rename = "Headers")]
    pub headers: Vec<(String, String)>,
    /// Written as base64.
    #[serde(rename = "Body", with = "base64_bytes")]
    pub body: Vec<u8>,
}

impl Command {
    /// A shell command.
    pub fn shell(command: impl Into<String>) -> Command {
        Command {
            command: command.into(),
            ..Command::default()
        }
    }

    /// An HTTP request.
    pub fn http(request: HttpRequest) -> Command {
        Command {
            command: FOREIGN_SHELL.into(),
            kind: Kind::Http,
            http: Some(request),
            ..Command::default()
        }
    }

    /// A Redis command, its name first.
    pub fn redis(args: Vec<String>) -> Command {
        Command {
            command: FOREIGN_SHELL.into(),
            kind: Kind::Redis,
            redis: args,
            ..Command::default()
        }
    }

    /// The command as a person reads it: the shell line, `METHOD PATH`,
    /// or the Redis arguments (quoted when they hold spaces).
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Shell | Kind::Unknown => self.command.clone(),
            Kind::Http => self
                .http
                .as_ref()
                .map(|r| format!("{} {}", r.method, r.path))
                .unwrap_or_default(),
            Kind::Redis => self
                .redis
                .iter()
                .map(|arg| {
                    if arg.is_empty() || arg.contains(char::is_whitespace) || arg.contains('"') {
                        format!("{arg:?}")
                    } else {
                        arg.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Whether it holds nothing to run (a pruned operation's).
    pub fn is_empty(&self) -> bool {
        self.command.trim().is_empty() && self.http.is_none() && self.redis.is_empty()
    }
}

/// `Body` on the wire: base64, empty for none.
mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        STANDARD.encode(bytes).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let encoded = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        STANDARD
            .decode(encoded)
            .map_err(|e| serde::de::Error::custom(format!("Body is not base64: {e}")))
    }
}

/// `Files` on the wire: `null` or an object of base64 strings.
mod base64_files {
    use super::*;

    pub fn serialize<S: Serializer>(
        files: &BTreeMap<String, Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if files.is_empty() {
            return serializer.serialize_none();
        }
        let encoded: BTreeMap<&str, String> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), STANDARD.encode(bytes)))
            .collect();
        encoded.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let encoded = Option::<BTreeMap<String, Option<String>>>::deserialize(deserializer)?;
        encoded
            .unwrap_or_default()
            .into_iter()
            .map(|(name, content)| {
                let bytes = STANDARD.decode(content.unwrap_or_default()).map_err(|e| {
                    serde::de::Error::custom(format!("file {name:?} is not base64: {e}"))
                })?;
                Ok((name, bytes))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_base64_and_empty_is_null() {
        let mut command = Command::shell("cat {a.txt}");
        assert_eq!(
            serde_json::to_string(&command).unwrap(),
            r#"{"Command":"cat {a.txt}","Files":null}"#
        );
        command
            .files
            .insert("a.txt".into(), b"content <&> 1".to_vec());
        assert_eq!(
            serde_json::to_string(&command).unwrap(),
            r#"{"Command":"cat {a.txt}","Files":{"a.txt":"Y29udGVudCA8Jj4gMQ=="}}"#
        );
    }

    #[test]
    fn other_kinds_keep_the_originals_shape_and_fail_on_a_shell() {
        let http = Command::http(HttpRequest {
            method: "POST".into(),
            path: "/api/modify?x=1".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"foo":"bar"}"#.to_vec(),
        });
        let text = serde_json::to_string(&http).unwrap();
        assert!(text.starts_with(r#"{"Command":"echo 'cheops: "#), "{text}");
        assert!(text.contains(r#""Kind":"http""#), "{text}");
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), http);
        assert_eq!(http.describe(), "POST /api/modify?x=1");
        let redis = Command::redis(vec!["LSET".into(), "my list".into(), "23".into()]);
        let text = serde_json::to_string(&redis).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), redis);
        assert_eq!(redis.describe(), r#"LSET "my list" 23"#);
        // A kind from a newer version reads, as one no backend runs.
        let newer: Command =
            serde_json::from_str(r#"{"Command":"x","Files":null,"Kind":"grpc"}"#).unwrap();
        assert_eq!(newer.kind, Kind::Unknown);
        // A shell command is written as the original writes it.
        assert_eq!(
            serde_json::to_string(&Command::shell("true")).unwrap(),
            r#"{"Command":"true","Files":null}"#
        );
    }

    #[test]
    fn bad_base64_names_the_file() {
        let err = serde_json::from_str::<Command>(r#"{"Command":"x","Files":{"f":"%%"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"f\""), "{err}");
    }
}
