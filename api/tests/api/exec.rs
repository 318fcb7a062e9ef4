//! `POST /exec/{id}`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cheops_api::{router, ApiConfig};
use cheops_model::{ReplyDocument, ResolutionResult, Status};
use cheops_replicator::ReplicatorError;
use http_body_util::BodyExt;

use crate::fake::FakeNode;
use crate::http::{assert_error, body_bytes, post_multipart, send, Part};

fn app(node: &Arc<FakeNode>) -> axum::Router {
    router(node.clone(), ApiConfig::default())
}

fn lines(body: &[u8]) -> Vec<ReplyDocument> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The next line of a streamed body, waiting at most a few seconds.
async fn next_line(body: &mut Body) -> Option<ReplyDocument> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a line or the end within 5 s")?
        .unwrap();
    let data = frame.into_data().unwrap();
    assert!(
        data.ends_with(b"\n"),
        "one newline-terminated line per frame"
    );
    Some(serde_json::from_slice(&data).unwrap())
}

const VALID: [Part; 3] = [
    ("sites", None, b"site1&site2"),
    ("command", None, b"echo hello"),
    ("type", None, b"set"),
];

/// Sends a request that must be refused before anything is stored.
async fn assert_refused(request: Request<Body>, status: StatusCode, needles: &[&str]) {
    let node = FakeNode::new("site1");
    assert_error(send(app(&node), request).await, status, needles).await;
    assert!(node.submissions().is_empty(), "nothing is submitted");
}

#[tokio::test]
async fn exec_streams_replies_as_json_lines_as_each_site_replies() {
    let node = FakeNode::new("site1");
    let response = send(app(&node), post_multipart("/exec/my-res", &VALID)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");

    let submission = node.submissions().pop().unwrap();
    assert_eq!(submission.resource_id, "my-res");
    assert_eq!(submission.sites, ["site1", "site2"]);
    assert_eq!(submission.operation.op_type, "set");
    assert_eq!(submission.operation.command.command, "echo hello");
    assert_eq!(submission.operation.request_id.len(), 32);

    let mut body = response.into_body();
    node.reply_from("site2", Status::Ok, "hello from 2\n");
    let first = next_line(&mut body).await.unwrap();
    assert_eq!((first.site.as_str(), first.status), ("site2", Status::Ok));
    assert_eq!(first.output, "hello from 2\n");
    assert_eq!(first.request_id, submission.operation.request_id);

    node.reply_from("site1", Status::Ko, "boom");
    let second = next_line(&mut body).await.unwrap();
    assert_eq!((second.site.as_str(), second.status), ("site1", Status::Ko));
    assert!(next_line(&mut body).await.is_none(), "every site replied");
}

#[tokio::test]
async fn exec_sends_a_timeout_line_for_each_site_silent_until_the_deadline() {
    let node = FakeNode::new("site1");
    let config = ApiConfig {
        reply_timeout: Duration::from_millis(200),
        ..ApiConfig::default()
    };
    let parts: [Part; 3] = [
        ("sites", None, b"site1 & site2 & site3"),
        ("command", None, b"echo hi"),
        ("type", None, b"set"),
    ];
    let response = send(
        router(node.clone(), config),
        post_multipart("/exec/r", &parts),
    )
    .await;
    node.reply_from("site2", Status::Ok, "first");
    node.reply_from("site2", Status::Ko, "a duplicate, ignored");
    node.reply_from("elsewhere", Status::Ok, "not a location, ignored");

    let replies = lines(&body_bytes(response).await);
    let summary: Vec<_> = replies
        .iter()
        .map(|r| (r.site.as_str(), r.status, r.output.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("site2", Status::Ok, "first"),
            ("site1", Status::Timeout, ""),
            ("site3", Status::Timeout, ""),
        ]
    );
    assert_eq!(replies[1].input, "echo hi");
    assert_eq!(replies[1].resource_id, "r");
    assert_eq!(node.hub.waiting(), 0, "the finished call unregistered");
}

#[tokio::test]
async fn dropping_the_exec_answer_stops_waiting_for_replies() {
    let node = FakeNode::new("site1");
    let response = send(app(&node), post_multipart("/exec/r", &VALID)).await;
    assert_eq!(node.hub.waiting(), 1);
    drop(response);
    assert_eq!(node.hub.waiting(), 0);
}

#[tokio::test]
async fn attached_files_reach_the_node_named_like_the_original_cli_names_them() {
    let node = FakeNode::new("site1");
    let parts: [Part; 6] = [
        ("type", None, b"apply"),
        ("sites", None, b"site1"),
        // The original CLI: field name and filename are both the name.
        (
            "deployment.yml",
            Some("deployment.yml"),
            b"kind: Deployment\n",
        ),
        (
            "deployment.yml.1",
            Some("deployment.yml.1"),
            b"second\x00\xff",
        ),
        // curl -F file=@/tmp/extra.txt
        ("file", Some("/tmp/extra.txt"), b"extra"),
        (
            "command",
            None,
            b"kubectl apply -f {deployment.yml} -f {deployment.yml.1}",
        ),
    ];
    let response = send(app(&node), post_multipart("/exec/r", &parts)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let files = node.submissions().pop().unwrap().operation.command.files;
    let names: Vec<_> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["deployment.yml", "deployment.yml.1", "extra.txt"]);
    assert_eq!(files["deployment.yml"], b"kind: Deployment\n");
    assert_eq!(files["deployment.yml.1"], b"second\x00\xff");
    assert_eq!(files["extra.txt"], b"extra");
}

#[tokio::test]
async fn the_config_reaches_the_node() {
    let node = FakeNode::new("site1");
    let config = br#"{"ResolutionMatrix":[{"Before":"set","After":"set","Result":"take-one"}]}"#;
    let parts: [Part; 4] = [
        ("sites", None, b"site1"),
        ("command", None, b"echo 1"),
        ("type", None, b"set"),
        ("config", None, config),
    ];
    let response = send(app(&node), post_multipart("/exec/r", &parts)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let config = node.submissions().pop().unwrap().config.unwrap();
    assert_eq!(config.lookup("set", "set"), Some(ResolutionResult::TakeOne));
}

#[tokio::test]
async fn exec_without_sites_is_refused() {
    let parts: [Part; 2] = [("command", None, b"x"), ("type", None, b"set")];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`sites`", "missing"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_sites_naming_no_site_is_refused() {
    let parts: [Part; 3] = [
        ("sites", None, b" & "),
        ("command", None, b"x"),
        ("type", None, b"set"),
    ];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`sites`", "no site"],
    )
    .await;
}

#[tokio::test]
async fn exec_without_type_is_refused() {
    let parts: [Part; 2] = [("sites", None, b"site1"), ("command", None, b"x")];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`type`", "missing"],
    )
    .await;
}

#[tokio::test]
async fn exec_without_command_is_refused() {
    let parts: [Part; 2] = [("sites", None, b"site1"), ("type", None, b"set")];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`command`", "missing"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_two_commands_is_refused() {
    let parts: [Part; 4] = [
        ("sites", None, b"site1"),
        ("type", None, b"set"),
        ("command", None, b"echo 1"),
        ("command", None, b"echo 2"),
    ];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`command`", "more than once"],
    )
    .await;
}

#[tokio::test]
async fn exec_on_a_node_that_is_not_one_of_the_sites_is_refused() {
    let parts: [Part; 3] = [
        ("sites", None, b"site2&site3"),
        ("command", None, b"x"),
        ("type", None, b"set"),
    ];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["this node (site1) is not one of the sites: site2, site3"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_an_escaped_id_is_refused() {
    assert_refused(
        post_multipart("/exec/a%2Fb", &VALID),
        StatusCode::BAD_REQUEST,
        &["a%2Fb", "URL-safe"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_a_slash_in_the_id_matches_no_route() {
    assert_refused(
        post_multipart("/exec/a/b", &VALID),
        StatusCode::NOT_FOUND,
        &["/exec/a/b"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_an_id_reserved_by_couchdb_is_refused() {
    assert_refused(
        post_multipart("/exec/_design", &VALID),
        StatusCode::BAD_REQUEST,
        &["_design", "'_'"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_malformed_config_json_is_refused() {
    let parts: [Part; 4] = [
        ("sites", None, b"site1"),
        ("command", None, b"x"),
        ("type", None, b"set"),
        ("config", None, b"{\"ResolutionMatrix\": ["),
    ];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`config`"],
    )
    .await;
}

#[tokio::test]
async fn exec_with_an_unknown_resolution_result_is_refused() {
    let config = br#"{"ResolutionMatrix":[{"Before":"a","After":"b","Result":"take-two"}]}"#;
    let parts: [Part; 4] = [
        ("sites", None, b"site1"),
        ("command", None, b"x"),
        ("type", None, b"set"),
        ("config", None, config),
    ];
    assert_refused(
        post_multipart("/exec/r", &parts),
        StatusCode::BAD_REQUEST,
        &["`config`", "\"take-two\""],
    )
    .await;
}

#[tokio::test]
async fn exec_with_a_body_over_the_limit_answers_413() {
    let node = FakeNode::new("site1");
    let config = ApiConfig {
        body_limit: 1024,
        ..ApiConfig::default()
    };
    let big = vec![b'x'; 4096];
    let parts: [Part; 4] = [
        ("sites", None, b"site1"),
        ("command", None, b"cat {big}"),
        ("type", None, b"set"),
        ("big", Some("big"), &big),
    ];
    let response = send(
        router(node.clone(), config),
        post_multipart("/exec/r", &parts),
    )
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, &["1024 bytes"]).await;
    assert!(node.submissions().is_empty());
}

#[tokio::test]
async fn exec_with_a_body_that_is_not_multipart_is_refused() {
    let request = Request::post("/exec/r")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_refused(request, StatusCode::BAD_REQUEST, &["multipart/form-data"]).await;
}

#[tokio::test]
async fn exec_with_a_truncated_multipart_body_is_refused() {
    let mut body = crate::http::multipart(&VALID);
    body.truncate(body.len() - 30);
    let request = Request::post("/exec/r")
        .header(
            "content-type",
            "multipart/form-data; boundary=cheops-test-boundary-7d3c",
        )
        .body(Body::from(body))
        .unwrap();
    assert_refused(request, StatusCode::BAD_REQUEST, &["malformed multipart"]).await;
}

#[tokio::test]
async fn an_invalid_request_from_the_node_answers_400_with_its_reason() {
    let node = FakeNode::new("site1");
    node.refuse_next_submit(ReplicatorError::InvalidRequest(
        "the sites differ from the resource's locations (site1, site9)".into(),
    ));
    let response = send(app(&node), post_multipart("/exec/r", &VALID)).await;
    assert_error(response, StatusCode::BAD_REQUEST, &["site9"]).await;
}

#[tokio::test]
async fn an_unreachable_database_answers_503() {
    let unreachable = reqwest::Client::new()
        .get("http://127.0.0.1:1/")
        .send()
        .await
        .unwrap_err();
    let node = FakeNode::new("site1");
    node.refuse_next_submit(ReplicatorError::Unavailable(unreachable));
    let response = send(app(&node), post_multipart("/exec/r", &VALID)).await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, &["try again"]).await;
}

#[tokio::test]
async fn other_node_failures_answer_a_generic_500() {
    let node = FakeNode::new("site1");
    node.refuse_next_submit(ReplicatorError::Couch {
        status: 500,
        context: "PUT r".into(),
        body: "secret detail".into(),
    });
    let response = send(app(&node), post_multipart("/exec/r", &VALID)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = crate::http::json(response).await;
    assert_eq!(body, serde_json::json!({"error": "internal error"}));
}
