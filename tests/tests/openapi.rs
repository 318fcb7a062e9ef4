//! The live API against its contract, `api/openapi.yml`: schemathesis reads
//! the contract from a running node (`GET /openapi.yml`), sends it generated
//! requests, valid and invalid, and fails on any 5xx or any answer the
//! contract does not describe (status, content type, headers, body).
//!
//! The API runs shell commands, so the hooks (tests/python/
//! schemathesis_hooks.py) turn every generated command into `echo fuzz`, and
//! the node resolves every other site to a closed port on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cheops_testkit::python::{python_bin, python_dir};
use cheops_testkit::{authorized_client, cheops_binary, Cluster, ClusterOptions, Exec};
use serde_json::Value;

/// Test cases per operation and phase: enough to reach every status the
/// node answers, small enough to keep the test near half a minute.
const MAX_EXAMPLES: &str = "30";
/// The longest schemathesis may run before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// What the hooks turn every generated command into.
const HARMLESS_COMMAND: &str = "echo fuzz";
/// The resource the hooks point `/history` at.
const HISTORY_RESOURCE: &str = "fuzz-history";

#[tokio::test]
async fn the_live_api_matches_its_openapi_contract() {
    let bin = python_bin();
    let dir = tempdir("cheops-openapi");
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        // Generated site lists name sites that never answer: each such
        // /exec waits this long for them.
        reply_timeout: 1,
        binary: Some(isolated_cheops(&dir)),
        ..ClusterOptions::default()
    })
    .await;
    let node = cluster.node(0);
    // A resource for `/history` to list (the hooks point most generated
    // ids at it).
    let (status, _) = cluster
        .exec(
            0,
            Exec::new(HISTORY_RESOURCE, &node.site, &[HARMLESS_COMMAND], "set"),
        )
        .await;
    assert_eq!(status, 200, "cannot create {HISTORY_RESOURCE}");

    let mut schemathesis = tokio::process::Command::new(bin.join("schemathesis"));
    schemathesis
        .arg("--config-file")
        .arg(python_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.yml", node.api_url()))
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--workers", "4"])
        .args(["--generation-database", "none", "--no-color"])
        .env(
            "SCHEMATHESIS_HOOKS",
            python_dir().join("schemathesis_hooks.py"),
        )
        .env("CHEOPS_FUZZ_SITE", &node.site)
        .env("CHEOPS_FUZZ_RESOURCE", HISTORY_RESOURCE)
        .env("CHEOPS_FUZZ_TOKEN", cluster.token())
        .current_dir(&dir)
        .kill_on_drop(true);
    // Each run draws a fresh seed and the report prints it; this replays one.
    if let Ok(seed) = std::env::var("CHEOPS_OPENAPI_SEED") {
        schemathesis.args(["--seed", &seed]);
    }
    let run = schemathesis.output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {RUN_TIMEOUT:?}"))
        .expect("cannot run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the API does not match api/openapi.yml ({}); node log in {}:\n{report}\n{}",
        output.status,
        cluster.root().display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("No issues found"), "{report}");

    // The hooks did their job on the wire: what the node stored and ran is
    // the harmless command, and nothing else.
    let commands = stored_commands(
        &format!("http://127.0.0.1:{}/", node.dump_port),
        cluster.read_token(),
    )
    .await;
    assert!(!commands.is_empty(), "no /exec request was stored");
    for command in &commands {
        assert!(
            command == HARMLESS_COMMAND || command.trim().is_empty(),
            "the node stored a generated command: {command:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory of this test's own.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
    dir
}

/// A `cheops` that resolves every site it has no peer entry for (all of
/// them: the node has no peers) to a closed port on 127.0.0.1, for
/// replication and `/show` alike, so that no generated site name makes the
/// node connect anywhere else. A script that sets the URL templates and
/// execs the real binary, so the harness still owns the daemon's process.
fn isolated_cheops(dir: &Path) -> PathBuf {
    let script = dir.join("cheops");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             CHEOPS_COUCHDB_TEMPLATE=http://admin:password@127.0.0.1:1/cheops \\\n\
             CHEOPS_API_TEMPLATE=http://127.0.0.1:1 \\\n\
             exec '{}' \"$@\"\n",
            cheops_binary().display().to_string().replace('\'', "'\\''")
        ),
    )
    .expect("cannot write the cheops wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("cannot make the cheops wrapper executable");
    script
}

/// The command of every operation stored in the node's database, in its
/// resource's block, in the reply that carries it or in its history
/// document, read through its dump listener with the read token.
async fn stored_commands(dump_url: &str, read_token: &str) -> Vec<String> {
    let dump: Value = authorized_client(read_token)
        .get(dump_url)
        .send()
        .await
        .expect("the dump listener does not answer")
        .json()
        .await
        .expect("the dump is not JSON");
    dump["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| match row["doc"]["Type"].as_str() {
            Some("RESOURCE") => row["doc"]["Operations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            // A pruned operation's command lives on in the reply that
            // carries it, or in its history document.
            Some("HISTORY" | "REPLY") => vec![row["doc"]["Operation"].clone()],
            _ => Vec::new(),
        })
        .filter_map(|operation| operation["Command"]["Command"].as_str().map(str::to_owned))
        .collect()
}
