//! Replies (the one that carries its operation included) carry the
//! identity of the database they were written to (`Origin`), and the
//! replication to a peer holds back those that came from it: it holds them
//! already. What the replication
//! sends is read here from the source's filtered changes feed, with the
//! very parameters of its `_replicator` document.

use std::time::Duration;

use cheops_testkit::{eventually, Cluster, ClusterOptions, Exec};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_is_not_sent_back_what_it_wrote() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 2,
        ..ClusterOptions::default()
    })
    .await;
    let (status, replies) = cluster
        .exec(0, Exec::new("r", "site1&site2", &["true"], "add"))
        .await;
    assert_eq!(status, 200, "{replies:?}");
    let request = replies.expect("replies")[0].request_id.clone();
    let http = reqwest::Client::new();
    let identity = |i: usize| {
        let url = format!("{}/_local/cheops-database", cluster.node(i).couch_url());
        let http = http.clone();
        async move {
            let doc: Value = http.get(url).send().await.ok()?.json().await.ok()?;
            doc["Id"].as_str().map(str::to_owned)
        }
    };
    let site1 = identity(0).await.expect("site1's database has an identity");
    let site2 = identity(1).await.expect("site2's database has an identity");
    assert_ne!(site1, site2);

    // Site2's replication to site1 names site1's database.
    let replication = format!(
        "{}/_replicator/cheops-site2-to-site1",
        cluster
            .node(1)
            .couch_url()
            .rsplit_once('/')
            .expect("a path")
            .0
    );
    let params: Value = eventually("site2's replication to site1", WAIT, || {
        let (http, url) = (http.clone(), replication.clone());
        async move {
            let doc: Value = http.get(url).send().await.ok()?.json().await.ok()?;
            Some(doc["query_params"].clone()).filter(|p| p.get("target").is_some())
        }
    })
    .await;
    assert_eq!(params["site"], "site1");
    assert_eq!(params["target"], site1.as_str(), "{params}");

    // Both sites hold every document of the request, each stamped with
    // the database that wrote it.
    let held = eventually("both replies on site2", WAIT, || {
        let http = http.clone();
        let url = format!(
            "{}/_all_docs?include_docs=true",
            cluster.node(1).couch_url()
        );
        let request = request.clone();
        async move {
            let all: Value = http.get(url).send().await.ok()?.json().await.ok()?;
            let docs: Vec<Value> = all["rows"]
                .as_array()?
                .iter()
                .map(|row| row["doc"].clone())
                .filter(|doc| {
                    doc["RequestId"] == request.as_str()
                        || doc["Operation"]["RequestId"] == request.as_str()
                })
                .collect();
            (docs.len() == 2).then_some(docs)
        }
    })
    .await;
    for doc in &held {
        let wrote = match (doc["Type"].as_str(), doc["Site"].as_str()) {
            (Some("REPLY"), Some("site2")) => &site2,
            (Some("REPLY"), Some("site1")) => &site1,
            _ => panic!("a document of the request: {doc}"),
        };
        assert_eq!(doc["Origin"], wrote.as_str(), "{doc}");
    }

    // No history document: site1, which accepted the operation, carries
    // it in its reply.
    let carrier = held
        .iter()
        .find(|d| d["Site"] == "site1")
        .expect("site1's reply");
    assert_eq!(
        carrier["Operation"]["RequestId"],
        request.as_str(),
        "{carrier}"
    );
    assert!(held.iter().all(|d| d["Type"] == "REPLY"), "{held:?}");

    // What site2's replication sends to site1: site2's reply and the
    // resource, not site1's reply.
    let sent = |query: Value| {
        let http = http.clone();
        let url = format!("{}/_changes", cluster.node(1).couch_url());
        async move {
            let mut pairs = vec![("filter".to_owned(), "cheops/by-site".to_owned())];
            for (key, value) in query.as_object().expect("parameters") {
                pairs.push((key.clone(), value.as_str().unwrap_or_default().to_owned()));
            }
            let feed: Value = http
                .get(url)
                .query(&pairs)
                .send()
                .await
                .expect("site2's sidecar answers")
                .json()
                .await
                .expect("a changes feed");
            let mut ids: Vec<String> = feed["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter_map(|row| row["id"].as_str().map(str::to_owned))
                .collect();
            ids.sort();
            ids
        }
    };
    let to_site1 = sent(params.clone()).await;
    let reply_of = |site: &str| {
        held.iter()
            .find(|d| d["Type"] == "REPLY" && d["Site"] == site)
            .and_then(|d| d["_id"].as_str())
            .expect("the reply")
            .to_owned()
    };
    assert!(to_site1.contains(&"r".to_owned()), "{to_site1:?}");
    assert!(to_site1.contains(&reply_of("site2")), "{to_site1:?}");
    assert!(!to_site1.contains(&reply_of("site1")), "{to_site1:?}");

    // A peer whose identity is unknown is sent everything.
    let mut unknown = params.clone();
    unknown
        .as_object_mut()
        .expect("parameters")
        .remove("target");
    let to_anyone = sent(unknown).await;
    for id in [reply_of("site1"), reply_of("site2"), "r".to_owned()] {
        assert!(to_anyone.contains(&id), "{id} in {to_anyone:?}");
    }
}

const WAIT: Duration = Duration::from_secs(30);
