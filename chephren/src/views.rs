//! The shapes Chephren answers, computed from the database's documents.

use std::collections::BTreeMap;

use cheops_model::{DocumentKind, ReplyDocument, ResourceDocument, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    /// Always `ONLINE`: a node that answers is online.
    pub state: String,
    /// Resources that live on this site.
    pub resources_count: usize,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSummary {
    pub id: String,
    pub name: String,
    /// When this site last ran one of its operations.
    pub last_update: Timestamp,
    /// How many executions this site ran for it.
    pub commands_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    pub id: String,
    pub name: String,
    pub last_update: Timestamp,
    pub commands: Vec<CommandView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    pub command: String,
    pub date: Timestamp,
}

/// The documents of an `_all_docs?include_docs=true` answer.
pub fn documents_of(all_docs: &Value) -> Vec<Value> {
    all_docs["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row.get("doc").cloned())
        .collect()
}

fn resources_here<'a>(
    site: &'a str,
    docs: &'a [Value],
) -> impl Iterator<Item = ResourceDocument> + 'a {
    docs.iter()
        .filter(|d| kind(d).is_resource())
        .filter_map(|d| ResourceDocument::deserialize(d).ok())
        .filter(move |r| r.lives_on(site))
}

/// This site's replies by resource, oldest first.
fn replies_by_resource(site: &str, docs: &[Value]) -> BTreeMap<String, Vec<ReplyDocument>> {
    let mut by_resource: BTreeMap<String, Vec<ReplyDocument>> = BTreeMap::new();
    for doc in docs.iter().filter(|d| kind(d).is_reply()) {
        if let Ok(reply) = ReplyDocument::deserialize(doc) {
            if reply.site == site {
                by_resource
                    .entry(reply.resource_id.clone())
                    .or_default()
                    .push(reply);
            }
        }
    }
    for replies in by_resource.values_mut() {
        replies.sort_by_key(|r| r.execution_time);
    }
    by_resource
}

fn kind(doc: &Value) -> DocumentKind {
    DocumentKind::deserialize(doc).unwrap_or_default()
}

pub fn node(site: &str, address: &str, docs: &[Value]) -> NodeView {
    NodeView {
        name: site.to_owned(),
        state: "ONLINE".to_owned(),
        resources_count: resources_here(site, docs).count(),
        address: address.to_owned(),
    }
}

/// Every resource of this site, with what it ran of it.
pub fn resources(site: &str, docs: &[Value]) -> Vec<ResourceSummary> {
    let replies = replies_by_resource(site, docs);
    resources_here(site, docs)
        .map(|resource| {
            let ran = replies
                .get(&resource.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            ResourceSummary {
                name: resource.id.clone(),
                last_update: ran.last().map(|r| r.execution_time).unwrap_or_default(),
                commands_count: ran.len(),
                id: resource.id,
            }
        })
        .collect()
}

/// One resource of this site with its executions; `None` if it has none here.
pub fn resource(site: &str, docs: &[Value], id: &str) -> Option<ResourceView> {
    resources_here(site, docs).find(|r| r.id == id)?;
    let ran = replies_by_resource(site, docs)
        .remove(id)
        .unwrap_or_default();
    Some(ResourceView {
        id: id.to_owned(),
        name: id.to_owned(),
        last_update: ran.last().map(|r| r.execution_time).unwrap_or_default(),
        commands: ran
            .into_iter()
            .map(|r| CommandView {
                command: r.input,
                date: r.execution_time,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs() -> Vec<Value> {
        vec![
            json!({"_id": "_design/cheops", "views": {}}),
            json!({"_id": "a", "Type": "RESOURCE", "Locations": ["s1", "s2"], "Operations": null, "Config": {"ResolutionMatrix": null}}),
            json!({"_id": "b", "Type": "RESOURCE", "Locations": ["s2"], "Operations": null, "Config": {"ResolutionMatrix": null}}),
            json!({"_id": "r2", "Type": "REPLY", "Site": "s1", "ResourceId": "a", "RequestId": "2", "Status": "OK", "Input": "inc", "Output": "", "Locations": ["s1", "s2"], "ExecutionTime": "2024-01-01T00:00:02Z"}),
            json!({"_id": "r1", "Type": "REPLY", "Site": "s1", "ResourceId": "a", "RequestId": "1", "Status": "OK", "Input": "set", "Output": "", "Locations": ["s1", "s2"], "ExecutionTime": "2024-01-01T00:00:01Z"}),
            json!({"_id": "r3", "Type": "REPLY", "Site": "s2", "ResourceId": "a", "RequestId": "1", "Status": "OK", "Input": "set", "Output": "", "Locations": ["s1", "s2"], "ExecutionTime": "2024-01-01T00:00:05Z"}),
        ]
    }

    #[test]
    fn the_node_counts_only_its_resources() {
        let view = node("s1", "http://s1:8080", &docs());
        assert_eq!(
            serde_json::to_value(view).unwrap(),
            json!({"name": "s1", "state": "ONLINE", "resourcesCount": 1, "address": "http://s1:8080"})
        );
    }

    #[test]
    fn resources_count_this_sites_executions() {
        let list = resources("s1", &docs());
        assert_eq!(
            serde_json::to_value(list).unwrap(),
            json!([{"id": "a", "name": "a", "lastUpdate": "2024-01-01T00:00:02Z", "commandsCount": 2}])
        );
    }

    #[test]
    fn a_resource_lists_its_executions_oldest_first() {
        let view = resource("s1", &docs(), "a").unwrap();
        assert_eq!(
            serde_json::to_value(view).unwrap(),
            json!({"id": "a", "name": "a", "lastUpdate": "2024-01-01T00:00:02Z", "commands": [
                {"command": "set", "date": "2024-01-01T00:00:01Z"},
                {"command": "inc", "date": "2024-01-01T00:00:02Z"}
            ]})
        );
        assert!(
            resource("s1", &docs(), "b").is_none(),
            "b does not live on s1"
        );
    }
}
