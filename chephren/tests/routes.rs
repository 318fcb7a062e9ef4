//! Chephren's routes, through the router with a fake source.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cheops_chephren::{router, BoxFuture, Source};
use cheops_replicator::ReplicatorError;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fake(Value);

impl Source for Fake {
    fn site(&self) -> &str {
        "site1"
    }

    fn documents(&self) -> BoxFuture<'_, Result<Value, ReplicatorError>> {
        let all = self.0.clone();
        Box::pin(async move { Ok(all) })
    }
}

async fn get(path: &str) -> (StatusCode, Value) {
    let docs = json!({"rows": [
        {"id": "r", "doc": {"_id": "r", "Type": "RESOURCE", "Locations": ["site1"], "Operations": null, "Config": {"ResolutionMatrix": null}}}
    ]});
    let app = router(Arc::new(Fake(docs)), "http://site1:8080".into());
    let response = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_node_endpoint_describes_this_site() {
    let (status, body) = get("/api/node").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "site1");
    assert_eq!(body["resourcesCount"], 1);
}

#[tokio::test]
async fn a_resource_never_run_here_has_no_commands_yet() {
    let (status, body) = get("/api/resource/r").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["commands"], json!([]));
    assert_eq!(body["lastUpdate"], "0001-01-01T00:00:00Z");
}

#[tokio::test]
async fn an_unknown_resource_is_a_404_json_error() {
    let (status, body) = get("/api/resource/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("nope"));
}
