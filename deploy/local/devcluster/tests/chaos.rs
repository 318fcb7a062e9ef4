//! `deploy/local/cluster chaos` for 60 seconds on 3 nodes with a fixed
//! seed: operations from every site under partitions, kills, restarts and
//! freezes of daemons and sidecars; none may be lost, run twice or be
//! invented, and every site must end in the same state.

use std::process::Command;

use cheops_tests::cheops_binary;

/// Change it only with a reason; `CHEOPS_CHAOS_SEED` tries another.
const SEED: u64 = 7;

#[test]
fn sixty_seconds_of_chaos_on_three_nodes() {
    let seed = std::env::var("CHEOPS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let dir = std::env::temp_dir().join(format!("cheops-chaos-{}", std::process::id()));
    // `cheops-cluster` starts the `cheops` built beside it.
    cheops_binary();
    let output = Command::new(env!("CARGO_BIN_EXE_cheops-cluster"))
        .args(["chaos", "--seconds", "60", "--nodes", "3"])
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
