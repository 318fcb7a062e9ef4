//! What the server running a replication says of it reaches `/health` and
//! `/metrics`, and the node acts on it: a replication CouchDB 3's scheduler
//! calls `crashing` is recreated, and documents one could not write are
//! sent again until they are written. PouchDB Server has no scheduler: a
//! fake one stands between each daemon and its sidecar, and the peer's
//! sidecar refuses a document with a `validate_doc_update` function, as a
//! CouchDB with a lower `max_document_size` would.

use std::time::Duration;

use cheops_testkit::scrape::Scrape;
use cheops_testkit::{until, Cluster, ClusterOptions, Exec};
use serde_json::{json, Value};

const REPLICATION: &str = "cheops-site1-to-site2";
const WAIT: Duration = Duration::from_secs(60);

async fn fake_scheduler_cluster() -> Cluster {
    Cluster::start_with(ClusterOptions {
        nodes: 2,
        reply_timeout: 3,
        fake_scheduler: true,
        ..ClusterOptions::default()
    })
    .await
}

/// Node `i`'s view of the replication to `peer` in `/health`.
async fn replication(cluster: &Cluster, i: usize, peer: &str) -> Option<Value> {
    let health = cluster.health(i).await?;
    health["replications"]
        .as_array()?
        .iter()
        .find(|r| r["peer"] == peer)
        .cloned()
}

/// A design document on node `i`'s database refusing the document `id`.
async fn refuse(cluster: &Cluster, i: usize, id: &str) -> String {
    let url = format!("{}/_design/refuse", cluster.node(i).couch_url());
    let function = format!(
        "function (doc) {{ if (doc._id === '{id}') {{ throw({{forbidden: 'refused'}}); }} }}"
    );
    let answer: Value = reqwest::Client::new()
        .put(&url)
        .json(&json!({ "validate_doc_update": function }))
        .send()
        .await
        .expect("the sidecar answers")
        .json()
        .await
        .expect("JSON");
    let rev = answer["rev"].as_str().expect("stored").to_owned();
    format!("{url}?rev={rev}")
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_a_replication_could_not_write_are_sent_again_once_the_cause_is_gone() {
    let cluster = fake_scheduler_cluster().await;
    let (status, _) = cluster
        .exec(0, Exec::new("first", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    let refusal = refuse(&cluster, 1, "refused").await;

    // site2's sidecar refuses the resource: its replication says nothing
    // on PouchDB Server; CouchDB 3's scheduler counts a write failure.
    let _ = cluster
        .exec(0, Exec::new("refused", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(cluster.doc(1, "refused").await, None);
    cluster.scheduler(0).set_job(
        REPLICATION,
        json!({"state": "running", "info": {"doc_write_failures": 1}}),
    );

    // A resend runs, and cannot write it either.
    until("a resend that could not write", WAIT, || async {
        let log = cluster
            .daemon_logs(0)
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect::<String>();
        if log.contains("a resend could not write every document") {
            return Ok(());
        }
        Err(format!("{:?}", replication(&cluster, 0, "site2").await))
    })
    .await;
    let shown = replication(&cluster, 0, "site2").await.expect("shown");
    assert_eq!(shown["write_failures"], 1, "{shown}");
    assert_ne!(shown["resend"], "none", "{shown}");
    let metrics = Scrape::parse(&cluster.metrics_text(0).await);
    assert_eq!(
        metrics.sum("cheops_replication_write_failures", &[("peer", "site2")]),
        1.0
    );
    assert_eq!(
        metrics.sum("cheops_replication_resend", &[("peer", "site2")]),
        1.0
    );

    // The cause gone, the next resend writes it, and site2 runs it.
    let removed = reqwest::Client::new()
        .delete(&refusal)
        .send()
        .await
        .expect("the sidecar answers");
    assert!(removed.status().is_success(), "{removed:?}");
    until("site2's reply to the refused operation", WAIT, || async {
        let replies = cluster.replies(0, "refused").await;
        if replies.iter().any(|r| r.site == "site2") {
            return Ok(());
        }
        Err(format!(
            "site2 holds the resource: {}; {:?}",
            cluster.doc(1, "refused").await.is_some(),
            replication(&cluster, 0, "site2").await
        ))
    })
    .await;
    until("the resend to end", WAIT, || async {
        let shown = replication(&cluster, 0, "site2").await;
        match &shown {
            Some(r) if r["resend"] == "none" => Ok(()),
            _ => Err(format!("{shown:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_replication_is_shown_and_recreated() {
    let cluster = fake_scheduler_cluster().await;
    let (status, _) = cluster
        .exec(0, Exec::new("first", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    let url = format!(
        "http://admin:password@127.0.0.1:{}/_replicator/{REPLICATION}",
        cluster.node(0).couch_port
    );
    let created = || async {
        let doc: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
        doc["cheops_created"].as_str().map(str::to_owned)
    };
    let before = created().await.expect("a replication document");

    cluster.scheduler(0).set_job(
        REPLICATION,
        json!({"state": "crashing", "info": {"error": "unauthorized"}}),
    );
    until("the crashing replication to be recreated", WAIT, || async {
        let now = created().await;
        if now.as_ref().is_some_and(|now| *now != before) {
            return Ok(());
        }
        Err(format!("{:?}", replication(&cluster, 0, "site2").await))
    })
    .await;
    // Recreated again only after a longer wait: meanwhile, it is shown
    // crashing.
    until("the replication to be shown crashing", WAIT, || async {
        let shown = replication(&cluster, 0, "site2").await;
        let metrics = Scrape::parse(&cluster.metrics_text(0).await);
        let state = [("peer", "site2"), ("state", "crashing")];
        match &shown {
            Some(r) if r["state"] == "crashing" => {
                if metrics.sum("cheops_replication_state", &state) == 1.0 {
                    return Ok(());
                }
                Err("crashing in /health, not in /metrics".to_owned())
            }
            _ => Err(format!("{shown:?}")),
        }
    })
    .await;
    // Still healthy: it takes operations, and site2 gets them once the
    // replication works again.
    assert_eq!(cluster.health_status(0).await, Some(200));

    cluster.scheduler(0).remove_job(REPLICATION);
    until("the replication to be shown working", WAIT, || async {
        let shown = replication(&cluster, 0, "site2").await;
        match &shown {
            Some(r) if r["state"] == "triggered" => Ok(()),
            _ => Err(format!("{shown:?}")),
        }
    })
    .await;
    let (status, _) = cluster
        .exec(0, Exec::new("second", "site1&site2", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
}
