//! A site whose database is deleted and created again sends its new
//! documents to its peers, and gets back what it wrote before.
//! Replications keep their checkpoint on the target alone (PouchDB
//! Server): without the source database's identity in the replication,
//! the new database would resume from the checkpoint of the one before,
//! and skip every change below it. Peers hold back what came from a
//! site's database (`Origin`): without the target database's identity in
//! the replication, they would never send the new one its predecessor's
//! replies.

use std::time::Duration;

use cheops_testkit::{eventually, Cluster, ClusterOptions, Exec};

/// Operations on resources of site1 alone: site1's sequence runs ahead of
/// anything its new database will hold during the test.
const ALONE: usize = 40;

#[tokio::test(flavor = "multi_thread")]
async fn a_database_created_anew_replicates_from_its_start() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 2,
        reply_timeout: 10,
        ..ClusterOptions::default()
    })
    .await;
    for n in 0..ALONE {
        let (status, body) = cluster
            .exec(
                0,
                Exec::new(&format!("alone{n}"), "site1", &["true"], "add"),
            )
            .await;
        assert_eq!(status, 200, "{body:?}");
    }
    // The replication to site2 starts here, and checkpoints past all that.
    let shared = cluster
        .exec(0, Exec::new("shared", "site1&site2", &["true"], "add"))
        .await;
    assert_both_ran(&shared, "before");
    let ran_here = shared.1.as_ref().expect("replies")[0].request_id.clone();

    cluster.stop_daemon(0);
    let deleted = reqwest::Client::new()
        .delete(cluster.node(0).couch_url())
        .send()
        .await
        .expect("the sidecar answers");
    assert!(deleted.status().is_success(), "{deleted:?}");
    // The daemon creates the database again.
    cluster.start_daemon(0).await;

    let after = cluster
        .exec(0, Exec::new("after", "site1&site2", &["true"], "add"))
        .await;
    assert_both_ran(&after, "after the database was created anew");

    // Site1's reply to `shared`, written to the database before, comes
    // back from site2 once site2 has read the new database's identity.
    eventually(
        "site1's reply of before back in its new database",
        Duration::from_secs(60),
        || async {
            let replies = cluster.replies(0, "shared").await;
            replies
                .iter()
                .any(|r| r.site == "site1" && r.request_id == ran_here)
                .then_some(())
        },
    )
    .await;
}

fn assert_both_ran(
    exec: &(
        u16,
        Result<Vec<cheops_model::ReplyDocument>, serde_json::Value>,
    ),
    when: &str,
) {
    let (status, replies) = exec;
    assert_eq!(*status, 200, "{when}: {replies:?}");
    let replies = replies.as_ref().expect("replies");
    let mut sites: Vec<(&str, &str)> = replies
        .iter()
        .map(|r| (r.site.as_str(), r.status.as_str()))
        .collect();
    sites.sort();
    assert_eq!(
        sites,
        [("site1", "OK"), ("site2", "OK")],
        "{when}: each site ran it"
    );
}
