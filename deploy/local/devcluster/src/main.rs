//! `cheops-cluster`: the local cluster behind `deploy/local/cluster`
//! (which builds it and runs it). See `cheops_devcluster`.

use std::path::PathBuf;
use std::process::ExitCode;

use cheops_devcluster::{self as local, ChaosOptions, Fault, Mode, UpOptions};
use cheops_testkit::Process;
use clap::{Parser, Subcommand};

/// A Cheops cluster on this machine: one sidecar and one daemon per site.
#[derive(Parser)]
#[command(name = "cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Dir {
    /// The cluster's directory (cluster.json, logs, each node's files).
    #[arg(long, default_value = ".cheops-local")]
    dir: PathBuf,
}

/// Which process of a site a fault acts on.
#[derive(clap::Args, Clone)]
struct Target {
    /// The site (site1…siteN).
    site: String,
    /// Its sidecar (PouchDB Server) instead of its daemon.
    #[arg(long)]
    sidecar: bool,
    #[command(flatten)]
    dir: Dir,
}

#[derive(Subcommand)]
enum Command {
    /// Start N nodes (sites site1…siteN) and return once all are healthy.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[command(flatten)]
        dir: Dir,
        /// Also start a redis-server per node (REDIS_PORT to its daemon).
        #[arg(long)]
        redis: bool,
    },
    /// Cut replication between every two nodes (APIs stay reachable).
    Partition(Dir),
    /// Restore replication between the nodes.
    Heal(Dir),
    /// Per resource, whether its sites have converged; exit 0 only if all have.
    Status(Dir),
    /// Stop everything `up` started.
    Down(Dir),
    /// Kill a site's daemon (or sidecar) with SIGKILL; its files stay.
    Kill(Target),
    /// Start a site's daemon (or sidecar) again on the same files, killing
    /// it first if it runs; returns once it serves.
    Restart(Target),
    /// Stop a site's daemon (or sidecar) with SIGSTOP: it keeps its
    /// connections and answers nothing.
    Freeze(Target),
    /// Resume a frozen daemon (or sidecar) with SIGCONT.
    Thaw(Target),
    /// Run seeded faults and operations on a fresh cluster and check what
    /// every site ran.
    ///
    /// Starts a fresh cluster, sends operations from every site while
    /// partitions, kills, restarts and freezes come and go, then checks that
    /// no operation was lost, ran twice, or was invented, and that every
    /// site holds the same state. Prints one summary line; exits 0 only when
    /// everything holds.
    Chaos {
        /// How long operations and faults go on.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Draws the run's operations and faults; the same seed (with the
        /// same --nodes and --seconds) replays the same plan. Random when
        /// not given.
        #[arg(long)]
        seed: Option<u64>,
        /// How many sites (at least 2).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The cluster's directory; it gets chaos-plan.txt and
        /// chaos-report.txt beside the nodes' files and logs.
        #[arg(long, default_value = ".cheops-chaos")]
        dir: PathBuf,
        /// Leave the cluster up afterwards (`down --dir DIR` stops it).
        #[arg(long)]
        keep: bool,
        /// No faults: two clients per site, each sending through sites
        /// drawn at random to a few resources every site holds, pausing up
        /// to 0.4 s after each answer.
        #[arg(long)]
        concurrency: bool,
    },
    /// The supervisor process `up` starts (not for direct use).
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        nodes: usize,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        redis: bool,
    },
}

fn main() -> ExitCode {
    // The harness reports what it cannot do by panicking: one line here,
    // not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("an unexpected failure");
        eprintln!("cluster: {message}");
    }));
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

fn absolute(dir: PathBuf) -> Result<PathBuf, String> {
    std::path::absolute(&dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Up { nodes, dir, redis } => {
            let dir = absolute(dir.dir)?;
            let cluster = local::up(&UpOptions {
                nodes,
                dir: dir.clone(),
                redis,
            })?;
            println!("cluster up in {}", dir.display());
            // The Chephren links carry the read token in their fragment,
            // which browsers never send: the UI keeps it for the session.
            for node in &cluster.nodes {
                println!(
                    "{}  api {}  chephren {}/#token={}  couchdb {}",
                    node.site,
                    node.api_url,
                    node.chephren_url,
                    cluster.read_token,
                    node.couchdb_url
                );
            }
            println!(
                "operator token in {} (cheops --token-file {0}, or CHEOPS_TOKEN_FILE)",
                dir.join(cheops_testkit::TOKEN_FILE).display()
            );
        }
        Command::Partition(dir) => {
            local::partition(&absolute(dir.dir)?)?;
            println!("partitioned: no replication between nodes");
        }
        Command::Heal(dir) => {
            local::heal(&absolute(dir.dir)?)?;
            println!("healed");
        }
        Command::Status(dir) => {
            let (report, converged) = runtime()?.block_on(local::status(&absolute(dir.dir)?))?;
            println!("{report}");
            if !converged {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Down(dir) => {
            let dir = absolute(dir.dir)?;
            if local::down(&dir)? {
                println!("cluster down");
            } else {
                println!("no cluster was up in {}", dir.display());
            }
        }
        Command::Kill(target) => fault(Fault::Kill, target, "killed")?,
        Command::Restart(target) => fault(Fault::Restart, target, "restarted")?,
        Command::Freeze(target) => fault(Fault::Freeze, target, "frozen")?,
        Command::Thaw(target) => fault(Fault::Thaw, target, "thawed")?,
        Command::Chaos {
            seconds,
            seed,
            nodes,
            dir,
            keep,
            concurrency,
        } => {
            let seed = seed.unwrap_or_else(random_seed);
            let options = ChaosOptions {
                seconds,
                seed,
                nodes,
                dir: absolute(dir)?,
                keep,
                mode: if concurrency {
                    Mode::Concurrency
                } else {
                    Mode::Faults
                },
            };
            eprintln!(
                "chaos: seed {seed}, {nodes} nodes, {seconds} s, in {}",
                options.dir.display()
            );
            let report = runtime()?.block_on(local::chaos(&options))?;
            for detail in &report.details {
                eprintln!("{detail}");
            }
            println!("{}", report.summary);
            if !report.passed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Supervise { nodes, dir, redis } => {
            runtime()?.block_on(local::supervise(UpOptions { nodes, dir, redis }))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fault(fault: Fault, target: Target, done: &str) -> Result<(), String> {
    let process = if target.sidecar {
        Process::Sidecar
    } else {
        Process::Daemon
    };
    local::fault(&absolute(target.dir.dir)?, fault, &target.site, process)?;
    println!("{}'s {process} {done}", target.site);
    Ok(())
}

/// A seed for a run not given one: the clock's nanoseconds.
fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 % 1_000_000)
}
