//! A cluster of Cheops nodes on this machine: one sidecar and one daemon per
//! site, sites named `site1`…`siteN`, all wired through `--peer` flags.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cheops_model::ReplyDocument;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::process::{cheops_binary, free_port, sidecar_script, Owned};
use crate::wait::eventually;

const ADMIN: &str = "admin:password";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one node listens.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub site: String,
    pub couch_port: u16,
    pub api_port: u16,
    pub dump_port: u16,
    pub dir: PathBuf,
}

impl NodeInfo {
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The node's database, credentials included.
    pub fn couch_url(&self) -> String {
        format!("http://{ADMIN}@127.0.0.1:{}/cheops", self.couch_port)
    }
}

struct Node {
    info: NodeInfo,
    sidecar: Owned,
    daemon: Owned,
}

/// Nodes started for one test; dropped, it kills them and removes their files.
pub struct Cluster {
    nodes: Vec<Node>,
    root: PathBuf,
    reply_timeout: u64,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts `n` nodes and waits until every daemon is healthy.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with_timeout(n, 30).await
    }

    /// As [`Cluster::start`], with `/exec` waiting `reply_timeout` seconds.
    pub async fn start_with_timeout(n: usize, reply_timeout: u64) -> Cluster {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "cheops-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let infos: Vec<NodeInfo> = (1..=n)
            .map(|i| NodeInfo {
                site: format!("site{i}"),
                couch_port: free_port(),
                api_port: free_port(),
                dump_port: free_port(),
                dir: root.join(format!("site{i}")),
            })
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            root,
            reply_timeout,
            http: reqwest::Client::new(),
        };
        for info in &infos {
            std::fs::create_dir_all(&info.dir).expect("cannot create a node directory");
            let sidecar = cluster.spawn_sidecar(info);
            cluster.nodes.push(Node {
                info: info.clone(),
                sidecar,
                daemon: Owned(None),
            });
        }
        for i in 0..n {
            cluster.start_daemon(i).await;
        }
        cluster
    }

    fn spawn_sidecar(&self, info: &NodeInfo) -> Owned {
        let data = info.dir.join("couchdb");
        Owned::spawn(
            Command::new(sidecar_script())
                .arg(info.couch_port.to_string())
                .arg(&data),
            &info.dir.join("sidecar.log"),
        )
    }

    pub fn node(&self, i: usize) -> &NodeInfo {
        &self.nodes[i].info
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Starts (or restarts) node `i`'s daemon and waits for its health.
    pub async fn start_daemon(&mut self, i: usize) {
        let info = self.nodes[i].info.clone();
        let mut command = Command::new(cheops_binary());
        command
            .arg("serve")
            .args(["--site", &info.site, "--listen", "127.0.0.1"])
            .args(["--api-port", &info.api_port.to_string()])
            .args(["--dump-port", &info.dump_port.to_string()])
            .args(["--couchdb-url", &info.couch_url()])
            .args(["--reply-timeout", &self.reply_timeout.to_string()])
            .env("RUST_LOG", "info,cheops_replicator=debug")
            .env("NODE_DIR", &info.dir);
        for peer in &self.nodes {
            if peer.info.site != info.site {
                command.arg("--peer").arg(format!(
                    "{}={},{}",
                    peer.info.site,
                    peer.info.couch_url(),
                    peer.info.api_url()
                ));
            }
        }
        let log = info.dir.join(format!("daemon-{}.log", std::process::id()));
        self.nodes[i].daemon = Owned::spawn(&mut command, &log);
        self.wait_healthy(i).await;
    }

    /// Stops node `i`'s daemon (its sidecar keeps running).
    pub fn stop_daemon(&mut self, i: usize) {
        self.nodes[i].daemon.kill();
    }

    pub async fn wait_healthy(&self, i: usize) {
        let url = format!("{}/health", self.node(i).api_url());
        let http = self.http.clone();
        eventually(
            &format!("{} to be healthy", self.node(i).site),
            START_TIMEOUT,
            || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let response = http.get(&url).send().await.ok()?;
                    response.status().is_success().then_some(())
                }
            },
        )
        .await;
    }

    /// Sends an operation through node `i`; returns the HTTP status and
    /// either the reply lines or the error body.
    pub async fn exec(
        &self,
        i: usize,
        request: Exec<'_>,
    ) -> (u16, Result<Vec<ReplyDocument>, Value>) {
        let mut form = Form::new();
        if let Some(sites) = request.sites {
            form = form.text("sites", sites.to_owned());
        }
        for command in request.commands {
            form = form.text("command", (*command).to_owned());
        }
        if let Some(op_type) = request.op_type {
            form = form.text("type", op_type.to_owned());
        }
        if let Some(config) = request.config {
            form = form.text("config", config.to_owned());
        }
        for (name, bytes) in request.files {
            form = form.part(
                name.to_string(),
                Part::bytes(bytes.to_vec()).file_name(name.to_string()),
            );
        }
        let url = format!("{}/exec/{}", self.node(i).api_url(), request.id);
        let response = self
            .http
            .post(url)
            .multipart(form)
            .send()
            .await
            .expect("the API did not answer");
        let status = response.status().as_u16();
        let body = response.text().await.expect("cannot read the answer");
        if status != 200 {
            return (
                status,
                Err(serde_json::from_str(&body).unwrap_or(Value::String(body))),
            );
        }
        let replies = body
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
            })
            .collect();
        (status, Ok(replies))
    }

    /// `/show` through node `i`; returns the HTTP status and the JSON answer.
    pub async fn show(
        &self,
        i: usize,
        id: &str,
        command: &str,
        sites: Option<&str>,
    ) -> (u16, Value) {
        let mut form = Form::new().text("command", command.to_owned());
        if let Some(sites) = sites {
            form = form.text("sites", sites.to_owned());
        }
        let url = format!("{}/show/{id}", self.node(i).api_url());
        let response = self
            .http
            .post(url)
            .multipart(form)
            .send()
            .await
            .expect("the API did not answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// A document of node `i`'s database (with its conflicts).
    pub async fn doc(&self, i: usize, id: &str) -> Option<Value> {
        let url = format!("{}/{id}?conflicts=true", self.node(i).couch_url());
        let response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Every reply stored on node `i` for a resource.
    pub async fn replies(&self, i: usize, resource: &str) -> Vec<ReplyDocument> {
        let url = format!("{}/_all_docs?include_docs=true", self.node(i).couch_url());
        let Ok(response) = self.http.get(url).send().await else {
            return Vec::new();
        };
        let all: Value = response.json().await.unwrap_or_default();
        all["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| row["doc"]["Type"] == "REPLY" && row["doc"]["ResourceId"] == resource)
            .filter_map(|row| serde_json::from_value(row["doc"].clone()).ok())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.daemon.kill();
            node.sidecar.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The fields of an `/exec` request; `None` leaves a field out.
#[derive(Debug, Clone, Default)]
pub struct Exec<'a> {
    pub id: &'a str,
    pub sites: Option<&'a str>,
    pub commands: &'a [&'a str],
    pub op_type: Option<&'a str>,
    pub config: Option<&'a str>,
    pub files: &'a [(&'a str, &'a [u8])],
}
