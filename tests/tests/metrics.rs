//! `GET /metrics` on real daemons: the counters move by what operations
//! did, the gauges settle, no label names a resource or a credential, and
//! the endpoint answers tokens exactly as the other read endpoints do.

use std::time::Duration;

use cheops_model::Status;
use cheops_testkit::scrape::Scrape;
use cheops_testkit::{authorized_client, eventually, Cluster, Exec};
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::Value;

const RESOURCE: &str = "metered-resource";
const SETTLE: Duration = Duration::from_secs(30);

/// Node `i`'s metrics, none naming a resource or a credential.
async fn scrape(cluster: &Cluster, i: usize) -> Scrape {
    let text = cluster.metrics_text(i).await;
    for secret in [
        RESOURCE,
        "password",
        cluster.token(),
        cluster.read_token(),
        cluster.node_token(),
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the metrics");
    }
    Scrape::parse(&text)
}

/// The counters of node `i` that operations move.
fn counts(scrape: &Scrape) -> [f64; 4] {
    [
        scrape.sum("cheops_operations_accepted_total", &[]),
        scrape.sum("cheops_operations_run_total", &[("status", "OK")]),
        scrape.sum("cheops_operations_run_total", &[("status", "KO")]),
        scrape.sum("cheops_replies_written_total", &[]),
    ]
}

fn delta(after: [f64; 4], before: [f64; 4]) -> [f64; 4] {
    [0, 1, 2, 3].map(|k| after[k] - before[k])
}

fn requests(scrape: &Scrape, kind: &str, method: &str) -> f64 {
    scrape.sum(
        "cheops_couchdb_requests_total",
        &[("kind", kind), ("method", method)],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_what_operations_did() {
    let cluster = Cluster::start(2).await;
    let before = [scrape(&cluster, 0).await, scrape(&cluster, 1).await];

    for (command, status) in [
        ("true", Status::Ok),
        ("false", Status::Ko),
        ("echo again", Status::Ok),
    ] {
        let (code, replies) = cluster
            .exec(0, Exec::new(RESOURCE, "site1&site2", &[command], "set"))
            .await;
        assert_eq!(code, 200);
        let replies = replies.expect("reply lines");
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(replies.iter().all(|r| r.status == status), "{replies:?}");
    }

    // [accepted, run OK, run KO, replies written]: site1 took the three
    // operations; each site ran and wrote a reply to each, once.
    let expected = [[3.0, 2.0, 1.0, 3.0], [0.0, 2.0, 1.0, 3.0]];
    for i in 0..2 {
        let base = counts(&before[i]);
        let after = eventually("the counters to settle", SETTLE, || async {
            let now = scrape(&cluster, i).await;
            let moved = delta(counts(&now), base);
            // Shown only if the test fails.
            eprintln!("site{}: moved {moved:?}, expected {:?}", i + 1, expected[i]);
            (moved == expected[i]).then_some(now)
        })
        .await;
        assert_eq!(after.sum("cheops_rebuilds_total", &[]), 0.0);
        assert_eq!(after.sum("cheops_operations_rerun_total", &[]), 0.0);
        // Every kind of request the work needs was counted, and timed.
        assert!(
            requests(&after, "bulk_docs", "POST") > requests(&before[i], "bulk_docs", "POST"),
            "replies are written in bulk"
        );
        assert!(requests(&after, "changes", "GET") > 0.0);
        assert!(requests(&after, "view", "POST") > 0.0);
        assert!(
            requests(&after, "database", "GET") > 0.0,
            "the scrape's own"
        );
        assert_eq!(
            after.sum("cheops_couchdb_request_duration_seconds_count", &[]),
            after.sum("cheops_couchdb_requests_total", &[])
        );
        // Errors there may be, while the sidecar started; none since.
        assert_eq!(
            after.sum("cheops_couchdb_errors_total", &[]),
            before[i].sum("cheops_couchdb_errors_total", &[]),
            "{:?}",
            after.by("cheops_couchdb_errors_total", "kind", &[])
        );
        assert_eq!(
            after.sum(
                "cheops_task_state",
                &[("task", "follower"), ("state", "running")]
            ),
            1.0
        );
    }
    // The node that took the operations wrote their resource each time
    // (one `_bulk_docs` each), having read it once (to find it missing).
    let site1 = scrape(&cluster, 0).await;
    for (kind, method, at_least) in [("bulk_docs", "POST", 3.0), ("doc", "GET", 1.0)] {
        assert!(
            requests(&site1, kind, method) >= requests(&before[0], kind, method) + at_least,
            "{kind} {method}"
        );
    }

    // Nothing left behind: the follower caught up, the runner and the
    // journal are empty.
    for i in 0..2 {
        eventually("the node to be idle", SETTLE, || async {
            let now = scrape(&cluster, i).await;
            let idle = now.has("cheops_changes_lag")
                && now.sum("cheops_changes_lag", &[]) == 0.0
                && now.sum("cheops_runner_scheduled", &[]) == 0.0
                && now.sum("cheops_journal_unstored", &[]) == 0.0;
            idle.then_some(())
        })
        .await;
    }

    // One state per peer, and a live one.
    let states = site1.by("cheops_replication_state", "state", &[("peer", "site2")]);
    let current: Vec<&String> = states
        .iter()
        .filter(|(_, v)| **v == 1.0)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(current.len(), 1, "{states:?}");
    assert!(
        !["missing", "error", "failed", "crashing"].contains(&current[0].as_str()),
        "{states:?}"
    );
}

/// Status, challenge and body of a GET of `url` with `token`.
async fn answer(url: &str, token: Option<&str>) -> (u16, Option<String>, Option<Value>) {
    let http = match token {
        Some(token) => authorized_client(token),
        None => reqwest::Client::new(),
    };
    let response = http.get(url).send().await.expect("it answers");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let text = response.text().await.expect("a body");
    let body = (status != 200).then(|| {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {status} {text:?}: {e}"))
    });
    (status, challenge, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_take_the_read_or_operator_token_as_the_dump_does() {
    let cluster = Cluster::start(1).await;
    let node = cluster.node(0);
    let metrics = format!("{}/metrics", node.api_url());
    let dump = format!("http://127.0.0.1:{}/", node.dump_port);
    let wrong = "wrong-token-0123456789abcdef";
    for token in [
        None,
        Some(wrong),
        Some(cluster.node_token()),
        Some(cluster.read_token()),
        Some(cluster.token()),
    ] {
        let (got, expected) = (answer(&metrics, token).await, answer(&dump, token).await);
        assert_eq!(got, expected, "token {:?}", token.map(|t| &t[..4]));
    }
    assert_eq!(answer(&metrics, None).await.0, 401);
    assert_eq!(answer(&metrics, Some(cluster.node_token())).await.0, 403);
    assert_eq!(answer(&metrics, Some(cluster.read_token())).await.0, 200);
}

/// The GETs of resource documents node `i` sent, and the operations it
/// stored (each in one `_bulk_docs`).
async fn doc_requests(cluster: &Cluster, i: usize) -> (f64, f64) {
    let now = scrape(cluster, i).await;
    (
        requests(&now, "doc", "GET"),
        now.sum("cheops_operations_accepted_total", &[]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_reads_its_resource_only_when_another_writer_changed_it() {
    let cluster = Cluster::start(2).await;
    let exec = |i: usize, command: &'static str| {
        let cluster = &cluster;
        async move {
            let (code, replies) = cluster
                .exec(i, Exec::new(RESOURCE, "site1&site2", &[command], "set"))
                .await;
            assert_eq!(code, 200, "{replies:?}");
            let replies = replies.expect("reply lines");
            assert!(
                replies.len() == 2 && replies.iter().all(|r| r.status == Status::Ok),
                "{replies:?}"
            );
        }
    };

    // Four execs in a row through site1: only the first reads the resource
    // (and finds none); each after starts from the document site1 stored.
    let (gets, accepted) = doc_requests(&cluster, 0).await;
    for command in ["echo 1", "echo 2", "echo 3", "echo 4"] {
        exec(0, command).await;
    }
    assert_eq!(
        doc_requests(&cluster, 0).await,
        (gets + 1.0, accepted + 4.0)
    );

    // site2 writes the resource. Once site1 holds that revision and every
    // reply to it (site2's carries the operation), and its feed brought
    // them, site1's next exec is refused on its stale revision and reads
    // once more. It needs no lookup of which operations ran everywhere: the feed told it
    // (the requests view is not queried; CONSISTENCY.md, "Pruning").
    let (code, replies) = cluster
        .exec(1, Exec::new(RESOURCE, "site1&site2", &["echo 5"], "set"))
        .await;
    assert_eq!(code, 200, "{replies:?}");
    let request = replies.expect("reply lines")[0].request_id.clone();
    let rev = |doc: Option<Value>| doc.map(|d| d["_rev"].clone());
    let written = rev(cluster.doc(1, RESOURCE).await);
    eventually(
        "site2's write and replies to reach site1",
        SETTLE,
        || async {
            let replied = cluster
                .replies(0, RESOURCE)
                .await
                .iter()
                .filter(|r| r.request_id == request)
                .count();
            (rev(cluster.doc(0, RESOURCE).await) == written && replied == 2).then_some(())
        },
    )
    .await;
    eventually("site1's feed to catch up", SETTLE, || async {
        let now = scrape(&cluster, 0).await;
        (now.has("cheops_changes_lag") && now.sum("cheops_changes_lag", &[]) == 0.0).then_some(())
    })
    .await;
    let views = requests(&scrape(&cluster, 0).await, "view", "POST");
    let (gets, accepted) = doc_requests(&cluster, 0).await;
    exec(0, "echo 6").await;
    assert_eq!(
        doc_requests(&cluster, 0).await,
        (gets + 1.0, accepted + 1.0)
    );
    assert_eq!(requests(&scrape(&cluster, 0).await, "view", "POST"), views);
    // Every operation kept (their payloads may be pruned: the ids count).
    let doc = cluster.converged(RESOURCE, &[0, 1]).await;
    let operations = doc["Operations"].as_array().map_or(0, Vec::len);
    assert_eq!(operations, 6, "{doc}");
}
