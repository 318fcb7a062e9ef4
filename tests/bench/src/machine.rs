//! The machine a run happened on, so that figures are read in context.

use std::process::Command;

use serde_json::{json, Value};

/// CPUs, CPU model, memory, kernel, Node.js (the sidecar's runtime), the
/// commit measured and the load average (others' work on the machine).
pub fn describe() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kb = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu_model": model,
        "memory_gib": memory_kb.map(|kb| (kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
        "node": output("node", &["--version"]),
        "commit": output("git", &["describe", "--always", "--dirty"]),
        "load_average": load_average(),
    })
}

/// The 1, 5 and 15 minute load averages, as `uptime` gives them.
pub fn load_average() -> Option<String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(loadavg.split(' ').take(3).collect::<Vec<_>>().join(" "))
}

/// The trimmed standard output of a command, `None` if it failed.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(cheops_testkit::workspace())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
