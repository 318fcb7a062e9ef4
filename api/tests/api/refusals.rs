//! Requests refused before anything is stored: site names that could steer
//! the node's credentials elsewhere, too many sites, ids too long, files
//! that cannot all be written; and what the node's own refusals answer.

use axum::http::StatusCode;
use cheops_api::{router, ApiConfig};
use cheops_replicator::ReplicatorError;

use crate::fake::FakeNode;
use crate::http::{assert_error, post_multipart, post_urlencoded, send, Part};

fn exec_parts<'a>(sites: &'a [u8], extra: &[Part<'a>]) -> Vec<Part<'a>> {
    let mut parts: Vec<Part> = vec![
        ("sites", None, sites),
        ("command", None, b"true"),
        ("type", None, b"set"),
    ];
    parts.extend_from_slice(extra);
    parts
}

/// Sends an `/exec` that must be refused with `status` before anything
/// reaches the node.
async fn refused(path: &str, parts: &[Part<'_>], status: StatusCode, needles: &[&str]) {
    let node = FakeNode::new("site1");
    let app = router(node.clone(), ApiConfig::default());
    assert_error(
        send(app, post_multipart(path, parts)).await,
        status,
        needles,
    )
    .await;
    assert!(node.submissions().is_empty(), "nothing is submitted");
}

#[tokio::test]
async fn sites_that_are_not_host_names_are_refused_by_name() {
    for bad in [
        "127.0.0.1:45999/x#",
        "127.0.0.1:45999",
        "evil@127.0.0.1",
        "h/path",
        "h#fragment",
        "h?query",
        "site 2",
    ] {
        let sites = format!("site1&{bad}");
        let parts = exec_parts(sites.as_bytes(), &[]);
        refused("/exec/r", &parts, StatusCode::BAD_REQUEST, &[bad, "sites"]).await;
    }
}

#[tokio::test]
async fn more_sites_than_the_limit_are_refused() {
    let many: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let sites = format!("site1&{}", many.join("&"));
    let parts = exec_parts(sites.as_bytes(), &[]);
    let limit = cheops_model::MAX_SITES.to_string();
    refused("/exec/r", &parts, StatusCode::BAD_REQUEST, &[&limit]).await;
}

#[tokio::test]
async fn an_id_longer_than_the_limit_is_refused() {
    let id = "a".repeat(cheops_model::MAX_RESOURCE_ID_LEN + 1);
    let parts = exec_parts(b"site1", &[]);
    let limit = cheops_model::MAX_RESOURCE_ID_LEN.to_string();
    refused(
        &format!("/exec/{id}"),
        &parts,
        StatusCode::BAD_REQUEST,
        &[&limit],
    )
    .await;
}

#[tokio::test]
async fn a_file_named_like_the_directory_of_another_is_refused() {
    let parts = exec_parts(
        b"site1",
        &[("a", Some("a"), b"1"), ("a/b", Some("b"), b"2")],
    );
    refused(
        "/exec/r",
        &parts,
        StatusCode::BAD_REQUEST,
        &["\"a\"", "\"a/b\""],
    )
    .await;
}

#[tokio::test]
async fn show_naming_a_site_the_node_cannot_reach_is_refused_and_runs_nothing() {
    let node = FakeNode::new("site1");
    let app = router(node.clone(), ApiConfig::default());
    let request = post_urlencoded(
        "/show/r",
        "command=true&sites=site1%26127.0.0.1%3A45999%2Fx%23",
    );
    assert_error(
        send(app.clone(), request).await,
        StatusCode::BAD_REQUEST,
        &["127.0.0.1:45999/x#"],
    )
    .await;
    let request = post_urlencoded("/show/r", "command=true&sites=site1%26elsewhere");
    assert_error(
        send(app, request).await,
        StatusCode::BAD_REQUEST,
        &["elsewhere"],
    )
    .await;
    assert!(node.local_runs().is_empty(), "nothing ran");
}

#[tokio::test]
async fn a_location_the_node_cannot_reach_is_ko_and_the_others_answer() {
    let node = FakeNode::new("site1");
    node.add_resource("r", &["site1", "elsewhere"]);
    let app = router(node.clone(), ApiConfig::default());
    let response = send(app, post_urlencoded("/show/r", "command=true")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = crate::http::json(response).await;
    assert_eq!(body["site1"]["Status"], "OK");
    assert_eq!(body["elsewhere"]["Status"], "KO");
    let reason = body["elsewhere"]["Output"].as_str().unwrap();
    assert!(reason.contains("not a known peer"), "{reason}");
}

/// The node refuses the submission with `error`; the API answers `status`.
async fn node_refusal(error: ReplicatorError) -> axum::response::Response {
    let node = FakeNode::new("site1");
    node.refuse_next_submit(error);
    let app = router(node.clone(), ApiConfig::default());
    send(app, post_multipart("/exec/r", &exec_parts(b"site1", &[]))).await
}

#[tokio::test]
async fn a_resource_too_large_for_couchdb_answers_413_naming_the_limit() {
    let response = node_refusal(ReplicatorError::TooLarge {
        resource: "r".into(),
        size: 9_000_000,
        limit: 8_000_000,
    })
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, &["8000000"]).await;
}

#[tokio::test]
async fn a_resource_couchdb_refused_as_too_large_answers_413_in_couchdbs_words() {
    let response = node_refusal(ReplicatorError::RefusedTooLarge {
        resource: "r".into(),
        size: 2_000_000,
        limit: 8_000_000,
        reason: "document_too_large: r".into(),
    })
    .await;
    assert_error(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["CouchDB refused", "document_too_large: r"],
    )
    .await;
}

#[tokio::test]
async fn an_id_taken_by_a_reply_answers_409() {
    let response = node_refusal(ReplicatorError::IdTaken("r".into())).await;
    assert_error(response, StatusCode::CONFLICT, &["\"r\"", "reply"]).await;
}

#[tokio::test]
async fn exhausted_write_retries_answer_503_with_retry_after() {
    let response = node_refusal(ReplicatorError::Contended {
        resource: "r".into(),
        attempts: 50,
    })
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, &["try again"]).await;
}

#[tokio::test]
async fn a_resource_read_as_deleted_answers_503_with_retry_after() {
    let response = node_refusal(ReplicatorError::Settling {
        resource: "r".into(),
    })
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        &["resource r", "merge", "nothing was stored", "try again"],
    )
    .await;
}
