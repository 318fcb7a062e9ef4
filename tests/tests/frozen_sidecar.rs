//! A sidecar that hangs (SIGSTOP: connections accepted, nothing answered)
//! makes its node say so and refuse work in bounded time, never hang; once
//! the sidecar runs again, the node recovers by itself.

use std::time::Duration;

use cheops_model::Status;
use cheops_testkit::{eventually, Cluster, ClusterOptions, Exec};

/// The node's CouchDB timeout in this test, in seconds.
const COUCHDB_TIMEOUT: u64 = 2;

/// Far longer than any answer may take here: reaching it means a hang.
const HANG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_sidecar_turns_health_to_503_and_the_node_recovers_when_it_thaws() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: vec!["--couchdb-timeout".into(), COUCHDB_TIMEOUT.to_string()],
        ..ClusterOptions::default()
    })
    .await;
    cluster.freeze_sidecar(0);

    // Bounded by the CouchDB timeout: the ping gives up, and the changes
    // feed, silent, is declared dead by its watchdog.
    let health = eventually("/health to say the feed is dead", HANG, || async {
        let status = tokio::time::timeout(HANG, cluster.health_status(0))
            .await
            .expect("/health hung")?;
        let health = tokio::time::timeout(HANG, cluster.health(0))
            .await
            .expect("/health hung")?;
        (status == 503 && health["follower_live"] == false).then_some(health)
    })
    .await;
    assert_eq!(health["couchdb_reachable"], false, "{health}");

    let (status, body) = tokio::time::timeout(
        HANG,
        cluster.exec(0, Exec::new("while-frozen", "site1", &["echo no"], "set")),
    )
    .await
    .expect("/exec hung");
    assert_eq!(status, 503, "{body:?}");

    cluster.thaw_sidecar(0);
    cluster.wait_healthy(0).await;
    let (status, replies) = cluster
        .exec(0, Exec::new("after-thaw", "site1", &["echo yes"], "set"))
        .await;
    assert_eq!(status, 200, "{replies:?}");
    let replies = replies.expect("reply lines");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, Status::Ok, "{replies:?}");
    assert_eq!(replies[0].output, "yes\n");
}
