//! The `_replicator` documents this node writes, and what the server that
//! runs them says of them: the document's `_replication_state` and
//! `_replication_stats` (PouchDB Server, and CouchDB 3 once a replication
//! ended), or CouchDB 3's scheduler while its job runs.

use serde_json::{json, Value};

use crate::db::design::SITE_FILTER;
use crate::metrics::replication_state;

/// The replicator's TCP options (CouchDB 3 reads them per document; PouchDB
/// Server ignores them): without `nodelay`, each request of a replication
/// waits about 40 ms for Nagle's algorithm.
const SOCKET_OPTIONS: &str = "[{keepalive, true}, {nodelay, true}]";

/// The fields of a replication document this node sets: one that differs
/// makes it recreate the replication.
pub(super) const FIELDS: [&str; 7] = [
    "source",
    "target",
    "filter",
    "query_params",
    "continuous",
    "socket_options",
    "checkpoint",
];

/// The continuous replication from `site` to `peer`.
pub(super) fn continuous_id(site: &str, peer: &str) -> String {
    format!("cheops-{}-to-{}", escape_site(site), escape_site(peer))
}

/// The one-shot replication sending again to `peer` what the continuous
/// one could not write. `_` never ends an escaped name, so no peer's
/// continuous replication shares this id.
pub(super) fn resend_id(site: &str, peer: &str) -> String {
    format!("{}_resend", continuous_id(site, peer))
}

/// The two ends of the replication to one peer.
pub(super) struct Ends<'a> {
    /// The local database's URL, credentials included.
    pub source: &'a str,
    /// The peer database's URL, credentials included.
    pub target: &'a str,
    /// The peer's site name.
    pub peer: &'a str,
    /// The local database's identity.
    pub database: &'a str,
    /// The peer database's identity, when known.
    pub peer_database: Option<&'a str>,
}

/// The continuous replication of every document for the peer, but those
/// that came from its database (when its identity is known).
///
/// PouchDB Server writes its checkpoints on the target alone (`checkpoint`;
/// CouchDB 3 ignores the field and checkpoints every 30 s): half the
/// requests a replication batch costs. A checkpoint on one side cannot
/// tell a source database created anew from the one it was written for:
/// the source's identity in `query_params` gives a new database a
/// replication id, hence no checkpoint, of its own. The target's identity
/// is there too, so a target created anew gets a replication that scans
/// from the start, and receives what its predecessor wrote.
pub(super) fn continuous(id: &str, ends: &Ends) -> Value {
    let mut params = json!({ "site": ends.peer, "source": ends.database });
    if let Some(identity) = ends.peer_database {
        params["target"] = Value::from(identity);
    }
    json!({
        "_id": id,
        "source": ends.source,
        "target": ends.target,
        "continuous": true,
        "filter": SITE_FILTER,
        "query_params": params,
        "socket_options": SOCKET_OPTIONS,
        "checkpoint": "target",
    })
}

/// A one-shot replication of the same documents from the start: the
/// `resend` parameter gives it a replication id of its own, hence no
/// checkpoint past the documents the continuous one skipped, and its
/// `_revs_diff` sends only what the peer lacks.
pub(super) fn resend(id: &str, ends: &Ends, stamp: &str) -> Value {
    let mut doc = continuous(id, ends);
    if let Some(fields) = doc.as_object_mut() {
        fields.remove("continuous");
    }
    doc["query_params"]["resend"] = Value::from(stamp);
    doc
}

/// The state label of a replication whose document is `doc` and whose
/// scheduler job is `job`: the scheduler knows states the document never
/// shows (`error`, `crashing`).
pub(super) fn state(doc: Option<&Value>, job: Option<&Value>) -> &'static str {
    let said = job
        .and_then(|job| job.get("state"))
        .or_else(|| doc.and_then(|doc| doc.get("_replication_state")))
        .and_then(Value::as_str);
    replication_state(doc.is_some(), said)
}

/// The documents a replication could not write: its job's count while it
/// runs (CouchDB 3), else its document's once it ended.
pub(super) fn write_failures(doc: Option<&Value>, job: Option<&Value>) -> u64 {
    job.and_then(|job| job.pointer("/info/doc_write_failures"))
        .or_else(|| doc.and_then(|doc| doc.pointer("/_replication_stats/doc_write_failures")))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A site name as it appears in a `_replicator` id: letters, digits, `-`
/// and `.` as they are, every other byte as `_` and two hex digits. The
/// escape is reversible, so two sites never share an id (`site_2` is
/// `site_5f2`, `site 2` is `site_202`), and the usual names (`site2`)
/// appear as they are.
fn escape_site(site: &str) -> String {
    let mut out = String::with_capacity(site.len());
    for byte in site.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ends of a replication from `http://s` to site2 at `http://t`.
    fn ends<'a>(database: &'a str, peer_database: Option<&'a str>) -> Ends<'a> {
        Ends {
            source: "http://s",
            target: "http://t",
            peer: "site2",
            database,
            peer_database,
        }
    }

    /// A replication document as PouchDB Server and CouchDB 3 write it.
    fn doc(state: Option<&str>) -> Value {
        let mut doc = json!({"_id": "cheops-site1-to-site2", "continuous": true});
        if let Some(state) = state {
            doc["_replication_state"] = json!(state);
        }
        doc
    }

    #[test]
    fn pouchdb_shows_the_state_its_document_holds() {
        let doc = doc(Some("triggered"));
        assert_eq!(state(Some(&doc), None), "triggered");
        assert_eq!(write_failures(Some(&doc), None), 0);
        assert_eq!(state(None, None), "missing");
    }

    /// A one-shot replication that ended says in its document how many
    /// documents it could not write (PouchDB Server and CouchDB 3 alike).
    #[test]
    fn an_ended_replication_counts_its_failures_in_its_document() {
        let mut ended = doc(Some("completed"));
        ended["_replication_stats"] = json!({"docs_read": 4, "doc_write_failures": 1});
        assert_eq!(state(Some(&ended), None), "completed");
        assert_eq!(write_failures(Some(&ended), None), 1);
    }

    /// CouchDB 3 leaves `_replication_state` out of the document while a
    /// job runs or errs: its scheduler says what the job is doing, and how
    /// many documents it could not write.
    #[test]
    fn couchdbs_scheduler_tells_what_the_document_does_not() {
        let job = json!({
            "database": "_replicator",
            "doc_id": "cheops-site1-to-site2",
            "state": "crashing",
            "info": {"doc_write_failures": 2, "docs_written": 40},
            "error_count": 3
        });
        assert_eq!(state(Some(&doc(None)), Some(&job)), "crashing");
        assert_eq!(write_failures(Some(&doc(None)), Some(&job)), 2);
        assert_eq!(state(Some(&doc(None)), None), "none");
    }

    #[test]
    fn a_resend_is_a_one_shot_replication_of_the_same_documents() {
        let live = continuous("a", &ends("db1", Some("db2")));
        let again = resend("b", &ends("db1", Some("db2")), "x");
        assert_eq!(again.get("continuous"), None);
        for field in ["source", "target", "filter", "socket_options", "checkpoint"] {
            assert_eq!(live[field], again[field], "{field}");
        }
        assert_eq!(again["query_params"]["site"], "site2");
        assert_eq!(again["query_params"]["target"], "db2");
        assert_ne!(live["query_params"], again["query_params"]);
    }

    /// A database created anew has another identity, hence replications
    /// of their own: none resumes from a checkpoint of the one before.
    #[test]
    fn a_database_created_anew_gets_replications_of_its_own() {
        let before = continuous("a", &ends("db1", None));
        let after = continuous("a", &ends("db2", None));
        assert_eq!(before["checkpoint"], "target");
        assert_ne!(before["query_params"], after["query_params"]);
        assert!(FIELDS.contains(&"query_params"), "a change recreates it");
    }

    /// So does a peer database created anew: the replication to it starts
    /// over, with what came from its predecessor no longer held back.
    #[test]
    fn a_peer_database_created_anew_gets_a_replication_of_its_own() {
        let unknown = continuous("a", &ends("db1", None));
        let before = continuous("a", &ends("db1", Some("p1")));
        let after = continuous("a", &ends("db1", Some("p2")));
        assert_eq!(unknown["query_params"].get("target"), None);
        assert_eq!(before["query_params"]["target"], "p1");
        assert_ne!(before["query_params"], after["query_params"]);
        assert_ne!(unknown["query_params"], before["query_params"]);
    }

    /// The byte-wise inverse of [`escape_site`].
    fn unescape(escaped: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = escaped.bytes();
        while let Some(byte) = bytes.next() {
            if byte == b'_' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(byte);
            }
        }
        out
    }

    #[test]
    fn replication_ids_tell_every_site_apart() {
        assert_eq!(escape_site("site-1.example"), "site-1.example");
        assert_ne!(escape_site("site_2"), escape_site("site 2"));
        // Seeded: the same names on every run; a failure names its input.
        let alphabet = ['a', '_', ' ', '-', '.', '5', 'f', '%', 'é', 'r'];
        let mut state: u64 = 0x5eed_cafe;
        let mut seen = std::collections::HashMap::new();
        for _ in 0..5000 {
            let mut name = String::new();
            for _ in 0..(state % 6 + 1) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                name.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            let escaped = escape_site(&name);
            assert_eq!(unescape(&escaped), name.as_bytes(), "{name:?}");
            // No continuous replication's id is another peer's resend id.
            for id in [continuous_id("s", &name), resend_id("s", &name)] {
                if let Some(other) = seen.insert(id.clone(), name.clone()) {
                    assert_eq!(other, name, "{other:?} and {name:?} share {id:?}");
                }
            }
        }
    }
}
