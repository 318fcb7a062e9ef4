//! An operation: one user command on a resource, with the files it needs.

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
    pub command: ShellCommand,
    /// When the operation was received.
    #[serde(rename = "Time")]
    pub time: Timestamp,
    /// Set once every location has run the operation and its command and
    /// files have left the block: they are in its history document
    /// (`HistoryDocument`), and `Command` is empty. Absent otherwise, and
    /// unknown to the original (CONSISTENCY.md, "Pruning").
    #[serde(rename = "Pruned", skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
}

/// A shell command with the files it refers to as `{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShellCommand {
    #[serde(rename = "Command")]
    pub command: String,
    /// File name → content; written as base64, as Go writes `[]byte`.
    #[serde(rename = "Files", with = "base64_files")]
    pub files: BTreeMap<String, Vec<u8>>,
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
        let mut command = ShellCommand {
            command: "cat {a.txt}".into(),
            files: BTreeMap::new(),
        };
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
    fn bad_base64_names_the_file() {
        let err = serde_json::from_str::<ShellCommand>(r#"{"Command":"x","Files":{"f":"%%"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"f\""), "{err}");
    }
}
