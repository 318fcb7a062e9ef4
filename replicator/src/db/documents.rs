//! The local database as the web UI reads it: resources and replies,
//! sorted once per request, so that no HTTP layer reads CouchDB rows. Each
//! page reads what it shows ([`Reading`]), never the whole database.
//! Design documents and documents Cheops did not write are left out; so is
//! a document of a known type that does not read as one (it cannot be
//! shown faithfully).

use std::collections::BTreeMap;

use cheops_model::{DocumentKind, ReplyDocument, ResourceDocument, Timestamp};
use serde::Deserialize;
use serde_json::Value;

use crate::db::couch::CouchClient;
use crate::db::queries;
use crate::ReplicatorError;

/// What a page reads of the database: what it shows, and nothing that
/// grows with the history of resources it does not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Every resource, nothing else.
    Resources,
    /// Every resource, with how many times this site ran its operations
    /// and when last ([`Documents::runs`]).
    Runs,
    /// Every resource, with the replies to its block's operations, their
    /// inputs and outputs left out.
    Blocks,
    /// One resource, with the replies to its block's operations, whole.
    Block(String),
    /// One resource, with this site's replies to it, their outputs left out.
    RanHere(String),
}

/// Reads what `reading` asks for from the database of `site`.
pub async fn read(
    couch: &CouchClient,
    site: &str,
    reading: &Reading,
) -> Result<Documents, ReplicatorError> {
    Ok(match reading {
        Reading::Resources => Documents::new(queries::resources(couch).await?, []),
        Reading::Runs => {
            let mut docs = Documents::new(queries::resources(couch).await?, []);
            docs.runs = queries::runs_by_resource(couch, site)
                .await?
                .into_iter()
                .map(|(resource, runs)| ((site.to_owned(), resource), runs))
                .collect();
            docs
        }
        Reading::Blocks => {
            let resources = queries::resources(couch).await?;
            let requests: Vec<(&str, &str)> = resources
                .iter()
                .filter(|r| r.lives_on(site))
                .flat_map(|r| {
                    r.operations
                        .iter()
                        .map(|op| (r.id.as_str(), op.request_id.as_str()))
                })
                .collect();
            let replies = queries::replies_to(couch, &requests).await?;
            let replies: Vec<ReplyDocument> = replies.into_iter().map(|row| row.reply).collect();
            Documents::new(resources, replies)
        }
        Reading::Block(id) => {
            let Some(resource) = queries::resource(couch, id).await? else {
                return Ok(Documents::default());
            };
            let requests: Vec<(&str, &str)> = resource
                .operations
                .iter()
                .map(|op| (id.as_str(), op.request_id.as_str()))
                .collect();
            let ids: Vec<String> = queries::replies_to(couch, &requests)
                .await?
                .into_iter()
                .map(|row| row.id)
                .collect();
            let mut replies = Vec::new();
            for page in ids.chunks(DOCS_PAGE) {
                let docs: Vec<Option<Value>> = couch.get_many(page).await?;
                replies.extend(
                    docs.into_iter()
                        .flatten()
                        .filter_map(|doc| ReplyDocument::deserialize(doc).ok()),
                );
            }
            Documents::new(vec![resource], replies)
        }
        Reading::RanHere(id) => {
            let Some(resource) = queries::resource(couch, id).await? else {
                return Ok(Documents::default());
            };
            let ids = queries::replies_of_site(couch, id, site).await?;
            let mut replies = Vec::new();
            for page in ids.chunks(DOCS_PAGE) {
                let ran: Vec<Option<Ran>> = couch.get_many(page).await?;
                replies.extend(ran.into_iter().flatten().map(Ran::into_reply));
            }
            Documents::new(vec![resource], replies)
        }
    })
}

/// Replies read per request.
const DOCS_PAGE: usize = 200;

/// A reply without its output.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Ran {
    #[serde(rename = "Site")]
    site: String,
    #[serde(rename = "RequestId")]
    request_id: String,
    #[serde(rename = "ResourceId")]
    resource_id: String,
    #[serde(rename = "Status")]
    status: Value,
    #[serde(rename = "Input")]
    input: String,
    #[serde(rename = "ExecutionTime")]
    time: Value,
}

impl Ran {
    fn into_reply(self) -> ReplyDocument {
        ReplyDocument {
            site: self.site,
            request_id: self.request_id,
            resource_id: self.resource_id,
            status: serde_json::from_value(self.status).unwrap_or_default(),
            input: self.input,
            execution_time: serde_json::from_value(self.time).unwrap_or_default(),
            ..ReplyDocument::default()
        }
    }
}

/// The resources and replies a [`Reading`] asked for.
#[derive(Debug, Default)]
pub struct Documents {
    /// Resources by id, with their `_conflicts` when the answer held them.
    pub resources: Vec<ResourceDocument>,
    /// Replies by resource id, oldest execution first.
    pub replies: BTreeMap<String, Vec<ReplyDocument>>,
    /// By `(site, resource)`: how many replies the site wrote, and the
    /// latest execution time among them.
    pub runs: BTreeMap<(String, String), Runs>,
}

/// A site's runs of one resource's operations, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runs {
    pub count: usize,
    pub last: Timestamp,
}

impl Documents {
    /// Resources sorted by id, and replies grouped by resource, oldest
    /// first.
    pub fn new(
        mut resources: Vec<ResourceDocument>,
        replies: impl IntoIterator<Item = ReplyDocument>,
    ) -> Documents {
        resources.sort_by(|a, b| a.id.cmp(&b.id));
        let mut grouped: BTreeMap<String, Vec<ReplyDocument>> = BTreeMap::new();
        for reply in replies {
            grouped
                .entry(reply.resource_id.clone())
                .or_default()
                .push(reply);
        }
        let mut runs: BTreeMap<(String, String), Runs> = BTreeMap::new();
        for replies in grouped.values_mut() {
            replies.sort_by_key(|r| r.execution_time);
            for reply in replies.iter() {
                let key = (reply.site.clone(), reply.resource_id.clone());
                let counted = runs.entry(key).or_default();
                counted.count += 1;
                counted.last = counted.last.max(reply.execution_time);
            }
        }
        Documents {
            resources,
            replies: grouped,
            runs,
        }
    }

    /// How many times `site` ran operations of resource `id`, and when last.
    pub fn runs(&self, site: &str, id: &str) -> Runs {
        self.runs
            .get(&(site.to_owned(), id.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// Reads an `_all_docs?include_docs=true&conflicts=true` answer.
    pub fn from_all_docs(all_docs: &Value) -> Documents {
        let mut resources = Vec::new();
        let mut replies = Vec::new();
        let docs = all_docs["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row.get("doc"));
        for doc in docs {
            let kind = DocumentKind::deserialize(doc).unwrap_or_default();
            if kind.is_resource() {
                resources.extend(ResourceDocument::deserialize(doc).ok());
            } else if kind.is_reply() {
                replies.extend(ReplyDocument::deserialize(doc).ok());
            }
        }
        Documents::new(resources, replies)
    }

    /// The resources that live on `site`.
    pub fn resources_on<'a>(
        &'a self,
        site: &'a str,
    ) -> impl Iterator<Item = &'a ResourceDocument> + 'a {
        self.resources.iter().filter(move |r| r.lives_on(site))
    }

    /// Resource `id`, if it lives on `site`.
    pub fn resource_on(&self, site: &str, id: &str) -> Option<&ResourceDocument> {
        self.resources
            .iter()
            .find(|r| r.id == id && r.lives_on(site))
    }

    /// Every reply of resource `id`, from any site, oldest first.
    pub fn replies_of(&self, id: &str) -> &[ReplyDocument] {
        self.replies.get(id).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_cheops_documents_that_read_are_kept() {
        let all = json!({"rows": [
            {"id": "_design/cheops", "doc": {"_id": "_design/cheops", "views": {}}},
            {"id": "b", "doc": {"_id": "b", "Type": "RESOURCE", "Locations": ["s1"], "Operations": null, "Config": {"ResolutionMatrix": null}}},
            {"id": "a", "doc": {"_id": "a", "Type": "RESOURCE", "Locations": ["s2"], "Operations": null, "Config": {"ResolutionMatrix": null}, "_conflicts": ["2-x"]}},
            {"id": "bad", "doc": {"_id": "bad", "Type": "RESOURCE", "Locations": "not a list"}},
            {"id": "r", "doc": {"_id": "r", "Type": "REPLY", "Site": "s1", "ResourceId": "b", "RequestId": "1", "Status": "OK"}},
            {"id": "other", "doc": {"_id": "other", "hello": "world"}},
            {"id": "gone", "value": {"deleted": true}}
        ]});
        let docs = Documents::from_all_docs(&all);
        let ids: Vec<&str> = docs.resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "sorted by id, the unreadable one left out");
        assert_eq!(docs.resources[0].conflicts, ["2-x"]);
        assert_eq!(docs.replies_of("b").len(), 1);
        assert!(docs.replies_of("a").is_empty());
        assert!(docs.resource_on("s1", "b").is_some());
        assert!(docs.resource_on("s1", "a").is_none(), "a lives on s2 only");
    }
}
