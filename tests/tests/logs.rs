//! The daemon's log, as an operator's file or log shipper gets it: plain
//! text without terminal colours, or one JSON object per line.

use cheops_testkit::{Cluster, ClusterOptions, Exec};
use serde_json::Value;

/// Runs one operation so the log holds more than start-up lines, and
/// returns the daemon's log.
async fn log_after_an_operation(daemon_args: &[&str]) -> String {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        daemon_args: daemon_args.iter().map(|a| a.to_string()).collect(),
        ..ClusterOptions::default()
    })
    .await;
    let (status, _) = cluster
        .exec(0, Exec::new("logged", "site1", &["true"], "set"))
        .await;
    assert_eq!(status, 200);
    std::fs::read_to_string(cluster.node(0).dir.join("daemon-0.log")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_written_to_a_file_has_no_colour_codes() {
    let log = log_after_an_operation(&[]).await;
    assert!(log.contains("operation ran"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_format_json_writes_one_object_per_line() {
    let log = log_after_an_operation(&["--log-format", "json"]).await;
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "operation ran"
                && line["fields"]["resource"] == "logged"),
        "{log}"
    );
}
