//! `cheops-bench`: latency, throughput, convergence and footprint of a
//! local three-site cluster, against the floor of the same sidecars and
//! replications without Cheops. See `cheops_bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cheops_bench::{self as bench, Params, Part};
use clap::Parser;

/// Measures a local Cheops cluster (3 sites) the same way every time;
/// prints a table, and writes every figure as JSON with --out.
#[derive(Parser)]
#[command(name = "cheops-bench")]
struct Cli {
    /// Every part, small: under 3 minutes on 2 cores.
    #[arg(long)]
    quick: bool,
    /// Write every figure, the parameters and the machine to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also keep that JSON in tests/bench-results/, named by date and
    /// commit (DATE-COMMIT.json): the history of the project's figures.
    #[arg(long)]
    save: bool,
    /// Measure nothing: print README's Performance table made from this
    /// result file (see --into).
    #[arg(long, value_name = "RESULT")]
    render: Option<PathBuf>,
    /// With --render: replace the table in this file (README.md) between
    /// its `cheops-bench --render` markers instead of printing it.
    #[arg(long, requires = "render", value_name = "FILE")]
    into: Option<PathBuf>,
    /// Concurrent clients of the throughput part.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Resources the clients spread over.
    #[arg(long, default_value_t = 64)]
    resources: usize,
    /// Seconds the clients send operations (default 60, quick 10).
    #[arg(long)]
    duration: Option<u64>,
    /// Operations per site during the partition (default 10, quick 3).
    #[arg(long)]
    ops: Option<usize>,
    /// Sequential operations with a 32 KiB file each on one resource
    /// (default 200, quick 20; 0 leaves the part out).
    #[arg(long)]
    history: Option<usize>,
    /// Operations of the growth part's first stage, which then grows the
    /// database to ten times as many (default 100, quick 20; 0 leaves the
    /// part out).
    #[arg(long)]
    growth: Option<usize>,
    /// Resources stored at once (default 10000, quick 500).
    #[arg(long)]
    stored: Option<usize>,
    /// Sequential execs, and floor round trips (default 200, quick 30).
    #[arg(long)]
    samples: Option<usize>,
    /// Run only these parts (repeatable or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// The `cheops` binary to run; by default the workspace's release build,
    /// built first if out of date.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the nodes' files (logs, databases) in this directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cheops-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let Some(result) = &cli.render {
        return render(result, cli.into.as_deref());
    }
    if cfg!(debug_assertions) {
        eprintln!("cheops-bench: a debug build; run it with --release for figures worth keeping");
    }
    let binary = match cli.binary {
        Some(binary) => binary,
        None => {
            eprintln!("cheops-bench: cargo build --release -p cheops-cli");
            cheops_testkit::release_cheops_binary()?
        }
    };
    let mut params = Params::new(cli.quick, binary);
    params.clients = cli.clients;
    params.resources = cli.resources;
    if let Some(seconds) = cli.duration {
        params.duration = Duration::from_secs(seconds);
    }
    if let Some(ops) = cli.ops {
        params.ops = ops;
    }
    if let Some(history) = cli.history {
        params.history = history;
    }
    if let Some(growth) = cli.growth {
        params.growth = growth;
    }
    if let Some(stored) = cli.stored {
        params.stored = stored;
    }
    if let Some(samples) = cli.samples {
        params.samples = samples;
    }
    if !cli.only.is_empty() {
        params.parts = Part::ALL
            .into_iter()
            .filter(|p| cli.only.contains(p))
            .collect();
    }
    params.dir = cli.dir;

    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))?;
    let report = runtime.block_on(bench::run(&params))?;
    print!("{}", report.table());
    let result = report.to_json();
    let json = serde_json::to_string_pretty(&result)
        .map_err(|e| format!("cannot encode the report: {e}"))?
        + "\n";
    let saved = cli.save.then(|| {
        let commit = result["machine"]["commit"].as_str().unwrap_or("unknown");
        cheops_testkit::workspace()
            .join("tests/bench-results")
            .join(format!("{}-{commit}.json", today()))
    });
    for out in cli.out.iter().chain(&saved) {
        std::fs::write(out, &json).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("cheops-bench: wrote {}", out.display());
    }
    Ok(())
}

/// Prints the table made from `result`, or writes it into `into`.
fn render(result: &Path, into: Option<&Path>) -> Result<(), String> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let run: serde_json::Value = serde_json::from_str(&read(result)?)
        .map_err(|e| format!("{}: not a result file: {e}", result.display()))?;
    let name = result
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let table = bench::render::table(&run, &name);
    match into {
        None => print!("{table}"),
        Some(into) => {
            let text = bench::render::replace(&read(into)?, &table)
                .map_err(|e| format!("{}: {e}", into.display()))?;
            std::fs::write(into, text).map_err(|e| format!("{}: {e}", into.display()))?;
            eprintln!("cheops-bench: rewrote the table in {}", into.display());
        }
    }
    Ok(())
}

/// Today's date (UTC), `YYYY-MM-DD`, for the name of a saved result.
fn today() -> String {
    let now = cheops_model::Timestamp::now().to_string();
    now.get(..10).unwrap_or(&now).to_owned()
}
