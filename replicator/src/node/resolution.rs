//! Writing the resolution of a conflict so that every site writes the same
//! revisions.
//!
//! Every site resolves a conflict as soon as it sees it. If each wrote its
//! merged document as a normal edit, PouchDB Server (which draws revision
//! ids at random) would create as many "merged" revisions as sites, which
//! conflict again. Instead the merged document and the deletion of each
//! losing revision are written with `new_edits: false` and revision ids
//! derived from their content and parent: all sites write identical
//! revisions, which replication then finds already present. One
//! `_bulk_docs` request carries them all.

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use cheops_model::ResourceDocument;
use serde_json::{json, Value};

use crate::consistency::resolve_conflicts;
use crate::ReplicatorError;

/// The documents to write with `new_edits: false` to resolve the conflict
/// between `winner` (as read with `conflicts=true`) and `losers`.
pub fn resolution_docs(
    winner: &ResourceDocument,
    losers: &[ResourceDocument],
) -> Result<Vec<Value>, ReplicatorError> {
    let merged = resolve_conflicts(winner, losers);
    let mut body = serde_json::to_value(&merged).map_err(|source| ReplicatorError::Decode {
        context: "the merged document".into(),
        source,
    })?;
    if let Some(map) = body.as_object_mut() {
        map.remove("_rev");
    }
    let mut docs = vec![child_revision(body, winner.rev.as_deref())];
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
    Ok(docs)
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
    use cheops_model::Operation;

    fn revision(rev: &str, request: &str) -> ResourceDocument {
        ResourceDocument {
            id: "r".into(),
            rev: Some(rev.into()),
            locations: vec!["s1".into(), "s2".into()],
            operations: vec![Operation {
                op_type: "inc".into(),
                request_id: request.into(),
                ..Operation::default()
            }],
            ..ResourceDocument::default()
        }
    }

    #[test]
    fn every_site_writes_the_same_revisions() {
        let winner = revision("3-aaa", "a");
        let losers = [revision("3-bbb", "b")];
        let first = resolution_docs(&winner, &losers).unwrap();
        let second = resolution_docs(&winner.clone(), &losers.clone()).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn the_merge_extends_the_winner_and_deletes_each_loser() {
        let docs = resolution_docs(&revision("3-aaa", "a"), &[revision("2-bbb", "b")]).unwrap();
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
}
