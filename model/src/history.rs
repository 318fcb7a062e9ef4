//! The history document: one operation of a resource, kept whole (command
//! and files) for as long as the resource exists, when no reply carries it:
//! it is too large for that, or it left the block before the reply that
//! carries it was known (CONSISTENCY.md, "History documents").
//!
//! Invariant: its id is a function of the resource and the request alone,
//! so any site can find it without a query; its body is a function of the
//! operation alone and it is written with a revision derived from that
//! body, so that every site writing it writes the same revision and it is
//! never in conflict. It carries the resource's locations, so that it
//! replicates wherever the resource does. Older nodes wrote one for every
//! operation, with the revision that accepted it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Operation, ReplyDocument, Status, Timestamp};

/// The `Type` of a history document; reading any other value fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryKind {
    #[default]
    #[serde(rename = "HISTORY")]
    History,
}

/// One operation of a resource, as it was accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryDocument {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_rev", skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The resource's locations, so that the document replicates to all.
    #[serde(rename = "Locations", with = "crate::nullable")]
    pub locations: Vec<String>,
    #[serde(rename = "ResourceId")]
    pub resource_id: String,
    /// The operation whole: never pruned.
    #[serde(rename = "Operation")]
    pub operation: Operation,
    #[serde(rename = "Type")]
    pub kind: HistoryKind,
    /// The site that accepted the operation (absent from older documents).
    #[serde(rename = "Site", skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

impl HistoryDocument {
    /// The history document of `operation` of `resource`, whose `Site` is
    /// the operation's.
    pub fn new(resource: &str, locations: &[String], operation: &Operation) -> HistoryDocument {
        HistoryDocument {
            id: history_id(resource, &operation.request_id),
            rev: None,
            locations: locations.to_vec(),
            resource_id: resource.to_owned(),
            operation: operation.clone(),
            kind: HistoryKind::History,
            site: (!operation.site.is_empty()).then(|| operation.site.clone()),
        }
    }
}

/// What every history document's `_id` starts with.
pub const HISTORY_PREFIX: &str = "history:";

/// The `_id` of the history document of `request` in `resource`. Resource
/// ids never hold a `:` (see `check_resource_id`), so no history id is ever
/// a resource's, and the first `:` after the prefix ends the resource id.
pub fn history_id(resource: &str, request: &str) -> String {
    format!("{HISTORY_PREFIX}{resource}:{request}")
}

/// The resource and request a history document's id names: the inverse of
/// [`history_id`] (for a tombstone, which holds nothing else).
pub fn history_of(id: &str) -> Option<(&str, &str)> {
    id.strip_prefix(HISTORY_PREFIX)?.split_once(':')
}

/// One line of `GET /history/{id}`: an operation ever accepted for a
/// resource, with what every site replied to it. Its file contents are left
/// out unless asked for: a history is read to understand what happened, and
/// files may be large.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryEntry {
    #[serde(rename = "Type")]
    pub op_type: String,
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// When the operation was accepted.
    #[serde(rename = "Time")]
    pub time: Timestamp,
    /// The command as the user wrote it; empty when only a pruned copy of
    /// the operation is left on this node.
    #[serde(rename = "Command")]
    pub command: String,
    /// The attached files, by name.
    #[serde(rename = "Files")]
    pub files: Vec<HistoryFile>,
    /// The operation is known only by a pruned copy: its command and files
    /// are not on this node (yet).
    #[serde(rename = "Pruned", skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    /// The operation is still in the resource's current block.
    #[serde(rename = "InBlock")]
    pub in_block: bool,
    /// Every reply stored for the operation, oldest first: one per site
    /// that ran it, more for a site that ran it again.
    #[serde(rename = "Replies")]
    pub replies: Vec<HistoryReply>,
}

/// An attached file of a [`HistoryEntry`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryFile {
    #[serde(rename = "Name")]
    pub name: String,
    /// Its length in bytes.
    #[serde(rename = "Size")]
    pub size: u64,
    /// Its content in base64, only when asked for.
    #[serde(rename = "Content", skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One site's reply in a [`HistoryEntry`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryReply {
    #[serde(rename = "Site")]
    pub site: String,
    #[serde(rename = "Status")]
    pub status: Status,
    #[serde(rename = "ExecutionTime")]
    pub execution_time: Timestamp,
    #[serde(rename = "Output")]
    pub output: String,
    /// As in the reply document: the whole output's length when cut.
    #[serde(rename = "OutputTruncated", skip_serializing_if = "Option::is_none")]
    pub output_truncated: Option<u64>,
}

impl HistoryEntry {
    /// `operation` with `replies` (any order; kept oldest first), its file
    /// contents included only when `with_files`.
    pub fn new(
        operation: &Operation,
        in_block: bool,
        with_files: bool,
        replies: &[ReplyDocument],
    ) -> HistoryEntry {
        let mut replies: Vec<HistoryReply> = replies
            .iter()
            .map(|reply| HistoryReply {
                site: reply.site.clone(),
                status: reply.status,
                execution_time: reply.execution_time,
                output: reply.output.clone(),
                output_truncated: reply.output_truncated,
            })
            .collect();
        replies.sort_by(|a, b| (a.execution_time, &a.site).cmp(&(b.execution_time, &b.site)));
        HistoryEntry {
            op_type: operation.op_type.clone(),
            request_id: operation.request_id.clone(),
            time: operation.time,
            command: operation.command.describe(),
            files: operation
                .command
                .files
                .iter()
                .map(|(name, content)| HistoryFile {
                    name: name.clone(),
                    size: content.len() as u64,
                    content: with_files.then(|| STANDARD.encode(content)),
                })
                .collect(),
            pruned: operation.pruned,
            in_block,
            replies,
        }
    }
}

/// The order of a history: oldest first by the operation's `Time` (as an
/// instant, whatever its offset), ties broken by `RequestId`.
pub fn history_order(operation: &Operation) -> (Timestamp, &str) {
    (operation.time, operation.request_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_resource_id;

    #[test]
    fn no_history_id_is_a_resource_id() {
        let id = history_id("counter", "3f1c9a0e5b7d4c2a8e6f1b3d5a7c9e0f");
        assert_eq!(id, "history:counter:3f1c9a0e5b7d4c2a8e6f1b3d5a7c9e0f");
        assert!(check_resource_id(&id).is_err());
        assert_eq!(
            history_of(&id),
            Some(("counter", "3f1c9a0e5b7d4c2a8e6f1b3d5a7c9e0f"))
        );
        assert_eq!(history_of("reply-site1-x"), None);
    }

    #[test]
    fn a_history_document_reads_back_as_written() {
        let operation = Operation {
            op_type: "add".into(),
            request_id: "r1".into(),
            site: "site1".into(),
            ..Operation::default()
        };
        let doc = HistoryDocument::new("counter", &["site1".into()], &operation);
        let text = serde_json::to_string(&doc).expect("serializes");
        assert!(text.contains(r#""Type":"HISTORY""#), "{text}");
        let back: HistoryDocument = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, doc);
    }

    #[test]
    fn an_entry_gives_file_sizes_and_contents_only_when_asked() {
        let mut operation = Operation {
            op_type: "add".into(),
            request_id: "r1".into(),
            ..Operation::default()
        };
        operation.command.command = "cat {a}".into();
        operation
            .command
            .files
            .insert("a".into(), b"hello".to_vec());
        let late = ReplyDocument {
            site: "s2".into(),
            execution_time: "2024-01-01T00:00:02Z".parse().unwrap(),
            ..ReplyDocument::default()
        };
        let early = ReplyDocument {
            site: "s1".into(),
            status: Status::Ko,
            execution_time: "2024-01-01T00:00:01Z".parse().unwrap(),
            output_truncated: Some(9),
            ..ReplyDocument::default()
        };
        let entry = HistoryEntry::new(&operation, true, false, &[late.clone(), early.clone()]);
        let text = serde_json::to_string(&entry).unwrap();
        assert!(
            text.contains(r#""Files":[{"Name":"a","Size":5}]"#),
            "{text}"
        );
        assert!(!text.contains("Pruned"), "{text}");
        let sites: Vec<&str> = entry.replies.iter().map(|r| r.site.as_str()).collect();
        assert_eq!(sites, ["s1", "s2"], "oldest reply first");
        assert_eq!(entry.replies[0].output_truncated, Some(9));
        let with = HistoryEntry::new(&operation, true, true, &[late, early]);
        assert_eq!(with.files[0].content.as_deref(), Some("aGVsbG8="));
        let back: HistoryEntry = serde_json::from_str(&text).unwrap();
        assert_eq!(back, entry);
    }
}
