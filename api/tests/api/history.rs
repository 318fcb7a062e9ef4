//! `GET /history/{id}`: the lines as the node gives them, files by name and
//! size unless asked for, and an answer cut short (never ended as if
//! whole) when the node fails midway.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cheops_api::{router, ApiConfig};
use cheops_model::HistoryEntry;
use http_body_util::BodyExt;

use crate::fake::FakeNode;
use crate::http::{assert_error, body_bytes, post_multipart, send, Part};

const EXEC: [Part; 4] = [
    ("sites", None, b"site1"),
    ("type", None, b"set"),
    ("command", None, b"cat {a.txt}"),
    ("a.txt", Some("a.txt"), b"hello"),
];

/// A node with two operations stored for `r1`.
async fn node() -> Arc<FakeNode> {
    let node = FakeNode::new("site1");
    node.add_resource("r1", &["site1"]);
    for _ in 0..2 {
        let app = router(node.clone(), ApiConfig::default());
        // The reply stream is not read: only the submission matters here.
        let _ = send(app, post_multipart("/exec/r1", &EXEC)).await;
    }
    node
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn each_operation_is_a_json_line_with_files_by_name_and_size() {
    let node = node().await;
    let app = router(node.clone(), ApiConfig::default());
    let response = send(app.clone(), get("/history/r1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = String::from_utf8(body_bytes(response).await).unwrap();
    assert!(body.ends_with('\n'));
    let entries: Vec<HistoryEntry> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].command, "cat {a.txt}");
    assert_eq!(
        (entries[0].files[0].name.as_str(), entries[0].files[0].size),
        ("a.txt", 5)
    );
    assert!(
        !body.contains("aGVsbG8="),
        "no content unless asked: {body}"
    );

    let body = body_bytes(send(app, get("/history/r1?files=true")).await).await;
    assert!(String::from_utf8_lossy(&body).contains("\"Content\":\"aGVsbG8=\""));
}

#[tokio::test]
async fn unknown_resources_bad_ids_and_bad_flags_are_refused() {
    let app = router(node().await, ApiConfig::default());
    assert_error(
        send(app.clone(), get("/history/nope")).await,
        StatusCode::NOT_FOUND,
        &["nope"],
    )
    .await;
    assert_error(
        send(app.clone(), get("/history/_x")).await,
        StatusCode::BAD_REQUEST,
        &[],
    )
    .await;
    for query in ["files=yes", "files=true&files=false"] {
        let response = send(app.clone(), get(&format!("/history/r1?{query}"))).await;
        assert_error(response, StatusCode::BAD_REQUEST, &["files"]).await;
    }
}

#[tokio::test]
async fn a_failure_midway_cuts_the_answer_short() {
    let node = node().await;
    node.break_history();
    let app = router(node, ApiConfig::default());
    let response = send(app, get("/history/r1")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the failure comes after the head"
    );
    let collected = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the body ends");
    assert!(
        collected.is_err(),
        "the body must end in an error, not as if whole"
    );
}
