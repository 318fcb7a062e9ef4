//! Documents that every site writes alike: the resolution of a conflict,
//! and the history documents of the operations a block drops.
//!
//! Every site resolves a conflict as soon as it sees it. If each wrote its
//! merged document as a normal edit, PouchDB Server (which draws revision
//! ids at random) would create as many "merged" revisions as sites, which
//! conflict again. Instead the merged document and the deletion of each
//! losing revision are written with `new_edits: false` and revision ids
//! derived from their content and parent: all sites write identical
//! revisions, which replication then finds already present. One
//! `_bulk_docs` request carries them all.
//!
//! An operation that leaves the block with its payload (a take-one merge,
//! a resetting operation) may not have run at the site that accepted it,
//! and then no reply carries it: it gets a history document, written the
//! same way by whichever sites drop it (CONSISTENCY.md, "History
//! documents").

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use cheops_model::{HistoryDocument, Operation, ResourceDocument};
use serde_json::{json, Value};

use crate::consistency::{dropped, resolve_conflicts};
use crate::ReplicatorError;

/// What resolving a conflict writes.
pub struct Resolution {
    /// In the order to write them: the history documents of the operations
    /// the merge drops, the merged revision, the deletion of each loser.
    pub docs: Vec<Value>,
    /// The merged revision's length as JSON.
    pub merged_bytes: usize,
}

/// The documents to write with `new_edits: false` to resolve the conflict
/// between `winner` (as read with `conflicts=true`) and `losers`; `known`
/// says of a request whether the operation whole is here already.
pub fn resolution_docs(
    winner: &ResourceDocument,
    losers: &[ResourceDocument],
    known: impl Fn(&str) -> bool,
) -> Result<Resolution, ReplicatorError> {
    let merged = resolve_conflicts(winner, losers);
    let mut body = encode(&merged, "the merged document")?;
    if let Some(map) = body.as_object_mut() {
        map.remove("_rev");
    }
    let merged_bytes = body.to_string().len();
    let before = std::iter::once(winner)
        .chain(losers)
        .flat_map(|revision| &revision.operations);
    let mut docs = dropped_history(
        &winner.id,
        &winner.locations,
        before,
        &merged.operations,
        known,
    )?;
    docs.push(child_revision(body, winner.rev.as_deref()));
    for loser in losers {
        let tombstone = json!({
            "_id": winner.id,
            "_deleted": true,
            // Kept so that the replication filter lets the deletion through.
            "Locations": winner.locations,
            "Type": "RESOURCE",
        });
        docs.push(child_revision(tombstone, loser.rev.as_deref()));
    }
    Ok(Resolution { docs, merged_bytes })
}

/// The history documents to write with `new_edits: false` for the
/// operations of `before` (the blocks a write replaces) that `after` drops
/// with their payload ([`dropped`]) and that are not `known` here whole
/// already. Each is a function of the operation, so that every site
/// dropping it writes the same revision.
pub fn dropped_history<'a>(
    resource: &str,
    locations: &[String],
    before: impl IntoIterator<Item = &'a Operation>,
    after: &[Operation],
    known: impl Fn(&str) -> bool,
) -> Result<Vec<Value>, ReplicatorError> {
    let ops = dropped(before, after);
    history_docs(
        resource,
        locations,
        ops.into_iter().filter(|op| !known(&op.request_id)),
    )
}

/// The history documents of `ops`, operations of `resource`, to write with
/// `new_edits: false`: each a function of its operation, so that every
/// site writing one writes the same revision.
pub fn history_docs<'a>(
    resource: &str,
    locations: &[String],
    ops: impl IntoIterator<Item = &'a Operation>,
) -> Result<Vec<Value>, ReplicatorError> {
    ops.into_iter()
        .map(|op| {
            let history = HistoryDocument::new(resource, locations, op);
            Ok(child_revision(
                encode(&history, "a history document")?,
                None,
            ))
        })
        .collect()
}

fn encode(doc: &impl serde::Serialize, what: &str) -> Result<Value, ReplicatorError> {
    serde_json::to_value(doc).map_err(|source| ReplicatorError::Decode {
        context: what.into(),
        source,
    })
}

/// `body` as a child of `parent` (`N-hash`), with a revision id that is a
/// hash of the body and the parent.
fn child_revision(mut body: Value, parent: Option<&str>) -> Value {
    let (generation, parent_hash) = parent
        .and_then(|rev| rev.split_once('-'))
        .and_then(|(n, hash)| Some((n.parse::<u64>().ok()?, hash)))
        .unwrap_or((0, ""));
    let mut hasher = Blake2b::<U16>::new();
    hasher.update(parent.unwrap_or_default().as_bytes());
    hasher.update(body.to_string().as_bytes());
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let mut ids = vec![Value::from(hash.clone())];
    if !parent_hash.is_empty() {
        ids.push(Value::from(parent_hash));
    }
    body["_rev"] = Value::from(format!("{}-{hash}", generation + 1));
    body["_revisions"] = json!({ "start": generation + 1, "ids": ids });
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::{Operation, Resolution as Entry, ResolutionResult, ResourceConfig};

    fn revision(rev: &str, request: &str) -> ResourceDocument {
        ResourceDocument {
            id: "r".into(),
            rev: Some(rev.into()),
            locations: vec!["s1".into(), "s2".into()],
            operations: vec![Operation {
                op_type: "inc".into(),
                request_id: request.into(),
                site: "s1".into(),
                ..Operation::default()
            }],
            ..ResourceDocument::default()
        }
    }

    /// `inc` after `inc` keeps one: a merge of two blocks drops the loser's.
    fn take_one(mut doc: ResourceDocument) -> ResourceDocument {
        doc.config = ResourceConfig {
            resolution_matrix: vec![Entry {
                before: "inc".into(),
                after: "inc".into(),
                result: ResolutionResult::TakeOne,
            }],
        };
        doc
    }

    #[test]
    fn every_site_writes_the_same_revisions() {
        let winner = take_one(revision("3-aaa", "a"));
        let losers = [take_one(revision("3-bbb", "b"))];
        let first = resolution_docs(&winner, &losers, |_| false).unwrap();
        let second = resolution_docs(&winner.clone(), &losers.clone(), |_| false).unwrap();
        assert_eq!(first.docs.len(), 3, "{:?}", first.docs);
        assert_eq!(first.docs, second.docs);
    }

    #[test]
    fn the_merge_extends_the_winner_and_deletes_each_loser() {
        let resolution =
            resolution_docs(&revision("3-aaa", "a"), &[revision("2-bbb", "b")], |_| {
                false
            })
            .unwrap();
        let docs = resolution.docs;
        assert_eq!(docs.len(), 2);
        let merged = &docs[0];
        assert!(merged["_rev"].as_str().unwrap().starts_with("4-"));
        assert_eq!(merged["_revisions"]["start"], 4);
        assert_eq!(merged["_revisions"]["ids"][1], "aaa");
        assert_eq!(merged["Operations"].as_array().unwrap().len(), 2);
        assert!(merged.get("_conflicts").is_none());
        let tombstone = &docs[1];
        assert_eq!(tombstone["_deleted"], true);
        assert!(tombstone["_rev"].as_str().unwrap().starts_with("3-"));
        assert_eq!(tombstone["_revisions"]["ids"][1], "bbb");
        assert_eq!(tombstone["Locations"], json!(["s1", "s2"]));
    }

    #[test]
    fn an_operation_the_merge_drops_gets_a_history_document_first() {
        let winner = take_one(revision("3-aaa", "a"));
        let losers = [take_one(revision("3-bbb", "b"))];
        let docs = resolution_docs(&winner, &losers, |_| false).unwrap().docs;
        let history = &docs[0];
        assert_eq!(history["_id"], "history:r:b");
        assert_eq!(history["Type"], "HISTORY");
        assert_eq!(history["Site"], "s1", "the site that accepted it");
        assert_eq!(history["Operation"]["RequestId"], "b");
        assert!(history["_rev"].as_str().unwrap().starts_with("1-"));
        assert_eq!(history["_revisions"]["ids"].as_array().unwrap().len(), 1);
        assert_eq!(docs[1]["Operations"][0]["RequestId"], "a");
        // Known here whole already: nothing to write for it.
        let known = resolution_docs(&winner, &losers, |request| request == "b").unwrap();
        assert_eq!(known.docs.len(), 2);
    }

    #[test]
    fn only_what_leaves_the_block_unpruned_gets_a_history_document() {
        let ops = |ids: &[(&str, bool)]| -> Vec<Operation> {
            ids.iter()
                .map(|&(id, pruned)| Operation {
                    request_id: id.into(),
                    pruned,
                    ..Operation::default()
                })
                .collect()
        };
        // `c` pruned in one copy, `d` twice in the blocks replaced.
        let before = ops(&[
            ("a", false),
            ("b", false),
            ("c", false),
            ("c", true),
            ("d", false),
            ("d", false),
        ]);
        let after = ops(&[("a", false)]);
        let docs = dropped_history("r", &[], &before, &after, |_| false).unwrap();
        let ids: Vec<&str> = docs.iter().map(|d| d["_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["history:r:b", "history:r:d"]);
    }
}
