//! What the node asks of the design document's views and filters, by what
//! it means: the node never names a view or builds a key itself.

use std::collections::HashMap;

use cheops_model::{DocumentKind, Operation, ReplyDocument, ResourceDocument};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::consistency::{Run, Seen, SeenReply};
use crate::db::couch::CouchClient;
use crate::db::design::{
    DESIGN, REPLIES_OF_FILTER, REPLIES_VIEW, REQUESTS_VIEW, RESOURCES_VIEW, RUNS_VIEW,
};
use crate::db::documents::Runs;
use crate::ReplicatorError;

/// `site`'s runs of each of `resources` (the resource of each), in one
/// request that reads what the replies view emits, never the replies
/// themselves (their outputs may take megabytes); from the view's index as
/// it stands when `stale`.
pub async fn runs_of(
    couch: &CouchClient,
    site: &str,
    resources: &[String],
    stale: bool,
) -> Result<Vec<(String, Run)>, ReplicatorError> {
    let keys: Vec<Value> = resources
        .iter()
        .map(|resource| json!([resource, site]))
        .collect();
    let rows = couch
        .view_rows_by_keys::<(String, String), Run>(DESIGN, REPLIES_VIEW, &keys, stale)
        .await?;
    Ok(rows
        .into_iter()
        .map(|((resource, _), run)| (resource, run))
        .collect())
}

/// The database sequence the replies view's index has reached.
pub async fn replies_indexed_seq(couch: &CouchClient) -> Result<Value, ReplicatorError> {
    couch.view_indexed_seq(DESIGN, REPLIES_VIEW).await
}

/// Brings the replies view's index up to date.
pub async fn index_replies(couch: &CouchClient) -> Result<(), ReplicatorError> {
    couch.index_view(DESIGN, REPLIES_VIEW).await
}

/// The ids of `site`'s replies among at most `limit` documents changed
/// after `since` (whatever their ids), and the sequence to go on from.
pub async fn replies_changed(
    couch: &CouchClient,
    site: &str,
    since: &Value,
    limit: usize,
) -> Result<(Vec<String>, Value), ReplicatorError> {
    let filter = [("filter", REPLIES_OF_FILTER), ("site", site)];
    couch.changed_ids(since, limit, &filter).await
}

/// What the database holds about each of `requests` of `resource`: the
/// sites that replied (with their `ReadsHistory`) and whether its history
/// document, or a reply carrying the operation, is stored; a request of
/// which nothing is stored gets an empty answer.
pub async fn requests(
    couch: &CouchClient,
    resource: &str,
    requests: &[&str],
) -> Result<HashMap<String, Seen>, ReplicatorError> {
    /// A row of the requests view: a reply's site and capability, or the
    /// mark of a history document; a reply that carries its operation is
    /// both.
    #[derive(Deserialize)]
    struct Row {
        #[serde(rename = "Site")]
        site: Option<String>,
        #[serde(rename = "ReadsHistory", default)]
        reads_history: bool,
        #[serde(rename = "History", default)]
        history: bool,
    }
    let keys: Vec<Value> = requests
        .iter()
        .map(|request| json!([resource, request]))
        .collect();
    let rows = couch
        .view_rows_by_keys::<(String, String), Row>(DESIGN, REQUESTS_VIEW, &keys, false)
        .await?;
    let mut found: HashMap<String, Seen> = requests
        .iter()
        .map(|request| ((*request).to_owned(), Seen::default()))
        .collect();
    for ((_, request), row) in rows {
        let seen = found.entry(request).or_default();
        seen.history |= row.history;
        if let Some(site) = row.site {
            seen.replies.push(SeenReply {
                site,
                reads_history: row.reads_history,
            });
        }
    }
    Ok(found)
}

/// The operations whole that stored replies carry, of those of `requests`
/// of `resource`, by request id (one request for all; a request no reply
/// carries is left out).
pub async fn carried(
    couch: &CouchClient,
    resource: &str,
    requests: &[&str],
) -> Result<HashMap<String, Operation>, ReplicatorError> {
    let keys: Vec<Value> = requests
        .iter()
        .map(|request| json!([resource, request]))
        .collect();
    let rows = couch.view_keys(DESIGN, REQUESTS_VIEW, &keys).await?;
    let carriers = rows
        .into_iter()
        .filter_map(|row| row.doc)
        .filter(|doc| {
            DocumentKind::deserialize(doc).is_ok_and(|k| k.is_reply())
                && doc.get("Operation").is_some()
        })
        .filter_map(|doc| ReplyDocument::deserialize(doc).ok());
    Ok(carriers
        .filter(|reply| reply.resource_id == resource)
        .filter_map(|reply| {
            reply
                .operation
                .filter(|op| op.request_id == reply.request_id)
                .map(|op| (reply.request_id, op))
        })
        .collect())
}

/// Every resource document, with its `_conflicts`; one that does not read
/// as a resource is left out.
pub async fn resources(couch: &CouchClient) -> Result<Vec<ResourceDocument>, ReplicatorError> {
    let docs: Vec<Value> = couch.view_docs(DESIGN, RESOURCES_VIEW).await?;
    Ok(docs
        .into_iter()
        .filter_map(|doc| ResourceDocument::deserialize(doc).ok())
        .collect())
}

/// Resource `id` with its `_conflicts`, if it is stored and live.
pub async fn resource(
    couch: &CouchClient,
    id: &str,
) -> Result<Option<ResourceDocument>, ReplicatorError> {
    let doc: Option<Value> = couch.get(&[id], &[("conflicts", "true")]).await?;
    Ok(doc
        .filter(|doc| DocumentKind::deserialize(doc).is_ok_and(|k| k.is_resource()))
        .and_then(|doc| ResourceDocument::deserialize(doc).ok()))
}

/// How many replies `site` wrote to each resource, and the latest time
/// among them: one row per resource, however long its history.
pub async fn runs_by_resource(
    couch: &CouchClient,
    site: &str,
) -> Result<Vec<(String, Runs)>, ReplicatorError> {
    #[derive(Deserialize)]
    struct Reduced {
        #[serde(rename = "Count")]
        count: usize,
        #[serde(rename = "Last", default)]
        last: String,
    }
    let rows = couch
        .view_groups::<(String, String), Reduced>(
            DESIGN,
            RUNS_VIEW,
            &json!([site]),
            &json!([site, {}]),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|((_, resource), reduced)| {
            let runs = Runs {
                count: reduced.count,
                last: reduced.last.parse().unwrap_or_default(),
            };
            (resource, runs)
        })
        .collect())
}

/// A reply as the requests view gives it: no input, no output.
#[derive(Debug, Clone)]
pub struct ReplyRow {
    /// The reply document's id.
    pub id: String,
    pub reply: ReplyDocument,
}

/// Keys sent per request to the requests view.
const KEYS_PAGE: usize = 500;

/// The replies to each of `requests` (pairs of resource and request id),
/// as the requests view emits them.
pub async fn replies_to(
    couch: &CouchClient,
    requests: &[(&str, &str)],
) -> Result<Vec<ReplyRow>, ReplicatorError> {
    #[derive(Deserialize)]
    struct Emitted {
        #[serde(rename = "Site")]
        site: Option<String>,
        #[serde(rename = "Status", default)]
        status: Value,
        #[serde(rename = "ExecutionTime", default)]
        time: Value,
    }
    let mut found = Vec::new();
    for page in requests.chunks(KEYS_PAGE) {
        let keys: Vec<Value> = page
            .iter()
            .map(|(resource, request)| json!([resource, request]))
            .collect();
        let entries = couch
            .view_entries_by_keys::<(String, String), Emitted>(DESIGN, REQUESTS_VIEW, &keys, false)
            .await?;
        for entry in entries {
            let (resource_id, request_id) = entry.key;
            // A history document's row has no site.
            let Some(site) = entry.value.site else {
                continue;
            };
            let reply = ReplyDocument {
                site,
                resource_id,
                request_id,
                status: serde_json::from_value(entry.value.status).unwrap_or_default(),
                execution_time: serde_json::from_value(entry.value.time).unwrap_or_default(),
                ..ReplyDocument::default()
            };
            found.push(ReplyRow {
                id: entry.id,
                reply,
            });
        }
    }
    Ok(found)
}

/// The ids of `site`'s replies to resource `id`.
pub async fn replies_of_site(
    couch: &CouchClient,
    id: &str,
    site: &str,
) -> Result<Vec<String>, ReplicatorError> {
    let entries = couch
        .view_entries_by_keys::<Value, serde::de::IgnoredAny>(
            DESIGN,
            REPLIES_VIEW,
            &[json!([id, site])],
            false,
        )
        .await?;
    Ok(entries.into_iter().map(|e| e.id).collect())
}
