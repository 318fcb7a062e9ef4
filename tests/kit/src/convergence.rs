//! When a resource has converged: every site it lives on holds the same
//! revision of its document, without conflicts, the same replies, and a
//! reply from every site to every operation of its block. Shared by the
//! tests, which wait for it, and by `cheops-cluster status`, which reports
//! it. Agreeing databases are not yet settled ones: the tests and chaos
//! also wait until every daemon is [`quiet`] and the databases read the
//! same afterwards.

use std::collections::{BTreeMap, BTreeSet};

use cheops_model::history_id;
use serde_json::Value;

use crate::scrape::Scrape;

/// The JSON `url` answers on `site`'s CouchDB; the error says which site
/// failed, and how.
pub async fn get_json(http: &reqwest::Client, site: &str, url: &str) -> Result<Value, String> {
    let what = format!("{site}'s database");
    answer(http.get(url), &what)
        .await?
        .json()
        .await
        .map_err(|e| format!("{what} sent an unreadable answer: {e}"))
}

/// The successful answer to `request`; the error names `what` did not
/// answer, and how.
async fn answer(request: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response, String> {
    request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{what} does not answer: {e}"))
}

/// Every document of one site's database, read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub site: String,
    docs: BTreeMap<String, Value>,
}

impl Snapshot {
    /// Reads `couch_url` (the database URL, credentials included) with
    /// conflicts; the error says what failed.
    pub async fn read(
        http: &reqwest::Client,
        site: &str,
        couch_url: &str,
    ) -> Result<Snapshot, String> {
        let url = format!("{couch_url}/_all_docs?include_docs=true&conflicts=true");
        let answer = get_json(http, site, &url).await?;
        Ok(Snapshot::from_all_docs(site, &answer))
    }

    /// `site`'s documents from an `_all_docs?include_docs=true` answer.
    pub fn from_all_docs(site: &str, answer: &Value) -> Snapshot {
        let docs = answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| Some((row["id"].as_str()?.to_owned(), row["doc"].clone())))
            .filter(|(_, doc)| doc.is_object())
            .collect();
        Snapshot {
            site: site.to_owned(),
            docs,
        }
    }

    /// The document `id`, if this site has it.
    pub fn doc(&self, id: &str) -> Option<&Value> {
        self.docs.get(id)
    }

    /// Resource `doc` (`id`) with each pruned operation of its block whole
    /// again, as this site holds it (its history document, or the reply
    /// that carries it): the block the sites ran (CONSISTENCY.md,
    /// "Pruning"). A pruned operation held whole nowhere here stays as it
    /// is.
    pub fn whole(&self, id: &str, mut doc: Value) -> Value {
        let held = self.held_whole(id);
        let ops = doc["Operations"].as_array_mut().into_iter().flatten();
        for op in ops.filter(|op| op["Pruned"] == true) {
            let request = op["RequestId"].as_str().unwrap_or_default();
            if let Some(whole) = held.get(request) {
                *op = (*whole).clone();
            }
        }
        doc
    }

    /// The operations of resource `id` this site holds whole outside its
    /// block, by request id: in history documents, and in the replies that
    /// carry them (CONSISTENCY.md, "History documents").
    pub fn held_whole(&self, id: &str) -> BTreeMap<&str, &Value> {
        let mut held = BTreeMap::new();
        for (doc_id, doc) in &self.docs {
            let history = doc["Type"] == "HISTORY" && doc_id.starts_with(&history_id(id, ""));
            let carrier = doc["Type"] == "REPLY" && doc["ResourceId"] == id;
            let operation = &doc["Operation"];
            if (history || carrier) && operation.is_object() {
                if let Some(request) = operation["RequestId"].as_str() {
                    held.entry(request).or_insert(operation);
                }
            }
        }
        held
    }

    /// The ids of the resource documents stored here.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.docs
            .iter()
            .filter(|(_, doc)| doc["Type"] == "RESOURCE")
            .map(|(id, _)| id.as_str())
    }

    /// The replies stored here for resource `id`, by document id.
    pub fn replies(&self, id: &str) -> BTreeMap<&str, &Value> {
        self.docs
            .iter()
            .filter(|(_, doc)| doc["Type"] == "REPLY" && doc["ResourceId"] == id)
            .map(|(doc_id, doc)| (doc_id.as_str(), doc))
            .collect()
    }
}

/// Every resource id found on any of `snapshots`.
pub fn resource_ids(snapshots: &[Snapshot]) -> BTreeSet<String> {
    snapshots
        .iter()
        .flat_map(Snapshot::resources)
        .map(str::to_owned)
        .collect()
}

/// Whether `site`'s daemon (its API at `api_url`) has nothing left to do:
/// its follower has handed over every change of its database, its runner
/// has nothing scheduled, its journal nothing unstored (its `/metrics`, read
/// with `read_token`). The error says what it still does. A database can
/// look converged while a daemon still has work that changes it: running
/// a block again after a merge, whose replies come next.
pub async fn quiet(
    http: &reqwest::Client,
    site: &str,
    api_url: &str,
    read_token: &str,
) -> Result<(), String> {
    let what = format!("{site}'s /metrics");
    let request = http
        .get(format!("{api_url}/metrics"))
        .bearer_auth(read_token);
    let text = answer(request, &what)
        .await?
        .text()
        .await
        .map_err(|e| format!("{what} sent an unreadable answer: {e}"))?;
    let scrape = Scrape::parse(&text);
    if !scrape.has("cheops_changes_lag") {
        return Err(format!("{site} does not know how far its follower is"));
    }
    for gauge in [
        "cheops_changes_lag",
        "cheops_runner_scheduled",
        "cheops_journal_unstored",
    ] {
        let value = scrape.sum(gauge, &[]);
        if value != 0.0 {
            return Err(format!("{site} has {gauge} {value}"));
        }
    }
    Ok(())
}

/// Whether `before` and `after` (the same sites, in the same order) hold
/// the same documents of resource `id`: its own and its replies.
pub fn same_resource(before: &[Snapshot], after: &[Snapshot], id: &str) -> bool {
    before.len() == after.len()
        && before.iter().zip(after).all(|(b, a)| {
            b.site == a.site && b.doc(id) == a.doc(id) && b.replies(id) == a.replies(id)
        })
}

/// Checks that resource `id` has converged over its locations; returns its
/// document, or why it has not converged yet.
pub fn check(snapshots: &[Snapshot], id: &str) -> Result<Value, String> {
    let first = snapshots
        .iter()
        .find_map(|s| s.doc(id))
        .ok_or_else(|| format!("no site has {id}"))?;
    let locations: Vec<&str> = first["Locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut holders = Vec::new();
    for site in &locations {
        let snapshot = snapshots
            .iter()
            .find(|s| s.site == *site)
            .ok_or_else(|| format!("{site} is a location of {id} but not a known node"))?;
        let doc = snapshot
            .doc(id)
            .ok_or_else(|| format!("{site} does not have it yet"))?;
        holders.push((snapshot, doc));
    }
    let Some(&(_, reference)) = holders.first() else {
        return Err(format!("{id} has no locations"));
    };
    for (snapshot, doc) in &holders {
        let site = &snapshot.site;
        if let Some(conflicts) = doc.get("_conflicts") {
            return Err(format!("{site} has conflicting revisions {conflicts}"));
        }
        if doc["_rev"] != reference["_rev"] || doc["Operations"] != reference["Operations"] {
            return Err(format!(
                "{site} has revision {} where {} has {}",
                doc["_rev"], holders[0].0.site, reference["_rev"]
            ));
        }
    }
    let operations = reference["Operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reference_replies: BTreeSet<&str> = holders[0].0.replies(id).into_keys().collect();
    for (snapshot, _) in &holders {
        let replies = snapshot.replies(id);
        for operation in &operations {
            for site in &locations {
                let replied = replies.values().any(|reply| {
                    reply["RequestId"] == operation["RequestId"] && reply["Site"] == *site
                });
                if !replied {
                    return Err(format!(
                        "{} has no reply from {site} to operation {}",
                        snapshot.site, operation["RequestId"]
                    ));
                }
            }
        }
        if replies.keys().copied().collect::<BTreeSet<_>>() != reference_replies {
            return Err(format!(
                "{} and {} hold different replies",
                snapshot.site, holders[0].0.site
            ));
        }
    }
    Ok(reference.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(site: &str, docs: &[Value]) -> Snapshot {
        Snapshot {
            site: site.into(),
            docs: docs
                .iter()
                .map(|d| (d["_id"].as_str().unwrap_or_default().to_owned(), d.clone()))
                .collect(),
        }
    }

    fn resource(rev: &str) -> Value {
        json!({"_id": "r", "_rev": rev, "Type": "RESOURCE", "Locations": ["a", "b"],
               "Operations": [{"RequestId": "q"}]})
    }

    fn reply(site: &str) -> Value {
        json!({"_id": format!("reply-{site}"), "Type": "REPLY", "ResourceId": "r",
               "RequestId": "q", "Site": site, "Status": "OK"})
    }

    #[test]
    fn converged_when_same_revision_and_every_reply_everywhere() {
        let all = [resource("2-x"), reply("a"), reply("b")];
        let snapshots = [snapshot("a", &all), snapshot("b", &all)];
        assert_eq!(
            check(&snapshots, "r").map(|d| d["_rev"].clone()),
            Ok(json!("2-x"))
        );
        assert_eq!(
            resource_ids(&snapshots).into_iter().collect::<Vec<_>>(),
            ["r"]
        );
    }

    #[test]
    fn the_same_resource_means_the_same_document_and_replies() {
        let all = [resource("2-x"), reply("a"), reply("b")];
        let before = [snapshot("a", &all), snapshot("b", &all)];
        assert!(same_resource(&before, &before.clone(), "r"));
        let mut again = reply("b");
        again["Status"] = json!("KO");
        let changed = [
            [
                snapshot("a", &all),
                snapshot("b", &[resource("3-y"), reply("a"), reply("b")]),
            ],
            [
                snapshot("a", &all),
                snapshot("b", &[resource("2-x"), reply("a"), again]),
            ],
            [
                snapshot("a", &all),
                snapshot("b", &[resource("2-x"), reply("a")]),
            ],
        ];
        for after in changed {
            assert!(!same_resource(&before, &after, "r"));
        }
        assert!(!same_resource(&before, &before[..1], "r"));
    }

    #[test]
    fn names_what_is_missing() {
        let a = snapshot("a", &[resource("2-x"), reply("a"), reply("b")]);
        let stale = snapshot("b", &[resource("1-y"), reply("a"), reply("b")]);
        let no_reply = snapshot("b", &[resource("2-x"), reply("b")]);
        let mut conflicted = resource("2-x");
        conflicted["_conflicts"] = json!(["2-z"]);
        let conflicts = snapshot("b", &[conflicted, reply("a"), reply("b")]);
        let cases = [
            (vec![a.clone()], "b is a location of r but not a known node"),
            (
                vec![a.clone(), snapshot("b", &[])],
                "b does not have it yet",
            ),
            (
                vec![a.clone(), stale],
                "b has revision \"1-y\" where a has \"2-x\"",
            ),
            (
                vec![a.clone(), no_reply],
                "b has no reply from a to operation \"q\"",
            ),
            (vec![a, conflicts], "b has conflicting revisions [\"2-z\"]"),
        ];
        for (snapshots, why) in cases {
            assert_eq!(check(&snapshots, "r"), Err(why.to_owned()));
        }
    }
}
