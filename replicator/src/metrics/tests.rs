use super::*;
use cheops_model::Timestamp;
use serde_json::json;

/// The value of the series `name{labels}` in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn assert_series(text: &str, expected: &[(&str, f64)]) {
    for (series, expected) in expected {
        assert_eq!(value(text, series), Some(*expected), "{series} in\n{text}");
    }
}

#[test]
fn counters_render_with_their_labels() {
    let metrics = Metrics::default();
    metrics.accepted();
    metrics.ran(Status::Ok, false);
    metrics.ran(Status::Ko, true);
    metrics.ran(Status::Ko, false);
    metrics.request(
        RequestKind::BulkDocs,
        &reqwest::Method::POST,
        Duration::from_millis(3),
        None,
    );
    metrics.request(
        RequestKind::Doc,
        &reqwest::Method::GET,
        Duration::from_millis(40),
        Some(RequestError::Server),
    );
    let text = metrics.render(Snapshot::default());
    assert_series(
        &text,
        &[
            ("cheops_operations_accepted_total", 1.0),
            (r#"cheops_operations_run_total{status="KO"}"#, 2.0),
            ("cheops_operations_rerun_total", 1.0),
            (
                r#"cheops_couchdb_requests_total{kind="bulk_docs",method="POST"}"#,
                1.0,
            ),
            (
                r#"cheops_couchdb_errors_total{kind="doc",method="GET",error="http_5xx"}"#,
                1.0,
            ),
            (
                r#"cheops_couchdb_request_duration_seconds_bucket{kind="doc",method="GET",le="0.05"}"#,
                1.0,
            ),
        ],
    );
    assert!(text.contains("# TYPE cheops_operations_accepted_total counter"));
}

#[test]
fn gauges_show_the_snapshot_and_only_it() {
    let metrics = Metrics::default();
    metrics.handled(Some(&json!("3-abc")));
    assert_eq!(metrics.last_handled(), Some(json!("3-abc")));
    let task = |name: &str, state, failures| TaskStatus {
        name: name.into(),
        vital: true,
        state,
        failures,
        last_error: None,
        last_error_at: None,
    };
    let text = metrics.render(Snapshot {
        oversize: 1,
        handled: metrics.last_handled(),
        update_seq: Some(json!("10-def")),
        replications: vec![ReplicationStatus {
            peer: "site2".into(),
            state: "error",
            write_failures: 2,
            resend: Resend::Due,
            checked: Timestamp::now(),
        }],
        tasks: vec![task("follower", TaskState::Retrying, 3)],
        hooks: vec![HookStatus {
            name: "deploys".into(),
            backlog: 5,
            ..HookStatus::default()
        }],
        scheduled: 4,
        running: 2,
        unstored: 1,
    });
    assert_series(
        &text,
        &[
            ("cheops_changes_lag", 7.0),
            (
                r#"cheops_replication_state{peer="site2",state="error"}"#,
                1.0,
            ),
            (
                r#"cheops_replication_state{peer="site2",state="triggered"}"#,
                0.0,
            ),
            (r#"cheops_replication_write_failures{peer="site2"}"#, 2.0),
            (r#"cheops_replication_resend{peer="site2"}"#, 1.0),
            (
                r#"cheops_task_state{task="follower",state="retrying"}"#,
                1.0,
            ),
            (r#"cheops_task_failures{task="follower"}"#, 3.0),
            ("cheops_runner_scheduled", 4.0),
            ("cheops_runner_running", 2.0),
            ("cheops_journal_unstored", 1.0),
            ("cheops_oversize_resources", 1.0),
            (r#"cheops_hook_backlog{hook="deploys"}"#, 5.0),
        ],
    );

    // The next scrape: no sequence read, no peer, no task.
    let text = metrics.render(Snapshot::default());
    assert_eq!(value(&text, "cheops_changes_lag"), None);
    assert!(!text.contains("peer=\"site2\""));
    assert!(!text.contains("task=\"follower\""));
}

#[test]
fn replication_states_come_from_a_fixed_set() {
    assert_eq!(replication_state(false, Some("running")), "missing");
    assert_eq!(replication_state(true, None), "none");
    assert_eq!(replication_state(true, Some("crashing")), "crashing");
    assert_eq!(replication_state(true, Some("http://a:b@c/d")), "other");
}

#[test]
fn request_kinds_follow_the_path() {
    assert_eq!(RequestKind::of_path(&["_local", "x"]), RequestKind::Local);
    assert_eq!(
        RequestKind::of_path(&["_design", "cheops"]),
        RequestKind::Design
    );
    assert_eq!(RequestKind::of_path(&["res-1"]), RequestKind::Doc);
}
