//! Every document the original writes (tests/wire/) is read by the port
//! and written back equal, value for value; so are the documents only the
//! port writes (tests/wire/port/: fields the original ignores, history
//! documents), which are not part of the original's corpus.

use std::path::PathBuf;

use cheops_model::{history_id, HistoryDocument, ReplyDocument, ResourceDocument, Status};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The golden documents: `model/tests/wire/`, or the `wire/` folder of the
/// corpus that `CHEOPS_CONFORMANCE_DIR` names.
fn wire_dir() -> PathBuf {
    match std::env::var_os("CHEOPS_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("wire"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wire"),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(file: &str) -> (T, Value) {
    round_trip_in(&wire_dir(), file)
}

/// The port's own documents, always from this repository.
fn port_round_trip<T: DeserializeOwned + Serialize>(file: &str) -> (T, Value) {
    round_trip_in(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wire/port"),
        file,
    )
}

fn round_trip_in<T: DeserializeOwned + Serialize>(dir: &std::path::Path, file: &str) -> (T, Value) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let original: Value = serde_json::from_str(&text).unwrap();
    let doc: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let written = serde_json::to_value(&doc).unwrap();
    assert_eq!(written, original, "{file} does not round-trip");
    (doc, written)
}

#[test]
fn resource_document_round_trips() {
    let (doc, _) = round_trip::<ResourceDocument>("resource-document.json");
    assert_eq!(doc.id, "my-deployment");
    assert_eq!(doc.operations.len(), 2);
    assert_eq!(
        doc.operations[0].command.files["recipe.yml"],
        b"apiVersion: apps/v1\nkind: Deployment\n"
    );
    assert!(doc.operations[1].command.files.is_empty());
    assert_eq!(doc.config.resolution_matrix.len(), 3);
}

#[test]
fn resource_document_with_conflicts_round_trips() {
    let (doc, _) = round_trip::<ResourceDocument>("resource-document-with-conflicts.json");
    assert_eq!(doc.conflicts, ["3-aaaa", "2-bbbb"]);
}

#[test]
fn zero_values_round_trip_as_nulls() {
    let (doc, written) = round_trip::<ResourceDocument>("resource-document-zero-values.json");
    assert!(doc.locations.is_empty() && doc.operations.is_empty() && doc.config.is_empty());
    assert_eq!(written["Operations"], Value::Null);
}

#[test]
fn reply_document_round_trips() {
    let (reply, written) = round_trip::<ReplyDocument>("reply-document.json");
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.output, "deployment.apps/demo created\n");
    assert!(
        written.get("Cmd").is_none(),
        "Input/Output stay at the top level"
    );
    assert!(
        !reply.reads_history && !reply.rebuild,
        "the original declares neither"
    );
}

#[test]
fn a_port_reply_declares_that_its_site_reads_history() {
    let (reply, _) = port_round_trip::<ReplyDocument>("reply-document.json");
    assert!(reply.reads_history && reply.rebuild);
}

#[test]
fn a_pruned_operation_keeps_its_place_type_and_time_without_payload() {
    let (doc, written) = port_round_trip::<ResourceDocument>("resource-document-pruned.json");
    let (pruned, kept) = (&doc.operations[0], &doc.operations[1]);
    assert!(pruned.pruned && pruned.command.command.is_empty() && pruned.command.files.is_empty());
    assert!(!kept.pruned);
    assert!(
        written["Operations"][1].get("Pruned").is_none(),
        "absent when false, as the original writes operations"
    );
}

#[test]
fn a_history_document_holds_the_operation_whole() {
    let (history, _) = port_round_trip::<HistoryDocument>("history-document.json");
    assert_eq!(
        history.id,
        history_id(&history.resource_id, &history.operation.request_id)
    );
    assert_eq!(
        history.operation.command.files["recipe.yml"],
        b"apiVersion: apps/v1\nkind: Deployment\n"
    );
}

#[test]
fn timeout_line_round_trips() {
    let (reply, _) = round_trip::<ReplyDocument>("reply-timeout-line.json");
    assert_eq!(reply.status, Status::Timeout);
    assert!(reply.execution_time.is_zero());
}

#[test]
fn a_reply_is_not_a_resource() {
    let text = std::fs::read_to_string(wire_dir().join("reply-document.json")).unwrap();
    let err = serde_json::from_str::<ResourceDocument>(&text).unwrap_err();
    assert!(err.to_string().contains("REPLY"), "{err}");
}

/// `Rebuild` is the port's own field: written only when set, so that every
/// other reply stays what the original writes, and absent means false.
#[test]
fn a_reply_says_it_began_a_rebuild_only_when_it_did() {
    let (mut reply, written) = round_trip::<ReplyDocument>("reply-document.json");
    assert!(!reply.rebuild && written.get("Rebuild").is_none());
    reply.rebuild = true;
    let written = serde_json::to_value(&reply).unwrap();
    assert_eq!(written["Rebuild"], true);
    let read: ReplyDocument = serde_json::from_value(written).unwrap();
    assert!(read.rebuild);
}
