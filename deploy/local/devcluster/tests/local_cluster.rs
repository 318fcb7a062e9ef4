//! `cheops-cluster`, the program behind `deploy/local/cluster`, used as the
//! maintainers' scenario tests use it: up, cluster.json, an operation,
//! partition, status, heal, down — and nothing left running; the tokens it
//! generates, and the settings its daemons inherit from its caller.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cheops_testkit::{authorized_client, cheops_binary, eventually};
use serde_json::Value;

/// An origin no daemon allows unless told to.
const LAPTOP: &str = "http://laptop.invalid:9000";

fn cluster(args: &[&str], dir: &Path) -> Output {
    // `cheops-cluster` starts the `cheops` built beside it.
    cheops_binary();
    Command::new(env!("CARGO_BIN_EXE_cheops-cluster"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        // A setting of the caller's, which every daemon must get; and a
        // token of the caller's, which none may take.
        .env("CHEOPS_CHEPHREN_CORS", LAPTOP)
        .env("CHEOPS_TOKEN", "the-callers-own-token-0123")
        .output()
        .expect("cannot run cheops-cluster")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn exec(http: &reqwest::Client, api: &str, id: &str, command: &str) -> String {
    let response = post_exec(http, api, id, command).await;
    assert_eq!(response.status(), 200);
    response.text().await.expect("a body")
}

async fn post_exec(
    http: &reqwest::Client,
    api: &str,
    id: &str,
    command: &str,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("sites", "site1&site2")
        .text("type", "add")
        .text("command", command.to_owned());
    http.post(format!("{api}/exec/{id}"))
        .multipart(form)
        .send()
        .await
        .expect("the API answers")
}

fn is_listening(url: &str) -> bool {
    let port = url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    port.is_some_and(|port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// `up --nodes 2` in `dir`; returns its `cluster.json`.
fn up_two_nodes(dir: &Path) -> Value {
    let up = cluster(&["up", "--nodes", "2"], dir);
    assert!(up.status.success(), "{}", text(&up));
    let file = std::fs::read_to_string(dir.join("cluster.json")).expect("written");
    let file: Value = serde_json::from_str(&file).expect("JSON");
    // Chephren's links hand the page the read token in their fragment.
    let read_token = file["read_token"].as_str().expect("read_token");
    assert!(
        text(&up).contains(&format!("/#token={read_token}")),
        "{}",
        text(&up)
    );
    file
}

#[tokio::test]
async fn up_partition_status_heal_down() {
    let dir = std::env::temp_dir().join(format!("cheops-local-{}", std::process::id()));
    let file = up_two_nodes(&dir);
    let nodes = file["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1]["site"], "site2");
    assert_eq!(nodes[0]["redis_port"], Value::Null);
    let node_dir = |i: usize| nodes[i]["node_dir"].as_str().expect("node_dir").to_owned();
    let api = |i: usize| nodes[i]["api_url"].as_str().expect("api_url").to_owned();
    assert_ne!(node_dir(0), node_dir(1));

    // CouchDB reads need no further credentials.
    let db = nodes[0]["couchdb_url"].as_str().expect("couchdb_url");
    let info = reqwest::get(db).await.expect("CouchDB answers");
    assert_eq!(info.status(), 200);
    let chephren = nodes[0]["chephren_url"].as_str().expect("chephren_url");
    assert!(is_listening(chephren), "{chephren}");

    // The cluster's own tokens: the operator's in cluster.json and in
    // DIR/token for the client, the read one in cluster.json; the daemons
    // took neither the caller's CHEOPS_TOKEN nor run without one.
    let token = file["token"].as_str().expect("token");
    let read_token = file["read_token"].as_str().expect("read_token");
    assert_ne!(token, "the-callers-own-token-0123");
    assert_ne!(token, read_token);
    let token_file = std::fs::read_to_string(dir.join("token")).expect("DIR/token");
    assert_eq!(token_file.trim(), token);
    let anonymous = reqwest::Client::new();
    let refused = post_exec(&anonymous, &api(0), "r", "echo anonymous").await;
    assert_eq!(refused.status(), 401);
    let refused = post_exec(&authorized_client(read_token), &api(0), "r", "true").await;
    assert_eq!(refused.status(), 403);
    let http = authorized_client(token);
    let blocks = format!("{chephren}/api/blocks");
    let refused = anonymous
        .get(&blocks)
        .send()
        .await
        .expect("Chephren answers");
    assert_eq!(refused.status(), 401);
    // The read token opens Chephren, with the caller's CORS origin.
    let read = authorized_client(read_token)
        .get(&blocks)
        .header("Origin", LAPTOP)
        .send()
        .await
        .expect("Chephren answers");
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["access-control-allow-origin"], LAPTOP);

    // Each daemon's commands see their own NODE_DIR.
    let replies = exec(&http, &api(0), "r", "echo one >> \"$NODE_DIR/log\"").await;
    assert_eq!(replies.matches("\"OK\"").count(), 2, "{replies}");
    for i in 0..2 {
        let log = std::fs::read_to_string(Path::new(&node_dir(i)).join("log"));
        assert_eq!(log.expect("written by the command"), "one\n");
    }
    let status = cluster(&["status"], &dir);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("r: converged on site1&site2"),
        "{}",
        text(&status)
    );

    // Partitioned, site2 cannot get what site1 is sent.
    let partition = cluster(&["partition"], &dir);
    assert!(partition.status.success(), "{}", text(&partition));
    exec(&http, &api(0), "r", "echo two >> \"$NODE_DIR/log\"").await;
    let status = cluster(&["status"], &dir);
    assert!(!status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("network: partitioned"),
        "{}",
        text(&status)
    );
    assert!(
        text(&status).contains("r: NOT converged"),
        "{}",
        text(&status)
    );

    let heal = cluster(&["heal"], &dir);
    assert!(heal.status.success(), "{}", text(&heal));
    eventually(
        "the cluster to converge",
        Duration::from_secs(60),
        || async { cluster(&["status"], &dir).status.success().then_some(()) },
    )
    .await;
    let log = std::fs::read_to_string(Path::new(&node_dir(1)).join("log"));
    assert_eq!(log.expect("still there"), "one\ntwo\n");

    let down = cluster(&["down"], &dir);
    assert!(down.status.success(), "{}", text(&down));
    assert!(!dir.join("cluster.json").exists());
    assert!(!dir.join("token").exists());
    for node in nodes {
        for url in ["api_url", "chephren_url", "couchdb_url"] {
            let url = node[url].as_str().expect("a URL");
            let url = url.trim_end_matches("/cheops");
            let url = url.rsplit('@').next().unwrap_or(url);
            assert!(!is_listening(url), "{url} still answers after down");
        }
    }
    let again = cluster(&["down"], &dir);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("no cluster was up"),
        "{}",
        text(&again)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commands_without_a_cluster_say_so() {
    let dir = std::env::temp_dir().join(format!("cheops-local-none-{}", std::process::id()));
    for command in ["partition", "heal", "status"] {
        let output = cluster(&[command], &dir);
        assert!(!output.status.success(), "{}", text(&output));
        assert!(
            text(&output).contains("no cluster is up"),
            "{command}: {}",
            text(&output)
        );
    }
}

/// A directory holding only a `node` stand-in, to be the whole `PATH`.
fn path_with_only_node(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/true", bin.join("node")).unwrap();
    bin
}

#[test]
fn a_missing_tool_is_one_line_and_a_failure_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("cheops-missing-tool-{}", std::process::id()));
    let bin = path_with_only_node(&dir);
    for (path, args, missing) in [
        ("", vec!["up"], "node"),
        (bin.to_str().unwrap(), vec!["up", "--redis"], "redis-server"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_cheops-cluster"))
            .args(&args)
            .arg("--dir")
            .arg(dir.join("cluster"))
            .env("PATH", path)
            .output()
            .expect("cannot run cheops-cluster");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}", text(&output));
        assert_eq!(stderr.lines().count(), 1, "{}", text(&output));
        assert!(
            stderr.contains(&format!("{missing} is not installed")),
            "{}",
            text(&output)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// GET `url` with a short timeout: whether it answered at all.
async fn answers(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn kill_restart_freeze_thaw_one_process() {
    let dir = std::env::temp_dir().join(format!("cheops-local-faults-{}", std::process::id()));
    let file = up_two_nodes(&dir);
    let node = |field: &str| file["nodes"][1][field].as_str().expect(field).to_owned();
    let (api, db) = (node("api_url"), node("couchdb_url"));
    let health = format!("{api}/health");
    let http = reqwest::Client::new();
    let operator = authorized_client(file["token"].as_str().expect("token"));
    let api1 = file["nodes"][0]["api_url"].as_str().expect("api_url");
    exec(&operator, api1, "kept", "echo one >> \"$NODE_DIR/kept\"").await;

    let run = |args: &[&str]| {
        let output = cluster(args, &dir);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    };
    let status = || text(&cluster(&["status"], &dir));

    run(&["freeze", "site2", "--sidecar"]);
    assert!(!answers(&http, &db).await, "a frozen sidecar answered");
    assert!(
        status().contains("site2's sidecar is frozen"),
        "{}",
        status()
    );
    run(&["thaw", "site2", "--sidecar"]);
    assert!(answers(&http, &db).await, "a thawed sidecar did not answer");

    run(&["kill", "site2"]);
    assert!(!answers(&http, &health).await, "a killed daemon answered");
    assert!(
        status().contains("site2's daemon is killed"),
        "{}",
        status()
    );
    run(&["restart", "site2"]);
    let healthy = http
        .get(&health)
        .send()
        .await
        .expect("restarted daemon answers");
    assert_eq!(healthy.status(), 200);

    run(&["kill", "site2", "--sidecar"]);
    assert!(!answers(&http, &db).await, "a killed sidecar answered");
    run(&["restart", "site2", "--sidecar"]);
    // The restarted sidecar has its data; the daemon, which outlived it,
    // runs what comes next.
    let kept = http
        .get(format!("{db}/kept"))
        .send()
        .await
        .expect("answers");
    assert_eq!(kept.status(), 200);
    let replies = exec(&operator, api1, "kept", "echo two >> \"$NODE_DIR/kept\"").await;
    assert_eq!(replies.matches("\"OK\"").count(), 2, "{replies}");
    let log = std::fs::read_to_string(Path::new(&node("node_dir")).join("kept"));
    assert_eq!(log.expect("written by the commands"), "one\ntwo\n");
    eventually(
        "the cluster to converge",
        Duration::from_secs(60),
        || async { cluster(&["status"], &dir).status.success().then_some(()) },
    )
    .await;

    let unknown = cluster(&["kill", "site9"], &dir);
    assert!(!unknown.status.success(), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no site is named \"site9\""),
        "{}",
        text(&unknown)
    );

    let down = cluster(&["down"], &dir);
    assert!(down.status.success(), "{}", text(&down));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkout moved after its build: the tools use the files of the
/// checkout they run from, not of the path they were compiled in, and say
/// what failed in one line.
#[test]
fn a_moved_checkout_runs_its_own_files_and_fails_in_one_line() {
    let root = std::env::temp_dir().join(format!("cheops-moved-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let moved = root.join("moved");
    let release = moved.join("target/release");
    std::fs::create_dir_all(moved.join("deploy/sidecar")).expect("a directory");
    std::fs::create_dir_all(&release).expect("a directory");
    std::fs::create_dir_all(root.join("elsewhere")).expect("a directory");
    std::fs::write(moved.join("Cargo.toml"), "").expect("a file");
    // This checkout's sidecar cannot be installed, and says it ran.
    let install = moved.join("deploy/sidecar/install");
    std::fs::write(&install, "#!/bin/sh\ntouch \"$0.ran\"\nexit 1\n").expect("a file");
    std::fs::set_permissions(
        &install,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("executable");
    let tool = release.join("cheops-cluster");
    std::fs::copy(env!("CARGO_BIN_EXE_cheops-cluster"), &tool).expect("a copy");
    std::fs::copy(cheops_binary(), release.join("cheops")).expect("a copy");

    let output = Command::new(&tool)
        .args(["up", "--nodes", "1", "--dir"])
        .arg(root.join("cluster"))
        .current_dir(root.join("elsewhere"))
        .output()
        .expect("cannot run cheops-cluster");
    let shown = text(&output);
    assert!(!output.status.success(), "{shown}");
    assert!(moved.join("deploy/sidecar/install.ran").exists(), "{shown}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("installing the sidecar failed"), "{shown}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
