//! `chaos`: starts a fresh local cluster, has one client per site send
//! operations while partitions, SIGKILLs and restarts of daemons and
//! sidecars, and SIGSTOPs of either come and go, all drawn from a seed; then
//! makes the cluster whole, waits for it to converge and checks what every
//! site ran (see [`verdict`]).
//!
//! It starts its own cluster rather than using one already up: a seed must
//! mean the same run, from the same empty state, each time.

mod client;
mod plan;
mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{files, ClusterFile, Failure, Fault, UpOptions};
use cheops_testkit::convergence::{check, quiet, Snapshot};
use cheops_testkit::Process;
use client::{Api, Outcome};
use plan::{site, Action, Op};
use verdict::Verdict;

pub use plan::{Mode, Plan};

/// How long the cluster may take to converge once whole again.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);
/// No request of a run waits longer (a frozen process answers nothing).
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the wait for convergence says what it waits for.
const NEWS_EVERY: Duration = Duration::from_secs(10);
/// The tag of the operation that creates the matrix resource.
const SETUP: &str = "setup";
/// What `chaos` writes in the cluster's directory.
const PLAN_FILE: &str = "chaos-plan.txt";
const REPORT_FILE: &str = "chaos-report.txt";

/// What `chaos` was asked for.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub seconds: u64,
    pub seed: u64,
    pub nodes: usize,
    pub dir: PathBuf,
    /// Leave the cluster up afterwards.
    pub keep: bool,
    pub mode: Mode,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// One line: the figures and the verdict.
    pub summary: String,
    /// Every violation and failed fault, one per line.
    pub details: Vec<String>,
    /// What became of each operation, one per line.
    pub outcomes: Vec<String>,
    pub passed: bool,
}

/// Runs the chaos `options` describe; the cluster goes down at the end
/// unless `keep` (its files stay in any case).
pub async fn chaos(options: &ChaosOptions) -> Result<Report, Failure> {
    if options.nodes < 2 {
        return Err("chaos needs at least 2 nodes".into());
    }
    if options.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    let plan = Plan::new(options.seed, options.nodes, options.seconds, options.mode);
    let up = UpOptions {
        nodes: options.nodes,
        dir: options.dir.clone(),
        redis: false,
    };
    let cluster = blocking(move || super::up(&up)).await?;
    let dir = &options.dir;
    write(dir, PLAN_FILE, &plan.to_string())?;
    // The cluster runs in a process group of its own: a Ctrl-C meant for
    // this run must still bring it down.
    let result = tokio::select! {
        result = drive(&plan, dir, &cluster) => result,
        _ = tokio::signal::ctrl_c() => Err(format!(
            "interrupted; the files are in {}",
            dir.display()
        )),
    };
    if !options.keep {
        let dir = dir.clone();
        blocking(move || super::down(&dir)).await?;
    }
    let report = result?;
    let lines = [
        &report.outcomes[..],
        &report.details[..],
        std::slice::from_ref(&report.summary),
    ];
    write(dir, REPORT_FILE, &(lines.concat().join("\n") + "\n"))?;
    Ok(report)
}

async fn drive(plan: &Plan, dir: &Path, cluster: &ClusterFile) -> Result<Report, Failure> {
    let http = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        // Below the daemons' keep-alive: no request on a closing connection.
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let api = Arc::new(Api {
        http,
        urls: cluster.nodes.iter().map(|n| n.api_url.clone()).collect(),
        token: token(dir),
    });
    let node_dirs: Vec<String> = cluster.nodes.iter().map(|n| n.node_dir.clone()).collect();
    setup(&api, plan, cluster).await?;
    eprintln!(
        "chaos: cluster up, {} created; faults start",
        plan.resources[0].id
    );

    let start = Instant::now();
    let shared = Arc::new(plan.clone());
    let clients: Vec<_> = (0..plan.clients)
        .map(|client| {
            let (api, plan) = (api.clone(), shared.clone());
            tokio::spawn(async move { client::run(&api, &plan, client, start).await })
        })
        .collect();
    let mut details = Vec::new();
    for event in &plan.events {
        tokio::time::sleep_until(start + Duration::from_millis(event.at_ms)).await;
        if let Err(why) = apply(dir, event.action).await {
            details.push(format!("fault failed: {}: {why}", event.action));
        }
    }
    tokio::time::sleep_until(start + Duration::from_millis(plan.millis)).await;
    // The plan undoes every fault; this undoes those whose undoing failed.
    for action in leftovers(dir).await? {
        if let Err(why) = apply(dir, action).await {
            details.push(format!("recovery failed: {action}: {why}"));
        }
    }
    eprintln!("chaos: the cluster is whole again; waiting for the clients");

    let mut outcomes = BTreeMap::new();
    for client in clients {
        let done = client.await.map_err(|e| format!("a client failed: {e}"))?;
        outcomes.extend(done);
    }
    eprintln!("chaos: clients done; waiting for convergence");
    let (verdict, converged) = settle(&api.http, plan, &outcomes, cluster, &node_dirs).await;
    let faults_failed = details.len();
    for (kind, found) in verdict.kinds() {
        details.extend(found.iter().map(|f| format!("{kind}: {f}")));
    }
    let excused = verdict.excused.iter().map(|f| format!("excused: {f}"));
    details.extend(excused);
    let passed = verdict.holds() && faults_failed == 0;
    let count = |kind: fn(&Outcome) -> bool| outcomes.values().filter(|o| kind(o)).count();
    let accepted = count(|o| matches!(o, Outcome::Accepted { .. }));
    let refused = count(|o| matches!(o, Outcome::Refused(_)));
    let unanswered = count(|o| matches!(o, Outcome::Failed(_)));
    let converged = match converged {
        Some(after) => format!(
            "converged {:.1} s after the last operation",
            after.as_secs_f64()
        ),
        None => format!(
            "NOT converged {} s after the last operation",
            CONVERGE_TIMEOUT.as_secs()
        ),
    };
    let faults = match plan.mode {
        Mode::Faults => format!("faults: {} ({faults_failed} failed)", plan.fault_counts()),
        Mode::Concurrency => format!("no faults, {} clients", plan.clients),
    };
    let summary = format!(
        "chaos seed {} on {} nodes for {} s: {} operations sent, {accepted} accepted \
         ({refused} refused, {unanswered} unanswered), {} in blocks; \
         {faults}; {converged}; {}; {} second runs excused by daemon kills: {} (replay: {})",
        plan.seed,
        plan.nodes,
        plan.millis / 1000,
        outcomes.len(),
        verdict.in_blocks,
        verdict.counts(),
        verdict.excused.len(),
        if passed { "PASS" } else { "FAIL" },
        plan.replay(),
    );
    let outcomes = outcomes
        .iter()
        .map(|(&i, outcome)| format!("{} {outcome:?}", plan.ops[i].tag))
        .collect();
    Ok(Report {
        summary,
        details,
        outcomes,
        passed,
    })
}

/// Creates the matrix resource from site1 and waits until every site has
/// it: a site that did not would create it anew, without its matrix.
async fn setup(api: &Api, plan: &Plan, cluster: &ClusterFile) -> Result<(), Failure> {
    let (index, _) = plan
        .resources
        .iter()
        .enumerate()
        .find(|(_, r)| r.matrix)
        .ok_or("the plan has no matrix resource")?;
    let op = Op {
        at_ms: 0,
        client: 0,
        via: 0,
        resource: index,
        tag: SETUP.into(),
        op_type: "set",
    };
    let outcome = api.send(plan, &op).await;
    if !matches!(outcome, Outcome::Accepted { .. }) {
        return Err(format!(
            "creating {} failed: {outcome:?}",
            plan.resources[index].id
        ));
    }
    let id = &plan.resources[index].id;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let converged = match snapshots(&api.http, cluster).await {
            Ok(snapshots) => check(&snapshots, id).map(|_| ()),
            Err(why) => Err(why),
        };
        match converged {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() > deadline => {
                return Err(format!("{id} did not converge before the faults: {why}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Judges the run, once the cluster is whole and the clients done, until
/// nothing can change any more (or the time is up); returns the verdict and
/// how long convergence took.
async fn settle(
    http: &reqwest::Client,
    plan: &Plan,
    outcomes: &BTreeMap<usize, Outcome>,
    cluster: &ClusterFile,
    node_dirs: &[String],
) -> (Verdict, Option<Duration>) {
    let whole = Instant::now();
    let mut next_news = Instant::now() + NEWS_EVERY;
    loop {
        let verdict = match snapshots(http, cluster).await {
            Ok(before) => {
                let mut verdict = verdict::judge(plan, SETUP, outcomes, &before, node_dirs);
                if !verdict.unsettled() {
                    if let Err(why) = stays(http, cluster, &before).await {
                        verdict.unconverged.push(why);
                    }
                }
                verdict
            }
            Err(why) => Verdict {
                unconverged: vec![why],
                ..Verdict::default()
            },
        };
        if !verdict.unsettled() {
            return (verdict, Some(whole.elapsed()));
        }
        if whole.elapsed() > CONVERGE_TIMEOUT {
            return (verdict, None);
        }
        if Instant::now() > next_news {
            next_news += NEWS_EVERY;
            eprintln!(
                "chaos: waiting for convergence ({} s): {}",
                whole.elapsed().as_secs(),
                verdict.unconverged.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether the databases read as `before` stay so: every daemon has
/// nothing left to do, and the databases are as they were afterwards. A
/// site can still have work that changes them (running a block again after
/// a merge) while they all agree.
async fn stays(
    http: &reqwest::Client,
    cluster: &ClusterFile,
    before: &[Snapshot],
) -> Result<(), String> {
    for node in &cluster.nodes {
        quiet(http, &node.site, &node.api_url, &cluster.read_token).await?;
    }
    if snapshots(http, cluster).await? != before {
        return Err("the databases changed while the daemons were checked".to_owned());
    }
    Ok(())
}

async fn snapshots(http: &reqwest::Client, cluster: &ClusterFile) -> Result<Vec<Snapshot>, String> {
    let reads = cluster
        .nodes
        .iter()
        .map(|node| Snapshot::read(http, &node.site, &node.couchdb_url));
    futures::future::join_all(reads).await.into_iter().collect()
}

async fn apply(dir: &Path, action: Action) -> Result<(), Failure> {
    let dir = dir.to_owned();
    blocking(move || match action {
        Action::Partition => super::partition(&dir),
        Action::Heal => super::heal(&dir),
        Action::Process(fault, i, process) => super::fault(&dir, fault, &site(i), process),
    })
    .await
}

/// What undoes the state the supervisor reports: a partition, a process
/// killed or frozen.
async fn leftovers(dir: &Path) -> Result<Vec<Action>, Failure> {
    let dir = dir.to_owned();
    let state = blocking(move || super::control::ask(&dir, "state")).await?;
    let mut actions = Vec::new();
    for part in state.split("; ") {
        if part == "partitioned" {
            actions.push(Action::Heal);
        }
        let words: Vec<&str> = part.split_whitespace().collect();
        let [name, process, "is", what] = words[..] else {
            continue;
        };
        let Some(i) = name
            .strip_suffix("'s")
            .and_then(|s| s.strip_prefix("site"))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
        else {
            continue;
        };
        let process = if process == "daemon" {
            Process::Daemon
        } else {
            Process::Sidecar
        };
        let fault = if what == "frozen" {
            Fault::Thaw
        } else {
            Fault::Restart
        };
        actions.push(Action::Process(fault, i, process));
    }
    // Sidecars first: a daemon restarts healthy only with its sidecar.
    actions.sort_by_key(|a| !matches!(a, Action::Process(_, _, Process::Sidecar)));
    Ok(actions)
}

/// The API token of the cluster, when `cluster.json` has one.
fn token(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(files::CLUSTER)).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    json["token"].as_str().map(str::to_owned)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), Failure> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a blocking task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_token_comes_from_cluster_json_when_it_has_one() {
        let dir = std::env::temp_dir().join(format!("cheops-chaos-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(files::CLUSTER);
        std::fs::write(&file, r#"{"nodes": []}"#).unwrap();
        assert_eq!(token(&dir), None);
        std::fs::write(&file, r#"{"token": "secret", "nodes": []}"#).unwrap();
        assert_eq!(token(&dir).as_deref(), Some("secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
