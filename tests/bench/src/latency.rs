//! Exec latency against the floor: operations sent one after the other
//! through site1 on one resource of every site, each timed from the request
//! to the last site's reply, in turn with the floor's round trips, so that
//! both see the machine in the same state and their ratio holds from one
//! run to the next. Each round starts once the documents of the one before
//! have reached every site (the replies travel on after the last one
//! reached site1), so that no round pays for another. The CPU every process
//! spends is counted per kind of round.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::ExecClient;
use super::feed::Feed;
use super::floor::{self, RoundTrip};
use super::stats::Latencies;
use super::traffic::{between, Counts, Meter};
use super::usage::{Processes, Window};
use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// The resource the execs go to; its block grows by one operation each.
const RESOURCE: &str = "bench-latency";
/// How long a round's documents may take to reach every site.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One kind of round, timed.
pub struct Series {
    pub latencies: Latencies,
    /// What the processes spent during these rounds only.
    pub usage: Window,
    /// What each sidecar was asked during these rounds only.
    pub traffic: Vec<Counts>,
}

/// The cluster's processes and sidecars, read before and after each round.
struct Gauges<'a> {
    cluster: &'a Cluster,
    processes: Processes,
    meter: Meter,
}

/// The gauges' readings at a round's start.
struct Mark {
    cpu: Vec<f64>,
    traffic: Vec<Counts>,
}

/// Rounds of one kind, as they are timed.
struct Timed {
    samples: Vec<Duration>,
    cpu: Vec<f64>,
    traffic: Vec<Counts>,
    started: Instant,
    elapsed: Duration,
}

impl Timed {
    fn new(processes: &Processes) -> Timed {
        Timed {
            samples: Vec::new(),
            cpu: vec![0.0; processes.len()],
            traffic: vec![Counts::default(); SITES],
            started: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    fn start(&mut self, gauges: &mut Gauges) -> Result<Mark, Failure> {
        self.started = Instant::now();
        Ok(Mark {
            cpu: gauges.processes.cpu()?,
            traffic: gauges.meter.read(gauges.cluster)?,
        })
    }

    fn end(&mut self, gauges: &mut Gauges, mark: Mark, sample: Duration) -> Result<(), Failure> {
        self.elapsed += self.started.elapsed();
        let cpu = gauges.processes.cpu()?;
        for ((total, after), before) in self.cpu.iter_mut().zip(cpu).zip(mark.cpu) {
            *total += after - before;
        }
        let traffic = between(&mark.traffic, &gauges.meter.read(gauges.cluster)?);
        for (total, round) in self.traffic.iter_mut().zip(&traffic) {
            total.add(round);
        }
        self.samples.push(sample);
        Ok(())
    }

    fn series(self, processes: &Processes) -> Result<Series, Failure> {
        Ok(Series {
            usage: processes.window(self.elapsed, self.cpu)?,
            latencies: Latencies::of(self.samples),
            traffic: self.traffic,
        })
    }
}

/// How long the sidecars must have answered nothing before a window
/// ends, and the longest a window waits for it (background work, such as
/// liveness probes, never stops for long).
const QUIET: Duration = Duration::from_millis(250);
const QUIET_LONGEST: Duration = Duration::from_secs(3);

/// `samples` floor round trips (if `floor`) and execs of `true` (if
/// `exec`), alternating; each window ends once the sidecars are quiet, so
/// that the replication batches a round sets off count in its own window.
pub async fn measure(
    cluster: &Cluster,
    client: &ExecClient,
    samples: usize,
    floor: bool,
    exec: bool,
) -> Result<(Option<Series>, Option<Series>), Failure> {
    let mut gauges = Gauges {
        cluster,
        processes: Processes::of(cluster),
        meter: Meter::start(cluster)?,
    };
    let mut round_trip = match floor {
        true => Some(RoundTrip::open(cluster).await?),
        false => None,
    };
    let mut settle = Settle::open(cluster).await?;
    let mut floors = Timed::new(&gauges.processes);
    let mut execs = Timed::new(&gauges.processes);
    for n in 0..samples {
        if let Some(round_trip) = &mut round_trip {
            let mark = floors.start(&mut gauges)?;
            let (round, sample) = round_trip.time().await?;
            settle.wait(|doc| floor::of_round(doc, round)).await?;
            gauges.meter.quiet(QUIET, QUIET_LONGEST).await?;
            floors.end(&mut gauges, mark, sample)?;
        }
        if exec {
            let mark = execs.start(&mut gauges)?;
            let done = client.exec(0, RESOURCE, "true", "add").await?;
            if done.replied < SITES {
                return Err(format!(
                    "exec {n} on {RESOURCE}: {} of {SITES} sites replied",
                    done.replied
                ));
            }
            settle
                .wait(|doc| doc["Type"] == "REPLY" && doc["RequestId"] == done.request.as_str())
                .await?;
            gauges.meter.quiet(QUIET, QUIET_LONGEST).await?;
            execs.end(&mut gauges, mark, done.elapsed)?;
        }
    }
    let floor = match floor {
        true => Some(floors.series(&gauges.processes)?),
        false => None,
    };
    let exec = match exec {
        true => Some(execs.series(&gauges.processes)?),
        false => None,
    };
    Ok((floor, exec))
}

/// Every site's feed, to wait until a round's documents are everywhere.
struct Settle {
    feeds: Vec<Feed>,
}

impl Settle {
    async fn open(cluster: &Cluster) -> Result<Settle, Failure> {
        let http = reqwest::Client::new();
        let mut feeds = Vec::new();
        for i in 0..SITES {
            let node = cluster.node(i);
            feeds.push(Feed::open(&http, &node.site, &node.couch_url()).await?);
        }
        Ok(Settle { feeds })
    }

    /// Waits until every site has seen one document per site that
    /// `of_round` recognizes.
    async fn wait(&mut self, of_round: impl Fn(&Value) -> bool) -> Result<(), Failure> {
        for feed in &mut self.feeds {
            let mut seen = 0;
            while seen < SITES {
                let doc = tokio::time::timeout(SETTLE_TIMEOUT, feed.next())
                    .await
                    .map_err(|_| format!("a round did not settle in {SETTLE_TIMEOUT:?}"))??;
                if of_round(&doc) {
                    seen += 1;
                }
            }
        }
        Ok(())
    }
}
