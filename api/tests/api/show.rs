//! `POST /show/{id}` and `POST /show_local/{id}`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use cheops_api::{router, ApiConfig};
use cheops_model::{Command, FOREIGN_SHELL};
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

/// A peer that records the fields of every `/show_local` form it gets (as
/// a node reading only `command`, the Go original, would see them) and
/// answers `answer`.
async fn recording_peer(answer: String) -> (String, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use axum::extract::Multipart;
    let fields = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = fields.clone();
    let app = axum::Router::new().route(
        "/show_local/{id}",
        axum::routing::post(move |mut form: Multipart| {
            let (seen, answer) = (seen.clone(), answer.clone());
            async move {
                while let Ok(Some(field)) = form.next_field().await {
                    let name = field.name().unwrap_or_default().to_owned();
                    let text = field.text().await.unwrap_or_default();
                    seen.lock().unwrap().push((name, text));
                }
                answer
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fields)
}

#[tokio::test]
async fn show_runs_http_and_redis_commands_on_every_site_whole() {
    let site1 = FakeNode::new("site1");
    let site2 = FakeNode::new("site2");
    site1.set_api_url("site1", &serve(&site1).await);
    site1.set_api_url("site2", &serve(&site2).await);
    let (go_url, go_saw) = recording_peer(r#"{"Status":"KO","Output":"no"}"#.into()).await;
    site1.set_api_url("site3", &go_url);
    let app = router(site1.clone(), ApiConfig::default());

    let redis: [Part; 5] = [
        ("kind", None, b"redis"),
        ("command", None, b"LRANGE"),
        ("arg", None, b"list-__ID__"),
        ("arg", None, b"0"),
        ("sites", None, b"site1&site2&site3"),
    ];
    let response = send(app.clone(), post_multipart("/show/r1", &redis)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["site2"]["Status"], "OK", "{body}");
    assert_eq!(body["site3"]["Status"], "KO", "{body}");
    let expected = Command::redis(vec!["LRANGE".into(), "list-r1".into(), "0".into()]);
    assert_eq!(site1.local_runs(), std::slice::from_ref(&expected));
    assert_eq!(site2.local_runs(), [expected]);
    // A node reading `command` alone runs the line that answers KO.
    let saw = go_saw.lock().unwrap().clone();
    assert_eq!(saw[0], ("command".to_owned(), FOREIGN_SHELL.to_owned()));

    let http: [Part; 4] = [
        ("kind", None, b"http"),
        ("command", None, b"GET /items/__ID__"),
        ("header", None, b"Accept: text/plain"),
        ("sites", None, b"site2"),
    ];
    let response = send(app, post_multipart("/show/r1", &http)).await;
    assert_eq!(json(response).await["site2"]["Status"], "OK");
    let runs = site2.local_runs();
    let request = runs[1].http.as_ref().expect("an HTTP request");
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/items/r1")
    );
    assert_eq!(
        request.headers,
        [("Accept".to_owned(), "text/plain".to_owned())]
    );
}

#[tokio::test]
async fn show_refuses_files_and_bad_commands_of_any_kind() {
    let node = FakeNode::new("site1");
    let app = router(node.clone(), ApiConfig::default());
    let refused: [(&str, &[Part]); 3] = [
        (
            "no files",
            &[("command", None, b"cat {a}"), ("a", Some("a"), b"A")],
        ),
        (
            "METHOD PATH",
            &[("kind", None, b"http"), ("command", None, b"/items")],
        ),
        (
            "shell, http or redis",
            &[("kind", None, b"grpc"), ("command", None, b"x")],
        ),
    ];
    for (why, parts) in refused {
        for path in ["/show/r1", "/show_local/r1"] {
            let response = send(app.clone(), post_multipart(path, parts)).await;
            assert_error(response, StatusCode::BAD_REQUEST, &[why]).await;
        }
    }
    // Nor through the field other sites send.
    let with_files: [Part; 2] = [
        ("command", None, b"cat {a}"),
        (
            "command-json",
            None,
            br#"{"Command": "cat {a}", "Files": {"a": "QQ=="}}"#,
        ),
    ];
    let response = send(app, post_multipart("/show_local/r1", &with_files)).await;
    assert_error(response, StatusCode::BAD_REQUEST, &["no files"]).await;
    assert!(node.local_runs().is_empty());
}

#[tokio::test]
async fn a_peer_answer_over_the_limit_is_ko_and_never_read_whole() {
    let site1 = FakeNode::new("site1");
    let huge = format!(r#"{{"Status":"OK","Output":"{}"}}"#, "x".repeat(100_000));
    let (url, _) = recording_peer(huge).await;
    site1.set_api_url("site2", &url);
    let config = ApiConfig {
        peer_answer_limit: 10_000,
        ..ApiConfig::default()
    };
    let parts: [Part; 2] = [("command", None, b"ls"), ("sites", None, b"site2")];
    let body = json(send(router(site1, config), post_multipart("/show/r1", &parts)).await).await;
    assert_eq!(body["site2"]["Status"], "KO", "{body}");
    let reason = body["site2"]["Output"].as_str().unwrap();
    assert!(reason.contains("more than 10000 bytes"), "{reason}");
}
