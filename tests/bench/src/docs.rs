//! The documents the benchmark writes itself, shaped as Cheops writes them:
//! resources with their block of operations, and replies. The floors give
//! theirs a `Type` of their own, which the daemons ignore, so that the same
//! bytes travel without Cheops acting on them.

use cheops_model::{Command, Operation, ReplyDocument, ResourceDocument, Status, Timestamp};
use serde_json::Value;

/// The `Type` of the floors' resource documents.
pub const FLOOR_RESOURCE: &str = "BENCH-RESOURCE";
/// The `Type` of the floors' replies.
pub const FLOOR_REPLY: &str = "BENCH-REPLY";

/// An `add` operation running `command`, sent now.
pub fn operation(request_id: &str, command: &str) -> Operation {
    Operation {
        op_type: "add".into(),
        request_id: request_id.to_owned(),
        command: Command {
            command: command.to_owned(),
            ..Command::default()
        },
        time: Timestamp::now(),
        ..Operation::default()
    }
}

/// Resource `id` on `sites` with `operations` as its block.
pub fn resource(id: &str, sites: &[String], operations: Vec<Operation>) -> ResourceDocument {
    ResourceDocument {
        id: id.to_owned(),
        locations: sites.to_vec(),
        operations,
        ..ResourceDocument::default()
    }
}

/// `site`'s `OK` reply to `request` on `resource`, as a daemon writes it
/// after running `true`.
pub fn reply(id: String, sites: &[String], site: &str, resource: &str, request: &str) -> Value {
    let reply = ReplyDocument {
        id: Some(id),
        locations: sites.to_vec(),
        site: site.to_owned(),
        request_id: request.to_owned(),
        resource_id: resource.to_owned(),
        status: Status::Ok,
        input: "true".into(),
        execution_time: Timestamp::now(),
        ..ReplyDocument::default()
    };
    floor_kind(serde_json::to_value(reply).unwrap_or_default(), FLOOR_REPLY)
}

/// `doc` with `Type` set to `kind`: a floor's document, which no daemon
/// reads.
pub fn floor_kind(mut doc: Value, kind: &str) -> Value {
    doc["Type"] = Value::from(kind);
    doc
}
