//! The history document: one operation of a resource, kept whole (command
//! and files) for as long as the resource exists, after the operation has
//! left the block or its payload has been pruned from it (CONSISTENCY.md,
//! "Pruning").
//!
//! Invariant: a history document is written once, by the site that accepted
//! the operation, in the same `_bulk_docs` request as the first revision of
//! the resource document that holds the operation, and never rewritten. Its
//! id is a function of the resource and the request alone, so it can never
//! be in conflict, and any site can find it without a query. It carries the
//! resource's locations, so that it replicates wherever the resource does.

use serde::{Deserialize, Serialize};

use crate::Operation;

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
}

impl HistoryDocument {
    /// The history document of `operation`, accepted for `resource`.
    pub fn new(resource: &str, locations: &[String], operation: &Operation) -> HistoryDocument {
        HistoryDocument {
            id: history_id(resource, &operation.request_id),
            rev: None,
            locations: locations.to_vec(),
            resource_id: resource.to_owned(),
            operation: operation.clone(),
            kind: HistoryKind::History,
        }
    }
}

/// The `_id` of the history document of `request` in `resource`. Resource
/// ids never hold a `:` (see `check_resource_id`), so no history id is ever
/// a resource's, and the first `:` after the prefix ends the resource id.
pub fn history_id(resource: &str, request: &str) -> String {
    format!("history:{resource}:{request}")
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
    }

    #[test]
    fn a_history_document_reads_back_as_written() {
        let operation = Operation {
            op_type: "add".into(),
            request_id: "r1".into(),
            ..Operation::default()
        };
        let doc = HistoryDocument::new("counter", &["site1".into()], &operation);
        let text = serde_json::to_string(&doc).expect("serializes");
        assert!(text.contains(r#""Type":"HISTORY""#), "{text}");
        let back: HistoryDocument = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, doc);
    }
}
