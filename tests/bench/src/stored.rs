//! Many resources at once: N resource documents (one operation `true`
//! each, on every site) written in bulk to site1 while site3's daemon is
//! stopped. Timed: until site1 and site2 replied to all of them, then, once
//! site3's daemon is started again, until it caught up (replied to all),
//! and until its replies reached site1. The catch-up's floor: N replies of
//! site3's, shaped as its own, written in bulk to its sidecar and
//! replicated until site1 holds them all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::docs::{self, FLOOR_REPLY};
use super::feed::Feed;
use super::traffic::{between, Counts, Meter};
use super::usage::{Sampler, Window};
use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// Documents per `_bulk_docs` request.
const CHUNK: usize = 1000;
/// How long the feeds may stay silent before the benchmark gives up.
const STALL: Duration = Duration::from_secs(120);
/// The node whose daemon is stopped, then catches up.
const LATE: usize = SITES - 1;

/// How long each step took, and what the processes used meanwhile.
#[derive(Debug, Clone)]
pub struct Stored {
    pub count: usize,
    /// Writing the documents to site1.
    pub write: Duration,
    /// From the first write until the running sites replied to all.
    pub ran: Duration,
    /// From starting the late daemon until it replied to all.
    pub catch_up: Duration,
    /// From starting the late daemon until site1 held every reply.
    pub settled: Duration,
    /// Until the running sites replied (the late daemon left out).
    pub ran_usage: Window,
    /// From starting the late daemon until it caught up.
    pub catch_up_usage: Window,
    /// The sidecars' requests and bytes from starting the late daemon
    /// until site1 held its replies.
    pub catch_up_traffic: Vec<Counts>,
    /// From the first bulk write of the floor's replies on the late site
    /// until site1 held them all.
    pub floor: Duration,
    pub floor_traffic: Vec<Counts>,
}

pub async fn measure(cluster: &mut Cluster, count: usize) -> Result<Stored, Failure> {
    let http = reqwest::Client::new();
    let sites: Vec<String> = (0..SITES).map(|i| cluster.node(i).site.clone()).collect();
    let late_site = sites[LATE].clone();
    cluster.stop_daemon(LATE);
    let mut origin = Feed::open(&http, &sites[0], &cluster.node(0).couch_url()).await?;
    let mut late = Feed::open(&http, &late_site, &cluster.node(LATE).couch_url()).await?;

    let sampler = Sampler::start(cluster)?;
    let start = Instant::now();
    let ids: Vec<String> = (0..count).map(|n| format!("bench-stored-{n}")).collect();
    for chunk in ids.chunks(CHUNK) {
        let resources = chunk
            .iter()
            .map(|id| docs::resource(id, &sites, vec![docs::operation(id, "true")]))
            .map(|doc| serde_json::to_value(doc).unwrap_or_default())
            .collect();
        bulk_write(&http, &cluster.node(0).couch_url(), resources).await?;
    }
    let write = start.elapsed();

    // Who replied to which resource, as site1 sees it.
    let mut replied: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let running = &sites[..LATE];
    read_until(&mut origin, "the running sites' replies", |doc| {
        record_reply(doc, &mut replied);
        running
            .iter()
            .all(|s| replied.get(s).map_or(0, BTreeSet::len) == count)
    })
    .await?;
    let ran = start.elapsed();
    let ran_usage = sampler.finish().await?;

    let mut arrived = BTreeSet::new();
    read_until(
        &mut late,
        &format!("the resources to reach {late_site}"),
        |doc| {
            if doc["Type"] == "RESOURCE" && is_ours(doc) {
                arrived.insert(doc["_id"].as_str().unwrap_or_default().to_owned());
            }
            arrived.len() == count
        },
    )
    .await?;

    let mut meter = Meter::start(cluster)?;
    let before = meter.read(cluster)?;
    let restart = Instant::now();
    cluster.spawn_daemon(LATE);
    let sampler = Sampler::start(cluster)?;
    cluster.wait_healthy(LATE).await;
    let mut caught_up: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    read_until(&mut late, &format!("{late_site}'s replies"), |doc| {
        record_reply(doc, &mut caught_up);
        caught_up.get(&late_site).map_or(0, BTreeSet::len) == count
    })
    .await?;
    let catch_up = restart.elapsed();
    let catch_up_usage = sampler.finish().await?;
    read_until(
        &mut origin,
        &format!("{late_site}'s replies to reach site1"),
        |doc| {
            record_reply(doc, &mut replied);
            replied.get(&late_site).map_or(0, BTreeSet::len) == count
        },
    )
    .await?;
    let settled = restart.elapsed();
    let catch_up_traffic = between(&before, &meter.read(cluster)?);

    let before = meter.read(cluster)?;
    let start = Instant::now();
    for chunk in ids.chunks(CHUNK) {
        let replies = chunk
            .iter()
            .map(|id| docs::reply(format!("{id}-floor"), &sites, &late_site, id, id))
            .collect();
        bulk_write(&http, &cluster.node(LATE).couch_url(), replies).await?;
    }
    let mut arrived = 0;
    read_until(&mut origin, "the floor's replies to reach site1", |doc| {
        if doc["Type"] == FLOOR_REPLY && is_ours(doc) {
            arrived += 1;
        }
        arrived == count
    })
    .await?;
    let floor = start.elapsed();
    let floor_traffic = between(&before, &meter.read(cluster)?);
    Ok(Stored {
        count,
        write,
        ran,
        catch_up,
        settled,
        ran_usage,
        catch_up_usage,
        catch_up_traffic,
        floor,
        floor_traffic,
    })
}

fn is_ours(doc: &Value) -> bool {
    let id = if doc["Type"] == "REPLY" || doc["Type"] == FLOOR_REPLY {
        &doc["ResourceId"]
    } else {
        &doc["_id"]
    };
    id.as_str()
        .is_some_and(|id| id.starts_with("bench-stored-"))
}

/// Notes a reply to one of the stored resources, by site.
fn record_reply(doc: &Value, replied: &mut BTreeMap<String, BTreeSet<String>>) {
    if doc["Type"] != "REPLY" || !is_ours(doc) {
        return;
    }
    if let (Some(site), Some(resource)) = (doc["Site"].as_str(), doc["ResourceId"].as_str()) {
        replied
            .entry(site.to_owned())
            .or_default()
            .insert(resource.to_owned());
    }
}

/// Reads `feed` until `done` says so; fails when it stays silent for
/// [`STALL`].
async fn read_until(
    feed: &mut Feed,
    what: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Result<(), Failure> {
    loop {
        let doc = tokio::time::timeout(STALL, feed.next())
            .await
            .map_err(|_| format!("nothing arrived for {STALL:?} while waiting for {what}"))??;
        if done(&doc) {
            return Ok(());
        }
    }
}

/// Writes `docs` in one request.
async fn bulk_write(
    http: &reqwest::Client,
    couch_url: &str,
    docs: Vec<Value>,
) -> Result<(), Failure> {
    let answer: Value = http
        .post(format!("{couch_url}/_bulk_docs"))
        .json(&json!({ "docs": docs }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("writing in bulk: {e}"))?
        .json()
        .await
        .map_err(|e| format!("reading the answer to a bulk write: {e}"))?;
    let failed = answer
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row.get("error").is_some());
    match failed {
        Some(row) => Err(format!("a bulk write failed: {row}")),
        None => Ok(()),
    }
}
