//! The floor: what an exec costs without Cheops. A document written on
//! site1 travels to site2 and site3, each answers with a document of its
//! own, and the answers travel back to site1, through the same sidecars and
//! the same filtered replications (documents whose `Locations` name a site
//! go to it). The daemons ignore these documents (their `Type` is neither
//! `RESOURCE` nor `REPLY`). An exec does the same trips, plus the daemons'
//! work: the floor is the best it can do.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use tokio::task::JoinHandle;

use super::feed::Feed;
use super::{Failure, SITES};
use cheops_tests::Cluster;

/// The `Type` of the floor's documents.
const KIND: &str = "BENCH";
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
}

impl RoundTrip {
    /// Starts watching site1 and answering on the other sites.
    pub async fn open(cluster: &Cluster) -> Result<RoundTrip, Failure> {
        let http = reqwest::Client::new();
        let sites: Vec<String> = (0..SITES).map(|i| cluster.node(i).site.clone()).collect();
        let origin_url = cluster.node(0).couch_url();
        let origin = Feed::open(&http, &sites[0], &origin_url).await?;
        let mut responders = Vec::new();
        for i in 1..SITES {
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
        })
    }

    /// Times one round trip: from writing on site1 until both answers
    /// arrived there. Returns the round's number with its time.
    pub async fn time(&mut self) -> Result<(usize, Duration), Failure> {
        let round = self.round;
        self.round += 1;
        let start = Instant::now();
        put(
            &self.http,
            &self.origin_url,
            &document(&self.sites, 0, round),
        )
        .await?;
        let mut waiting: BTreeSet<&str> = self.sites[1..].iter().map(String::as_str).collect();
        let origin = &mut self.origin;
        let answers = async {
            while !waiting.is_empty() {
                let doc = origin.next().await?;
                if of_round(&doc, round) {
                    if let Some(from) = doc["From"].as_str() {
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

/// Whether `doc` is one of the documents of round `round`: each site
/// writes one.
pub fn of_round(doc: &Value, round: usize) -> bool {
    doc["Type"] == KIND && doc["Round"] == round
}

/// Site `me` answers each round's document from site1 with its own, as a
/// daemon answers an operation with its reply.
async fn answer(
    mut feed: Feed,
    http: reqwest::Client,
    couch_url: String,
    sites: Vec<String>,
    me: usize,
) -> Result<(), Failure> {
    loop {
        let doc = feed.next().await?;
        if doc["Type"] != KIND || doc["From"] != sites[0].as_str() {
            continue;
        }
        let Some(round) = doc["Round"].as_u64() else {
            continue;
        };
        put(&http, &couch_url, &document(&sites, me, round as usize)).await?;
    }
}

/// The document site `from` writes in `round`, for every site.
fn document(sites: &[String], from: usize, round: usize) -> Value {
    json!({
        "_id": format!("bench-floor-{round}-{}", sites[from]),
        "Type": KIND,
        "Locations": sites,
        "Round": round,
        "From": sites[from],
    })
}

async fn put(http: &reqwest::Client, couch_url: &str, doc: &Value) -> Result<(), Failure> {
    let id = doc["_id"].as_str().unwrap_or_default();
    http.put(format!("{couch_url}/{id}"))
        .json(doc)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("writing {id}: {e}"))?;
    Ok(())
}
