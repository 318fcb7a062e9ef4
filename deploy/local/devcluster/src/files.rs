//! The files of a local cluster's directory.

use std::path::Path;

use serde_json::{json, Value};

use super::Failure;
use cheops_testkit::Cluster;
use cheops_testkit::TOKEN_FILES;

pub const CLUSTER: &str = "cluster.json";
/// The sites in the format of `--peers-file` (`cheops` client and daemon).
const PEERS: &str = "peers.json";
const SUPERVISOR: &str = "supervisor.json";
pub const SUPERVISOR_LOG: &str = "supervisor.log";

/// One node as `cluster.json` describes it (field names are a contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub site: String,
    pub api_url: String,
    /// The node's database, credentials included.
    pub couchdb_url: String,
    pub chephren_url: String,
    /// The node's own directory, `NODE_DIR` to its daemon.
    pub node_dir: String,
    pub redis_port: Option<u16>,
}

/// `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFile {
    pub nodes: Vec<NodeEntry>,
    /// The operator token every node accepts (also in DIR/token).
    pub token: String,
    /// The read-only token (Chephren, dump).
    pub read_token: String,
}

impl ClusterFile {
    pub fn of(cluster: &Cluster) -> Self {
        let nodes = (0..cluster.len())
            .map(|i| {
                let info = cluster.node(i);
                NodeEntry {
                    site: info.site.clone(),
                    api_url: info.api_url(),
                    couchdb_url: info.couch_url(),
                    chephren_url: info.chephren_url(),
                    node_dir: info.app_dir().display().to_string(),
                    redis_port: info.redis_port,
                }
            })
            .collect();
        ClusterFile {
            nodes,
            token: cluster.token().to_owned(),
            read_token: cluster.read_token().to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "site": n.site,
                    "api_url": n.api_url,
                    "couchdb_url": n.couchdb_url,
                    "chephren_url": n.chephren_url,
                    "node_dir": n.node_dir,
                    "redis_port": n.redis_port,
                })
            })
            .collect();
        json!({ "nodes": nodes, "token": self.token, "read_token": self.read_token })
    }

    fn from_json(value: &Value) -> Option<Self> {
        let text = |node: &Value, field: &str| node[field].as_str().map(str::to_owned);
        let nodes = value["nodes"]
            .as_array()?
            .iter()
            .map(|node| {
                Some(NodeEntry {
                    site: text(node, "site")?,
                    api_url: text(node, "api_url")?,
                    couchdb_url: text(node, "couchdb_url")?,
                    chephren_url: text(node, "chephren_url")?,
                    node_dir: text(node, "node_dir")?,
                    redis_port: node["redis_port"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok()),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ClusterFile {
            nodes,
            token: text(value, "token")?,
            read_token: text(value, "read_token")?,
        })
    }
}

pub fn read_cluster(dir: &Path) -> Result<ClusterFile, Failure> {
    let path = dir.join(CLUSTER);
    let text = std::fs::read_to_string(&path)
        .map_err(|_| format!("no cluster is up in {} (no {CLUSTER})", dir.display()))?;
    serde_json::from_str(&text)
        .ok()
        .and_then(|v| ClusterFile::from_json(&v))
        .ok_or_else(|| format!("{} is not a cluster description", path.display()))
}

/// Written whole or not at all, after `peers.json`: `up` takes its
/// appearance as "healthy".
pub fn write_cluster(dir: &Path, cluster: &ClusterFile) -> Result<(), Failure> {
    let peers: serde_json::Map<String, Value> = cluster
        .nodes
        .iter()
        .map(|n| {
            let urls = json!({ "couchdb": n.couchdb_url, "api": n.api_url });
            (n.site.clone(), urls)
        })
        .collect();
    write_atomically(dir, PEERS, &Value::Object(peers))?;
    write_atomically(dir, CLUSTER, &cluster.to_json())
}

pub fn write_supervisor(dir: &Path, pid: u32, port: u16) -> Result<(), Failure> {
    write_atomically(
        dir,
        SUPERVISOR,
        &json!({ "pid": pid, "control_port": port }),
    )
}

/// Written readable by its owner only: `cluster.json` holds the tokens.
fn write_atomically(dir: &Path, name: &str, value: &Value) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    let _ = std::fs::remove_file(&partial);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn supervisor(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(SUPERVISOR)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn supervisor_pid(dir: &Path) -> Option<u32> {
    supervisor(dir)?["pid"].as_u64()?.try_into().ok()
}

pub fn control_port(dir: &Path) -> Option<u16> {
    supervisor(dir)?["control_port"].as_u64()?.try_into().ok()
}

/// Removes what says a cluster runs, and its tokens.
pub fn remove_state(dir: &Path) {
    for name in [CLUSTER, PEERS, SUPERVISOR].into_iter().chain(TOKEN_FILES) {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Removes what an earlier cluster left in `dir`: its state and its sites'
/// directories (`site1`, `site2`, …), nothing else.
pub fn clear(dir: &Path) -> Result<(), Failure> {
    remove_state(dir);
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_site = name
            .strip_prefix("site")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if is_site {
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| format!("cannot remove {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The last `lines` lines of a log, to explain a failure.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_file_round_trips_with_the_contract_fields() {
        let file = ClusterFile {
            nodes: vec![NodeEntry {
                site: "site1".into(),
                api_url: "http://127.0.0.1:1".into(),
                couchdb_url: "http://admin:password@127.0.0.1:2/cheops".into(),
                chephren_url: "http://127.0.0.1:3".into(),
                node_dir: "/tmp/x/site1/app".into(),
                redis_port: None,
            }],
            token: "t".repeat(64),
            read_token: "r".repeat(64),
        };
        let json = file.to_json();
        let fields: Vec<&String> = json["nodes"][0]
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            fields,
            [
                "api_url",
                "chephren_url",
                "couchdb_url",
                "node_dir",
                "redis_port",
                "site"
            ]
        );
        assert_eq!(json["nodes"][0]["redis_port"], Value::Null);
        assert_eq!(json["token"], "t".repeat(64));
        assert_eq!(json["read_token"], "r".repeat(64));
        assert_eq!(ClusterFile::from_json(&json), Some(file));
    }
}
