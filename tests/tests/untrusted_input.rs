//! What any caller of the API can send, against a real node: site names
//! that would steer the node's credentials to a host of the caller's
//! choosing, requests the node must refuse (each storing nothing), and the
//! environment commands run in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheops_testkit::{eventually, Cluster, ClusterOptions, Exec};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// What a listener received: one entry per connection, its first bytes.
type Received = Arc<Mutex<Vec<String>>>;

/// A listener on a port chosen by the OS that records every connection.
async fn listener() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = vec![0; 512];
                let read = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut head))
                    .await
                    .map_or(0, |read| read.unwrap_or(0));
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head[..read]).into_owned());
            });
        }
    });
    (port, received)
}

/// Every document of node 0's database.
async fn all_docs(cluster: &Cluster) -> Value {
    let url = format!(
        "{}/_all_docs?include_docs=true",
        cluster.node(0).couch_url()
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The site names a caller could use to reach the listener on `port`.
fn hostile_sites(port: u16) -> Vec<String> {
    [
        "127.0.0.1:{port}",
        "127.0.0.1:{port}/x#",
        "127.0.0.1:{port}/",
        "127.0.0.1:{port}?",
        "127.0.0.1:{port}#",
        "admin@127.0.0.1:{port}",
        "a:b@127.0.0.1:{port}/cheops#",
        "127.0.0.1:{port}/x?y=",
        "127.0.0.1%3A{port}",
        " 127.0.0.1:{port} ",
    ]
    .iter()
    .map(|s| s.replace("{port}", &port.to_string()))
    .collect()
}

/// Names every hostile site in `/exec` and `/show` through a one-node
/// cluster started with `daemon_args`; each request is refused, the
/// database is unchanged, and the listener hears nothing, while a peer
/// the operator configured is probed and replicated to.
async fn hostile_sites_reach_nothing(daemon_args: &[&str]) {
    let (evil_port, evil) = listener().await;
    let (peer_port, peer) = listener().await;
    let mut args: Vec<String> = daemon_args.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--peer".to_owned(),
        format!(
            "trusted=http://admin:password@127.0.0.1:{peer_port}/cheops,http://127.0.0.1:{peer_port}"
        ),
    ]);
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: args,
        ..ClusterOptions::default()
    })
    .await;
    let before = all_docs(&cluster).await;

    for site in hostile_sites(evil_port) {
        let sites = format!("site1&{site}");
        let (status, body) = cluster
            .exec(0, Exec::new("leak", &sites, &["true"], "set"))
            .await;
        let body = body.expect_err("an error body");
        assert_eq!(status, 400, "{sites:?}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(site.trim()), "{sites:?}: {message}");

        let (status, body) = cluster.show(0, "leak", "true", Some(&sites)).await;
        assert_eq!(status, 400, "/show {sites:?}: {body}");
    }
    assert_eq!(all_docs(&cluster).await, before, "nothing was stored");

    // A peer the operator configured is reached: probes every second and a
    // replication once a resource names it. By then the daemon has had
    // every chance to reach the hostile sites too.
    let (status, _) = cluster
        .exec(0, Exec::new("fine", "site1&trusted", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    eventually(
        "the configured peer to be probed and replicated to",
        Duration::from_secs(30),
        || async {
            let heard = peer.lock().unwrap().clone();
            let replicated = heard.iter().any(|h| h.contains("/cheops"));
            (heard.len() >= 6 && replicated).then_some(())
        },
    )
    .await;
    let heard = evil.lock().unwrap().clone();
    assert!(
        heard.is_empty(),
        "the hostile listener received {} connections:\n{}",
        heard.len(),
        heard.join("\n---\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_named_as_a_site_receives_nothing_without_templates() {
    hostile_sites_reach_nothing(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_named_as_a_site_receives_nothing_with_templates() {
    // The templates point at a closed port: only a site name that adds its
    // own port, user or path could reach the listener.
    hostile_sites_reach_nothing(&[
        "--couchdb-template",
        "http://admin:password@{site}:1/cheops",
        "--api-template",
        "http://{site}:1",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_answer_clearly_and_store_nothing() {
    const MAX_DOCUMENT_SIZE: usize = 100_000;
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: vec!["--max-document-size".into(), MAX_DOCUMENT_SIZE.to_string()],
        ..ClusterOptions::default()
    })
    .await;
    let (status, replies) = cluster
        .exec(0, Exec::new("r", "site1", &["echo hi"], "set"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(replies.unwrap().len(), 1);
    // A reply as the Go original stores it, under an id CouchDB chose: a
    // valid resource id.
    let reply_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let url = format!("{}/{reply_id}", cluster.node(0).couch_url());
    let reply = serde_json::json!({"Type": "REPLY", "Site": "site1", "Status": "OK"});
    let stored = reqwest::Client::new()
        .put(url)
        .json(&reply)
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success());
    let large = vec![b'x'; 2 * MAX_DOCUMENT_SIZE];
    let large_file: [(&str, &[u8]); 1] = [("large", &large)];
    let many_sites = (0..100)
        .map(|i| format!("s{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let many_sites = format!("site1&{many_sites}");

    let before = all_docs(&cluster).await;
    let cases: Vec<(u16, &str, Exec)> = vec![
        (
            400,
            "\"a/b\"",
            Exec {
                files: &[("a", b"1"), ("a/b", b"2")],
                ..Exec::new("r", "site1", &["true"], "set")
            },
        ),
        (
            413,
            "100000",
            Exec {
                files: &large_file,
                ..Exec::new("r", "site1", &["true"], "set")
            },
        ),
        (
            413,
            "100000",
            Exec {
                files: &large_file,
                ..Exec::new("new", "site1", &["true"], "set")
            },
        ),
        (409, "reply", Exec::new(reply_id, "site1", &["true"], "set")),
        (400, "64", Exec::new("new", &many_sites, &["true"], "set")),
        (
            400,
            "site2",
            Exec::new("new", "site1&site2", &["true"], "set"),
        ),
    ];
    for (expected, needle, request) in cases {
        let (status, body) = cluster.exec(0, request.clone()).await;
        let body = body.expect_err("an error body");
        assert_eq!(status, expected, "{request:?}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{request:?}: {message}");
    }
    assert_eq!(all_docs(&cluster).await, before, "nothing was stored");
}

/// Runs `command` through node 0's `/show_local`; returns its status and
/// output.
async fn show_local(cluster: &Cluster, command: &str) -> (String, String) {
    let url = format!("{}/show_local/r", cluster.node(0).api_url());
    let shown: Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(cluster.token())
        .form(&[("command", command)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        shown["Status"].as_str().unwrap().to_owned(),
        shown["Output"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn show_local_runs_commands_clean_capped_and_timed() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: ["--command-timeout", "1", "--command-output-limit", "100"]
            .map(String::from)
            .to_vec(),
        ..ClusterOptions::default()
    })
    .await;
    // The harness gives the daemon RUST_LOG, CHEOPS_COMMAND_ENV and
    // NODE_DIR, and passes on NODE_DIR only. (Checked by the command: its
    // output is cut at 100 bytes.)
    let check = "leaked=$(env | cut -d= -f1 | grep -e '^CHEOPS_' -e '^CARGO' -e '^RUST_LOG$'); \
                 if [ -n \"$leaked\" ]; then echo $leaked; exit 1; fi; \
                 test -n \"$NODE_DIR\" && test -n \"$PATH\" && echo clean";
    let (status, output) = show_local(&cluster, check).await;
    assert_eq!((status.as_str(), output.as_str()), ("OK", "clean\n"));

    let (status, output) = show_local(&cluster, "yes | head -c 5000").await;
    assert_eq!(status, "OK");
    assert_eq!(&output[..100], "y\n".repeat(50));
    assert!(
        output[100..].starts_with("[cheops: output truncated: 4900 more bytes"),
        "{output}"
    );

    let (status, output) = show_local(&cluster, "echo started; sleep 30").await;
    assert_eq!(status, "KO");
    assert!(
        output.starts_with("started\n[cheops: timed out after 1 s"),
        "{output}"
    );
}
