//! One node: operations are stored, run, replied to; bad input is refused
//! and stores nothing.

use cheops_model::Status;
use cheops_testkit::{absent_peer, authorized_client, Cluster, ClusterOptions, Exec};

#[tokio::test(flavor = "multi_thread")]
async fn exec_creates_the_resource_and_streams_one_ok_reply() {
    let cluster = Cluster::start(1).await;
    let config = r#"{"ResolutionMatrix":[{"Before":"set","After":"set","Result":"take-one"}]}"#;
    let (status, replies) = cluster
        .exec(
            0,
            Exec {
                id: "greeting",
                sites: Some("site1"),
                commands: &["cat {hello.txt}; echo !"],
                op_type: Some("set"),
                config: Some(config),
                files: &[("hello.txt", b"hello")],
                fields: &[],
            },
        )
        .await;
    assert_eq!(status, 200);
    let replies = replies.expect("reply lines");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, Status::Ok);
    assert_eq!(replies[0].site, "site1");
    assert_eq!(replies[0].output, "hello!\n");
    assert_eq!(replies[0].input, "cat {hello.txt}; echo !");

    let doc = cluster
        .doc(0, "greeting")
        .await
        .expect("the resource is stored");
    assert_eq!(doc["Locations"], serde_json::json!(["site1"]));
    assert_eq!(doc["Config"]["ResolutionMatrix"][0]["Result"], "take-one");
    assert_eq!(
        doc["Operations"][0]["Command"]["Files"]["hello.txt"],
        "aGVsbG8="
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_stores_nothing() {
    // site2 is a known peer, with no node: only the rule under test refuses it.
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: absent_peer("site2"),
        ..ClusterOptions::default()
    })
    .await;
    let ok = Exec {
        id: "r",
        sites: Some("site1"),
        commands: &["true"],
        op_type: Some("set"),
        ..Exec::default()
    };
    let cases: Vec<(&str, Exec)> = vec![
        (
            "sites",
            Exec {
                sites: None,
                ..ok.clone()
            },
        ),
        (
            "type",
            Exec {
                op_type: None,
                ..ok.clone()
            },
        ),
        (
            "command",
            Exec {
                commands: &[],
                ..ok.clone()
            },
        ),
        (
            "command",
            Exec {
                commands: &["true", "false"],
                ..ok.clone()
            },
        ),
        (
            "site1",
            Exec {
                sites: Some("site2&site3"),
                ..ok.clone()
            },
        ),
        (
            "id",
            Exec {
                id: "a%2Fb",
                ..ok.clone()
            },
        ),
        (
            "config",
            Exec {
                config: Some("{not json"),
                ..ok.clone()
            },
        ),
        (
            "take-two",
            Exec {
                config: Some(
                    r#"{"ResolutionMatrix":[{"Before":"a","After":"b","Result":"take-two"}]}"#,
                ),
                ..ok.clone()
            },
        ),
    ];
    for (needle, request) in cases {
        let (status, body) = cluster.exec(0, request.clone()).await;
        let body = body.expect_err("an error body");
        assert!(
            (400..500).contains(&status),
            "{request:?} answered {status}"
        );
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{request:?}: {message:?} does not mention {needle:?}"
        );
    }
    assert!(cluster.doc(0, "r").await.is_none(), "nothing was stored");

    // Locations never change after creation.
    let (status, _) = cluster.exec(0, ok.clone()).await;
    assert_eq!(status, 200);
    let (status, body) = cluster
        .exec(
            0,
            Exec {
                sites: Some("site1&site2"),
                ..ok.clone()
            },
        )
        .await;
    assert_eq!(status, 400);
    let message = body.expect_err("an error body")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("locations"), "{message}");
    let doc = cluster.doc(0, "r").await.expect("stored");
    assert_eq!(doc["Operations"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn chephren_shows_the_node_and_what_it_ran() {
    let cluster = Cluster::start(1).await;
    let (status, _) = cluster
        .exec(0, Exec::new("seen", "site1", &["echo one"], "set"))
        .await;
    assert_eq!(status, 200);

    let http = authorized_client(cluster.read_token());
    let get = |path: &'static str| {
        let url = format!("{}{path}", cluster.node(0).chephren_url());
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let node = get("/api/node").await;
    assert_eq!(node["name"], "site1");
    assert_eq!(node["state"], "ONLINE");
    assert_eq!(node["resourcesCount"], 1);
    let resources = get("/api/resources").await;
    assert_eq!(resources[0]["id"], "seen");
    assert_eq!(resources[0]["commandsCount"], 1);
    let resource = get("/api/resource/seen").await;
    assert_eq!(resource["commands"][0]["command"], "echo one");
}
