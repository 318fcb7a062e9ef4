//! A resource as an operator watches it converge: its current block (the
//! operations that rebuild its state, in order) crossed with its locations,
//! each cell saying what that site did with that operation, as far as this
//! node knows. Replies replicate to every location, so any node of the
//! resource sees every site's replies once the network lets them through.

use cheops_model::{Operation, ReplyDocument, ResourceDocument, Status, Timestamp};
use serde::Serialize;

use cheops_replicator::Documents;

/// What a site did with an operation. A site that has not replied is
/// `PENDING`, whether it is slow, offline or about to answer: `TIMEOUT` is
/// what an `/exec` caller saw, not something a site did, and is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CellStatus {
    Ok,
    Ko,
    Pending,
}

/// One resource's block and reply matrix (`GET /api/block/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockView {
    pub id: String,
    /// The sites of the resource, in the order they were given: the matrix's
    /// columns.
    pub locations: Vec<String>,
    /// The block, in order: the matrix's rows.
    pub operations: Vec<OperationView>,
    /// Losing revisions CouchDB keeps beside the winning one. Every site
    /// merges them the same way, so they last only until a site has done so.
    pub conflicts: Vec<String>,
    /// No conflict and a reply from every location for every operation.
    pub converged: bool,
    /// The latest time of the block's operations and of their replies.
    pub last_update: Timestamp,
    pub resolution_matrix: Vec<ResolutionView>,
}

/// One operation of a block with each location's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationView {
    pub request_id: String,
    #[serde(rename = "type")]
    pub op_type: String,
    pub command: String,
    /// Names of the attached files (their contents stay in the database).
    pub files: Vec<String>,
    pub time: Timestamp,
    /// One cell per location, in the order of `locations`.
    pub replies: Vec<CellView>,
}

/// What one site did with one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellView {
    pub site: String,
    pub status: CellStatus,
    /// The latest run's output; `None` while pending.
    pub output: Option<String>,
    /// When the latest run ended; `None` while pending.
    pub execution_time: Option<Timestamp>,
    /// How many times the site ran it: a block with a gap in its replies may
    /// be re-run whole (take-both-keep-order).
    pub runs: usize,
}

/// One entry of the resolution matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolutionView {
    pub before: String,
    pub after: String,
    pub result: String,
}

/// One line of the resource list (`GET /api/blocks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockSummary {
    pub id: String,
    pub locations: Vec<String>,
    /// How many operations the block holds.
    pub operations_count: usize,
    /// The last operation of the block: what the resource was last told.
    pub last_command: Option<String>,
    pub last_update: Timestamp,
    pub converged: bool,
    pub conflicts: usize,
    /// The matrix's cells by status.
    pub ok: usize,
    pub ko: usize,
    pub pending: usize,
}

/// Resource `id` as this site sees it; `None` if it does not live here.
pub fn block(site: &str, docs: &Documents, id: &str) -> Option<BlockView> {
    let resource = docs.resource_on(site, id)?;
    Some(view(resource, docs.replies_of(id)))
}

/// Every resource of this site, most recently updated first.
pub fn summaries(site: &str, docs: &Documents) -> Vec<BlockSummary> {
    let mut list: Vec<BlockSummary> = docs
        .resources_on(site)
        .map(|resource| summary(view(resource, docs.replies_of(&resource.id))))
        .collect();
    list.sort_by(|a, b| b.last_update.cmp(&a.last_update).then(a.id.cmp(&b.id)));
    list
}

fn view(resource: &ResourceDocument, replies: &[ReplyDocument]) -> BlockView {
    let operations: Vec<OperationView> = resource
        .operations
        .iter()
        .map(|op| operation(op, &resource.locations, replies))
        .collect();
    let pending = operations
        .iter()
        .flat_map(|op| &op.replies)
        .any(|cell| cell.status == CellStatus::Pending);
    let last_update = resource
        .operations
        .iter()
        .map(|op| op.time)
        .chain(replies.iter().map(|r| r.execution_time))
        .max()
        .unwrap_or_default();
    BlockView {
        id: resource.id.clone(),
        locations: resource.locations.clone(),
        converged: !pending && resource.conflicts.is_empty(),
        conflicts: resource.conflicts.clone(),
        operations,
        last_update,
        resolution_matrix: resource
            .config
            .resolution_matrix
            .iter()
            .map(|r| ResolutionView {
                before: r.before.clone(),
                after: r.after.clone(),
                result: r.result.as_str().to_owned(),
            })
            .collect(),
    }
}

/// `replies` are oldest first, so the last one of a site is its latest run.
/// A stored `TIMEOUT` (which no site writes) is no run: the cell stays pending.
fn operation(op: &Operation, locations: &[String], replies: &[ReplyDocument]) -> OperationView {
    let cells = locations
        .iter()
        .map(|site| {
            let runs: Vec<&ReplyDocument> = replies
                .iter()
                .filter(|r| r.request_id == op.request_id && r.site == *site)
                .filter(|r| r.status != Status::Timeout)
                .collect();
            match runs.last() {
                Some(latest) => CellView {
                    site: site.clone(),
                    status: if latest.status == Status::Ko {
                        CellStatus::Ko
                    } else {
                        CellStatus::Ok
                    },
                    output: Some(latest.output.clone()),
                    execution_time: Some(latest.execution_time),
                    runs: runs.len(),
                },
                None => CellView {
                    site: site.clone(),
                    status: CellStatus::Pending,
                    output: None,
                    execution_time: None,
                    runs: 0,
                },
            }
        })
        .collect();
    OperationView {
        request_id: op.request_id.clone(),
        op_type: op.op_type.clone(),
        command: op.command.describe(),
        files: op.command.files.keys().cloned().collect(),
        time: op.time,
        replies: cells,
    }
}

fn summary(view: BlockView) -> BlockSummary {
    let count = |status| {
        view.operations
            .iter()
            .flat_map(|op| &op.replies)
            .filter(|cell| cell.status == status)
            .count()
    };
    BlockSummary {
        ok: count(CellStatus::Ok),
        ko: count(CellStatus::Ko),
        pending: count(CellStatus::Pending),
        operations_count: view.operations.len(),
        last_command: view.operations.last().map(|op| op.command.clone()),
        conflicts: view.conflicts.len(),
        converged: view.converged,
        last_update: view.last_update,
        locations: view.locations,
        id: view.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn operation(id: &str, op_type: &str, command: &str, second: u32) -> Value {
        json!({"Type": op_type, "RequestId": id, "Time": format!("2024-01-01T00:00:{second:02}Z"),
               "Command": {"Command": command, "Files": null}})
    }

    fn reply(site: &str, request: &str, status: &str, output: &str, second: u32) -> Value {
        json!({"_id": format!("{site}-{request}-{second}"), "Type": "REPLY", "Site": site, "ResourceId": "counter",
               "RequestId": request, "Status": status, "Input": "", "Output": output,
               "Locations": ["s1", "s2", "s3"], "ExecutionTime": format!("2024-01-01T00:00:{second:02}Z")})
    }

    fn docs(conflicts: Option<Value>) -> Documents {
        let mut resource = json!({"_id": "counter", "Type": "RESOURCE", "Locations": ["s1", "s2", "s3"],
            "Operations": [
                operation("r1", "set", "redis-cli set n 0", 1),
                {"Type": "inc", "RequestId": "r2", "Time": "2024-01-01T00:00:02Z",
                 "Command": {"Command": "sh {script.sh}", "Files": {"script.sh": "ZWNobyBoaQ=="}}}
            ],
            "Config": {"ResolutionMatrix": [{"Before": "set", "After": "set", "Result": "take-one"}]}});
        if let Some(conflicts) = conflicts {
            resource["_conflicts"] = conflicts;
        }
        let docs = vec![
            resource,
            json!({"_id": "other", "Type": "RESOURCE", "Locations": ["s2"], "Operations": [operation("x", "set", "true", 9)], "Config": {"ResolutionMatrix": null}}),
            reply("s1", "r1", "OK", "first run", 3),
            reply("s1", "r1", "OK", "second run", 6),
            reply("s2", "r1", "KO", "boom", 4),
            reply("s3", "r1", "OK", "", 5),
            reply("s1", "r2", "OK", "1", 7),
            reply("s3", "r2", "TIMEOUT", "", 1),
            reply("s1", "superseded", "OK", "", 8),
        ];
        let rows: Vec<Value> = docs.into_iter().map(|d| json!({"doc": d})).collect();
        Documents::from_all_docs(&json!({ "rows": rows }))
    }

    #[test]
    fn the_block_keeps_its_order_with_file_names_and_times() {
        let view = block("s1", &docs(None), "counter").unwrap();
        let ops = serde_json::to_value(&view.operations).unwrap();
        assert_eq!(ops[0]["type"], "set");
        assert_eq!(ops[0]["command"], "redis-cli set n 0");
        assert_eq!(ops[0]["files"], json!([]));
        assert_eq!(ops[1]["requestId"], "r2");
        assert_eq!(ops[1]["files"], json!(["script.sh"]));
        assert_eq!(ops[1]["time"], "2024-01-01T00:00:02Z");
        assert_eq!(
            serde_json::to_value(&view.resolution_matrix).unwrap(),
            json!([{"before": "set", "after": "set", "result": "take-one"}])
        );
        assert_eq!(view.last_update.to_string(), "2024-01-01T00:00:08Z");
    }

    #[test]
    fn the_matrix_has_a_cell_per_location_with_pending_where_no_reply_came() {
        let view = block("s1", &docs(None), "counter").unwrap();
        let statuses: Vec<Vec<CellStatus>> = view
            .operations
            .iter()
            .map(|op| op.replies.iter().map(|c| c.status).collect())
            .collect();
        use CellStatus::*;
        assert_eq!(statuses, [[Ok, Ko, Ok], [Ok, Pending, Pending]]);
        let cells = serde_json::to_value(&view.operations[0].replies).unwrap();
        assert_eq!(
            cells[0],
            json!({"site": "s1", "status": "OK", "output": "second run",
                   "executionTime": "2024-01-01T00:00:06Z", "runs": 2}),
            "the latest of two runs is shown"
        );
        assert_eq!(cells[1]["output"], "boom");
        let pending = serde_json::to_value(&view.operations[1].replies[2]).unwrap();
        assert_eq!(
            pending,
            json!({"site": "s3", "status": "PENDING", "output": null, "executionTime": null, "runs": 0}),
            "a stored TIMEOUT is no reply"
        );
        assert!(!view.converged, "two cells are pending");
    }

    #[test]
    fn a_resource_with_conflicts_is_not_converged_even_when_every_site_replied() {
        let all_replied = |conflicts| {
            let mut docs = docs(conflicts);
            for site in ["s2", "s3"] {
                let extra = reply(site, "r2", "OK", "", 9);
                let extra: ReplyDocument = serde_json::from_value(extra).unwrap();
                docs.replies.get_mut("counter").unwrap().push(extra);
            }
            block("s1", &docs, "counter").unwrap()
        };
        let clean = all_replied(None);
        assert!(clean.converged);
        assert!(clean.conflicts.is_empty());
        let conflicting = all_replied(Some(json!(["3-b", "3-a"])));
        assert!(!conflicting.converged);
        assert_eq!(conflicting.conflicts, ["3-b", "3-a"]);
    }

    #[test]
    fn the_list_counts_cells_and_marks_what_has_not_converged() {
        let docs = docs(Some(json!(["3-b"])));
        let list = summaries("s2", &docs);
        let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["other", "counter"], "most recently updated first");
        let counter = serde_json::to_value(&list[1]).unwrap();
        assert_eq!(
            counter,
            json!({"id": "counter", "locations": ["s1", "s2", "s3"], "operationsCount": 2,
                   "lastCommand": "sh {script.sh}", "lastUpdate": "2024-01-01T00:00:08Z",
                   "converged": false, "conflicts": 1, "ok": 3, "ko": 1, "pending": 2})
        );
        assert!(summaries("s4", &docs).is_empty());
    }

    #[test]
    fn a_resource_that_does_not_live_here_has_no_block() {
        assert!(block("s1", &docs(None), "other").is_none());
        assert!(block("s1", &docs(None), "nope").is_none());
    }
}
