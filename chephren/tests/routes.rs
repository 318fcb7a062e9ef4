//! Chephren's routes, through the router with a fake source.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cheops_api::auth::{guarded, Access, Secret, Tokens};
use cheops_backends::CommandResult;
use cheops_chephren::{router, ChephrenConfig};
use cheops_model::{Command, HistoryEntry, Status};
use cheops_replicator::{
    BoxFuture, Documents, Event, EventType, Feed, Health, HistoryQuery, HistoryStream, NodeEvent,
    NodeSeam, PeerLiveness, Reading, ReplicatorError, Submission, Submitted,
};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tower::ServiceExt;

struct Fake {
    docs: Mutex<Result<Value, ()>>,
    events: broadcast::Sender<NodeEvent>,
    feed: Feed,
}

impl NodeSeam for Fake {
    fn site(&self) -> &str {
        "site1"
    }

    // The web UI only reads: what it never asks answers as a node would
    // that cannot.

    fn submit(&self, _: Submission) -> BoxFuture<'_, Result<Submitted, ReplicatorError>> {
        Box::pin(async { Err(ReplicatorError::InvalidRequest("read-only fake".into())) })
    }

    fn locations<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, ReplicatorError>> {
        Box::pin(async { Ok(None) })
    }

    fn run_local(&self, _: Command) -> BoxFuture<'_, CommandResult> {
        Box::pin(async { CommandResult::skipped() })
    }

    fn api_url(&self, site: &str) -> Result<String, String> {
        Err(format!("site {site:?} is not a known peer"))
    }

    fn dump(&self) -> BoxFuture<'_, Result<Value, ReplicatorError>> {
        Box::pin(async { Ok(json!({"rows": []})) })
    }

    fn check_health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async { Health::default() })
    }

    fn metrics(&self) -> BoxFuture<'_, String> {
        Box::pin(async { String::new() })
    }

    /// Every document, whatever the page reads.
    fn documents<'a>(
        &'a self,
        _: &'a Reading,
    ) -> BoxFuture<'a, Result<Documents, ReplicatorError>> {
        let docs = self.docs.lock().unwrap().clone();
        Box::pin(async move {
            docs.map(|all| Documents::from_all_docs(&all))
                .map_err(|()| ReplicatorError::Couch {
                    status: 500,
                    context: "GET _all_docs".into(),
                    body: "broken".into(),
                })
        })
    }

    /// Resource `r` has five operations, q0…q4, a second apart.
    fn history<'a>(
        &'a self,
        resource_id: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<Option<HistoryStream>, ReplicatorError>> {
        Box::pin(async move {
            if resource_id != "r" {
                return Ok(None);
            }
            let entries: Vec<Result<HistoryEntry, ReplicatorError>> = (0..5)
                .map(|n| HistoryEntry {
                    op_type: "set".into(),
                    request_id: format!("q{n}"),
                    time: format!("2024-01-01T00:00:0{n}Z").parse().unwrap(),
                    ..HistoryEntry::default()
                })
                .filter(|entry| {
                    query.after.as_ref().is_none_or(|(time, request)| {
                        (entry.time, &entry.request_id) > (*time, request)
                    })
                })
                .map(Ok)
                .collect();
            Ok(Some(futures::stream::iter(entries).boxed()))
        })
    }

    fn peers(&self) -> Vec<PeerLiveness> {
        vec![PeerLiveness {
            site: "site2".into(),
            online: false,
            couchdb: true,
            api: false,
            since: "2024-01-01T00:00:03Z".parse().unwrap(),
            checked: "2024-01-01T00:00:04Z".parse().unwrap(),
        }]
    }

    fn health(&self) -> Health {
        Health {
            couchdb_reachable: true,
            follower_live: true,
            last_error: None,
            ..Health::default()
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    fn feed(&self) -> Feed {
        self.feed.clone()
    }
}

fn fake() -> Arc<Fake> {
    let docs = json!({"rows": [
        {"id": "r", "doc": {"_id": "r", "Type": "RESOURCE", "Locations": ["site1", "site2"], "Config": {"ResolutionMatrix": null},
            "Operations": [{"Type": "set", "RequestId": "q1", "Time": "2024-01-01T00:00:01Z", "Command": {"Command": "echo hi", "Files": null}}]}},
        {"id": "x", "doc": {"_id": "x", "Type": "REPLY", "Site": "site1", "ResourceId": "r", "RequestId": "q1", "Status": "OK",
            "Input": "echo hi", "Output": "hi\n", "Locations": ["site1", "site2"], "ExecutionTime": "2024-01-01T00:00:02Z"}}
    ]});
    let feed = Feed::in_memory();
    let locations = ["site1".to_owned(), "site2".to_owned()];
    for (resource, request) in [("r", "q1"), ("s", "q2"), ("r", "q3")] {
        feed.append(Event::new(
            EventType::Operation,
            resource,
            request,
            &locations,
        ))
        .unwrap();
    }
    Arc::new(Fake {
        docs: Mutex::new(Ok(docs)),
        events: broadcast::channel(16).0,
        feed,
    })
}

fn app(source: Arc<Fake>, cors_origins: &[&str]) -> (Router, watch::Sender<bool>) {
    app_with(source, cors_origins, Arc::new(Tokens::open()))
}

fn app_with(
    source: Arc<Fake>,
    cors_origins: &[&str],
    tokens: Arc<Tokens>,
) -> (Router, watch::Sender<bool>) {
    let (stop, shutdown) = watch::channel(false);
    let config = ChephrenConfig {
        address: "http://site1:8080".into(),
        cors_origins: cors_origins.iter().map(|o| (*o).to_owned()).collect(),
    };
    let guard = |api| guarded(api, tokens, Access::Read);
    (router(source, config, shutdown, guard), stop)
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn get_from(source: Arc<Fake>, path: &str) -> (StatusCode, Value) {
    let (app, _stop) = app(source, &[]);
    let request = Request::get(path).body(Body::empty()).unwrap();
    let (status, _, body) = send(app, request).await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn get(path: &str) -> (StatusCode, Value) {
    get_from(fake(), path).await
}

#[tokio::test]
async fn the_node_endpoint_describes_this_site() {
    let (status, body) = get("/api/node").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "site1");
    assert_eq!(body["resourcesCount"], 1);
}

#[tokio::test]
async fn the_original_resource_endpoint_lists_this_sites_executions() {
    let (status, body) = get("/api/resource/r").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["commands"],
        json!([{"command": "echo hi", "date": "2024-01-01T00:00:02Z"}])
    );
}

#[tokio::test]
async fn the_history_comes_a_bounded_page_at_a_time() {
    let (status, page) = get("/api/history/r?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let ids = |page: &Value| -> Vec<String> {
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["RequestId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&page), ["q0", "q1"]);
    assert_eq!(page["more"], true);
    let (status, rest) =
        get("/api/history/r?limit=3&afterTime=2024-01-01T00:00:01Z&afterRequest=q1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&rest), ["q2", "q3", "q4"]);
    assert_eq!(rest["more"], false, "a full last page has nothing after it");
    let (_, all) = get("/api/history/r").await;
    assert_eq!(ids(&all).len(), 5, "50 by default");
    for bad in [
        "/api/history/r?limit=0",
        "/api/history/r?limit=201",
        "/api/history/r?afterTime=2024-01-01T00:00:01Z",
        "/api/history/r?afterTime=yesterday&afterRequest=q1",
    ] {
        let (status, body) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn the_feed_gives_its_last_events_newest_first() {
    let requests = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|e| e["request"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = get("/api/feed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(requests(&body), ["q3", "q2", "q1"]);
    let (_, body) = get("/api/feed?resource=r&limit=1").await;
    assert_eq!(requests(&body), ["q3"]);
    for bad in [
        "/api/feed?limit=0",
        "/api/feed?limit=501",
        "/api/feed?limit=x",
    ] {
        let (status, body) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn an_unknown_resource_is_a_404_json_error() {
    for path in ["/api/resource/nope", "/api/block/nope", "/api/history/nope"] {
        let (status, body) = get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["error"].as_str().unwrap().contains("nope"), "{path}");
    }
}

#[tokio::test]
async fn an_id_that_is_no_resource_id_is_refused_before_any_read() {
    for id in ["_changes", "_all_docs", "history:r:q1", "a%2Fb"] {
        for route in ["resource", "block", "history"] {
            let path = format!("/api/{route}/{id}");
            let (status, body) = get(&path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(body["error"].is_string(), "{path}");
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let (status, body) = get("/api/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no such endpoint: /api/nothing");

    let (app, _stop) = app(fake(), &[]);
    let request = Request::post("/api/cluster").body(Body::empty()).unwrap();
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body.contains("method POST is not allowed on /api/cluster"));
}

#[tokio::test]
async fn the_cluster_lists_this_node_and_its_peers() {
    let (status, body) = get("/api/cluster").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["site"], "site1");
    assert_eq!(body["resources"], 1);
    assert_eq!(body["unconverged"], 1);
    let states: Vec<(&str, &str, u64)> = body["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["site"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
                s["resources"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [("site1", "ONLINE", 1), ("site2", "OFFLINE", 1)]);
    assert_eq!(body["sites"][1]["since"], "2024-01-01T00:00:03Z");
}

#[tokio::test]
async fn the_cluster_still_answers_when_the_database_does_not() {
    let source = fake();
    *source.docs.lock().unwrap() = Err(());
    let (status, body) = get_from(Arc::clone(&source), "/api/cluster").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], false);
    assert_eq!(body["sites"][1]["state"], "OFFLINE");

    let (status, body) = get_from(source, "/api/blocks").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "internal error", "5xx bodies stay generic");
}

#[tokio::test]
async fn a_block_crosses_operations_with_sites() {
    let (status, body) = get("/api/block/r").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["locations"], json!(["site1", "site2"]));
    let op = &body["operations"][0];
    assert_eq!(op["command"], "echo hi");
    assert_eq!(op["replies"][0]["status"], "OK");
    assert_eq!(op["replies"][0]["output"], "hi\n");
    assert_eq!(op["replies"][1]["status"], "PENDING");
    assert_eq!(body["converged"], false);

    let (status, list) = get("/api/blocks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["id"], "r");
    assert_eq!(list[0]["pending"], 1);
}

#[tokio::test]
async fn unresolved_conflicts_are_listed_and_the_resource_is_not_converged() {
    let source = fake();
    let docs = json!({"rows": [
        {"id": "c", "doc": {"_id": "c", "_rev": "3-win", "_conflicts": ["3-lose"], "Type": "RESOURCE",
            "Locations": ["site1"], "Config": {"ResolutionMatrix": null}, "Operations": null}}
    ]});
    *source.docs.lock().unwrap() = Ok(docs);
    let (status, body) = get_from(Arc::clone(&source), "/api/block/c").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["conflicts"], json!(["3-lose"]));
    assert_eq!(body["converged"], false, "nothing pending, but a conflict");
    let (_, list) = get_from(source, "/api/blocks").await;
    assert_eq!(list[0]["conflicts"], 1);
    assert_eq!(list[0]["converged"], false);
}

#[tokio::test]
async fn events_stream_as_named_server_sent_events() {
    let source = fake();
    let (app, stop) = app(Arc::clone(&source), &[]);
    let response = app
        .oneshot(Request::get("/api/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    // The handler has subscribed by the time it answered.
    source
        .events
        .send(NodeEvent::Resource { id: "r".into() })
        .unwrap();
    source
        .events
        .send(NodeEvent::Reply {
            resource: "r".into(),
            request_id: "q1".into(),
            site: "site2".into(),
            status: Status::Ko,
        })
        .unwrap();
    let mut body = response.into_body();
    let mut next = async || {
        let frame = body.frame().await?.unwrap();
        Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
    };
    assert_eq!(
        next().await.unwrap(),
        "event: resource\ndata: {\"event\":\"resource\",\"id\":\"r\"}\n\n"
    );
    assert_eq!(
        next().await.unwrap(),
        "event: reply\ndata: {\"event\":\"reply\",\"request_id\":\"q1\",\"resource\":\"r\",\"site\":\"site2\",\"status\":\"KO\"}\n\n"
    );
    stop.send(true).unwrap();
    assert_eq!(next().await, None, "the stream ends on shutdown");
}

#[tokio::test]
async fn a_client_that_lags_is_told_to_resync() {
    let source = Arc::new(Fake {
        docs: Mutex::new(Ok(json!({"rows": []}))),
        events: broadcast::channel(1).0,
        feed: Feed::in_memory(),
    });
    let (app, stop) = app(Arc::clone(&source), &[]);
    let response = app
        .oneshot(Request::get("/api/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        source
            .events
            .send(NodeEvent::Resource { id: id.into() })
            .unwrap();
    }
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first,
        "event: resync\ndata: {\"event\":\"resync\",\"missed\":2}\n\n"
    );
    stop.send(true).unwrap();
}

#[tokio::test]
async fn cors_headers_only_for_configured_origins() {
    let request = |origin: &str| {
        Request::get("/api/cluster")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    let (app_none, _s1) = app(fake(), &[]);
    let (_, headers, _) = send(app_none, request("http://laptop:9000")).await;
    assert!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
        "same origin only by default"
    );

    let (listed, _s2) = app(fake(), &["http://laptop:9000"]);
    let (_, headers, _) = send(listed.clone(), request("http://laptop:9000")).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://laptop:9000"
    );
    let (_, headers, _) = send(listed, request("http://elsewhere")).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    let (any, _s3) = app(fake(), &["*"]);
    let (_, headers, _) = send(any, request("http://elsewhere")).await;
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

const OPERATOR: &str = "operator-token-for-chephren";
const READ: &str = "read-token-for-chephren";

fn tokens() -> Arc<Tokens> {
    let secret = |s: &str| Some(Secret::new(s).unwrap());
    Arc::new(Tokens::new(secret(OPERATOR), secret(READ), None).unwrap())
}

#[tokio::test]
async fn the_api_needs_the_read_or_operator_token_and_the_ui_does_not() {
    let (app, _stop) = app_with(fake(), &["http://laptop:9000"], tokens());
    let get = |path: &str, token: Option<&str>| {
        let mut request = Request::get(path).header(header::ORIGIN, "http://laptop:9000");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    };
    for path in ["/api/cluster", "/api/blocks", "/api/node", "/api/events"] {
        let (status, headers, body) = send(app.clone(), get(path, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        // The page from another origin can read why, and ask for a token.
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://laptop:9000"
        );
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
        let (status, _, _) = send(app.clone(), get(path, Some("not-a-valid-token-at-all"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for token in [READ, OPERATOR] {
        let (status, _, _) = send(app.clone(), get("/api/cluster", Some(token))).await;
        assert_eq!(status, StatusCode::OK, "{token}");
    }
    for path in ["/", "/app.js", "/api.js"] {
        let (status, _, _) = send(app.clone(), get(path, None)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // A preflight carries no token; it allows the Authorization header.
    let preflight = Request::options("/api/cluster")
        .header(header::ORIGIN, "http://laptop:9000")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(app, preflight).await;
    assert!(status.is_success(), "{status}");
    assert!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("authorization"));
    assert!(headers
        .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());
}

#[tokio::test]
async fn the_ui_is_served_at_the_root() {
    let (app, _stop) = app(fake(), &[]);
    let (status, headers, body) =
        send(app.clone(), Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(body.contains("<script type=\"module\" src=\"app.js\">"));

    let (status, headers, body) = send(
        app,
        Request::get("/views/resource.js")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(body.contains("export const resourceView"));
}
