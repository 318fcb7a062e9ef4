//! Three nodes: an operation runs on every site of its resource and the
//! replies come back to the caller; resources reach only their sites.

use std::time::Duration;

use cheops_model::Status;
use cheops_testkit::{eventually, Cluster, Exec};

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_for_three_sites_returns_three_ok_replies_and_converges() {
    let cluster = Cluster::start(3).await;
    let (status, replies) = cluster
        .exec(
            0,
            Exec::new("shared", "site1 & site2 & site3", &["echo ran"], "set"),
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
    assert!(
        replies.iter().all(|r| r.id.is_none() && r.rev.is_none()),
        "lines as the original streams them"
    );

    let reference = cluster.converged("shared", &[0, 1, 2]).await;
    for i in 1..3 {
        assert_eq!(cluster.doc(i, "shared").await.as_ref(), Some(&reference));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_of_two_sites_never_reaches_the_third() {
    let cluster = Cluster::start(3).await;
    let (status, replies) = cluster
        .exec(0, Exec::new("pair", "site1&site2", &["echo pair"], "set"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(replies.expect("reply lines").len(), 2);

    // A resource for all three, sent after, reaches site3: once it has, the
    // pair's documents would have too if the filter let them through.
    let (status, _) = cluster
        .exec(0, Exec::new("all", "site1&site2&site3", &["true"], "set"))
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
        .exec(0, Exec::new("shown", "site1&site2&site3", &["true"], "set"))
        .await;
    assert_eq!(status, 200);

    let (status, answer) = cluster
        .show(0, "shown", "echo __ID__ on $NODE_DIR", None)
        .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        let site = &cluster.node(i).site;
        assert_eq!(answer[site]["Status"], "OK", "{answer}");
        let expected = format!("shown on {}\n", cluster.node(i).app_dir().display());
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

/// A replication document asks for `nodelay`, and is recreated when
/// deleted; a sidecar without a scheduler is asked once whether it has one.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_replication_is_recreated() {
    let cluster = Cluster::start(2).await;
    let (status, _) = cluster
        .exec(0, Exec::new("first", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    let replication = format!(
        "http://admin:password@127.0.0.1:{}/_replicator/cheops-site1-to-site2",
        cluster.node(0).couch_port
    );
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(&replication)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // CouchDB 3's replicator waits ~40 ms per request without nodelay.
    assert_eq!(
        doc["socket_options"], "[{keepalive, true}, {nodelay, true}]",
        "{doc}"
    );
    let deleted = http
        .delete(format!(
            "{replication}?rev={}",
            doc["_rev"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());

    eventually(
        "the replication to be recreated",
        Duration::from_secs(30),
        || async {
            let response = http.get(&replication).send().await.ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await;
    let (status, _) = cluster
        .exec(0, Exec::new("second", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    cluster.converged("second", &[0, 1]).await;

    // PouchDB Server has no scheduler: the node asks once, then reads the
    // document alone at each check.
    let log = || std::fs::read_to_string(cluster.sidecar_log(0)).unwrap_or_default();
    let count = |log: &str, request: &str| log.lines().filter(|l| l.contains(request)).count();
    let checks_after_asking = || {
        let log = log();
        let asked = log.find("GET /_scheduler/jobs")?;
        Some(count(
            &log[asked..],
            "GET /_replicator/cheops-site1-to-site2 ",
        ))
    };
    eventually(
        "three checks after asking",
        Duration::from_secs(30),
        || async { checks_after_asking().filter(|n| *n >= 3).map(|_| ()) },
    )
    .await;
    let log = log();
    assert_eq!(count(&log, "GET /_scheduler/jobs"), 1);
    assert_eq!(count(&log, "GET /_scheduler/docs/"), 1);
}
