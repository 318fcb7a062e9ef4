//! Throughput: C clients, each sending one operation at a time, spread over
//! R resources of every site, for a fixed duration. Client `c` sends
//! through site `c mod 3` and owns the resources `r` with `r mod C = c`, so
//! that no two operations on one resource are in flight at once (with fewer
//! resources than clients, clients share them and their operations may
//! conflict).

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::client::ExecClient;
use super::stats::Latencies;
use super::{Failure, Params, SITES};

/// What the clients got done, in one run or several.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Operations every site replied to.
    pub completed: usize,
    /// Operations some site did not reply to in time.
    pub incomplete: usize,
    /// From the first request to the last answer (the clients stop sending
    /// at the duration, and wait for what is in flight), summed over runs.
    pub elapsed: Duration,
    /// Latencies of the completed operations.
    samples: Vec<Duration>,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn latencies(&self) -> Latencies {
        Latencies::of(self.samples.clone())
    }

    /// Adds what another run got done.
    pub fn add(&mut self, other: Load) {
        self.completed += other.completed;
        self.incomplete += other.incomplete;
        self.elapsed += other.elapsed;
        self.samples.extend(other.samples);
    }
}

/// The resources client `c` of `clients` sends to, in turn: those `r` of
/// `resources` with `r mod clients = c`, or one it shares when there are
/// fewer resources than clients.
pub fn owned_resources(c: usize, clients: usize, resources: usize, prefix: &str) -> Vec<String> {
    let resources = resources.max(1);
    if c < resources {
        (c..resources)
            .step_by(clients.max(1))
            .map(|r| format!("{prefix}-{r}"))
            .collect()
    } else {
        vec![format!("{prefix}-{}", c % resources)]
    }
}

/// Runs the clients for `params.duration` over the resources named
/// `{prefix}-{r}`.
pub async fn measure(client: &ExecClient, params: &Params, prefix: &str) -> Result<Load, Failure> {
    let start = Instant::now();
    let deadline = start + params.duration;
    let clients = params.clients.max(1);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let owned = owned_resources(c, clients, params.resources, prefix);
            tokio::spawn(async move {
                let mut done = Vec::new();
                for id in owned.iter().cycle() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let exec = client.exec(c % SITES, id, "true", "add").await?;
                    done.push((exec.replied == SITES).then_some(exec.elapsed));
                }
                Ok::<_, Failure>(done)
            })
        })
        .collect();
    tally(workers, start).await
}

/// What the clients got done: each one's operations, each with its
/// latency, or `None` when some site did not reply in time.
pub async fn tally(
    workers: Vec<JoinHandle<Result<Vec<Option<Duration>>, Failure>>>,
    start: Instant,
) -> Result<Load, Failure> {
    let mut latencies = Vec::new();
    let mut incomplete = 0;
    for worker in workers {
        let done = worker
            .await
            .map_err(|e| format!("a client failed: {e}"))??;
        for sample in done {
            match sample {
                Some(elapsed) => latencies.push(elapsed),
                None => incomplete += 1,
            }
        }
    }
    Ok(Load {
        completed: latencies.len(),
        incomplete,
        elapsed: start.elapsed(),
        samples: latencies,
    })
}
