//! Convergence: during a partition every site takes K operations on the
//! same resource; once the network heals, how long until every site holds
//! the same merged block and every site's reply to each of its operations.

use std::time::{Duration, Instant};

use super::client::ExecClient;
use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// The resource every site writes to.
const RESOURCE: &str = "bench-convergence";

/// What the heal led to.
#[derive(Debug, Clone, Copy)]
pub struct Converged {
    /// Operations each site took during the partition.
    pub ops_per_site: usize,
    /// From the heal to convergence.
    pub elapsed: Duration,
    /// The merged block's length.
    pub operations: usize,
}

pub async fn measure(
    cluster: &Cluster,
    client: &ExecClient,
    ops_per_site: usize,
) -> Result<Converged, Failure> {
    // Every site holds the resource before the partition, as in real use.
    let created = client.exec(0, RESOURCE, "true", "add").await?;
    if created.replied < SITES {
        return Err(format!(
            "creating {RESOURCE}: {} of {SITES} sites replied",
            created.replied
        ));
    }
    cluster.partition();
    let writers = (0..SITES).map(|via| async move {
        for n in 0..ops_per_site {
            let done = client.exec_local(via, RESOURCE, "true", "add").await?;
            if done.replied == 0 {
                return Err(format!(
                    "operation {n} through site{} got no reply",
                    via + 1
                ));
            }
        }
        Ok::<_, Failure>(())
    });
    let written = futures::future::join_all(writers).await;
    cluster.heal();
    let start = Instant::now();
    written.into_iter().collect::<Result<Vec<()>, Failure>>()?;
    let everywhere: Vec<usize> = (0..SITES).collect();
    let doc = cluster.converged(RESOURCE, &everywhere).await;
    let elapsed = start.elapsed();
    let operations = doc["Operations"].as_array().map_or(0, Vec::len);
    Ok(Converged {
        ops_per_site,
        elapsed,
        operations,
    })
}
