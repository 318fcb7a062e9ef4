//! The changes feed on real daemons: an operation on two sites shows as
//! `operation`, one `reply` per site and one `operation-complete`; after a
//! restart that reads every change again, the feed resumes from a token
//! without missing or repeating an event. Concurrent operations that do not
//! commute show a `merge`, and the site that ran the block again a
//! `rerun`; an exec that prunes shows `pruned`.

use std::collections::BTreeSet;
use std::time::Duration;

use cheops_testkit::scrape::Scrape;
use cheops_testkit::{authorized_client, until, Cluster, Exec};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The lines of node `i`'s `/changes{path}`.
async fn changes(cluster: &Cluster, i: usize, path: &str) -> Vec<Value> {
    let url = format!("{}/changes{path}", cluster.node(i).api_url());
    let response = authorized_client(cluster.read_token())
        .get(url)
        .send()
        .await
        .expect("/changes answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a body");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// `(type, request, site)` of each event (bookmarks left out).
fn events(lines: &[Value]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter(|l| l["type"] != "bookmark")
        .map(|l| {
            (
                l["type"].as_str().unwrap_or_default().to_owned(),
                l["request"].as_str().unwrap_or_default().to_owned(),
                l["site"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What one operation on site1 and site2 adds to the feed, in an order
/// the feed may show it: the completion last.
fn expected(request: &str) -> BTreeSet<(String, String, String)> {
    [
        ("operation", "site1"),
        ("reply", "site1"),
        ("reply", "site2"),
        ("operation-complete", ""),
    ]
    .into_iter()
    .map(|(kind, site)| (kind.to_owned(), request.to_owned(), site.to_owned()))
    .collect()
}

/// Deletes node `i`'s follower checkpoint, if its daemon saved one (it
/// saves it a second after the runner fell idle): without one, the next
/// start reads every change again.
async fn forget_checkpoint(cluster: &Cluster, i: usize) {
    let url = format!(
        "{}/_local/cheops-follower-{}",
        cluster.node(i).couch_url(),
        cluster.node(i).site
    );
    let http = reqwest::Client::new();
    let doc: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let Some(rev) = doc["_rev"].as_str() else {
        return;
    };
    let deleted = http
        .delete(format!("{url}?rev={rev}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{deleted:?}");
}

async fn exec(cluster: &Cluster) -> String {
    let (status, replies) = cluster
        .exec(0, Exec::new("fed", "site1&site2", &["true"], "add"))
        .await;
    assert_eq!(status, 200);
    replies.expect("replies")[0].request_id.clone()
}

/// Waits until node 0's feed after `since` holds `request`'s four events,
/// and returns the events after `since` and the last bookmark.
async fn complete(cluster: &Cluster, since: u64, request: &str) -> (Vec<Value>, u64) {
    until("the operation's four events", WAIT, || async {
        let lines = changes(cluster, 0, &format!("/fed?since={since}")).await;
        let got: BTreeSet<_> = events(&lines).into_iter().collect();
        if got.is_superset(&expected(request)) {
            let bookmark = lines.last().and_then(|l| l["seq"].as_u64()).unwrap_or(0);
            return Ok((lines, bookmark));
        }
        Err(format!("{got:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_shows_each_event_once_and_resumes_after_a_restart() {
    let mut cluster = Cluster::start(2).await;
    let first = exec(&cluster).await;
    let (lines, token) = complete(&cluster, 0, &first).await;
    let got = events(&lines);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got.last().unwrap().0, "operation-complete", "{got:?}");
    assert_eq!(got.first().unwrap().0, "operation", "{got:?}");

    // Restarted without its follower's checkpoint (stopped first: it saves
    // no other): it reads every change again, which must add nothing.
    cluster.stop_daemon(0);
    forget_checkpoint(&cluster, 0).await;
    cluster.start_daemon(0).await;
    let second = exec(&cluster).await;
    let (lines, _) = complete(&cluster, token, &second).await;
    // The second exec also took the first operation's payload out of the
    // block, every site having run it.
    let (pruned, got): (Vec<_>, Vec<_>) = events(&lines).into_iter().partition(|e| e.0 == "pruned");
    assert_eq!(
        pruned,
        [("pruned".to_owned(), first.clone(), "site1".to_owned())]
    );
    assert_eq!(
        got.iter().cloned().collect::<BTreeSet<_>>(),
        expected(&second),
        "after the token: the second operation's events, each once: {got:?}"
    );
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(lines
        .iter()
        .all(|l| l["type"] == "bookmark" || l["seq"].as_u64() > Some(token)));

    // The whole feed: nine events, none twice, numbered in order.
    let all = changes(&cluster, 0, "").await;
    assert_eq!(events(&all).len(), 9, "{:?}", events(&all));
    let seqs: Vec<u64> = all
        .iter()
        .filter(|l| l["type"] != "bookmark")
        .filter_map(|l| l["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // A long poll after the last token waits, and wakes for the next.
    let last = all.last().and_then(|l| l["seq"].as_u64()).unwrap();
    let waiting = {
        let url = format!(
            "{}/changes/fed?since={last}&feed=longpoll",
            cluster.node(0).api_url()
        );
        let client = authorized_client(cluster.read_token());
        tokio::spawn(async move { client.get(url).send().await?.text().await })
    };
    let third = exec(&cluster).await;
    let text = waiting.await.expect("the poll").expect("an answer");
    // The third exec's first event: it pruned the second, or announced itself.
    let first: Value =
        serde_json::from_str(text.lines().next().unwrap_or_default()).expect("a line");
    assert_eq!(first["seq"].as_u64(), Some(last + 1), "{text}");
    assert!(
        first["request"] == second.as_str() || first["request"] == third.as_str(),
        "{text}"
    );
}

/// Every pair of `a` and `b` keeps its order: concurrent ones do not
/// commute, and a site that ran them in the other order runs the block
/// again.
const KEEP_ORDER: &str = r#"{"ResolutionMatrix": [
    {"Before": "a", "After": "b", "Result": "take-both-keep-order"},
    {"Before": "b", "After": "a", "Result": "take-both-keep-order"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_a_rerun_and_a_prune_are_events() {
    let cluster = Cluster::start_with_timeout(2, 1).await;
    let send = |i: usize, command: &'static [&'static str; 1], op_type: &'static str| {
        let cluster = &cluster;
        async move {
            let exec = Exec {
                config: Some(KEEP_ORDER),
                ..Exec::new("m", "site1&site2", command, op_type)
            };
            let (status, replies) = cluster.exec(i, exec).await;
            assert_eq!(status, 200, "{replies:?}");
            replies.expect("replies")[0].request_id.clone()
        }
    };
    send(0, &["true"], "a").await;
    cluster.converged("m", &[0, 1]).await;
    cluster.partition();
    let one = send(0, &["echo one"], "a").await;
    let two = send(1, &["echo two"], "b").await;
    cluster.heal();

    // Both feeds end up with the rerun (a reply, replicated); the merge is
    // in the feed of the node that made it.
    let (merges, reruns) = until("a merge and a rerun", WAIT, || async {
        let mut all = Vec::new();
        for i in 0..2 {
            all.push(events(&changes(&cluster, i, "/m").await));
        }
        let of = |feed: &[(String, String, String)], kind: &str| {
            feed.iter()
                .filter(|e| e.0 == kind)
                .cloned()
                .collect::<Vec<_>>()
        };
        let merges: Vec<_> = all.iter().flat_map(|feed| of(feed, "merge")).collect();
        let reruns: Vec<_> = all.iter().map(|feed| of(feed, "rerun")).collect();
        let complete = all.iter().all(|feed| {
            [&one, &two].iter().all(|request| {
                feed.iter()
                    .any(|e| e.0 == "operation-complete" && e.1 == **request)
            })
        });
        if !merges.is_empty() && reruns.iter().all(|r| !r.is_empty()) && complete {
            Ok((merges, reruns))
        } else {
            Err(format!("{all:?}"))
        }
    })
    .await;
    assert!(
        merges.iter().all(|m| m.1.is_empty() && !m.2.is_empty()),
        "{merges:?}"
    );
    assert_eq!(reruns[0], reruns[1], "one rerun, seen alike by both nodes");
    assert_eq!(reruns[0].len(), 1, "{reruns:?}");
    // The metrics count them too, on the nodes that did them.
    let mut counted = [0.0; 3];
    for i in 0..2 {
        let scrape = Scrape::parse(&cluster.metrics_text(i).await);
        for (n, name) in [
            "cheops_merges_total",
            "cheops_rebuilds_total",
            "cheops_operations_rerun_total",
        ]
        .iter()
        .enumerate()
        {
            counted[n] += scrape.sum(name, &[]);
        }
    }
    assert!(
        counted.iter().all(|&c| c >= 1.0),
        "merges, rebuilds, reruns: {counted:?}"
    );

    // Every site ran both: the next exec on site1 prunes them, and says so.
    let three = send(0, &["true"], "a").await;
    let feed = events(&changes(&cluster, 0, "/m").await);
    let pruned: BTreeSet<&str> = feed
        .iter()
        .filter(|e| e.0 == "pruned")
        .map(|e| e.1.as_str())
        .collect();
    assert!(
        pruned.contains(one.as_str())
            && pruned.contains(two.as_str())
            && !pruned.contains(three.as_str()),
        "{feed:?}"
    );
    assert!(feed
        .iter()
        .filter(|e| e.0 == "pruned")
        .all(|e| e.2 == "site1"));
}
