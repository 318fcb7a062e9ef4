//! Pruning (CONSISTENCY.md, "Pruning"): the first reply of the site that
//! accepted an operation carries it whole; an operation every location ran
//! leaves its payload there, and a site that must run it again (a rebuild)
//! runs the real command from there, or from the operation's history
//! document. A location whose replies do not declare `ReadsHistory` (a Go
//! node) keeps every payload in the block.

use std::collections::BTreeMap;
use std::time::Duration;

use cheops_model::{Command, Operation, ReplyDocument, ResourceDocument, Status};
use cheops_testkit::{
    absent_peer, authorized_client, eventually, until, Cluster, ClusterOptions, Exec,
};
use serde_json::{json, Value};

/// set restarts the block; adds keep their place after it, and a set after
/// an add resets.
const CONFIG: &str = r#"{"ResolutionMatrix":[
    {"Before":"set","After":"set","Result":"take-one"},
    {"Before":"set","After":"add","Result":"take-both-keep-order"},
    {"Before":"add","After":"set","Result":"take-both-reverse-order"}]}"#;

async fn resource(cluster: &Cluster, i: usize, id: &str) -> ResourceDocument {
    let doc = cluster.doc(i, id).await.expect("the resource is stored");
    serde_json::from_value(doc).expect("a resource document")
}

/// Sends one operation through node `i` and checks that every site of
/// `sites` answered OK.
async fn exec_ok(cluster: &Cluster, i: usize, exec: Exec<'_>, sites: usize) {
    let (status, replies) = cluster.exec(i, exec).await;
    assert_eq!(status, 200, "{replies:?}");
    let replies = replies.expect("reply lines");
    assert_eq!(replies.len(), sites, "{replies:?}");
    assert!(
        replies.iter().all(|r| r.status == Status::Ok),
        "{replies:?}"
    );
}

/// The lines of node `i`'s `$NODE_DIR/{name}`.
fn lines(cluster: &Cluster, i: usize, name: &str) -> Vec<String> {
    std::fs::read_to_string(cluster.node(i).app_dir().join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_of_a_pruned_block_runs_the_real_commands_from_history() {
    let cluster = Cluster::start(2).await;
    let sites = "site1&site2";
    let set = Exec {
        config: Some(CONFIG),
        ..Exec::new("file", sites, &["echo S > \"$NODE_DIR/file\""], "set")
    };
    exec_ok(&cluster, 0, set, 2).await;
    exec_ok(
        &cluster,
        0,
        Exec {
            files: &[("a.txt", b"A1\n")],
            ..Exec::new("file", sites, &["cat {a.txt} >> \"$NODE_DIR/file\""], "add")
        },
        2,
    )
    .await;
    exec_ok(
        &cluster,
        0,
        Exec::new("file", sites, &["echo A2 >> \"$NODE_DIR/file\""], "add"),
        2,
    )
    .await;
    let doc = resource(&cluster, 0, "file").await;
    let pruned: Vec<bool> = doc.operations.iter().map(|op| op.pruned).collect();
    assert_eq!(pruned, [true, true, false], "{doc:?}");
    assert!(doc.operations[1].command.files.is_empty());

    // Each site adds one line while partitioned; the merge puts one site's
    // line before the other's, and the block starts with a set: that site
    // rebuilds, running the pruned set and adds again.
    cluster.partition();
    submit(&cluster, 0, "file", "echo B1 >> \"$NODE_DIR/file\"").await;
    submit(&cluster, 1, "file", "echo B2 >> \"$NODE_DIR/file\"").await;
    cluster.heal();

    let merged = cluster.converged("file", &[0, 1]).await;
    let merged: ResourceDocument = serde_json::from_value(merged).expect("a resource");
    assert_eq!(merged.operations.len(), 5, "{merged:?}");
    let mut expected = vec!["S", "A1", "A2"];
    let b1_first = merged.operations[3].command.command.contains("B1");
    expected.extend(if b1_first { ["B1", "B2"] } else { ["B2", "B1"] });
    for i in 0..2 {
        assert_eq!(lines(&cluster, i, "file"), expected, "site{}", i + 1);
    }
    let mut rebuild_inputs = Vec::new();
    for i in 0..2 {
        let replies = cluster.replies(i, "file").await;
        rebuild_inputs.extend(replies.into_iter().filter(|r| r.rebuild).map(|r| r.input));
    }
    rebuild_inputs.dedup();
    assert_eq!(
        rebuild_inputs,
        ["echo S > \"$NODE_DIR/file\""],
        "one site rebuilt, from the set's real command"
    );
}

/// Sends an `add` of `command` to `sites` through node `i` and returns once
/// it is stored (the answer's status), without waiting for the replies. A
/// 503 stored nothing (writers racing on the resource won every attempt):
/// the client sends it again, as `Retry-After` says it may.
async fn submit(cluster: &Cluster, i: usize, id: &str, command: &str) {
    loop {
        let form = reqwest::multipart::Form::new()
            .text("sites", "site1&site2")
            .text("command", command.to_owned())
            .text("type", "add");
        let response = reqwest::Client::new()
            .post(format!("{}/exec/{id}", cluster.node(i).api_url()))
            .bearer_auth(cluster.token())
            .multipart(form)
            .send()
            .await
            .expect("the API answers");
        if response.status() != 503 {
            assert_eq!(response.status(), 200);
            return;
        }
    }
}

/// Site1 alone, with a peer `go1` that never answers (its replies are
/// written by hand, as a Go node would write them).
async fn with_go1() -> Cluster {
    Cluster::start_with(ClusterOptions {
        nodes: 1,
        reply_timeout: 1,
        daemon_args: absent_peer("go1"),
        ..ClusterOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_without_the_capability_keeps_the_payload_in_the_block() {
    let cluster = with_go1().await;
    let sites = "site1&go1";
    let send = |command: &'static [&'static str; 1]| {
        let cluster = &cluster;
        async move {
            let (status, _) = cluster
                .exec(0, Exec::new("mixed", sites, command, "add"))
                .await;
            assert_eq!(status, 200);
            resource(cluster, 0, "mixed").await
        }
    };
    let first = send(&["echo one"]).await.operations[0].request_id.clone();
    // What a Go node writes: no ReadsHistory.
    store_reply(&cluster, &first, None).await;
    let doc = send(&["echo two"]).await;
    assert!(!doc.operations[0].pruned, "{doc:?}");
    assert_eq!(doc.operations[0].command.command, "echo one");

    // The same from a site that declares it: pruned at the next exec.
    let second = doc.operations[1].request_id.clone();
    store_reply(&cluster, &second, Some(true)).await;
    let doc = send(&["echo three"]).await;
    let pruned: Vec<bool> = doc.operations.iter().map(|op| op.pruned).collect();
    assert_eq!(pruned, [false, true, false], "{doc:?}");
    // Its payload lives on in site1's reply, and in no history document.
    let replies = cluster.replies(0, "mixed").await;
    let carrier = replies
        .iter()
        .find(|r| r.request_id == second && r.site == "site1")
        .expect("site1's reply");
    let carried = carrier
        .operation
        .as_ref()
        .expect("site1's reply carries it");
    assert_eq!(carried.command.command, "echo two");
    assert_eq!(carried.site, "site1");
    assert!(cluster
        .doc(0, &format!("history:mixed:{second}"))
        .await
        .is_none());
}

/// An operation of resource `carried`, `request` running `command`.
fn carried_op(request: &str, command: &str) -> Operation {
    let mut op = Operation {
        op_type: "add".into(),
        request_id: request.into(),
        time: "2026-01-01T00:00:00Z".parse().expect("a time"),
        site: "go1".into(),
        ..Operation::default()
    };
    op.command.command = command.into();
    op
}

/// go1's reply to `op`, carrying it whole.
fn carrier(op: &Operation, sites: &[String]) -> ReplyDocument {
    ReplyDocument {
        id: Some(format!("reply-go1-{}", op.request_id)),
        locations: sites.to_vec(),
        site: "go1".into(),
        request_id: op.request_id.clone(),
        resource_id: "carried".into(),
        execution_time: op.time,
        reads_history: true,
        operation: Some(op.clone()),
        ..ReplyDocument::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_carries_its_operation_stands_for_its_history_document() {
    let cluster = with_go1().await;
    let sites = vec!["site1".to_owned(), "go1".to_owned()];
    let mut x = carried_op("carried-x", "cat {line.txt} > \"$NODE_DIR/carried\"");
    x.command
        .files
        .insert("line.txt".into(), b"from the carrier\n".to_vec());
    let y = carried_op("carried-y", "echo Y >> \"$NODE_DIR/carried\"");
    let mut pruned_x = x.clone();
    pruned_x.pruned = true;
    pruned_x.command = Command::default();
    pruned_x.site = String::new();
    // go1 ran both and its replies carry them; neither has a history
    // document, and site1 has run neither: it must run x, pruned, from
    // go1's reply.
    let block = ResourceDocument {
        id: "carried".into(),
        locations: sites.clone(),
        operations: vec![pruned_x, y.clone()],
        ..ResourceDocument::default()
    };
    let docs = json!({ "docs": [carrier(&x, &sites), carrier(&y, &sites), block] });
    let written: Value = reqwest::Client::new()
        .post(format!("{}/_bulk_docs", cluster.node(0).couch_url()))
        .json(&docs)
        .send()
        .await
        .expect("the sidecar answers")
        .json()
        .await
        .expect("rows");
    assert!(
        written
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r.get("error").is_none())),
        "{written}"
    );

    let ours = eventually("site1's replies", Duration::from_secs(30), || async {
        let replies = cluster.replies(0, "carried").await;
        let ours: Vec<_> = replies.into_iter().filter(|r| r.site == "site1").collect();
        (ours.len() == 2).then_some(ours)
    })
    .await;
    assert_eq!(lines(&cluster, 0, "carried"), ["from the carrier", "Y"]);
    let x_reply = ours.iter().find(|r| r.request_id == x.request_id);
    let x_reply = x_reply.expect("site1's reply to x");
    assert_eq!(x_reply.status, Status::Ok, "{x_reply:?}");
    assert_eq!(x_reply.input, x.command.describe());

    // The changes feed announces y from the reply that carries it.
    let url = format!("{}/changes/carried", cluster.node(0).api_url());
    let feed = authorized_client(cluster.read_token())
        .get(url)
        .send()
        .await
        .expect("/changes answers")
        .text()
        .await
        .expect("a body");
    let announced = feed.lines().any(|line| {
        let event: Value = serde_json::from_str(line).expect("a JSON line");
        event["type"] == "operation" && event["request"] == "carried-y" && event["site"] == "go1"
    });
    assert!(announced, "{feed}");

    // Every location ran y and a reply carries it: the next exec prunes it.
    let (status, _) = cluster
        .exec(0, Exec::new("carried", "site1&go1", &["true"], "add"))
        .await;
    assert_eq!(status, 200);
    let doc = resource(&cluster, 0, "carried").await;
    let pruned: Vec<bool> = doc.operations.iter().map(|op| op.pruned).collect();
    assert_eq!(pruned, [true, true, false], "{doc:?}");
}

/// Stores in node 0's database a reply of site `go1` to `request` of
/// resource `mixed`, with `ReadsHistory` as given (absent for `None`), and
/// waits until site1's own reply to it is there too.
async fn store_reply(cluster: &Cluster, request: &str, reads_history: Option<bool>) {
    let mut reply = json!({
        "Locations": ["site1", "go1"], "Site": "go1", "RequestId": request,
        "ResourceId": "mixed", "Status": "OK", "Input": "", "Output": "",
        "ExecutionTime": "2026-01-01T00:00:00Z", "Type": "REPLY",
    });
    if let Some(flag) = reads_history {
        reply["ReadsHistory"] = Value::Bool(flag);
    }
    let url = format!("{}/reply-go1-{request}", cluster.node(0).couch_url());
    let response = reqwest::Client::new()
        .put(url)
        .json(&reply)
        .send()
        .await
        .expect("the sidecar answers");
    assert!(response.status().is_success(), "{response:?}");
    eventually("site1's own reply", Duration::from_secs(30), || async {
        let replies = cluster.replies(0, "mixed").await;
        replies
            .iter()
            .any(|r| r.request_id == request && r.site == "site1" && r.reads_history)
            .then_some(())
    })
    .await;
}

/// How many replies each `(site, request)` has on node `i`, and how many
/// history documents node `i` holds, read from the ids alone (a reply's is
/// `reply-{site}-{request}-{time}`): the cluster holds one resource.
async fn tally(cluster: &Cluster, i: usize) -> (BTreeMap<(String, String), usize>, usize) {
    let url = format!("{}/_all_docs", cluster.node(i).couch_url());
    let all: Value = reqwest::get(url)
        .await
        .expect("the sidecar answers")
        .json()
        .await
        .expect("JSON");
    let mut replies = BTreeMap::new();
    let mut history = 0;
    for id in all["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
    {
        if id.starts_with("history:") {
            history += 1;
        } else if let Some(rest) = id.strip_prefix("reply-") {
            let mut parts = rest.splitn(3, '-');
            let (Some(site), Some(request)) = (parts.next(), parts.next()) else {
                continue;
            };
            *replies
                .entry((site.to_owned(), request.to_owned()))
                .or_insert(0) += 1;
        }
    }
    (replies, history)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_operations_run_once_everywhere_and_the_document_stays_small() {
    const OPERATIONS: usize = 1_000;
    const CLIENTS: usize = 4;
    let cluster = Cluster::start(2).await;
    // Each client sends its share one after the other without waiting for
    // the replies: the write is what the test needs, and the runners
    // batch what piles up.
    let clients = (0..CLIENTS).map(|client| {
        let cluster = &cluster;
        async move {
            for _ in (client..OPERATIONS).step_by(CLIENTS) {
                submit(cluster, 0, "long", "true").await;
            }
        }
    });
    let started = std::time::Instant::now();
    futures::future::join_all(clients).await;
    eprintln!("{OPERATIONS} operations stored in {:?}", started.elapsed());

    let everywhere = |i: usize| {
        let cluster = &cluster;
        async move {
            until(
                &format!("every reply on node {i}"),
                Duration::from_secs(120),
                || async {
                    let (replies, history) = tally(cluster, i).await;
                    if replies.len() == 2 * OPERATIONS {
                        return Ok((replies, history));
                    }
                    let from = |site: &str| replies.keys().filter(|(s, _)| s == site).count();
                    Err(format!(
                        "{} replies of site1, {} of site2, of {OPERATIONS} each",
                        from("site1"),
                        from("site2")
                    ))
                },
            )
            .await
        }
    };
    for i in 0..2 {
        let (replies, history) = everywhere(i).await;
        assert!(
            replies.values().all(|&n| n == 1),
            "an operation ran twice: {:?}",
            replies.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
        );
        // Nothing left the block: site1's replies carry every operation.
        assert_eq!(history, 0, "history documents on node {i}");
    }
    eprintln!("every reply everywhere after {:?}", started.elapsed());
    // One more exec, waited for, prunes what every site ran.
    exec_ok(
        &cluster,
        0,
        Exec::new("long", "site1&site2", &["true"], "add"),
        2,
    )
    .await;
    let doc = cluster.converged("long", &[0, 1]).await;
    let size = serde_json::to_vec(&doc).expect("JSON").len();
    let doc: ResourceDocument = serde_json::from_value(doc).expect("a resource");
    assert_eq!(doc.operations.len(), OPERATIONS + 1);
    let unpruned = doc.operations.iter().filter(|op| !op.pruned).count();
    eprintln!(
        "{} operations, {unpruned} unpruned: the resource document is {size} bytes",
        doc.operations.len()
    );
    assert_eq!(unpruned, 1, "only the last operation keeps its payload");
}
