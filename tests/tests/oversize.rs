//! A merge larger than the document size limit never wedges a node: the
//! resource is left unmerged, shown over size, and refuses operations,
//! while every other resource goes on.

use std::time::Duration;

use cheops_model::Status;
use cheops_testkit::{eventually, Cluster, ClusterOptions, Exec};

/// Each side's document fits; both sides' blocks together do not.
const LIMIT: usize = 6_000;
const FILE: usize = 2_500;
const SITES: &str = "site1&site2";

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_over_the_limit_leaves_the_resource_over_size_and_the_node_going() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 2,
        reply_timeout: 2,
        daemon_args: vec!["--max-document-size".into(), LIMIT.to_string()],
        ..ClusterOptions::default()
    })
    .await;
    let file = vec![b'x'; FILE];
    cluster.partition();
    for (i, name) in [(0, "one.txt"), (1, "two.txt")] {
        let files: [(&str, &[u8]); 1] = [(name, &file)];
        let exec = Exec {
            files: &files,
            ..Exec::new("big", SITES, &["wc -c {one.txt}{two.txt}"], "add")
        };
        let (status, body) = cluster.exec(i, exec).await;
        assert_eq!(status, 200, "site{}: {body:?}", i + 1);
    }
    cluster.heal();

    for i in [0, 1] {
        eventually(
            &format!("site{} to show big over size", i + 1),
            Duration::from_secs(60),
            || async {
                let health = cluster.health(i).await?;
                let over = health["oversize"].as_array()?.first()?.clone();
                (over["resource"] == "big").then_some(over)
            },
        )
        .await;
        let metrics = cluster.metrics_text(i).await;
        assert!(metrics.contains("cheops_oversize_resources 1"), "{metrics}");
    }
    let (status, body) = cluster
        .exec(0, Exec::new("big", SITES, &["true"], "add"))
        .await;
    assert_eq!(status, 409, "{body:?}");
    let error = body.expect_err("an error body");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot take operations") && message.contains("--max-document-size"),
        "{message}"
    );

    // Every other resource goes on, through either site.
    for i in [0, 1] {
        let (status, replies) = cluster
            .exec(i, Exec::new(&format!("small{i}"), SITES, &["true"], "add"))
            .await;
        assert_eq!(status, 200);
        let replies = replies.expect("reply lines");
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(
            replies.iter().all(|r| r.status == Status::Ok),
            "{replies:?}"
        );
    }
}
