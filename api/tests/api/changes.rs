//! `GET /changes` and `GET /changes/{id}`: events after a token, filtered
//! by resource, each answer ending with a bookmark; a long poll that waits
//! for the next event; a continuous feed that streams; a token the node
//! does not keep answered 410, a feed file the node cannot read 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cheops_api::{router, ApiConfig};
use cheops_replicator::{Event, EventType, Feed};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::fake::FakeNode;
use crate::http::{assert_error, body_bytes, send};

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn operation(resource: &str, request: &str) -> Event {
    Event::new(EventType::Operation, resource, request, &["site1".into()])
}

fn lines(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `(type, resource or bookmark seq)` of each line.
fn shape(lines: &[Value]) -> Vec<(String, Value)> {
    lines
        .iter()
        .map(|l| {
            let kind = l["type"].as_str().unwrap().to_owned();
            let what = if kind == "bookmark" {
                l["seq"].clone()
            } else {
                l["resource"].clone()
            };
            (kind, what)
        })
        .collect()
}

#[tokio::test]
async fn events_after_a_token_then_a_bookmark() {
    let node = FakeNode::new("site1");
    for (resource, request) in [("a", "r1"), ("b", "r2"), ("a", "r3")] {
        node.feed.append(operation(resource, request)).unwrap();
    }
    let app = router(node.clone(), ApiConfig::default());

    let response = send(app.clone(), get("/changes")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let all = lines(&body_bytes(response).await);
    assert_eq!(
        shape(&all),
        [
            ("operation".into(), "a".into()),
            ("operation".into(), "b".into()),
            ("operation".into(), "a".into()),
            ("bookmark".into(), 3.into()),
        ]
    );
    assert_eq!(all[0]["seq"], 1);
    assert_eq!(all[0]["request"], "r1");

    let after = lines(&body_bytes(send(app.clone(), get("/changes?since=1")).await).await);
    assert_eq!(after.len(), 3);
    let of_a = lines(&body_bytes(send(app.clone(), get("/changes/a?since=1")).await).await);
    assert_eq!(
        shape(&of_a),
        [
            ("operation".into(), "a".into()),
            ("bookmark".into(), 3.into())
        ]
    );
    let page = lines(&body_bytes(send(app.clone(), get("/changes?limit=1")).await).await);
    assert_eq!(shape(&page)[1], ("bookmark".into(), 1.into()));
    let none = lines(&body_bytes(send(app, get("/changes/zzz")).await).await);
    assert_eq!(shape(&none), [("bookmark".into(), 3.into())]);
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_event() {
    let node = FakeNode::new("site1");
    node.feed.append(operation("a", "r1")).unwrap();
    let app = router(node.clone(), ApiConfig::default());
    let waiting = tokio::spawn(send(app.clone(), get("/changes?since=1&feed=longpoll")));
    node.feed.append(operation("a", "r2")).unwrap();
    let response = waiting.await.unwrap();
    let got = lines(&body_bytes(response).await);
    assert_eq!(got[0]["request"], "r2");
    assert_eq!(got.last().unwrap()["seq"], 2);

    // Nothing within its timeout: the bookmark alone.
    let quiet = send(app, get("/changes?since=2&feed=longpoll&timeout=1")).await;
    assert_eq!(
        shape(&lines(&body_bytes(quiet).await)),
        [("bookmark".into(), 2.into())]
    );
}

#[tokio::test]
async fn a_continuous_feed_streams_events_as_they_come() {
    let node = FakeNode::new("site1");
    let app = router(node.clone(), ApiConfig::default());
    let response = send(app, get("/changes?feed=continuous&heartbeat=60000")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    for request in ["r1", "r2"] {
        node.feed.append(operation("a", request)).unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        let got = lines(frame.data_ref().unwrap());
        assert_eq!(got[0]["request"], request);
        assert_eq!(got.last().unwrap()["type"], "bookmark");
    }
}

/// `timeout` ends a continuous feed even while events keep coming: with
/// one event a chunk and many waiting, it stops long before the last.
#[tokio::test]
async fn a_continuous_feed_ends_at_its_timeout_however_busy() {
    const WAITING: usize = 20_000;
    let node = FakeNode::new("site1");
    for i in 0..WAITING {
        node.feed.append(operation("a", &format!("r{i}"))).unwrap();
    }
    let app = router(node, ApiConfig::default());
    let response = send(app, get("/changes?feed=continuous&timeout=1&limit=1")).await;
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        response.into_body().collect(),
    )
    .await
    .expect("the feed ended")
    .expect("a whole body");
    let got = lines(&body.to_bytes());
    let events = got.iter().filter(|l| l["type"] == "operation").count();
    assert!(
        events < WAITING,
        "{events} events: the timeout did not end it"
    );
    assert_eq!(got.last().unwrap()["type"], "bookmark");
}

#[tokio::test]
async fn a_token_the_node_does_not_keep_is_gone_and_bad_queries_are_refused() {
    let node = FakeNode::new("site1");
    node.feed.append(operation("a", "r1")).unwrap();
    let app = router(node, ApiConfig::default());
    assert_error(
        send(app.clone(), get("/changes?since=7")).await,
        StatusCode::GONE,
        &["without since"],
    )
    .await;
    for query in [
        "since=x",
        "feed=stream",
        "limit=0",
        "since=1&since=1",
        "style=all",
    ] {
        let response = send(app.clone(), get(&format!("/changes?{query}"))).await;
        assert_error(response, StatusCode::BAD_REQUEST, &[]).await;
    }
    assert_error(
        send(app, get("/changes/_x")).await,
        StatusCode::BAD_REQUEST,
        &[],
    )
    .await;
}

/// A feed whose file cannot be read is an error of the node, never a token
/// gone: a client told 410 would read again from the newest events and
/// skip those the file still holds.
#[tokio::test]
async fn a_feed_file_that_cannot_be_read_is_a_500_not_a_410() {
    let dir = std::env::temp_dir().join(format!("cheops-api-changes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let feed = Feed::open(&dir, "site1").unwrap();
    // More than the node keeps in memory: the oldest are read from the file.
    let count = 1_500;
    for i in 0..count {
        feed.append(operation("a", &format!("r{i}"))).unwrap();
    }
    let app = router(
        FakeNode::with_feed("site1", feed.clone()),
        ApiConfig::default(),
    );
    let file = dir.join("changes-site1.jsonl");
    let aside = dir.join("aside");

    // A stream whose next events left memory before it read them breaks
    // off: its client reads again from its last bookmark.
    let streaming = send(
        app.clone(),
        get(&format!("/changes?since={count}&feed=continuous")),
    )
    .await;
    assert_eq!(streaming.status(), StatusCode::OK);
    for i in count..2 * count {
        feed.append(operation("a", &format!("r{i}"))).unwrap();
    }
    std::fs::rename(&file, &aside).unwrap();
    assert!(
        streaming.into_body().collect().await.is_err(),
        "the answer breaks off"
    );

    for path in [
        "/changes?since=1",
        "/changes",
        "/changes/a?since=1&feed=continuous",
    ] {
        assert_error(
            send(app.clone(), get(path)).await,
            StatusCode::INTERNAL_SERVER_ERROR,
            &[],
        )
        .await;
    }
    // What memory holds still reads.
    let newest = lines(
        &body_bytes(
            send(
                app.clone(),
                get(&format!("/changes?since={}", 2 * count - 1)),
            )
            .await,
        )
        .await,
    );
    assert_eq!(
        newest.len(),
        2,
        "the newest event and a bookmark: {newest:?}"
    );

    std::fs::rename(&aside, &file).unwrap();
    let response = send(app, get("/changes?since=1&limit=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let first = lines(&body_bytes(response).await);
    assert_eq!(
        first[0]["request"], "r1",
        "the events the file held are all there"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
