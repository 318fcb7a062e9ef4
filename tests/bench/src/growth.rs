//! A database that grows tenfold: the daemons' memory and Chephren's
//! answer time after N operations, and again after 10 N. Clients send
//! operations with a 32 KiB file, whose command prints 32 KiB, to busy
//! resources whose every operation resets them (`set`, take-one), so that
//! the history documents and the replies grow tenfold while the blocks do
//! not; a quiet resource holds a few operations from the start. Every page
//! is timed on site1: the lists (which read every resource, never its
//! history) and the quiet resource's own pages.

use std::time::{Duration, Instant};

use futures::future::try_join_all;

use super::client::{ExecClient, Sent};
use super::history::payload;
use super::stats::Latencies;
use super::usage::{quiet, Sampler, Window};
use super::{Failure, SITES};
use cheops_testkit::convergence::get_json;
use cheops_testkit::Cluster;

/// Clients sending at once, each to its own busy resource.
const CLIENTS: usize = 8;
/// Operations on the quiet resource, sent first.
const QUIET_OPERATIONS: usize = 5;
const QUIET: &str = "bench-growth-quiet";
/// The longest the cluster is given to finish what the writes set off.
const QUIET_WAIT: Duration = Duration::from_secs(60);
/// Requests of each page per stage.
const REQUESTS: usize = 20;
/// The file each operation attaches, as its command names it.
const FILE: &str = "payload.bin";
/// Each busy operation: one `set` that replaces everything before it.
const CONFIG: &str = r#"{"ResolutionMatrix":[{"Before":"set","After":"set","Result":"take-one"}]}"#;

/// The pages timed, under `/api/`.
pub fn pages() -> [String; 7] {
    [
        "node".into(),
        "resources".into(),
        "blocks".into(),
        "cluster".into(),
        format!("resource/{QUIET}"),
        format!("block/{QUIET}"),
        format!("history/{QUIET}?limit=20"),
    ]
}

/// What a stage found.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Operations stored so far.
    pub operations: usize,
    /// Site1's documents, as its sidecar counts them.
    pub documents: u64,
    /// The daemons while the stage's operations ran, and idle after.
    pub writing: Window,
    pub idle: Window,
    /// Each page's answer times, and the sidecar bytes it read per request.
    pub pages: Vec<(String, Latencies, u64)>,
}

#[derive(Debug, Clone)]
pub struct Grown {
    pub first: Stage,
    pub last: Stage,
}

pub async fn measure(
    cluster: &Cluster,
    client: &ExecClient,
    operations: usize,
    idle: Duration,
) -> Result<Grown, Failure> {
    for n in 0..QUIET_OPERATIONS {
        let done = client
            .exec(n % SITES, QUIET, &format!("echo quiet {n}"), "add")
            .await?;
        if done.replied < SITES {
            return Err(format!(
                "{QUIET}: {} of {SITES} sites replied",
                done.replied
            ));
        }
    }
    let first = stage(cluster, client, 0, operations, idle).await?;
    let last = stage(cluster, client, operations, operations * 10, idle).await?;
    Ok(Grown { first, last })
}

/// Sends operations `from..to`, spread over the clients, then times the
/// pages.
async fn stage(
    cluster: &Cluster,
    client: &ExecClient,
    from: usize,
    to: usize,
    idle: Duration,
) -> Result<Stage, Failure> {
    let sampler = Sampler::start(cluster)?;
    let sends = (0..CLIENTS).map(|c| {
        let client = client.clone();
        async move {
            for n in (from..to).filter(|n| n % CLIENTS == c) {
                let command = format!("base64 -w0 {{{FILE}}} | head -c 32768");
                let id = format!("bench-growth-{c}");
                let sent = Sent {
                    config: Some(CONFIG),
                    file: Some((FILE, payload(n))),
                    ..Sent::new(&id, &command, "set")
                };
                let done = client.exec_with(n % SITES, sent).await?;
                if done.replied < SITES {
                    return Err(format!(
                        "growth operation {n}: {} of {SITES} sites replied",
                        done.replied
                    ));
                }
            }
            Ok::<(), Failure>(())
        }
    });
    try_join_all(sends).await?;
    let writing = sampler.finish().await?;
    quiet(cluster, QUIET_WAIT).await?;
    let sampler = Sampler::start(cluster)?;
    tokio::time::sleep(idle).await;
    let idle = sampler.finish().await?;
    let http = cheops_testkit::authorized_client(cluster.read_token());
    let chephren = cluster.node(0).chephren_url();
    let mut pages = Vec::new();
    for page in self::pages() {
        let url = format!("{chephren}/api/{page}");
        // Once unmeasured: a view's index catches up with the stage.
        get_json(&http, "site1", &url).await?;
        let before = cluster.sidecar_bytes(0).map_or(0, |(_, out)| out);
        let mut samples = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let start = Instant::now();
            get_json(&http, "site1", &url).await?;
            samples.push(start.elapsed());
        }
        let read = cluster.sidecar_bytes(0).map_or(0, |(_, out)| out) - before;
        pages.push((page, Latencies::of(samples), read / REQUESTS as u64));
    }
    let info = get_json(
        &reqwest::Client::new(),
        "site1",
        &cluster.node(0).couch_url(),
    )
    .await?;
    Ok(Stage {
        operations: to,
        documents: info["doc_count"].as_u64().unwrap_or_default(),
        writing,
        idle,
        pages,
    })
}
