//! The original's three views, with the original's shapes: this node, its
//! resources, and a resource's executions here. As in the original, a
//! resource's "commands" are this site's replies to its operations, oldest
//! first, which is why they say nothing about the other sites.

use cheops_model::{ReplyDocument, Timestamp};
use serde::Serialize;

use cheops_replicator::Documents;

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

/// This site's replies for resource `id`, oldest first.
fn ran_here<'a>(
    site: &'a str,
    docs: &'a Documents,
    id: &str,
) -> impl Iterator<Item = &'a ReplyDocument> + Clone + 'a {
    docs.replies_of(id).iter().filter(move |r| r.site == site)
}

fn last_run<'a>(ran: impl Iterator<Item = &'a ReplyDocument>) -> Timestamp {
    ran.last().map(|r| r.execution_time).unwrap_or_default()
}

pub fn node(site: &str, address: &str, docs: &Documents) -> NodeView {
    NodeView {
        name: site.to_owned(),
        state: "ONLINE".to_owned(),
        resources_count: docs.resources_on(site).count(),
        address: address.to_owned(),
    }
}

/// Every resource of this site, with what it ran of it.
pub fn resources(site: &str, docs: &Documents) -> Vec<ResourceSummary> {
    docs.resources_on(site)
        .map(|resource| {
            let runs = docs.runs(site, &resource.id);
            ResourceSummary {
                id: resource.id.clone(),
                name: resource.id.clone(),
                last_update: runs.last,
                commands_count: runs.count,
            }
        })
        .collect()
}

/// One resource of this site with its executions; `None` if it has none here.
pub fn resource(site: &str, docs: &Documents, id: &str) -> Option<ResourceView> {
    docs.resource_on(site, id)?;
    let ran = ran_here(site, docs, id);
    Some(ResourceView {
        id: id.to_owned(),
        name: id.to_owned(),
        last_update: last_run(ran.clone()),
        commands: ran
            .map(|r| CommandView {
                command: r.input.clone(),
                date: r.execution_time,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn docs() -> Documents {
        let docs: Vec<Value> = vec![
            json!({"_id": "_design/cheops", "views": {}}),
            json!({"_id": "a", "Type": "RESOURCE", "Locations": ["s1", "s2"], "Operations": null, "Config": {"ResolutionMatrix": null}}),
            json!({"_id": "b", "Type": "RESOURCE", "Locations": ["s2"], "Operations": null, "Config": {"ResolutionMatrix": null}}),
            json!({"_id": "r2", "Type": "REPLY", "Site": "s1", "ResourceId": "a", "RequestId": "2", "Status": "OK", "Input": "inc", "Output": "", "Locations": ["s1", "s2"], "ExecutionTime": "2024-01-01T00:00:02Z"}),
            json!({"_id": "r1", "Type": "REPLY", "Site": "s1", "ResourceId": "a", "RequestId": "1", "Status": "OK", "Input": "set", "Output": "", "Locations": ["s1", "s2"], "ExecutionTime": "2024-01-01T00:00:01Z"}),
            json!({"_id": "r3", "Type": "REPLY", "Site": "s2", "ResourceId": "a", "RequestId": "1", "Status": "OK", "Input": "set", "Output": "", "Locations": ["s1", "s2"], "ExecutionTime": "2024-01-01T00:00:05Z"}),
        ];
        let rows: Vec<Value> = docs.into_iter().map(|d| json!({"doc": d})).collect();
        Documents::from_all_docs(&json!({ "rows": rows }))
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
