//! `cheops-bench`: how fast a local three-site cluster is, measured the same
//! way every time. It starts its own [`Cluster`] (release daemons, real
//! sidecars) and measures, part by part:
//!
//! - the floor: a document written on site1 seen on site2 and site3, and an
//!   answer written there seen back on site1, through the very sidecars and
//!   filtered replications Cheops uses, but without Cheops: the best an
//!   exec can do;
//! - exec latency: sequential execs of `true` on one resource of 3 sites,
//!   from the request to the last reply, in turn with the floor's round
//!   trips (so that both see the machine alike);
//! - convergence: K operations per site on one resource during a
//!   partition, then the time from the heal until the cluster converged;
//! - throughput: concurrent clients over many resources for a fixed
//!   duration, with the daemons' and sidecars' CPU and memory under that
//!   load, without Cheops (its floor: the same document traffic at the
//!   same concurrency, see `load_floor`) and through Cheops, in slices
//!   ordered floor, Cheops, Cheops, floor;
//! - history: N sequential operations on one resource, each attaching a
//!   32 KiB file: how the exec p50 of the last tenth compares with that of
//!   the first, and the resource document's size at the end;
//! - stored: N resources written at once, the time the sites take to run
//!   them, the time a restarted daemon takes to catch up on them (and its
//!   floor: the same number of replies written in bulk and replicated),
//!   and the footprint with them stored.
//!
//! Latencies are also given as a ratio to the floor, throughput and
//! catch-up as a ratio to theirs; the CPU each process spends per
//! operation, and the requests and bytes each sidecar serves per operation
//! (Cheops and floor alike), say where the time goes.

mod client;
mod convergence;
mod docs;
mod feed;
mod floor;
mod growth;
mod history;
mod latency;
mod load_floor;
mod machine;
pub mod render;
mod report;
mod stats;
mod stored;
mod throughput;
mod traffic;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cheops_testkit::{Cluster, ClusterOptions};

pub use report::Report;

use client::ExecClient;
use traffic::{between, Meter};
use usage::Sampler;

/// A failed benchmark, said to the user as is.
pub type Failure = String;

/// The sites of every resource the benchmark creates.
const SITES: usize = 3;

/// One part of the benchmark, to run alone with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Idle,
    Floor,
    Latency,
    Convergence,
    Throughput,
    History,
    Growth,
    Stored,
}

impl Part {
    pub const ALL: [Part; 8] = [
        Part::Idle,
        Part::Floor,
        Part::Latency,
        Part::Convergence,
        Part::Throughput,
        Part::History,
        Part::Growth,
        Part::Stored,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Idle => "idle",
            Part::Floor => "floor",
            Part::Latency => "latency",
            Part::Convergence => "convergence",
            Part::Throughput => "throughput",
            Part::History => "history",
            Part::Growth => "growth",
            Part::Stored => "stored",
        }
    }
}

/// What one side of the throughput part got done, and what it cost.
struct Slices {
    load: throughput::Load,
    usage: usage::Window,
    traffic: Vec<traffic::Counts>,
}

impl Slices {
    fn add(
        this: &mut Option<Slices>,
        load: throughput::Load,
        usage: usage::Window,
        traffic: Vec<traffic::Counts>,
    ) {
        match this {
            None => {
                *this = Some(Slices {
                    load,
                    usage,
                    traffic,
                })
            }
            Some(slices) => {
                slices.load.add(load);
                slices.usage.add(usage);
                for (mine, theirs) in slices.traffic.iter_mut().zip(&traffic) {
                    mine.add(theirs);
                }
            }
        }
    }
}

/// The names of the throughput part's resources, Cheops' and the floor's.
const LOAD: &str = "bench-load";
const FLOOR_LOAD: &str = "bench-floor-load";

/// The throughput slices in order, `true` for the floor's.
const SLICES: [bool; 8] = [true, false, false, true, false, true, true, false];

/// How long the sidecars must have been still for a throughput slice to end.
const SLICE_QUIET: Duration = Duration::from_millis(250);
/// How long a throughput slice waits for that at most.
const SLICE_QUIET_AT_MOST: Duration = Duration::from_secs(10);

/// The throughput part: the floor's clients and Cheops' in eight slices of
/// a quarter of the duration each, in the order floor, Cheops, Cheops,
/// floor, Cheops, floor, floor, Cheops, each side on resources of its own,
/// the same from one of its slices to the next, so that what is measured
/// is operations on resources in use, not their creation; a
/// slice's window (CPU, requests) ends once the sidecars fell quiet, its
/// throughput when its last operation was answered. Whatever changes over
/// the part (the sidecars warm up, their databases grow) weighs on both
/// sides alike: the two sides' slices sit at positions whose sums and sums
/// of squares are equal, so a drift that is constant, linear or quadratic
/// in time cancels out (four slices, floor, Cheops, Cheops, floor, cancel
/// a linear one only, and the sidecars' warm-up is far from linear). One
/// slice of each side runs first, uncounted, on the sidecars still cold,
/// creating the resources.
async fn throughput_slices(
    cluster: &Cluster,
    client: &ExecClient,
    params: &Params,
) -> Result<(Slices, Slices, Vec<report::Slice>), Failure> {
    let quarter = Params {
        duration: params.duration / 4,
        ..params.clone()
    };
    let mut meter = Meter::start(cluster)?;
    // Uncounted: the first slice ran on cold sidecars (a fifth slower in a
    // quick run), a drift too steep for the order to cancel. It creates
    // each side's resources, which every slice after it goes on with.
    let floor_resources = Arc::new(load_floor::Resources::default());
    load_floor::measure(cluster, &quarter, FLOOR_LOAD, &floor_resources).await?;
    throughput::measure(client, &quarter, LOAD).await?;
    meter.quiet(SLICE_QUIET, SLICE_QUIET_AT_MOST).await?;
    let (mut floor, mut cheops) = (None, None);
    let mut each = Vec::new();
    for is_floor in SLICES {
        let before = meter.read(cluster)?;
        let sampler = Sampler::start(cluster)?;
        let load = if is_floor {
            load_floor::measure(cluster, &quarter, FLOOR_LOAD, &floor_resources).await?
        } else {
            throughput::measure(client, &quarter, LOAD).await?
        };
        // What the slice set off is its own cost, not the next one's.
        meter.quiet(SLICE_QUIET, SLICE_QUIET_AT_MOST).await?;
        let usage = sampler.finish().await?;
        let traffic = between(&before, &meter.read(cluster)?);
        each.push(report::Slice::new(is_floor, &load, &usage));
        Slices::add(
            if is_floor { &mut floor } else { &mut cheops },
            load,
            usage,
            traffic,
        );
    }
    match (floor, cheops) {
        (Some(floor), Some(cheops)) => Ok((floor, cheops, each)),
        _ => Err("the throughput part ran no slice".into()),
    }
}

/// What to measure, and how much.
#[derive(Debug, Clone)]
pub struct Params {
    /// Sequential execs for the latency, and round trips for the floor.
    pub samples: usize,
    /// Concurrent clients of the throughput part.
    pub clients: usize,
    /// Resources the clients spread over.
    pub resources: usize,
    /// How long the clients send operations.
    pub duration: Duration,
    /// Operations per site during the partition of the convergence part.
    pub ops: usize,
    /// Sequential operations with a file each in the history part.
    pub history: usize,
    /// Operations of the growth part's first stage (its second ends at ten
    /// times as many).
    pub growth: usize,
    /// Resources written at once in the stored part.
    pub stored: usize,
    /// How long the daemons' idle CPU is measured.
    pub idle: Duration,
    /// The parts to run, in [`Part::ALL`]'s order.
    pub parts: Vec<Part>,
    /// The `cheops` binary the daemons run.
    pub binary: PathBuf,
    /// Where the nodes keep their files (kept); a temporary directory
    /// otherwise.
    pub dir: Option<PathBuf>,
}

impl Params {
    /// The full run's sizes (`quick` false) or the small ones.
    pub fn new(quick: bool, binary: PathBuf) -> Params {
        Params {
            samples: if quick { 30 } else { 200 },
            clients: 16,
            resources: 64,
            duration: Duration::from_secs(if quick { 10 } else { 60 }),
            ops: if quick { 3 } else { 10 },
            history: if quick { 20 } else { 200 },
            growth: if quick { 20 } else { 100 },
            stored: if quick { 500 } else { 10_000 },
            idle: Duration::from_secs(if quick { 3 } else { 10 }),
            parts: Part::ALL.to_vec(),
            binary,
            dir: None,
        }
    }

    fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Runs the parts `params` names on a fresh cluster, printing progress on
/// standard error.
pub async fn run(params: &Params) -> Result<Report, Failure> {
    let mut report = Report::new(params);
    eprintln!("bench: starting {SITES} sites");
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: SITES,
        // Long enough that a slow reply under load is counted, not lost.
        reply_timeout: 120,
        redis: false,
        dir: params.dir.clone(),
        binary: Some(params.binary.clone()),
        count_traffic: true,
        // As deployed: what the daemons cost includes their logs.
        log: "info".into(),
        ..ClusterOptions::default()
    })
    .await;
    let client = ExecClient::new(&cluster);
    warm_up(&client).await?;

    if params.runs(Part::Idle) {
        eprintln!("bench: idle for {:?}", params.idle);
        let sampler = Sampler::start(&cluster)?;
        tokio::time::sleep(params.idle).await;
        report.footprint("idle", &sampler.finish().await?);
    }
    let (floor, exec) = if params.runs(Part::Floor) || params.runs(Part::Latency) {
        eprintln!(
            "bench: floor and exec latency, {} round trips each",
            params.samples
        );
        latency::measure(
            &cluster,
            &client,
            params.samples,
            params.runs(Part::Floor),
            params.runs(Part::Latency),
        )
        .await?
    } else {
        (None, None)
    };
    let floor = floor.map(|floor| {
        report.floor(&floor.latencies);
        report.cpu_per_operation("floor", &floor.usage, params.samples);
        report.traffic("floor", &floor.traffic, params.samples);
        floor.latencies
    });
    if let Some(exec) = exec {
        report.latency("exec", "sequential exec", &exec.latencies, floor.as_ref());
        report.cpu_per_operation("exec", &exec.usage, params.samples);
        report.traffic("exec", &exec.traffic, params.samples);
    }
    if params.runs(Part::Convergence) {
        eprintln!("bench: convergence, {} operations per site", params.ops);
        let converged = convergence::measure(&cluster, &client, params.ops).await?;
        report.convergence(&converged);
    }
    if params.runs(Part::Throughput) {
        eprintln!(
            "bench: throughput, {} clients over {} resources for {:?}",
            params.clients, params.resources, params.duration
        );
        let (load_floor, load, each) = throughput_slices(&cluster, &client, params).await?;
        report.throughput("load-floor", &load_floor.load, None, floor.as_ref());
        report.cpu_per_operation("load-floor", &load_floor.usage, load_floor.load.completed);
        report.traffic("load-floor", &load_floor.traffic, load_floor.load.completed);
        report.throughput("load", &load.load, Some(&load_floor.load), floor.as_ref());
        report.footprint("load", &load.usage);
        report.cpu_per_operation("load", &load.usage, load.load.completed);
        report.traffic("load", &load.traffic, load.load.completed);
        report.slices(&each);
    }
    if params.runs(Part::History) && params.history > 0 {
        eprintln!(
            "bench: history, {} operations with a 32 KiB file each",
            params.history
        );
        let growth = history::measure(&cluster, &client, params.history).await?;
        report.history(&growth);
    }
    if params.runs(Part::Growth) && params.growth > 0 {
        eprintln!(
            "bench: growth, {} then {} operations with 32 KiB files",
            params.growth,
            params.growth * 10
        );
        let grown = growth::measure(&cluster, &client, params.growth, params.idle).await?;
        report.growth(&grown);
    }
    if params.runs(Part::Stored) {
        eprintln!("bench: stored, {} resources", params.stored);
        let stored = stored::measure(&mut cluster, params.stored).await?;
        report.stored(&stored);
        eprintln!("bench: idle with {} resources stored", params.stored);
        let sampler = Sampler::start(&cluster)?;
        tokio::time::sleep(params.idle).await;
        report.footprint("stored", &sampler.finish().await?);
    }
    Ok(report)
}

/// One operation through each site, waiting for every reply: the
/// replications between every two sites exist afterwards (a daemon sets
/// them up when it first sees a resource naming the peer), so that no part
/// measures their setup.
async fn warm_up(client: &ExecClient) -> Result<(), Failure> {
    for via in 0..SITES {
        let done = client.exec(via, "bench-warm-up", "true", "add").await?;
        if done.replied < SITES {
            return Err(format!(
                "warming up through site{}: {} of {SITES} sites replied",
                via + 1,
                done.replied
            ));
        }
    }
    Ok(())
}
