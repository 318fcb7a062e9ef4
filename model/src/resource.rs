//! The resource document: where a resource lives, its current block of
//! operations and its configuration. Its CouchDB id is the resource id.

use serde::{Deserialize, Serialize};

use crate::{Operation, ResourceConfig};

/// The `Type` of a resource document; reading any other value fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceKind {
    #[default]
    #[serde(rename = "RESOURCE")]
    Resource,
}

/// A resource as stored in CouchDB.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceDocument {
    #[serde(rename = "_id", skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "_rev", skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// Losing revisions, present only when read with `conflicts=true`.
    #[serde(rename = "_conflicts", skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    #[serde(rename = "_deleted", skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The sites holding the resource; fixed at creation.
    #[serde(rename = "Locations", with = "crate::nullable")]
    pub locations: Vec<String>,
    /// The current block: the operations that rebuild the resource's state.
    #[serde(rename = "Operations", with = "crate::nullable")]
    pub operations: Vec<Operation>,
    #[serde(rename = "Config")]
    pub config: ResourceConfig,
    #[serde(rename = "Type")]
    pub kind: ResourceKind,
}

impl ResourceDocument {
    /// Whether `site` is one of the resource's locations.
    pub fn lives_on(&self, site: &str) -> bool {
        self.locations.iter().any(|l| l == site)
    }
}

/// Just the `Type` of any Cheops document, to tell them apart before reading
/// the rest (design documents and foreign documents have none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DocumentKind {
    #[serde(rename = "Type", default)]
    pub kind: Option<String>,
}

impl DocumentKind {
    pub fn is_resource(&self) -> bool {
        self.kind.as_deref() == Some("RESOURCE")
    }

    pub fn is_reply(&self) -> bool {
        self.kind.as_deref() == Some("REPLY")
    }

    pub fn is_history(&self) -> bool {
        self.kind.as_deref() == Some("HISTORY")
    }
}
