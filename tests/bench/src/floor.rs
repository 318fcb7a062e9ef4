//! The floor: what an exec costs without Cheops. Site1 writes the next
//! revision of a resource document (its block one operation longer, as
//! `/exec` writes it); it travels to site2 and site3; every site, site1
//! included, answers with a reply of its own, and the replies travel to
//! every site, through the same sidecars and the same filtered replications
//! (documents whose `Locations` name a site go to it). The round ends when
//! site1 holds every site's reply, as an exec does. The daemons ignore
//! these documents (their `Type` is neither `RESOURCE` nor `REPLY`). An
//! exec makes the same documents and trips, plus the daemons' work: the
//! floor is the best it can do.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cheops_model::Operation;
use serde_json::Value;

use tokio::task::JoinHandle;

use super::docs;
use super::feed::Feed;
use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// The `Type` of the floor's resource document.
const ROUND: &str = "BENCH-ROUND";
/// The `Type` of the floor's replies.
const ANSWER: &str = "BENCH-ANSWER";
/// The floor's resource document, one operation longer each round.
const RESOURCE: &str = "bench-floor-latency";
/// How long a round may take before the benchmark gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// Site1's view of the round trips, with site2 and site3 answering.
pub struct RoundTrip {
    http: reqwest::Client,
    sites: Vec<String>,
    origin_url: String,
    origin: Feed,
    responders: Vec<JoinHandle<Result<(), Failure>>>,
    round: usize,
    /// The resource document's revision and block.
    rev: Option<String>,
    block: Vec<Operation>,
}

impl RoundTrip {
    /// Starts watching site1 and answering on every site.
    pub async fn open(cluster: &Cluster) -> Result<RoundTrip, Failure> {
        let http = reqwest::Client::new();
        let sites: Vec<String> = (0..SITES).map(|i| cluster.node(i).site.clone()).collect();
        let origin_url = cluster.node(0).couch_url();
        let origin = Feed::open(&http, &sites[0], &origin_url).await?;
        let mut responders = Vec::new();
        for i in 0..SITES {
            let url = cluster.node(i).couch_url();
            let feed = Feed::open(&http, &sites[i], &url).await?;
            responders.push(tokio::spawn(answer(
                feed,
                http.clone(),
                url,
                sites.clone(),
                i,
            )));
        }
        Ok(RoundTrip {
            http,
            sites,
            origin_url,
            origin,
            responders,
            round: 0,
            rev: None,
            block: Vec::new(),
        })
    }

    /// Times one round trip: from writing on site1 until every site's
    /// answer arrived there. Returns the round's number with its time.
    pub async fn time(&mut self) -> Result<(usize, Duration), Failure> {
        let round = self.round;
        self.round += 1;
        self.block
            .push(docs::operation(&format!("{RESOURCE}-{round}"), "true"));
        let mut doc = docs::resource(RESOURCE, &self.sites, self.block.clone());
        doc.rev = self.rev.clone();
        let mut doc =
            docs::floor_kind(serde_json::to_value(doc).map_err(|e| e.to_string())?, ROUND);
        doc["Round"] = Value::from(round);
        let start = Instant::now();
        self.rev = Some(put(&self.http, &self.origin_url, &doc).await?);
        let mut waiting: BTreeSet<&str> = self.sites.iter().map(String::as_str).collect();
        let origin = &mut self.origin;
        let answers = async {
            while !waiting.is_empty() {
                let doc = origin.next().await?;
                if of_round(&doc, round) {
                    if let Some(from) = doc["Site"].as_str() {
                        waiting.remove(from);
                    }
                }
            }
            Ok::<_, Failure>(())
        };
        tokio::time::timeout(ROUND_TIMEOUT, answers)
            .await
            .map_err(|_| format!("floor round {round}: no answer after {ROUND_TIMEOUT:?}"))??;
        Ok((round, start.elapsed()))
    }
}

impl Drop for RoundTrip {
    fn drop(&mut self) {
        for responder in &self.responders {
            responder.abort();
        }
    }
}

/// Whether `doc` is one of the replies of round `round`: each site writes
/// one.
pub fn of_round(doc: &Value, round: usize) -> bool {
    doc["Type"] == ANSWER && doc["Round"] == round
}

/// Site `me` answers each revision of the round's resource document with a
/// reply of its own, as a daemon answers an operation.
async fn answer(
    mut feed: Feed,
    http: reqwest::Client,
    couch_url: String,
    sites: Vec<String>,
    me: usize,
) -> Result<(), Failure> {
    loop {
        let doc = feed.next().await?;
        let Some(round) = doc["Round"].as_u64().filter(|_| doc["Type"] == ROUND) else {
            continue;
        };
        let request = format!("{RESOURCE}-{round}");
        let site = &sites[me];
        let id = format!("bench-floor-answer-{round}-{site}");
        let mut answer = docs::reply(id, &sites, site, RESOURCE, &request);
        answer["Type"] = Value::from(ANSWER);
        answer["Round"] = Value::from(round);
        put(&http, &couch_url, &answer).await?;
    }
}

/// Writes `doc`, returning its new revision.
pub async fn put(http: &reqwest::Client, couch_url: &str, doc: &Value) -> Result<String, Failure> {
    let id = doc["_id"].as_str().unwrap_or_default();
    let answer: Value = http
        .put(format!("{couch_url}/{id}"))
        .json(doc)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("writing {id}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("reading the answer to writing {id}: {e}"))?;
    Ok(answer["rev"].as_str().unwrap_or_default().to_owned())
}
