//! Many operations at once on one resource: none is lost, none runs twice.

use std::collections::BTreeMap;

use cheops_model::Status;
use cheops_tests::{Cluster, Exec};
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
