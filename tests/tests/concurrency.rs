//! Many operations at once on one resource: none is lost, none runs twice.

use std::collections::BTreeMap;

use cheops_model::Status;
use cheops_testkit::{Cluster, Exec};
use serde_json::Value;

const SITES: &str = "site1&site2&site3";

/// The lines each node's `$NODE_DIR/log` holds, counted.
fn log_lines(cluster: &Cluster, i: usize) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(cluster.node(i).app_dir().join("log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Sends `count` commutative operations (`echo N >> $NODE_DIR/log`) at once,
/// through the nodes `via` in turn, and checks that every one was stored and
/// that no site failed it. A site may answer after the reply timeout on a
/// loaded machine (TIMEOUT): [`Cluster::converged`] then waits for it.
async fn send_at_once(cluster: &Cluster, id: &str, count: usize, via: &[usize]) {
    let commands: Vec<String> = (0..count)
        .map(|n| format!("echo {n} >> \"$NODE_DIR/log\""))
        .collect();
    let calls = commands.iter().enumerate().map(|(n, command)| {
        let node = via[n % via.len()];
        async move {
            let command = [command.as_str()];
            cluster
                .exec(node, Exec::new(id, SITES, &command, "add"))
                .await
        }
    });
    for (status, replies) in futures::future::join_all(calls).await {
        assert_eq!(status, 200);
        let replies = replies.expect("reply lines");
        assert_eq!(replies.len(), 3, "{replies:?}");
        assert!(
            replies.iter().all(|r| r.status != Status::Ko),
            "{replies:?}"
        );
    }
}

/// Every node's log holds `0`…`count - 1` exactly once each.
fn assert_each_ran_once_everywhere(cluster: &Cluster, count: usize) {
    let expected: BTreeMap<String, usize> = (0..count).map(|n| (n.to_string(), 1)).collect();
    for i in 0..3 {
        assert_eq!(
            log_lines(cluster, i),
            expected,
            "{} ran something twice or not at all",
            cluster.node(i).site
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_execs_through_one_node_all_run_once_everywhere() {
    let cluster = Cluster::start(3).await;
    send_at_once(&cluster, "counter", 50, &[0]).await;
    let doc = cluster.converged("counter", &[0, 1, 2]).await;
    assert_eq!(block_len(&doc), 50);
    assert_each_ran_once_everywhere(&cluster, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_execs_through_every_node_merge_into_one_block() {
    let cluster = Cluster::start(3).await;
    // Created first, so that every node adds to the same document.
    let (status, _) = cluster
        .exec(0, Exec::new("merged", SITES, &["true"], "add"))
        .await;
    assert_eq!(status, 200);
    cluster.converged("merged", &[0, 1, 2]).await;

    send_at_once(&cluster, "merged", 30, &[0, 1, 2]).await;
    let doc = cluster.converged("merged", &[0, 1, 2]).await;
    // The first operation, `true`, writes no log line.
    assert_eq!(block_len(&doc), 31);
    assert_each_ran_once_everywhere(&cluster, 30);
}

fn block_len(doc: &Value) -> usize {
    doc["Operations"].as_array().map_or(0, Vec::len)
}

/// SplitMix64, so that a seed names a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Clients sending at once, each through entry sites drawn at random, to a
/// few resources that every site holds: the use under which a replica
/// receives the deletion of a branch before the merge that replaces it
/// (CONSISTENCY.md, "When every leaf is a deletion"). Every token an exec
/// accepted runs exactly once on every site. `CHEOPS_CONCURRENCY_SEED`
/// replays a run's draws.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_execs_from_every_site_to_shared_resources_run_once_everywhere() {
    const CLIENTS: usize = 6;
    const PER_CLIENT: usize = 25;
    const RESOURCES: [&str; 3] = ["shared0", "shared1", "shared2"];
    let seed = std::env::var("CHEOPS_CONCURRENCY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("CHEOPS_CONCURRENCY_SEED={seed}");
    let cluster = Cluster::start(3).await;

    let clients = (0..CLIENTS).map(|client| {
        let cluster = &cluster;
        async move {
            let mut rng = Rng(seed ^ (client as u64).wrapping_mul(0x5851_f42d_4c95_7f2d));
            let mut accepted = Vec::new();
            for n in 0..PER_CLIENT {
                let resource = RESOURCES[rng.below(RESOURCES.len())];
                let node = rng.below(3);
                let token = format!("c{client}-{n}");
                let command = [format!("echo {token} >> \"$NODE_DIR/{resource}.tokens\"")];
                let command = [command[0].as_str()];
                loop {
                    let exec = Exec::new(resource, SITES, &command, "add");
                    match cluster.exec(node, exec).await {
                        (200, _) => break,
                        // Stored nothing (a write race lost 50 times, or a
                        // merge on its way): a client tries again.
                        (503, _) => tokio::task::yield_now().await,
                        (status, body) => {
                            panic!("seed {seed}: {token} through node {node}: {status} {body:?}")
                        }
                    }
                }
                accepted.push((resource, token));
            }
            accepted
        }
    });
    let accepted: Vec<(&str, String)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();

    for resource in RESOURCES {
        cluster.converged(resource, &[0, 1, 2]).await;
        let expected: BTreeMap<String, usize> = accepted
            .iter()
            .filter(|(r, _)| *r == resource)
            .map(|(_, token)| (token.clone(), 1))
            .collect();
        for i in 0..3 {
            let path = cluster.node(i).app_dir().join(format!("{resource}.tokens"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut counts = BTreeMap::new();
            for line in text.lines() {
                *counts.entry(line.to_owned()).or_insert(0) += 1;
            }
            let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
            assert!(
                twice.is_empty(),
                "seed {seed}: {} ran tokens of {resource} more than once: {twice:?}",
                cluster.node(i).site
            );
            assert_eq!(
                counts,
                expected,
                "seed {seed}: {} did not run each token of {resource} once",
                cluster.node(i).site
            );
        }
    }
}
