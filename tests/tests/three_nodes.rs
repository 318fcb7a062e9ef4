//! Three nodes: an operation runs on every site of its resource and the
//! replies come back to the caller; resources reach only their sites.

use std::time::Duration;

use cheops_model::Status;
use cheops_tests::{eventually, Cluster, Exec};

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_for_three_sites_returns_three_ok_replies_and_converges() {
    let cluster = Cluster::start(3).await;
    let (status, replies) = cluster
        .exec(
            0,
            Exec {
                id: "shared",
                sites: Some("site1 & site2 & site3"),
                commands: &["echo ran"],
                op_type: Some("set"),
                ..Exec::default()
            },
        )
        .await;
    assert_eq!(status, 200);
    let mut replies = replies.expect("reply lines");
    replies.sort_by(|a, b| a.site.cmp(&b.site));
    let sites: Vec<&str> = replies.iter().map(|r| r.site.as_str()).collect();
    assert_eq!(sites, ["site1", "site2", "site3"]);
    assert!(
        replies
            .iter()
            .all(|r| r.status == Status::Ok && r.output == "ran\n"),
        "{replies:?}"
    );

    let reference = cluster.doc(0, "shared").await.expect("stored on site1");
    for i in 1..3 {
        let doc = eventually(
            "the same revision everywhere",
            Duration::from_secs(30),
            || async {
                cluster
                    .doc(i, "shared")
                    .await
                    .filter(|d| d["_rev"] == reference["_rev"])
            },
        )
        .await;
        assert_eq!(doc, reference);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_of_two_sites_never_reaches_the_third() {
    let cluster = Cluster::start(3).await;
    let (status, replies) = cluster
        .exec(
            0,
            Exec {
                id: "pair",
                sites: Some("site1&site2"),
                commands: &["echo pair"],
                op_type: Some("set"),
                ..Exec::default()
            },
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(replies.expect("reply lines").len(), 2);

    // A resource for all three, sent after, reaches site3: once it has, the
    // pair's documents would have too if the filter let them through.
    let (status, _) = cluster
        .exec(
            0,
            Exec {
                id: "all",
                sites: Some("site1&site2&site3"),
                commands: &["true"],
                op_type: Some("set"),
                ..Exec::default()
            },
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        "the second resource on site3",
        Duration::from_secs(30),
        || async { cluster.doc(2, "all").await },
    )
    .await;
    assert!(cluster.doc(2, "pair").await.is_none());
    assert!(cluster.replies(2, "pair").await.is_empty());
    assert!(cluster.doc(1, "pair").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn show_answers_every_site_and_ko_for_a_stopped_one() {
    let mut cluster = Cluster::start(3).await;
    let (status, _) = cluster
        .exec(
            0,
            Exec {
                id: "shown",
                sites: Some("site1&site2&site3"),
                commands: &["true"],
                op_type: Some("set"),
                ..Exec::default()
            },
        )
        .await;
    assert_eq!(status, 200);

    let (status, answer) = cluster
        .show(0, "shown", "echo __ID__ on $NODE_DIR", None)
        .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        let site = &cluster.node(i).site;
        assert_eq!(answer[site]["Status"], "OK", "{answer}");
        let expected = format!("shown on {}\n", cluster.node(i).dir.display());
        assert_eq!(answer[site]["Output"], expected.as_str());
    }

    cluster.stop_daemon(2);
    let (status, answer) = cluster
        .show(0, "shown", "true", Some("site1&site2&site3"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["site1"]["Status"], "OK");
    assert_eq!(answer["site2"]["Status"], "OK");
    assert_eq!(answer["site3"]["Status"], "KO", "{answer}");
}
