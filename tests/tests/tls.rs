//! Everything over TLS: daemons serving HTTPS, reaching their CouchDB and
//! their peers through `https://` URLs, and the client trusting the
//! cluster's CA by `--ca-file` (and refused without it).

use cheops_model::Status;
use cheops_testkit::{cheops_binary, Cluster, ClusterOptions, Exec};

/// Runs `cheops exec` against `node` with the operator `token` and `extra`
/// flags; its exit status and standard error.
async fn client(node: &str, token: &str, extra: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(cheops_binary())
        .args(["exec", "--id", "over-tls", "--sites", "site1&site2"])
        .args(["--type", "set", "--command", "echo hello"])
        .args(["--node", node])
        .args(extra)
        .env_remove("CHEOPS_CA_FILE")
        .env_remove("CHEOPS_NODE")
        .env_remove("CHEOPS_TOKEN_FILE")
        .env("CHEOPS_TOKEN", token)
        .output()
        .await
        .expect("cannot run cheops");
    (
        output.status.code().expect("cheops was killed"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_over_tls_replicates_and_answers_only_clients_trusting_its_ca() {
    // Healthy means each daemon serves HTTPS and follows its CouchDB
    // through its https:// front.
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 2,
        tls: true,
        ..ClusterOptions::default()
    })
    .await;
    let site1 = cluster.node(0);
    assert!(site1.api_url().starts_with("https://"));
    let (_, files) = site1.tls.clone().expect("TLS files");

    // Both sites reply: the operation crossed to site2 over https, as did
    // its reply back.
    let (status, replies) = cluster
        .exec(0, Exec::new("first", "site1&site2", &["echo hi"], "set"))
        .await;
    assert_eq!(status, 200, "{replies:?}");
    let replies = replies.expect("reply lines");
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        replies.iter().all(|r| r.status == Status::Ok),
        "{replies:?}"
    );

    let ca = files.ca.to_string_lossy().into_owned();
    let (code, stderr) = client(&site1.api_url(), cluster.token(), &["--ca-file", &ca]).await;
    assert_eq!(code, 0, "{stderr}");

    let (code, stderr) = client(&site1.api_url(), cluster.token(), &[]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    let plain = site1.api_url().replace("https://", "http://");
    let (code, stderr) = client(&plain, cluster.token(), &["--ca-file", &ca]).await;
    assert_eq!(code, 3, "plain HTTP is not served: {stderr}");

    // The client ran nothing it was refused: one operation stored besides
    // the first resource's.
    let doc = cluster.converged("over-tls", &[0, 1]).await;
    assert_eq!(doc["Operations"].as_array().map(Vec::len), Some(1));
}
