//! `status`: whether every resource of the cluster has converged.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::{control, files, Failure};
use cheops_testkit::convergence::{check, resource_ids, Snapshot};

/// How long `status` waits for a database: a frozen sidecar answers
/// nothing.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The report, and whether everything has converged.
pub async fn status(dir: &Path) -> Result<(String, bool), Failure> {
    let cluster = files::read_cluster(dir)?;
    let http = reqwest::Client::builder()
        .timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let reads = cluster
        .nodes
        .iter()
        .map(|node| Snapshot::read(&http, &node.site, &node.couchdb_url));
    let snapshots: Result<Vec<Snapshot>, String> =
        futures::future::join_all(reads).await.into_iter().collect();

    let mut report = String::new();
    if let Ok(state) = control::ask(dir, "state") {
        let mut parts = state.split("; ");
        let _ = writeln!(report, "network: {}", parts.next().unwrap_or_default());
        for process in parts {
            let _ = writeln!(report, "{process}");
        }
    }
    let snapshots = match snapshots {
        Ok(snapshots) => snapshots,
        Err(why) => {
            let _ = write!(report, "{why}");
            return Ok((report, false));
        }
    };
    let ids = resource_ids(&snapshots);
    let mut converged = 0;
    for id in &ids {
        match check(&snapshots, id) {
            Ok(doc) => {
                converged += 1;
                let operations = doc["Operations"].as_array().map_or(0, Vec::len);
                let sites = doc["Locations"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join("&")
                    })
                    .unwrap_or_default();
                let rev = doc["_rev"].as_str().unwrap_or_default();
                let _ = writeln!(
                    report,
                    "{id}: converged on {sites} at {rev} ({operations} operations)"
                );
            }
            Err(why) => {
                let _ = writeln!(report, "{id}: NOT converged: {why}");
            }
        }
    }
    let _ = write!(report, "{converged} of {} resources converged", ids.len());
    Ok((report, converged == ids.len()))
}
