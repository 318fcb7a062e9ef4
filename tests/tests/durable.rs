//! A daemon killed in the middle of a batch runs again at most the command
//! that was running: every command that ended has its reply journaled
//! before the next starts. A daemon told to stop lets the running command
//! end and runs nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use cheops_model::Status;
use cheops_testkit::{eventually, Cluster, ClusterOptions, Exec};

const SITES: &str = "site1&site2";
const OPERATIONS: usize = 6;

/// Each command appends its number to the node's log, then, on a node
/// marked slow, takes a while.
fn command(n: usize) -> String {
    format!("echo {n} >> \"$NODE_DIR/log\"; if [ -e \"$NODE_DIR/slow\" ]; then sleep 2; fi")
}

fn log_of(cluster: &Cluster, i: usize) -> Vec<usize> {
    std::fs::read_to_string(cluster.node(i).app_dir().join("log"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.parse().expect("a number"))
        .collect()
}

fn counts(log: &[usize]) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for n in log {
        *counts.entry(*n).or_default() += 1;
    }
    counts
}

/// A two-site cluster where site2's daemon is down while `OPERATIONS`
/// operations arrive, then starts (slow) with all of them in one batch.
async fn site2_starts_a_batch() -> Cluster {
    let mut cluster = Cluster::start_with_timeout(2, 1).await;
    std::fs::write(cluster.node(1).app_dir().join("slow"), "").unwrap();
    cluster.stop_daemon(1);
    for n in 1..=OPERATIONS {
        let command = command(n);
        let (status, replies) = cluster
            .exec(0, Exec::new("res", SITES, &[command.as_str()], "add"))
            .await;
        assert_eq!(status, 200);
        let site1 = replies
            .expect("reply lines")
            .into_iter()
            .find(|r| r.site == "site1");
        assert_eq!(site1.map(|r| r.status), Some(Status::Ok));
    }
    eventually(
        "site2 to hold every operation",
        Duration::from_secs(60),
        || async {
            let doc = cluster.doc(1, "res").await?;
            (doc["Operations"].as_array()?.len() == OPERATIONS).then_some(())
        },
    )
    .await;
    cluster.start_daemon(1).await;
    cluster
}

async fn wait_for_lines(cluster: &Cluster, i: usize, lines: usize) {
    eventually(
        &format!("{lines} lines in the log"),
        Duration::from_secs(60),
        || async { (log_of(cluster, i).len() >= lines).then_some(()) },
    )
    .await;
}

/// Every operation ran on site2 and its reply is stored: one per operation.
async fn assert_one_reply_each(cluster: &Cluster) {
    cluster.converged("res", &[0, 1]).await;
    let replies = cluster.replies(1, "res").await;
    let mut per_request: BTreeMap<String, usize> = BTreeMap::new();
    for reply in replies.iter().filter(|r| r.site == "site2") {
        *per_request.entry(reply.request_id.clone()).or_default() += 1;
    }
    assert_eq!(per_request.len(), OPERATIONS, "{per_request:?}");
    assert!(per_request.values().all(|n| *n == 1), "{per_request:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_mid_batch_runs_again_at_most_the_running_command() {
    let mut cluster = site2_starts_a_batch().await;
    // Command 3 has written its line and is sleeping: 1 and 2 ended.
    wait_for_lines(&cluster, 1, 3).await;
    cluster.stop_daemon(1);
    let running = *log_of(&cluster, 1).last().unwrap();

    cluster.start_daemon(1).await;
    assert_one_reply_each(&cluster).await;
    let log = log_of(&cluster, 1);
    let counts = counts(&log);
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (1..=OPERATIONS).collect::<Vec<_>>(),
        "{log:?}"
    );
    for (n, count) in &counts {
        if *n == running {
            assert!(
                *count <= 2,
                "the running command ran {count} times: {log:?}"
            );
        } else {
            assert_eq!(
                *count, 1,
                "command {n} ended before the kill, yet ran again: {log:?}"
            );
        }
    }
    assert_eq!(log_of(&cluster, 0), (1..=OPERATIONS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_told_to_stop_mid_batch_ends_the_running_command_and_runs_nothing_twice() {
    let mut cluster = site2_starts_a_batch().await;
    wait_for_lines(&cluster, 1, 2).await;
    let health = cluster.health(1).await.expect("site2's health");
    let tasks: Vec<&str> = health["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|task| task["state"] == "running")
        .filter_map(|task| task["name"].as_str())
        .collect();
    for task in ["follower", "runner", "journal", "replications", "api"] {
        assert!(tasks.contains(&task), "{task} is not running: {health}");
    }
    let status = cluster.terminate_daemon(1);
    assert!(status.success(), "the daemon exited with {status}");
    let log = log_of(&cluster, 1);
    assert!(log.len() < OPERATIONS, "the batch was stopped: {log:?}");

    cluster.start_daemon(1).await;
    assert_one_reply_each(&cluster).await;
    assert_eq!(log_of(&cluster, 1), (1..=OPERATIONS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_too_large_to_store_is_stored_cut_and_runs_once() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: vec!["--max-reply-bytes".into(), "10000".into()],
        ..ClusterOptions::default()
    })
    .await;
    let command = "echo 1 >> \"$NODE_DIR/log\"; head -c 50000 /dev/zero | tr '\\0' x";
    let (status, replies) = cluster
        .exec(0, Exec::new("big", "site1", &[command], "set"))
        .await;
    assert_eq!(status, 200);
    let replies = replies.expect("reply lines");
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.output_truncated, Some(50_000));
    assert!(reply.output.starts_with("xxxx"));
    assert!(
        reply.output.ends_with(" of 50000 bytes kept]\n"),
        "{}",
        &reply.output[reply.output.len() - 60..]
    );
    assert!(serde_json::to_vec(reply).unwrap().len() <= 10_000);

    cluster.converged("big", &[0]).await;
    assert_eq!(cluster.replies(0, "big").await.len(), 1);
    assert_eq!(log_of(&cluster, 0), [1], "ran once");
}

/// Operations that reach a daemon while it drains at SIGTERM are dropped
/// by its runner, and its checkpoint never passes them: once restarted,
/// it runs each of them.
#[tokio::test(flavor = "multi_thread")]
async fn operations_arriving_while_a_daemon_stops_all_run_after_its_restart() {
    const LATE: usize = 8;
    let mut cluster = Cluster::start_with_timeout(2, 1).await;
    std::fs::write(cluster.node(1).app_dir().join("slow"), "").unwrap();
    let first = command(0);
    let (status, _) = cluster
        .exec(0, Exec::new("first", SITES, &[first.as_str()], "add"))
        .await;
    assert_eq!(status, 200);
    wait_for_lines(&cluster, 1, 1).await;
    // site2 runs a 2 s command: it drains that long, following changes.
    cluster
        .signal(1, cheops_testkit::Process::Daemon, "TERM")
        .expect("a signal");
    let late: Vec<String> = (1..=LATE).map(command).collect();
    let sends = late.iter().enumerate().map(|(n, command)| {
        let cluster = &cluster;
        async move {
            let id = format!("late{n}");
            let (status, _) = cluster
                .exec(0, Exec::new(&id, SITES, &[command.as_str()], "add"))
                .await;
            assert_eq!(status, 200, "{id}");
        }
    });
    futures::future::join_all(sends).await;
    let status = cluster.terminate_daemon(1);
    assert!(status.success(), "the daemon exited with {status}");

    std::fs::remove_file(cluster.node(1).app_dir().join("slow")).unwrap();
    cluster.start_daemon(1).await;
    eventually(
        "site2 to run every late operation",
        Duration::from_secs(60),
        || async {
            let mut ran = 0;
            for n in 0..LATE {
                let replies = cluster.replies(1, &format!("late{n}")).await;
                ran += usize::from(replies.iter().any(|r| r.site == "site2"));
            }
            (ran == LATE).then_some(())
        },
    )
    .await;
    let log = log_of(&cluster, 1);
    assert_eq!(counts(&log).values().max(), Some(&1), "{log:?}");
}
