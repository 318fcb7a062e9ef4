//! `/health`, `/metrics`, `/openapi.yml`, the dump listener, and what no
//! route takes.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cheops_api::{dump_router, router, ApiConfig};
use cheops_replicator::Health;

use crate::fake::FakeNode;
use crate::http::{assert_error, body_bytes, json, send};

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn health_is_200_when_healthy_and_503_when_not() {
    let node = FakeNode::new("site1");
    let app = router(node.clone(), ApiConfig::default());
    let response = send(app.clone(), get("/health")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["follower_live"], true);

    node.set_health(Health {
        couchdb_reachable: false,
        follower_live: true,
        last_error: Some("connection refused".into()),
        ..Health::default()
    });
    let response = send(app, get("/health")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["last_error"], "connection refused");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let node = FakeNode::new("site1");
    let response = send(router(node, ApiConfig::default()), get("/metrics")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        body_bytes(response).await,
        "# TYPE cheops_fake gauge\ncheops_fake 1\n".as_bytes()
    );
}

#[tokio::test]
async fn the_node_serves_its_openapi_contract_as_yaml() {
    let node = FakeNode::new("site1");
    let response = send(router(node, ApiConfig::default()), get("/openapi.yml")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let body = body_bytes(response).await;
    assert_eq!(body, include_bytes!("../../openapi.yml"));
    assert!(body.starts_with(b"openapi: 3.1.0\n"));
}

#[tokio::test]
async fn an_unknown_route_is_a_404_json_error() {
    let node = FakeNode::new("site1");
    let response = send(router(node, ApiConfig::default()), get("/nowhere")).await;
    assert_error(response, StatusCode::NOT_FOUND, &["/nowhere"]).await;
}

#[tokio::test]
async fn a_wrong_method_is_a_405_json_error() {
    let node = FakeNode::new("site1");
    let response = send(router(node, ApiConfig::default()), get("/exec/r1")).await;
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        &["GET", "/exec/r1"],
    )
    .await;
}

#[tokio::test]
async fn the_dump_lists_the_node_database() {
    let node = FakeNode::new("site1");
    let response = send(dump_router(node, Default::default()), get("/")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["rows"][0]["doc"]["Type"], "RESOURCE");
}
