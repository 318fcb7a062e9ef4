//! `deploy/local/cluster chaos` with fixed seeds on 3 nodes: for 60 seconds,
//! operations from every site under partitions, kills, restarts and
//! freezes of daemons and sidecars; for 30 seconds, no fault but many
//! clients sending through any site to a few shared resources. None may be
//! lost, run twice or be invented, and every site must end in the same
//! state.

use std::process::Command;
use std::sync::Mutex;

use cheops_testkit::cheops_binary;

/// Change them only with a reason; `CHEOPS_CHAOS_SEED` tries another.
const FAULTS_SEED: u64 = 7;
const CONCURRENCY_SEED: u64 = 11;

/// One run at a time: each starts a cluster, and a run's timing is part of
/// what it tests.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `cheops-cluster chaos` with `args` and the seed, and checks that it
/// passed.
fn chaos(name: &str, seed: u64, args: &[&str]) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = std::env::var("CHEOPS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    let dir = std::env::temp_dir().join(format!("cheops-chaos-{name}-{}", std::process::id()));
    // `cheops-cluster` starts the `cheops` built beside it.
    cheops_binary();
    let output = Command::new(env!("CARGO_BIN_EXE_cheops-cluster"))
        .arg("chaos")
        .args(args)
        .args(["--seed", &seed.to_string()])
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("cannot run cheops-cluster");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains(": PASS"),
        "chaos failed with seed {seed} (files in {}):\n{stdout}\n{stderr}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sixty_seconds_of_chaos_on_three_nodes() {
    chaos("faults", FAULTS_SEED, &["--seconds", "60", "--nodes", "3"]);
}

#[test]
fn thirty_seconds_of_concurrency_without_faults_on_three_nodes() {
    chaos(
        "concurrency",
        CONCURRENCY_SEED,
        &["--seconds", "30", "--nodes", "3", "--concurrency"],
    );
}
