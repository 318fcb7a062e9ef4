//! Daemons that stop, restart, or start before their sidecar lose nothing
//! and run nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use cheops_model::Status;
use cheops_testkit::{eventually, Cluster, Exec};
use serde_json::json;

const SITES: &str = "site1&site2&site3";
/// How long the sites may take to settle.
const SETTLE: Duration = Duration::from_secs(30);

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(cluster.node(i).app_dir().join("log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_daemon_runs_what_arrived_meanwhile_and_nothing_twice() {
    // A short reply timeout: site3's replies are awaited only 3 s. On a
    // loaded machine a running site may miss it too, so what the sites ran
    // is checked by waiting for their replies, not by the /exec answer.
    let mut cluster = Cluster::start_with_timeout(3, 3).await;
    let (status, replies) = cluster
        .exec(
            0,
            Exec::new("res", SITES, &["echo 0 >> \"$NODE_DIR/log\""], "add"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(replies
        .expect("reply lines")
        .iter()
        .all(|r| r.status != Status::Ko));
    cluster.converged("res", &[0, 1, 2]).await;

    cluster.stop_daemon(2);
    for n in 1..=2 {
        let command = format!("echo {n} >> \"$NODE_DIR/log\"");
        let (status, replies) = cluster
            .exec(0, Exec::new("res", SITES, &[command.as_str()], "add"))
            .await;
        assert_eq!(status, 200);
        let statuses: BTreeMap<String, Status> = replies
            .expect("reply lines")
            .into_iter()
            .map(|r| (r.site, r.status))
            .collect();
        assert_ne!(statuses["site1"], Status::Ko);
        assert_ne!(statuses["site2"], Status::Ko);
        assert_eq!(statuses["site3"], Status::Timeout);
    }
    assert_eq!(log_of(&cluster, 2), "0\n", "a stopped daemon runs nothing");

    cluster.start_daemon(2).await;
    cluster.converged("res", &[0, 1, 2]).await;
    assert_eq!(log_of(&cluster, 2), "0\n1\n2\n");
    for i in 0..2 {
        assert_eq!(log_of(&cluster, i), "0\n1\n2\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_started_before_its_sidecar_waits_for_it() {
    let mut cluster = Cluster::start(1).await;
    cluster.stop_daemon(0);
    cluster.stop_sidecar(0);

    cluster.spawn_daemon(0);
    eventually(
        "the daemon to answer unhealthy",
        Duration::from_secs(30),
        || async { (cluster.health_status(0).await == Some(503)).then_some(()) },
    )
    .await;

    cluster.start_sidecar(0);
    cluster.wait_healthy(0).await;
    let (status, replies) = cluster
        .exec(0, Exec::new("late", "site1", &["echo works"], "set"))
        .await;
    assert_eq!(status, 200);
    let replies = replies.expect("reply lines");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].output, "works\n");
}

/// What node `i`'s latest daemon logged.
fn latest_daemon_log(cluster: &Cluster, i: usize) -> String {
    cluster
        .daemon_logs(i)
        .last()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default()
}

/// A restarted daemon reads the replies view as its index stands (PouchDB
/// Server indexes a view only when it is queried): replies of its site
/// stored after the index's last update must count all the same, or it
/// would run those operations again. The test stands in for a daemon that
/// died right after storing them: while site2's daemon is stopped, it
/// writes site2's replies to 1 to 4 into site2's database (and their
/// effect into its log), as site2's daemon would have.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_counts_the_replies_its_index_lacks() {
    counts_the_replies_beyond_the_index(|request, time| {
        json!({"_id": format!("reply-site2-{request}-{time}"), "ReadsHistory": true})
    })
    .await;
}

/// The same for a database a Go node wrote, taken over by this port's node
/// under the same site name: the original POSTs its replies, so CouchDB
/// chooses their ids, and they say nothing of reading history. They are
/// the site's own all the same, by their `Site`.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_taking_over_a_go_database_counts_its_replies_whatever_their_ids() {
    counts_the_replies_beyond_the_index(|_, _| json!({})).await;
}

/// Stops site2's daemon, stores its replies to 1 to 4 (each with the fields
/// `fields` gives for its request and time), restarts it, and checks that it
/// ran none of them again and found them beyond its index.
async fn counts_the_replies_beyond_the_index(fields: impl Fn(&str, &str) -> serde_json::Value) {
    let mut cluster = Cluster::start_with_timeout(2, 3).await;
    async fn exec(cluster: &Cluster, n: usize) -> String {
        let command = format!("echo {n} >> \"$NODE_DIR/log\"");
        let (status, replies) = cluster
            .exec(
                0,
                Exec::new("res", "site1&site2", &[command.as_str()], "add"),
            )
            .await;
        assert_eq!(status, 200, "{replies:?}");
        replies.expect("reply lines")[0].request_id.clone()
    }
    exec(&cluster, 0).await;
    eventually("site2 to run 0", SETTLE, || async {
        (log_of(&cluster, 1) == "0\n").then_some(())
    })
    .await;

    cluster.stop_daemon(1);
    let http = reqwest::Client::new();
    let site2 = cluster.node(1).couch_url();
    for n in 1..=4 {
        let request = exec(&cluster, n).await;
        let time = cheops_model::Timestamp::now().to_string();
        let mut reply = json!({
            "Locations": ["site1", "site2"],
            "Site": "site2",
            "RequestId": request,
            "ResourceId": "res",
            "Status": "OK",
            "Input": format!("echo {n} >> \"$NODE_DIR/log\""),
            "Output": "",
            "ExecutionTime": time,
            "Type": "REPLY",
        });
        if let (Some(reply), serde_json::Value::Object(more)) =
            (reply.as_object_mut(), fields(&request, &time))
        {
            reply.extend(more);
        }
        let written = http
            .post(&site2)
            .json(&reply)
            .send()
            .await
            .expect("site2's sidecar answers");
        assert!(written.status().is_success(), "{:?}", written.text().await);
        let log = cluster.node(1).app_dir().join("log");
        let mut ran = std::fs::read_to_string(&log).unwrap_or_default();
        ran.push_str(&format!("{n}\n"));
        std::fs::write(&log, ran).expect("site2's log");
    }

    cluster.start_daemon(1).await;
    exec(&cluster, 5).await;
    eventually("site2 to run 5", SETTLE, || async {
        log_of(&cluster, 1).ends_with("5\n").then_some(())
    })
    .await;
    cluster.converged("res", &[0, 1]).await;
    assert_eq!(log_of(&cluster, 1), "0\n1\n2\n3\n4\n5\n");
    // The restarted daemon did read the index as it stood, and found the
    // replies to 1 to 4 beyond it.
    let log = latest_daemon_log(&cluster, 1);
    let beyond: usize = log
        .split("beyond_index=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stale read after the restart:\n{log}"));
    assert!(beyond >= 4, "{beyond} replies beyond the index:\n{log}");
}
