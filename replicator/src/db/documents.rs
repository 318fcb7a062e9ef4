//! The local database as the web UI reads it: an `_all_docs` answer sorted,
//! once per request, into resources and replies, so that no HTTP layer reads
//! CouchDB rows. Design documents and documents Cheops did not write are
//! left out; so is a document of a known type that does not read as one (it
//! cannot be shown faithfully).

use std::collections::BTreeMap;

use cheops_model::{DocumentKind, ReplyDocument, ResourceDocument};
use serde::Deserialize;
use serde_json::Value;

/// Every resource and reply of the database.
#[derive(Debug, Default)]
pub struct Documents {
    /// Resources by id, with their `_conflicts` when the answer held them.
    pub resources: Vec<ResourceDocument>,
    /// Replies by resource id, oldest execution first.
    pub replies: BTreeMap<String, Vec<ReplyDocument>>,
}

impl Documents {
    /// Resources sorted by id, and replies grouped by resource, oldest
    /// first.
    pub fn new(
        mut resources: Vec<ResourceDocument>,
        replies: impl IntoIterator<Item = ReplyDocument>,
    ) -> Documents {
        resources.sort_by(|a, b| a.id.cmp(&b.id));
        let mut grouped: BTreeMap<String, Vec<ReplyDocument>> = BTreeMap::new();
        for reply in replies {
            grouped
                .entry(reply.resource_id.clone())
                .or_default()
                .push(reply);
        }
        for replies in grouped.values_mut() {
            replies.sort_by_key(|r| r.execution_time);
        }
        Documents {
            resources,
            replies: grouped,
        }
    }

    /// Reads an `_all_docs?include_docs=true&conflicts=true` answer.
    pub fn from_all_docs(all_docs: &Value) -> Documents {
        let mut resources = Vec::new();
        let mut replies = Vec::new();
        let docs = all_docs["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row.get("doc"));
        for doc in docs {
            let kind = DocumentKind::deserialize(doc).unwrap_or_default();
            if kind.is_resource() {
                resources.extend(ResourceDocument::deserialize(doc).ok());
            } else if kind.is_reply() {
                replies.extend(ReplyDocument::deserialize(doc).ok());
            }
        }
        Documents::new(resources, replies)
    }

    /// The resources that live on `site`.
    pub fn resources_on<'a>(
        &'a self,
        site: &'a str,
    ) -> impl Iterator<Item = &'a ResourceDocument> + 'a {
        self.resources.iter().filter(move |r| r.lives_on(site))
    }

    /// Resource `id`, if it lives on `site`.
    pub fn resource_on(&self, site: &str, id: &str) -> Option<&ResourceDocument> {
        self.resources
            .iter()
            .find(|r| r.id == id && r.lives_on(site))
    }

    /// Every reply of resource `id`, from any site, oldest first.
    pub fn replies_of(&self, id: &str) -> &[ReplyDocument] {
        self.replies.get(id).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_cheops_documents_that_read_are_kept() {
        let all = json!({"rows": [
            {"id": "_design/cheops", "doc": {"_id": "_design/cheops", "views": {}}},
            {"id": "b", "doc": {"_id": "b", "Type": "RESOURCE", "Locations": ["s1"], "Operations": null, "Config": {"ResolutionMatrix": null}}},
            {"id": "a", "doc": {"_id": "a", "Type": "RESOURCE", "Locations": ["s2"], "Operations": null, "Config": {"ResolutionMatrix": null}, "_conflicts": ["2-x"]}},
            {"id": "bad", "doc": {"_id": "bad", "Type": "RESOURCE", "Locations": "not a list"}},
            {"id": "r", "doc": {"_id": "r", "Type": "REPLY", "Site": "s1", "ResourceId": "b", "RequestId": "1", "Status": "OK"}},
            {"id": "other", "doc": {"_id": "other", "hello": "world"}},
            {"id": "gone", "value": {"deleted": true}}
        ]});
        let docs = Documents::from_all_docs(&all);
        let ids: Vec<&str> = docs.resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "sorted by id, the unreadable one left out");
        assert_eq!(docs.resources[0].conflicts, ["2-x"]);
        assert_eq!(docs.replies_of("b").len(), 1);
        assert!(docs.replies_of("a").is_empty());
        assert!(docs.resource_on("s1", "b").is_some());
        assert!(docs.resource_on("s1", "a").is_none(), "a lives on s2 only");
    }
}
