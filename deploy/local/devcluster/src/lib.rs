//! `deploy/local/cluster`: a local cluster that outlives the command that
//! started it. `up` starts a supervisor process in its own process group;
//! the supervisor runs a [`Cluster`] (sidecars, daemons, gates, redis) and
//! takes `partition`, `heal`, `kill`, `restart`, `freeze`, `thaw` and
//! `down` on a control port. `status` reads the nodes' databases directly;
//! `chaos` starts a cluster of its own and drives it.
//!
//! Files in the cluster's directory: `cluster.json` (the contract: written
//! once every node is healthy, removed by `down`), `supervisor.json` (how to
//! reach the supervisor), `supervisor.log`, and one directory per site.

mod chaos;
mod control;
mod files;
mod status;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cheops_testkit::{Cluster, ClusterOptions, Process};

pub use chaos::{chaos, ChaosOptions, Mode, Plan, Report};
pub use files::{ClusterFile, NodeEntry};
pub use status::status;

/// How long `up` waits for every node to be healthy.
const UP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `down` waits for the supervisor to stop everything.
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed cluster command, said to the user as is.
pub type Failure = String;

/// What `up` was asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub nodes: usize,
    pub dir: PathBuf,
    pub redis: bool,
}

/// Starts the supervisor and returns once the cluster is healthy.
pub fn up(options: &UpOptions) -> Result<ClusterFile, Failure> {
    if options.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let mut programs = vec![(
        "node",
        "Node.js runs the sidecar, PouchDB Server: install nodejs",
    )];
    if options.redis {
        programs.push(("redis-server", cheops_testkit::REDIS_HINT));
    }
    if let Some((name, hint)) = programs
        .into_iter()
        .find(|(name, _)| cheops_testkit::find_program(name).is_none())
    {
        return Err(format!("{name} is not installed: {hint}"));
    }
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if control::ask(dir, "ping").is_ok() {
        return Err(format!(
            "a cluster is already up in {}; run `down` first",
            dir.display()
        ));
    }
    files::clear(dir)?;
    let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let log_path = dir.join(files::SUPERVISOR_LOG);
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut command = Command::new(me);
    command
        .arg("supervise")
        .args(["--nodes", &options.nodes.to_string()])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    if options.redis {
        command.arg("--redis");
    }
    // Its own process group: `down` can stop everything it started at once,
    // and a Ctrl-C meant for `up` does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut supervisor = command
        .spawn()
        .map_err(|e| format!("cannot start the supervisor: {e}"))?;

    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        if let Ok(cluster) = files::read_cluster(dir) {
            return Ok(cluster);
        }
        if let Ok(Some(status)) = supervisor.try_wait() {
            return Err(format!(
                "the cluster did not start ({status}):\n{}",
                files::tail(&log_path, 30)
            ));
        }
        if Instant::now() > deadline {
            kill_group(supervisor.id());
            return Err(format!(
                "the cluster was not healthy after {UP_TIMEOUT:?}:\n{}",
                files::tail(&log_path, 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the cluster until `down` (or SIGTERM, SIGINT); the body of the
/// supervisor process.
pub async fn supervise(options: UpOptions) -> Result<(), Failure> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let binary = me.with_file_name("cheops");
    if !binary.is_file() {
        return Err(format!("{} is missing: build cheops-cli", binary.display()));
    }
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: options.nodes,
        redis: options.redis,
        dir: Some(options.dir.clone()),
        binary: Some(binary),
        env: inherited_settings(std::env::vars()),
        ..ClusterOptions::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot open the control port: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot read the control port: {e}"))?
        .port();
    files::write_supervisor(&options.dir, std::process::id(), port)?;
    files::write_cluster(&options.dir, &ClusterFile::of(&cluster))?;
    eprintln!("cluster up: {} nodes", cluster.len());
    control::serve(listener, &mut cluster).await;
    drop(cluster);
    files::remove_state(&options.dir);
    eprintln!("cluster down");
    Ok(())
}

/// The caller's `CHEOPS_*` variables that every daemon gets (so that
/// `CHEOPS_REPLY_TIMEOUT=5 deploy/local/cluster up` applies to every
/// node), except those the cluster sets itself: its tokens, its peers, and
/// the client's own (`CHEOPS_NODE`, `CHEOPS_PEERS_FILE` as the quick start
/// exports them would name another cluster's files).
fn inherited_settings(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    const OWNED: &[&str] = &[
        "CHEOPS_TOKEN",
        "CHEOPS_TOKEN_FILE",
        "CHEOPS_READ_TOKEN",
        "CHEOPS_READ_TOKEN_FILE",
        "CHEOPS_NODE_TOKEN",
        "CHEOPS_NODE_TOKEN_FILE",
        "CHEOPS_INSECURE",
        "CHEOPS_PEERS_FILE",
        "CHEOPS_NODE",
    ];
    vars.filter(|(name, _)| name.starts_with("CHEOPS_") && !OWNED.contains(&name.as_str()))
        .collect()
}

/// Cuts replication between all nodes.
pub fn partition(dir: &Path) -> Result<(), Failure> {
    control::ask(dir, "partition").map(|_| ())
}

/// Restores replication between all nodes.
pub fn heal(dir: &Path) -> Result<(), Failure> {
    control::ask(dir, "heal").map(|_| ())
}

/// What `kill`, `restart`, `freeze` and `thaw` do to a node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL; its files stay.
    Kill,
    /// Kills it if it runs, starts it again on the same files and waits
    /// until it serves.
    Restart,
    /// SIGSTOP: it holds its connections and answers nothing.
    Freeze,
    /// SIGCONT.
    Thaw,
}

impl Fault {
    pub fn verb(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Restart => "restart",
            Fault::Freeze => "freeze",
            Fault::Thaw => "thaw",
        }
    }
}

/// Does `fault` to `site`'s daemon or sidecar.
pub fn fault(dir: &Path, fault: Fault, site: &str, process: Process) -> Result<(), Failure> {
    control::ask(dir, &format!("{} {site} {process}", fault.verb())).map(|_| ())
}

/// Stops everything `up` started; fine when nothing runs.
pub fn down(dir: &Path) -> Result<bool, Failure> {
    let Some(pid) = files::supervisor_pid(dir) else {
        return Ok(false);
    };
    if control::ask(dir, "down").is_ok() {
        let deadline = Instant::now() + DOWN_TIMEOUT;
        while is_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Whatever is left of its process group (a supervisor that did not
    // answer, a child that outlived it).
    kill_group(pid);
    files::remove_state(dir);
    Ok(true)
}

fn is_running(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state says it is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons_inherit_the_callers_settings_but_not_its_tokens_or_peers() {
        let vars = [
            ("CHEOPS_COMMAND_TIMEOUT", "5"),
            ("CHEOPS_REPLY_TIMEOUT", "7"),
            ("CHEOPS_TOKEN", "someone-elses-token"),
            ("CHEOPS_PEERS_FILE", ".cheops-local/peers.json"),
            ("CHEOPS_INSECURE", "true"),
            ("PATH", "/usr/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            inherited_settings(vars.into_iter()),
            [
                ("CHEOPS_COMMAND_TIMEOUT".to_owned(), "5".to_owned()),
                ("CHEOPS_REPLY_TIMEOUT".to_owned(), "7".to_owned())
            ]
        );
    }
}
