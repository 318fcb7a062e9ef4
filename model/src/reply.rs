//! The reply document: what one site did with one operation.

use serde::{Deserialize, Serialize};

use crate::{Operation, Timestamp};

/// The `Type` of a reply document; reading any other value fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyKind {
    #[default]
    #[serde(rename = "REPLY")]
    Reply,
}

/// The outcome of an operation on a site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    #[default]
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "KO")]
    Ko,
    /// Only in `/exec` responses: the site did not answer in time. Never stored.
    #[serde(rename = "TIMEOUT")]
    Timeout,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Ko => "KO",
            Status::Timeout => "TIMEOUT",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reply as stored in CouchDB (id chosen by CouchDB) and streamed by `/exec`.
/// `Input` and `Output` sit at the top level, as the original writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplyDocument {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "_rev", skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The resource's locations, so that the reply replicates to all of them.
    #[serde(rename = "Locations", with = "crate::nullable")]
    pub locations: Vec<String>,
    /// The site that ran (or failed to run) the operation.
    #[serde(rename = "Site")]
    pub site: String,
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "ResourceId")]
    pub resource_id: String,
    #[serde(rename = "Status")]
    pub status: Status,
    /// The command as the user wrote it.
    #[serde(rename = "Input")]
    pub input: String,
    /// Standard output and error, combined.
    #[serde(rename = "Output")]
    pub output: String,
    /// Set when `Output` was cut to keep the reply under the database's
    /// document size limit: the length in bytes of the whole output. Absent
    /// otherwise, and unknown to the original, which ignores it.
    #[serde(rename = "OutputTruncated", skip_serializing_if = "Option::is_none")]
    pub output_truncated: Option<u64>,
    #[serde(rename = "ExecutionTime")]
    pub execution_time: Timestamp,
    #[serde(rename = "Type")]
    pub kind: ReplyKind,
    /// Set on the reply to a block's first operation when this site ran it
    /// to rebuild the resource's state from the whole block (CONSISTENCY.md,
    /// Rule 3): what the site ran before no longer counts. Absent otherwise;
    /// the original does not know it and ignores it.
    #[serde(rename = "Rebuild", skip_serializing_if = "std::ops::Not::not")]
    pub rebuild: bool,
    /// Set on every reply this port's daemon writes: its site runs an
    /// operation whose payload was pruned from the block by reading the
    /// operation's history document. The original never writes it, and an
    /// operation is pruned only when every location's replies carry it
    /// (CONSISTENCY.md, "Pruning").
    #[serde(rename = "ReadsHistory", skip_serializing_if = "std::ops::Not::not")]
    pub reads_history: bool,
    /// The operation whole (command and files), on the first reply of the
    /// site that accepted it: it stands for the operation's history
    /// document, and `/history` lists the operation from it
    /// (CONSISTENCY.md, "History documents"). Absent otherwise, and for an
    /// operation too large to carry (it has a history document); the
    /// original ignores it. Never streamed to callers.
    #[serde(rename = "Operation", skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}
