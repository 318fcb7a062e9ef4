//! A node of the Go original and a node of this port on one database: the
//! port never takes away what the original needs (its design document's
//! views), whichever starts first, and opens the database's members only
//! when told to (the original queries its views without credentials).

use cheops_testkit::{Cluster, ClusterOptions};
use serde_json::{json, Value};

/// A `_design/cheops` shaped like the original's (same views, keys, values
/// and reductions, with its own function text), standing in for the one a
/// Go node writes.
const GO_DESIGN: &str = include_str!("../../model/tests/wire/go-compatible-design-document.json");

/// The queries a Go node makes on its views (counting resources, latest
/// replies), as `(view, query string)`.
const GO_QUERIES: [(&str, &str); 3] = [
    ("all-by-resourceid", "group_level=1"),
    ("all-by-resourceid", "reduce=false"),
    ("last-reply", "group=true"),
];

/// Documents as the original writes them: a resource living on two Go
/// sites (so the port node, not among them, never runs it) and two replies.
fn go_documents() -> Vec<Value> {
    let mut resource: Value = serde_json::from_str(include_str!(
        "../../model/tests/wire/resource-document.json"
    ))
    .unwrap();
    resource.as_object_mut().unwrap().remove("_rev");
    resource["Locations"] = json!(["go1", "go2"]);
    let reply: Value =
        serde_json::from_str(include_str!("../../model/tests/wire/reply-document.json")).unwrap();
    let replies = [
        ("go1", "2024-03-05T14:07:10Z"),
        ("go2", "2024-03-05T14:07:11Z"),
    ]
    .map(|(site, time)| {
        let mut reply = reply.clone();
        reply["_id"] = json!(format!("reply-{site}"));
        reply["Site"] = json!(site);
        reply["Locations"] = json!(["go1", "go2"]);
        reply["ExecutionTime"] = json!(time);
        reply
    });
    let mut docs = vec![resource];
    docs.extend(replies);
    docs
}

struct Database {
    http: reqwest::Client,
    /// With credentials.
    url: String,
    /// The same database, without credentials.
    anonymous: String,
}

impl Database {
    fn of(cluster: &Cluster, name: &str) -> Database {
        let port = cluster.node(0).couch_port;
        Database {
            http: reqwest::Client::new(),
            url: format!("http://admin:password@127.0.0.1:{port}/{name}"),
            anonymous: format!("http://127.0.0.1:{port}/{name}"),
        }
    }

    async fn put(&self, path: &str, body: &Value) -> u16 {
        let response = self
            .http
            .put(format!("{}/{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/{path}", self.url))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Replaces `_design/cheops` by the Go-shaped one, as a Go node would
    /// find it after creating it first.
    async fn install_go_design(&self) {
        let current = self.get("_design/cheops").await;
        let deleted = self
            .http
            .delete(format!(
                "{}/_design/cheops?rev={}",
                self.url,
                current["_rev"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert!(deleted.status().is_success());
        assert_eq!(self.put("_design/cheops", &go_design()).await, 201);
    }

    async fn put_go_documents(&self) {
        for doc in go_documents() {
            let id = doc["_id"].as_str().unwrap().to_owned();
            assert_eq!(self.put(&id, &doc).await, 201, "PUT {id}");
        }
    }

    /// The answers of the Go node's queries.
    async fn go_answers(&self) -> Vec<Value> {
        let mut answers = Vec::new();
        for (view, query) in GO_QUERIES {
            let mut answer = self
                .get(&format!("_design/cheops/_view/{view}?{query}"))
                .await;
            // Row order and values are the point; offsets are not.
            answer.as_object_mut().unwrap().remove("offset");
            answers.push(answer);
        }
        answers
    }

    /// The status of a view query made without credentials, as the Go node
    /// makes it.
    async fn anonymous_view_status(&self) -> u16 {
        self.http
            .get(format!(
                "{}/_design/cheops/_view/all-by-resourceid?group_level=1",
                self.anonymous
            ))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn go_design() -> Value {
    let mut design: Value = serde_json::from_str(GO_DESIGN).unwrap();
    design["_id"] = json!("_design/cheops");
    design
}

/// What the Go-shaped design document alone answers for the original's
/// documents, in a database of the same sidecar that no port node touches.
async fn reference_answers(cluster: &Cluster) -> Vec<Value> {
    let reference = Database::of(cluster, "go-reference");
    assert_eq!(reference.put("", &json!({})).await, 201);
    assert_eq!(reference.put("_design/cheops", &go_design()).await, 201);
    reference.put_go_documents().await;
    reference.go_answers().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_node_starting_on_the_originals_database_keeps_its_views() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: vec!["--open-members".into()],
        ..ClusterOptions::default()
    })
    .await;
    let expected = reference_answers(&cluster).await;
    let db = Database::of(&cluster, "cheops");
    cluster.stop_daemon(0);
    db.install_go_design().await;
    db.put_go_documents().await;
    assert_eq!(db.go_answers().await, expected);

    cluster.start_daemon(0).await;

    let design = db.get("_design/cheops").await;
    for (name, body) in go_design()["views"].as_object().unwrap() {
        assert_eq!(
            &design["views"][name], body,
            "the original's {name} was rewritten"
        );
    }
    assert_eq!(db.go_answers().await, expected);
    let replies = db
        .get(r#"_design/cheops/_view/replies-by-resource-site?key=["my-deployment","go2"]"#)
        .await;
    assert_eq!(replies["rows"][0]["id"], "reply-go2", "{replies}");
    assert_eq!(
        db.anonymous_view_status().await,
        200,
        "--open-members leaves the views open to the original's credential-less queries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_starting_second_finds_its_views_and_a_locked_database() {
    let cluster = Cluster::start(1).await;
    let expected = reference_answers(&cluster).await;
    let db = Database::of(&cluster, "cheops");

    // The Go node offers its design document and accepts 409, as it does.
    assert_eq!(db.put("_design/cheops", &go_design()).await, 409);
    db.put_go_documents().await;

    assert_eq!(db.go_answers().await, expected);
    assert_eq!(
        db.anonymous_view_status().await,
        401,
        "by default only admins read the database"
    );
}
