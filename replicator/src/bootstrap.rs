//! Making the local database ready: the database itself, its security
//! object, the design document holding the view and the replication filter,
//! and the server's `_replicator` database. Every step is idempotent.

use serde_json::{json, Value};

use crate::couch::{CouchClient, Written};
use crate::ReplicatorError;

/// The design document's name: `_design/cheops`.
pub const DESIGN: &str = "cheops";
/// View of REPLY documents by `[ResourceId, Site]`.
pub const REPLIES_VIEW: &str = "replies-by-resource-site";
/// Replication filter: documents whose Locations contain `query_params.site`.
pub const SITE_FILTER: &str = "cheops/by-site";

fn design_document() -> Value {
    json!({
        "_id": format!("_design/{DESIGN}"),
        "language": "javascript",
        "views": {
            REPLIES_VIEW: {
                "map": "function (doc) { if (doc.Type === 'REPLY') { emit([doc.ResourceId, doc.Site], null); } }"
            }
        },
        "filters": {
            // String(): PouchDB Server parses query values as JSON, so a
            // site named 123 would otherwise arrive as a number.
            "by-site": "function (doc, req) { return !!doc.Locations && doc.Locations.indexOf(String(req.query.site)) >= 0; }"
        }
    })
}

/// Brings the database to the state the daemon needs; safe to run on every
/// start and concurrently with other daemons on the same database.
pub async fn bootstrap(couch: &CouchClient) -> Result<(), ReplicatorError> {
    couch.ensure_db().await?;
    couch.ensure_replicator_db().await?;
    // Only admins read or write: peers replicate with admin credentials.
    couch
        .put_security(&json!({
            "admins": {"names": [], "roles": ["_admin"]},
            "members": {"names": [], "roles": ["_admin"]}
        }))
        .await?;
    ensure_design(couch).await
}

async fn ensure_design(couch: &CouchClient) -> Result<(), ReplicatorError> {
    let wanted = design_document();
    loop {
        let current: Option<Value> = couch.get(&["_design", DESIGN], &[]).await?;
        let mut doc = wanted.clone();
        if let Some(current) = current {
            let same = ["views", "filters", "language"]
                .iter()
                .all(|k| current.get(k) == wanted.get(k));
            if same {
                return Ok(());
            }
            doc["_rev"] = current["_rev"].clone();
        }
        match couch.put(&["_design", DESIGN], &doc).await? {
            Written::Rev(_) => return Ok(()),
            // Another daemon wrote it meanwhile: compare again.
            Written::Conflict => continue,
        }
    }
}
