//! Webhooks against real sidecars: every event reaches a hook from one
//! node under one id, a completion once per cluster through a partition
//! and a daemon killed mid-way, signed as Standard Webhooks says; the
//! hooks file is read again on SIGHUP, and a bad one refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use cheops_testkit::webhooks::{Received, Receiver, SECRET};
use cheops_testkit::{cheops_binary, until, Cluster, ClusterOptions, Exec, Process};
use serde_json::{json, Value};

const EVENTS: [&str; 4] = [
    "operation",
    "reply",
    "operation-complete",
    "operation-refused",
];

/// A hooks file at a fresh path holding `hooks`.
fn hooks_file(name: &str, hooks: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cheops-hooks-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("hooks.json");
    write(&path, hooks);
    path
}

fn write(path: &PathBuf, hooks: &Value) {
    let text = serde_json::to_string_pretty(hooks).expect("JSON");
    std::fs::write(path, text).expect("cannot write the hooks file");
}

fn hook(name: &str, receiver: &Receiver, events: &[&str], resources: &str) -> Value {
    json!({"name": name, "url": receiver.url(), "secret": SECRET, "events": events, "resources": resources})
}

/// The distinct ids of the deliveries of `kind` about `request`.
fn ids(received: &[Received], kind: &str, request: &str) -> BTreeSet<String> {
    received
        .iter()
        .filter(|r| r.kind == kind && r.body["data"]["request"] == request)
        .map(|r| r.id.clone())
        .collect()
}

/// The deliveries answered 2xx, of `kind` about `request`.
fn accepted<'a>(received: &'a [Received], kind: &str, request: &str) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| r.kind == kind && r.body["data"]["request"] == request && r.status < 300)
        .collect()
}

/// `/health`'s status of the hook `name` on node `i`.
async fn hook_status(cluster: &Cluster, i: usize, name: &str) -> Option<Value> {
    let health = cluster.health(i).await?;
    health["hooks"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completion_reaches_a_hook_once_through_a_partition_and_a_restart() {
    // Operations and replies are refused once each: their retries keep
    // their ids.
    let receiver = Receiver::start(&["operation", "reply"])
        .await
        .expect("a receiver");
    let file = hooks_file(
        "once",
        &json!([hook("all", &receiver, &EVENTS, "deploy-*")]),
    );
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 3,
        reply_timeout: 2,
        daemon_args: vec![
            "--hooks".into(),
            file.display().to_string(),
            "--hook-standby".into(),
            "5".into(),
        ],
        ..ClusterOptions::default()
    })
    .await;

    cluster.partition();
    receiver.set_down(true);
    let (status, replies) = cluster
        .exec(
            0,
            Exec::new("deploy-web", "site1&site2&site3", &["echo ran"], "add"),
        )
        .await;
    assert_eq!(status, 200, "{replies:?}");
    let replies = replies.expect("reply lines");
    let request = replies[0].request_id.clone();
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.status.to_string() == "TIMEOUT")
            .count(),
        2,
        "two sites cut off: {replies:?}"
    );
    // site1's operation and reply are owed, their deliveries failing: its
    // daemon dies, and starts again.
    until(
        "site1 failing to deliver",
        Duration::from_secs(30),
        || async {
            let status = hook_status(&cluster, 0, "all").await.unwrap_or_default();
            match status["failed_attempts"].as_u64() {
                Some(n) if n >= 2 => Ok(()),
                _ => Err(format!("{status}")),
            }
        },
    )
    .await;
    cluster.stop_daemon(0);
    receiver.set_down(false);
    cluster.start_daemon(0).await;
    cluster.heal();

    let waited = tokio::process::Command::new(cheops_binary())
        .args(["wait", "--id", "deploy-web", "--request", &request])
        .args(["--timeout", "120"])
        .env("CHEOPS_NODE", cluster.node(1).api_url())
        .env("CHEOPS_TOKEN", cluster.token())
        .output()
        .await
        .expect("cannot run cheops wait");
    assert_eq!(waited.status.code(), Some(0), "{waited:?}");

    // Every node done with every event: delivered, or (for the sites
    // standing by for the completion) found delivered.
    until(
        "every node done with every event",
        Duration::from_secs(120),
        || async {
            let received = receiver.received();
            let missing: Vec<(&str, usize)> =
                [("operation", 1), ("reply", 3), ("operation-complete", 1)]
                    .into_iter()
                    .filter(|(kind, n)| {
                        let ok: BTreeSet<&String> = accepted(&received, kind, &request)
                            .iter()
                            .map(|r| &r.id)
                            .collect();
                        ok.len() < *n
                    })
                    .collect();
            let mut behind = Vec::new();
            for i in 0..3 {
                let status = hook_status(&cluster, i, "all").await.unwrap_or_default();
                if status["backlog"].as_u64() != Some(0) {
                    behind.push(i);
                }
            }
            if missing.is_empty() && behind.is_empty() {
                return Ok(());
            }
            let seen: Vec<(&str, u16, &Value)> = received
                .iter()
                .map(|r| (r.kind.as_str(), r.status, &r.body["data"]["site"]))
                .collect();
            Err(format!(
                "missing {missing:?}; nodes behind: {behind:?}; received {seen:?}"
            ))
        },
    )
    .await;
    let mut elsewhere = 0;
    for i in 0..3 {
        let status = hook_status(&cluster, i, "all").await.unwrap_or_default();
        elsewhere += status["delivered_elsewhere"].as_u64().unwrap_or(0);
    }
    let received = receiver.received();
    assert!(
        received.iter().all(|r| r.valid),
        "a bad signature: {received:?}"
    );

    assert_eq!(
        ids(&received, "operation", &request).len(),
        1,
        "{received:?}"
    );
    let reply_sites: BTreeMap<String, String> = received
        .iter()
        .filter(|r| r.kind == "reply" && r.body["data"]["request"] == request.as_str())
        .map(|r| {
            (
                r.id.clone(),
                r.body["data"]["site"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reply_sites.values().collect::<BTreeSet<_>>(),
        ["site1", "site2", "site3"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect(),
        "one reply id per site: {reply_sites:?}"
    );
    assert_eq!(reply_sites.len(), 3, "one id per site: {reply_sites:?}");
    // Each refused attempt was retried under its id, after the restart
    // too.
    for kind in ["operation", "reply"] {
        for id in ids(&received, kind, &request) {
            let statuses: Vec<u16> = received
                .iter()
                .filter(|r| r.id == id)
                .map(|r| r.status)
                .collect();
            assert!(
                statuses.iter().any(|s| *s >= 500) && statuses.iter().any(|s| *s < 300),
                "{kind} {id}: {statuses:?}"
            );
        }
    }
    // One completion, delivered once, by one site; the two others found
    // its receipt.
    let complete = accepted(&received, "operation-complete", &request);
    assert_eq!(complete.len(), 1, "{received:?}");
    assert_eq!(
        elsewhere, 2,
        "both stand-bys found the completion delivered"
    );
    assert_eq!(ids(&received, "operation-complete", &request).len(), 1);
    assert_eq!(
        complete[0].body["data"]["statuses"],
        json!({"site1": "OK", "site2": "OK", "site3": "OK"}),
        "{:?}",
        complete[0].body
    );
    assert_eq!(complete[0].body["data"]["resource"], "deploy-web");

    // The receipt carries the identity of the database it was written to,
    // so that no replication sends it back there.
    let receipt = format!("receipt:deploy-web:{request}:all");
    let written = cluster.doc(0, &receipt).await.expect("the receipt");
    let writer = (0..3)
        .find(|&i| cluster.node(i).site == written["Site"])
        .expect("a site of the cluster wrote it");
    let identity = cluster
        .doc(writer, "_local/cheops-database")
        .await
        .expect("the writer's identity");
    assert_eq!(written["Origin"], identity["Id"], "{written}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hooks_file_is_read_again_on_sighup_and_a_bad_one_changes_nothing() {
    let first = Receiver::start(&[]).await.expect("a receiver");
    let second = Receiver::start(&[]).await.expect("a receiver");
    let file = hooks_file("reload", &json!([hook("first", &first, &["reply"], "r-*")]));
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: vec!["--hooks".into(), file.display().to_string()],
        ..ClusterOptions::default()
    })
    .await;
    let run = |id: &'static str| {
        let cluster = &cluster;
        async move {
            let (status, replies) = cluster
                .exec(0, Exec::new(id, "site1", &["true"], "add"))
                .await;
            assert_eq!(status, 200, "{replies:?}");
            replies.expect("replies")[0].request_id.clone()
        }
    };
    let got = |receiver: &Receiver, request: &str| {
        !accepted(&receiver.received(), "reply", request).is_empty()
    };

    let before = run("r-1").await;
    until(
        "the first hook's reply",
        Duration::from_secs(30),
        || async {
            if got(&first, &before) {
                Ok(())
            } else {
                Err("none yet".to_owned())
            }
        },
    )
    .await;

    // A file that does not read leaves the hooks as they were.
    std::fs::write(&file, "[{\"name\": \"second\",").expect("write");
    cluster.signal(0, Process::Daemon, "HUP").expect("SIGHUP");
    until("the refusal logged", Duration::from_secs(30), || async {
        let logged = cluster.daemon_logs(0).iter().any(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains("hooks file not read again")
        });
        if logged {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
    assert!(hook_status(&cluster, 0, "first").await.is_some());

    write(
        &file,
        &json!([
            hook("first", &first, &["reply"], "r-*"),
            hook("second", &second, &["reply"], "*")
        ]),
    );
    cluster.signal(0, Process::Daemon, "HUP").expect("SIGHUP");
    until(
        "the second hook loaded",
        Duration::from_secs(30),
        || async {
            match hook_status(&cluster, 0, "second").await {
                Some(_) => Ok(()),
                None => Err("not yet".to_owned()),
            }
        },
    )
    .await;

    let after = run("r-2").await;
    let elsewhere = run("x-1").await;
    until("both hooks' replies", Duration::from_secs(30), || async {
        if got(&first, &after) && got(&second, &after) && got(&second, &elsewhere) {
            Ok(())
        } else {
            Err("not all yet".to_owned())
        }
    })
    .await;
    // A new hook starts with what happens after it was added; a pattern
    // keeps its hook to its resources.
    assert!(!got(&second, &before), "{:?}", second.received());
    assert!(!got(&first, &elsewhere), "{:?}", first.received());
}

#[tokio::test]
async fn a_bad_hooks_file_is_refused_at_start_with_its_line() {
    let file = hooks_file(
        "bad",
        &json!([
            {"name": "fine", "url": "http://127.0.0.1:9/", "secret": SECRET, "events": ["reply"]},
            {"name": "short", "url": "http://127.0.0.1:9/", "secret": "whsec_c2hvcnQ=", "events": ["reply"]}
        ]),
    );
    let output = tokio::process::Command::new(cheops_binary())
        .args([
            "serve",
            "--site",
            "site1",
            "--couchdb-url",
            "http://127.0.0.1:9/cheops",
        ])
        .arg("--hooks")
        .arg(&file)
        .env_remove("CHEOPS_HOOKS")
        .output()
        .await
        .expect("cannot run cheops serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    // The line where the second hook's object opens.
    let text = std::fs::read_to_string(&file).expect("the file");
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "{")
        .nth(1)
        .map(|(at, _)| at + 1)
        .expect("two hooks");
    assert!(
        stderr.contains(&format!("the hook at line {line}")) && stderr.contains("5 bytes"),
        "{stderr}"
    );
}
