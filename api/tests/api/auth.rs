//! Who may call what: the operator, read and node tokens on the API (and
//! its `/metrics`) and the dump listener, and what `/show` sends to the other sites.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cheops_api::auth::{Secret, Tokens};
use cheops_api::{dump_router, router, ApiConfig};
use cheops_model::Timestamp;
use cheops_replicator::{
    EventType, Health, HookDelivery, HookStatus, OversizeResource, TaskState, TaskStatus,
};
use serde_json::json;
use tokio::net::TcpListener;

use crate::fake::FakeNode;
use crate::http::{assert_error, json, post_multipart, send, Part};

const OPERATOR: &str = "operator-token-0123456789";
const READ: &str = "read-token-0123456789";
const NODE: &str = "node-token-0123456789";

fn tokens(node: Option<&str>) -> Arc<Tokens> {
    let secret = |s: &str| Some(Secret::new(s).unwrap());
    Arc::new(Tokens::new(secret(OPERATOR), secret(READ), node.and_then(secret)).unwrap())
}

fn api(node: &Arc<FakeNode>, tokens: Arc<Tokens>) -> Router {
    router(
        node.clone(),
        ApiConfig {
            tokens,
            ..ApiConfig::default()
        },
    )
}

fn with_token(mut request: Request<Body>, token: Option<&str>) -> Request<Body> {
    if let Some(token) = token {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    request
}

const EXEC: [Part; 3] = [
    ("sites", None, b"site1"),
    ("type", None, b"set"),
    ("command", None, b"true"),
];
const SHOW: [Part; 1] = [("command", None, b"cat __ID__")];

/// The status each endpoint answers `token`.
async fn statuses(token: Option<&str>) -> [StatusCode; 7] {
    let node = FakeNode::new("site1");
    node.add_resource("r1", &["site1"]);
    let app = api(&node, tokens(Some(NODE)));
    let exec = send(
        app.clone(),
        with_token(post_multipart("/exec/r1", &EXEC), token),
    );
    let show = send(
        app.clone(),
        with_token(post_multipart("/show/r1", &SHOW), token),
    );
    let show_local = send(
        app.clone(),
        with_token(post_multipart("/show_local/r1", &SHOW), token),
    );
    let history = send(
        app.clone(),
        with_token(
            Request::get("/history/r1").body(Body::empty()).unwrap(),
            token,
        ),
    );
    let changes = send(
        app.clone(),
        with_token(Request::get("/changes").body(Body::empty()).unwrap(), token),
    );
    let metrics = send(
        app,
        with_token(Request::get("/metrics").body(Body::empty()).unwrap(), token),
    );
    let dump = send(
        dump_router(node.clone(), tokens(Some(NODE))),
        with_token(Request::get("/").body(Body::empty()).unwrap(), token),
    );
    let (exec, show, show_local, history, dump, metrics, changes) =
        tokio::join!(exec, show, show_local, history, dump, metrics, changes);
    [exec, show, show_local, history, dump, metrics, changes].map(|r| r.status())
}

#[tokio::test]
async fn each_token_opens_its_endpoints_only() {
    const OK: StatusCode = StatusCode::OK;
    const NO: StatusCode = StatusCode::UNAUTHORIZED;
    const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
    //                                          exec       show       show_local history dump       metrics changes
    assert_eq!(statuses(None).await, [NO, NO, NO, NO, NO, NO, NO]);
    assert_eq!(
        statuses(Some("wrong-token-0123456789")).await,
        [NO, NO, NO, NO, NO, NO, NO]
    );
    assert_eq!(statuses(Some(OPERATOR)).await, [OK, OK, OK, OK, OK, OK, OK]);
    assert_eq!(
        statuses(Some(READ)).await,
        [FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK, OK, OK]
    );
    assert_eq!(
        statuses(Some(NODE)).await,
        [FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN]
    );
}

#[tokio::test]
async fn a_refusal_challenges_for_a_bearer_token_in_json_and_runs_nothing() {
    let node = FakeNode::new("site1");
    let app = api(&node, tokens(None));
    let response = send(app.clone(), post_multipart("/show_local/r1", &SHOW)).await;
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="cheops""#
    );
    assert_error(response, StatusCode::UNAUTHORIZED, &["Bearer"]).await;

    let response = send(
        app.clone(),
        with_token(post_multipart("/exec/r1", &EXEC), Some(READ)),
    )
    .await;
    assert_error(response, StatusCode::FORBIDDEN, &["operator token"]).await;
    assert!(node.local_runs().is_empty());
    assert!(node.submissions().is_empty());
}

#[tokio::test]
async fn a_form_post_from_a_web_page_carries_no_credential_that_counts() {
    // What a browser sends for a cross-site <form method=post>: cookies,
    // maybe cached Basic credentials, never a bearer token.
    let node = FakeNode::new("site1");
    let app = api(&node, tokens(None));
    let basic = format!(
        "Basic {}",
        "b3BlcmF0b3I6b3BlcmF0b3ItdG9rZW4tMDEyMzQ1Njc4OQ=="
    );
    let mut request = Request::post(format!("/show_local/r1?token={OPERATOR}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("token={OPERATOR}"))
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::from("command=touch+/tmp/pwned"))
        .unwrap();
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, basic.parse().unwrap());
    let response = send(app, request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(node.local_runs().is_empty());
}

#[tokio::test]
async fn without_tokens_a_web_page_still_cannot_run_a_command() {
    // The same form POST against a node with no token (loopback only):
    // the browser names the page's origin, and that is refused.
    let node = FakeNode::new("site1");
    let app = api(&node, Arc::new(Tokens::open()));
    let from_page = Request::post("/show_local/r1")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::from("command=touch+/tmp/pwned"))
        .unwrap();
    let response = send(app.clone(), from_page).await;
    assert_error(response, StatusCode::FORBIDDEN, &["web pages"]).await;
    assert!(node.local_runs().is_empty());
    // The CLI and curl send no Origin: they pass.
    let response = send(app, post_multipart("/show_local/r1", &SHOW)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(node.local_runs().len(), 1);
}

#[tokio::test]
async fn health_and_the_contract_stay_open() {
    let node = FakeNode::new("site1");
    let app = api(&node, tokens(Some(NODE)));
    for path in ["/health", "/openapi.yml"] {
        let response = send(app.clone(), Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

/// Serves `node`'s API with `tokens`; returns its base URL.
async fn serve(node: &Arc<FakeNode>, tokens: Arc<Tokens>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = api(node, tokens);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn show_sends_the_node_token_else_the_operator_token_to_the_other_sites() {
    for (mine, peers) in [
        // A node token of the cluster's: peers accept it for show_local.
        (tokens(Some(NODE)), tokens(Some(NODE))),
        // None: the operator token, shared cluster-wide, goes instead.
        (tokens(None), tokens(None)),
    ] {
        let site1 = FakeNode::new("site1");
        let site2 = FakeNode::new("site2");
        site1.set_api_url("site2", &serve(&site2, peers).await);
        let response = send(
            api(&site1, mine),
            with_token(
                post_multipart("/show/r1", &[SHOW[0], ("sites", None, b"site2")]),
                Some(OPERATOR),
            ),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            json(response).await["site2"],
            json!({"Status": "OK", "Output": "site2 ran cat r1"})
        );
    }
}

#[tokio::test]
async fn a_site_that_refuses_the_token_is_ko_with_its_reason() {
    let site1 = FakeNode::new("site1");
    let site2 = FakeNode::new("site2");
    let other_cluster = Arc::new(
        Tokens::new(
            Some(Secret::new("another-operator-token").unwrap()),
            None,
            None,
        )
        .unwrap(),
    );
    site1.set_api_url("site2", &serve(&site2, other_cluster).await);
    let response = send(
        api(&site1, tokens(Some(NODE))),
        with_token(
            post_multipart("/show/r1", &[SHOW[0], ("sites", None, b"site2")]),
            Some(OPERATOR),
        ),
    )
    .await;
    let body = json(response).await;
    assert_eq!(body["site2"]["Status"], "KO");
    assert!(
        body["site2"]["Output"].as_str().unwrap().contains("401"),
        "{body}"
    );
    assert!(site2.local_runs().is_empty());
}

#[tokio::test]
async fn health_shows_its_error_texts_deliveries_and_resources_to_a_reader_only() {
    let node = FakeNode::new("site1");
    node.set_health(Health {
        couchdb_reachable: true,
        follower_live: false,
        last_error: Some("connection refused by http://db.internal:5984".into()),
        tasks: vec![TaskStatus {
            name: "follower".into(),
            vital: true,
            state: TaskState::Retrying,
            failures: 3,
            last_error: Some("http://db.internal:5984/cheops/_changes".into()),
            last_error_at: None,
        }],
        hooks: vec![HookStatus {
            name: "deploys".into(),
            delivered: 1,
            last: [HookDelivery {
                id: "msg_1".into(),
                event: EventType::OperationComplete,
                resource: "payroll-db".into(),
                request: "r1".into(),
                result: "connection refused by hooks.internal".into(),
                delivered: false,
                attempts: 1,
                at: Timestamp::now(),
            }]
            .into(),
            ..HookStatus::default()
        }],
        oversize: vec![OversizeResource {
            resource: "payroll-archive".into(),
            bytes: 9_000_000,
            limit: 8_000_000,
        }],
        ..Health::default()
    });
    let app = api(&node, tokens(Some(NODE)));
    for (token, detailed) in [(None, false), (Some(NODE), false), (Some(READ), true)] {
        let request = with_token(Request::get("/health").body(Body::empty()).unwrap(), token);
        let response = send(app.clone(), request).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = json(response).await;
        assert_eq!(body["tasks"][0]["state"], "retrying", "{body}");
        assert_eq!(body["hooks"][0]["delivered"], 1, "{body}");
        let text = body.to_string();
        for named in ["db.internal", "hooks.internal", "payroll"] {
            assert_eq!(text.contains(named), detailed, "{token:?}: {text}");
        }
    }
}

#[tokio::test]
async fn a_node_without_tokens_answers_loopback_names_only() {
    let node = FakeNode::new("site1");
    node.add_resource("r1", &["site1"]);
    let open = |tokens: Tokens| api(&node, Arc::new(tokens));
    let to = |path: &str, host: &str| {
        Request::get(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    // A page of attacker.example, whose DNS now says 127.0.0.1.
    for path in ["/metrics", "/history/r1", "/changes"] {
        let response = send(open(Tokens::open()), to(path, "attacker.example:8079")).await;
        assert_error(response, StatusCode::FORBIDDEN, &["localhost"]).await;
        let response = send(open(Tokens::open()), to(path, "127.0.0.1:8079")).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let insecure = Tokens::open().answering_any_host();
        let response = send(open(insecure), to(path, "attacker.example:8079")).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} with --insecure");
    }
    let mut show_local = post_multipart("/show_local/r1", &SHOW);
    show_local
        .headers_mut()
        .insert(header::HOST, "attacker.example".parse().unwrap());
    let response = send(open(Tokens::open()), show_local).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(node.local_runs().is_empty());
}
