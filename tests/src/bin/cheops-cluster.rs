//! `cheops-cluster`: the local cluster behind `deploy/local/cluster`
//! (which builds it and runs it). See `cheops_tests::local`.

use std::path::PathBuf;
use std::process::ExitCode;

use cheops_tests::local::{self, UpOptions};
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
            for node in &cluster.nodes {
                println!(
                    "{}  api {}  chephren {}  couchdb {}",
                    node.site, node.api_url, node.chephren_url, node.couchdb_url
                );
            }
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
        Command::Supervise { nodes, dir, redis } => {
            runtime()?.block_on(local::supervise(UpOptions { nodes, dir, redis }))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
