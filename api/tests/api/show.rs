//! `POST /show/{id}` and `POST /show_local/{id}`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use cheops_api::{router, ApiConfig};
use serde_json::json;
use tokio::net::TcpListener;

use crate::fake::FakeNode;
use crate::http::{assert_error, json, post_multipart, post_urlencoded, send, Part};

/// Serves `node`'s API on a port chosen by the OS; returns its base URL.
async fn serve(node: &Arc<FakeNode>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(node.clone(), ApiConfig::default());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A peer that accepts connections and never answers.
async fn silent_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn show_asks_every_site_and_reports_unreachable_and_late_ones() {
    let site1 = FakeNode::new("site1");
    let site2 = FakeNode::new("site2");
    site1.set_api_url("site1", &serve(&site1).await);
    site1.set_api_url("site2", &serve(&site2).await);
    site1.set_api_url("site3", "http://127.0.0.1:1");
    site1.set_api_url("site4", &silent_peer().await);
    let config = ApiConfig {
        show_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let parts: [Part; 2] = [
        ("command", None, b"cat /data/__ID__"),
        ("sites", None, b"site1&site2&site3&site4"),
    ];
    let response = send(
        router(site1.clone(), config),
        post_multipart("/show/r1", &parts),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;

    assert_eq!(
        body["site1"],
        json!({"Status": "OK", "Output": "site1 ran cat /data/r1"})
    );
    assert_eq!(
        body["site2"],
        json!({"Status": "OK", "Output": "site2 ran cat /data/r1"})
    );
    assert_eq!(body["site3"]["Status"], "KO");
    let reason = body["site3"]["Output"].as_str().unwrap();
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(body["site4"]["Status"], "TIMEOUT");
    assert_eq!(body.as_object().unwrap().len(), 4);
    assert_eq!(site2.local_runs()[0].command, "cat /data/r1");
}

#[tokio::test]
async fn show_without_sites_asks_the_resource_locations() {
    let site1 = FakeNode::new("site1");
    let site2 = FakeNode::new("site2");
    site1.add_resource("r1", &["site1", "site2"]);
    site1.set_api_url("site1", &serve(&site1).await);
    site1.set_api_url("site2", &serve(&site2).await);
    let response = send(
        router(site1.clone(), ApiConfig::default()),
        post_multipart("/show/r1", &[("command", None, b"ls")]),
    )
    .await;
    let body = json(response).await;
    let sites: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(sites, ["site1", "site2"]);
    assert_eq!(body["site2"]["Status"], "OK");
}

#[tokio::test]
async fn show_without_sites_of_an_unknown_resource_is_404() {
    let node = FakeNode::new("site1");
    let response = send(
        router(node.clone(), ApiConfig::default()),
        post_urlencoded("/show/nope", "command=ls"),
    )
    .await;
    assert_error(response, StatusCode::NOT_FOUND, &["\"nope\""]).await;
}

#[tokio::test]
async fn show_without_command_is_refused() {
    let node = FakeNode::new("site1");
    let response = send(
        router(node.clone(), ApiConfig::default()),
        post_multipart("/show/r1", &[("sites", None, b"site1")]),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, &["`command`", "missing"]).await;
}

#[tokio::test]
async fn show_local_replaces_every_id_placeholder_and_runs_locally() {
    let node = FakeNode::new("site1");
    let response = send(
        router(node.clone(), ApiConfig::default()),
        post_multipart(
            "/show_local/r1",
            &[("command", None, b"cat __ID__.json __ID__.log")],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json(response).await,
        json!({"Status": "OK", "Output": "site1 ran cat r1.json r1.log"})
    );
    let runs = node.local_runs();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].files.is_empty());
}

#[tokio::test]
async fn show_local_takes_urlencoded_forms_and_reports_failure_as_ko() {
    let node = FakeNode::new("site1");
    let response = send(
        router(node.clone(), ApiConfig::default()),
        post_urlencoded("/show_local/r1", "command=test+-f+__ID__+%7C%7C+false"),
    )
    .await;
    assert_eq!(
        json(response).await,
        json!({"Status": "KO", "Output": "site1 ran test -f r1 || false"})
    );
}

#[tokio::test]
async fn show_local_with_a_form_over_the_limit_answers_413() {
    let node = FakeNode::new("site1");
    let config = ApiConfig {
        body_limit: 64,
        ..ApiConfig::default()
    };
    let body = format!("command={}", "x".repeat(200));
    let response = send(
        router(node.clone(), config),
        post_urlencoded("/show_local/r1", &body),
    )
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, &["64 bytes"]).await;
    assert!(node.local_runs().is_empty());
}
