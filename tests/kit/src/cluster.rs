//! A cluster of Cheops nodes on this machine: one sidecar and one daemon per
//! site, sites named `site1`…`siteN`, all wired through `--peer` flags.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cheops_model::ReplyDocument;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::convergence::{check, quiet, same_resource, Snapshot};
use crate::counter_app::CounterApp;
use crate::network::{counter, Gate, Network, Traffic};
use crate::process::{cheops_binary, free_port, redis_server, sidecar_script, Owned};
use crate::scheduler::SchedulerFront;
use crate::tls::{TestCa, TlsFiles};
use crate::wait::until;

const ADMIN: &str = "admin:password";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where one node listens.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub site: String,
    pub couch_port: u16,
    /// The port its peers reach its sidecar through (see [`Network`]).
    pub gate_port: u16,
    pub api_port: u16,
    pub dump_port: u16,
    pub chephren_port: u16,
    /// Its own `redis-server`, when the cluster has them.
    pub redis_port: Option<u16>,
    /// Its files: sidecar data, logs, and [`NodeInfo::app_dir`].
    pub dir: PathBuf,
    /// With TLS: the port of the `https://` front of its sidecar, and the
    /// cluster's CA and certificate files (every listener serves HTTPS).
    pub tls: Option<(u16, TlsFiles)>,
    /// With [`ClusterOptions::count_traffic`]: the port of the relay that
    /// counts the bytes to and from its sidecar, which everyone reaches it
    /// through.
    pub counted_port: Option<u16>,
    /// With [`ClusterOptions::fake_scheduler`]: the port of the fake
    /// scheduler in front of its sidecar, which its daemon reaches it
    /// through.
    pub scheduler_port: Option<u16>,
}

impl NodeInfo {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.api_port)
    }

    pub fn chephren_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.chephren_port)
    }

    /// The node's database, credentials included (through its `https://`
    /// front with TLS, and its counting relay when traffic is counted).
    pub fn couch_url(&self) -> String {
        if let Some(port) = self.scheduler_port {
            return format!("http://{ADMIN}@127.0.0.1:{port}/cheops");
        }
        let port = self.counted_port.unwrap_or_else(|| {
            self.tls
                .as_ref()
                .map_or(self.couch_port, |(front, _)| *front)
        });
        format!("{}://{ADMIN}@127.0.0.1:{port}/cheops", self.scheme())
    }

    /// The node's database as its peers reach it: through its gate.
    pub fn peer_couch_url(&self) -> String {
        format!(
            "{}://{ADMIN}@127.0.0.1:{}/cheops",
            self.scheme(),
            self.gate_port
        )
    }

    /// The daemon's own files (its journal of results), kept across its
    /// restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The application's directory on this node, `NODE_DIR` to its daemon
    /// (and so to the commands it runs).
    pub fn app_dir(&self) -> PathBuf {
        self.dir.join("app")
    }
}

/// One of a node's processes, as the local cluster's `kill`, `restart`,
/// `freeze` and `thaw` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Process {
    Daemon,
    Sidecar,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Process::Daemon => "daemon",
            Process::Sidecar => "sidecar",
        })
    }
}

struct Node {
    info: NodeInfo,
    sidecar: Owned,
    daemon: Owned,
    redis: Option<Owned>,
    _gate: Gate,
    _front: Option<Gate>,
    counter: Option<(Gate, Arc<Traffic>)>,
    scheduler: Option<SchedulerFront>,
    app: Option<CounterApp>,
    /// How many times its daemon was started (names its log files).
    starts: usize,
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// Seconds `/exec` waits for replies.
    pub reply_timeout: u64,
    /// Start one `redis-server` per node (`REDIS_PORT` to its daemon).
    pub redis: bool,
    /// Where the nodes keep their files, kept on drop; by default a fresh
    /// temporary directory, removed on drop unless a test failed.
    pub dir: Option<PathBuf>,
    /// The `cheops` binary; by default the workspace's debug build.
    pub binary: Option<PathBuf>,
    /// Everything over TLS, with a CA made for the cluster: the daemons
    /// serve HTTPS and reach CouchDB (their own through an `https://`
    /// front, their peers' through the gates) and each other over it.
    pub tls: bool,
    /// More arguments for every `cheops serve`.
    pub daemon_args: Vec<String>,
    /// `CHEOPS_*` settings for every daemon, over the harness's own
    /// (`CHEOPS_REPLY_TIMEOUT`, `CHEOPS_REPLICATION_CHECK`,
    /// `CHEOPS_PEER_CHECK`): what `deploy/local/cluster up` passes on from
    /// its caller. The daemons never see the harness's own environment's
    /// `CHEOPS_*` variables otherwise.
    pub env: Vec<(String, String)>,
    /// Count the bytes every sidecar sends and receives (see
    /// [`Cluster::sidecar_bytes`]), through a relay in front of it.
    pub count_traffic: bool,
    /// Put a fake CouchDB 3 scheduler (see [`SchedulerFront`]) between
    /// each daemon and its sidecar (not with `tls`).
    pub fake_scheduler: bool,
    /// Start one [`CounterApp`] per node, as its daemon's
    /// `--http-backend`.
    pub http_app: bool,
    /// The daemons' `RUST_LOG`: by default the replicator's debug lines
    /// too, for a test that fails to show what led there.
    pub log: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            reply_timeout: 30,
            redis: false,
            http_app: false,
            dir: None,
            binary: None,
            tls: false,
            daemon_args: Vec::new(),
            env: Vec::new(),
            count_traffic: false,
            fake_scheduler: false,
            log: DEBUG_LOG.into(),
        }
    }
}

/// What the daemons of a test cluster log by default.
const DEBUG_LOG: &str = "info,cheops_replicator=debug";

/// Nodes started for one test; dropped, it kills them and removes their files.
pub struct Cluster {
    nodes: Vec<Node>,
    root: PathBuf,
    keep_files: bool,
    binary: PathBuf,
    reply_timeout: u64,
    daemon_args: Vec<String>,
    env: Vec<(String, String)>,
    log: String,
    tokens: Tokens,
    network: Network,
    http: reqwest::Client,
}

/// The cluster's tokens, fresh for each cluster, each in a file of the
/// cluster's directory that every daemon reads.
#[derive(Debug, Clone)]
struct Tokens {
    operator: String,
    read: String,
    node: String,
}

/// The token files in a cluster's directory; `token` is the operator's,
/// for `cheops --token-file`.
pub const TOKEN_FILE: &str = "token";
const READ_TOKEN_FILE: &str = "read-token";
const NODE_TOKEN_FILE: &str = "node-token";
/// Every token file, which `deploy/local/cluster down` removes.
pub const TOKEN_FILES: [&str; 3] = [TOKEN_FILE, READ_TOKEN_FILE, NODE_TOKEN_FILE];

impl Tokens {
    fn generate(root: &Path) -> Tokens {
        let tokens = Tokens {
            operator: random_token(),
            read: random_token(),
            node: random_token(),
        };
        std::fs::create_dir_all(root).expect("cannot create the cluster's directory");
        for (name, value) in [
            (TOKEN_FILE, &tokens.operator),
            (READ_TOKEN_FILE, &tokens.read),
            (NODE_TOKEN_FILE, &tokens.node),
        ] {
            write_private(&root.join(name), value);
        }
        tokens
    }
}

/// 32 random bytes from the kernel, in hex.
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("cannot read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a test client keeps an idle connection: less than the
/// daemons' keep-alive (`--header-timeout`, 10 s), so that no request goes
/// out on a connection the daemon is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// An HTTP client sending `token` as `Authorization: Bearer` on every
/// request: for a node's API or Chephren, never for CouchDB (whose URLs
/// carry their own credentials).
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a token is a valid header value");
    value.set_sensitive(true);
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_idle_timeout(POOL_IDLE)
        .build()
        .expect("cannot build an HTTP client")
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    writeln!(file, "{text}").expect("cannot write a token file");
}

impl Cluster {
    /// Starts `n` nodes and waits until every daemon is healthy.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with_timeout(n, 30).await
    }

    /// As [`Cluster::start`], with `/exec` waiting `reply_timeout` seconds.
    pub async fn start_with_timeout(n: usize, reply_timeout: u64) -> Cluster {
        Self::start_with(ClusterOptions {
            nodes: n,
            reply_timeout,
            ..ClusterOptions::default()
        })
        .await
    }

    /// Starts a cluster as `options` say and waits until every daemon is
    /// healthy.
    pub async fn start_with(options: ClusterOptions) -> Cluster {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let keep_files = options.dir.is_some();
        let root = options.dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "cheops-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ))
        });
        let binary = options
            .binary
            .unwrap_or_else(|| cheops_binary().to_path_buf());
        let network = Network::default();
        let ca = options.tls.then(TestCa::new);
        let tls_files = ca.as_ref().map(|ca| ca.write(&root.join("tls")));
        let mut http = reqwest::Client::builder().pool_idle_timeout(POOL_IDLE);
        if let Some(ca) = &ca {
            http = http.add_root_certificate(ca.reqwest_root());
        }
        let tokens = Tokens::generate(&root);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            root,
            keep_files,
            binary,
            reply_timeout: options.reply_timeout,
            daemon_args: options.daemon_args,
            env: options.env,
            log: options.log,
            tokens,
            network,
            http: http.build().expect("an HTTP client"),
        };
        for i in 1..=options.nodes {
            let couch_port = free_port();
            let front = match &ca {
                Some(ca) => Some(
                    ca.front(([127, 0, 0, 1], couch_port).into())
                        .await
                        .expect("cannot open a TLS front"),
                ),
                None => None,
            };
            let mut reached = front.as_ref().map_or(couch_port, |front| front.port);
            let counter = match options.count_traffic {
                true => Some(
                    counter(([127, 0, 0, 1], reached).into())
                        .await
                        .expect("cannot open a counting relay"),
                ),
                false => None,
            };
            if let Some((relay, _)) = &counter {
                reached = relay.port;
            }
            let scheduler = match options.fake_scheduler {
                true => Some(
                    SchedulerFront::start(([127, 0, 0, 1], couch_port).into())
                        .await
                        .expect("cannot open a fake scheduler"),
                ),
                false => None,
            };
            let gate = cluster
                .network
                .gate(([127, 0, 0, 1], reached).into())
                .await
                .expect("cannot open a gate");
            let info = NodeInfo {
                site: format!("site{i}"),
                couch_port,
                gate_port: gate.port,
                api_port: free_port(),
                dump_port: free_port(),
                chephren_port: free_port(),
                redis_port: options.redis.then(free_port),
                dir: cluster.root.join(format!("site{i}")),
                tls: front
                    .as_ref()
                    .zip(tls_files.clone())
                    .map(|(front, files)| (front.port, files)),
                counted_port: counter.as_ref().map(|(relay, _)| relay.port),
                scheduler_port: scheduler.as_ref().map(|front| front.port),
            };
            std::fs::create_dir_all(info.app_dir()).expect("cannot create a node directory");
            let sidecar = spawn_sidecar(&info);
            let redis = info.redis_port.map(|port| spawn_redis(&info, port));
            cluster.nodes.push(Node {
                info,
                sidecar,
                daemon: Owned(None, PathBuf::new()),
                redis,
                _gate: gate,
                _front: front,
                counter,
                scheduler,
                app: match options.http_app {
                    true => Some(
                        CounterApp::start()
                            .await
                            .expect("cannot start an application"),
                    ),
                    false => None,
                },
                starts: 0,
            });
        }
        for i in 0..options.nodes {
            cluster.start_daemon(i).await;
            cluster.wait_redis(i).await;
        }
        cluster
    }

    /// Waits until node `i`'s redis-server (if any) accepts connections.
    async fn wait_redis(&mut self, i: usize) {
        let Some(port) = self.node(i).redis_port else {
            return;
        };
        let site = self.node(i).site.clone();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(redis) = &mut self.nodes[i].redis {
                redis.assert_running(&format!("{site}'s redis-server"));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {site}'s redis-server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// From now on no replication traffic flows between any two nodes;
    /// each still reaches its own sidecar, and every API stays reachable.
    pub fn partition(&self) {
        self.network.partition();
    }

    /// Restores the traffic [`Cluster::partition`] cut.
    pub fn heal(&self) {
        self.network.heal();
    }

    pub fn is_partitioned(&self) -> bool {
        self.network.is_partitioned()
    }

    /// Where the nodes keep their files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The operator token every node accepts (`/exec`, `/show`, and all
    /// the read token opens).
    pub fn token(&self) -> &str {
        &self.tokens.operator
    }

    /// The file holding [`Cluster::token`], for `cheops --token-file`.
    pub fn token_file(&self) -> PathBuf {
        self.root.join(TOKEN_FILE)
    }

    /// The read-only token (Chephren, dump).
    pub fn read_token(&self) -> &str {
        &self.tokens.read
    }

    /// The token nodes send each other (`/show_local`).
    pub fn node_token(&self) -> &str {
        &self.tokens.node
    }

    /// The fake scheduler in front of node `i`'s sidecar, with
    /// [`ClusterOptions::fake_scheduler`].
    pub fn scheduler(&self, i: usize) -> &SchedulerFront {
        self.nodes[i]
            .scheduler
            .as_ref()
            .expect("a cluster started with fake_scheduler")
    }

    /// Each log file node `i`'s daemon wrote, one per start.
    pub fn daemon_logs(&self, i: usize) -> Vec<PathBuf> {
        (0..self.nodes[i].starts)
            .map(|n| self.node(i).dir.join(format!("daemon-{n}.log")))
            .collect()
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
        self.spawn_daemon(i);
        self.wait_healthy(i).await;
    }

    /// Kills node `i`'s sidecar with SIGKILL (its data stays).
    pub fn stop_sidecar(&mut self, i: usize) {
        self.nodes[i].sidecar.kill();
    }

    /// Freezes node `i`'s sidecar (SIGSTOP): its port still accepts
    /// connections, but nothing is answered, as with a hung server.
    pub fn freeze_sidecar(&self, i: usize) {
        self.signal_sidecar(i, "STOP");
    }

    /// Lets a frozen sidecar run again (SIGCONT).
    pub fn thaw_sidecar(&self, i: usize) {
        self.signal_sidecar(i, "CONT");
    }

    fn signal_sidecar(&self, i: usize, signal: &str) {
        let pid = self.sidecar_pid(i).expect("the sidecar is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Starts node `i`'s sidecar again, on the same port and data.
    pub fn start_sidecar(&mut self, i: usize) {
        self.nodes[i].sidecar = spawn_sidecar(&self.nodes[i].info);
    }

    /// Starts node `i`'s daemon without waiting for it to be healthy.
    pub fn spawn_daemon(&mut self, i: usize) {
        let info = self.nodes[i].info.clone();
        let mut command = Command::new(&self.binary);
        // Identity, wiring and tokens are flags, which win over any
        // variable; tunables are variables, which `self.env` overrides.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHEOPS_") || name == "MYFQDN" {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .args(["--site", &info.site, "--listen", "127.0.0.1"])
            .args(["--api-port", &info.api_port.to_string()])
            .args(["--dump-port", &info.dump_port.to_string()])
            .args(["--chephren-port", &info.chephren_port.to_string()])
            .args(["--couchdb-url", &info.couch_url()])
            .arg("--data-dir")
            .arg(info.data_dir())
            .arg("--token-file")
            .arg(self.root.join(TOKEN_FILE))
            .arg("--read-token-file")
            .arg(self.root.join(READ_TOKEN_FILE))
            .arg("--node-token-file")
            .arg(self.root.join(NODE_TOKEN_FILE))
            .env("CHEOPS_REPLY_TIMEOUT", self.reply_timeout.to_string())
            .env("CHEOPS_REPLICATION_CHECK", "2")
            .env("CHEOPS_PEER_CHECK", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &self.log)
            .args(&self.daemon_args)
            .env("NODE_DIR", info.app_dir())
            .env("CHEOPS_COMMAND_ENV", command_env());
        if let Some(app) = &self.nodes[i].app {
            command.env("CHEOPS_HTTP_BACKEND", app.url());
        }
        if let Some(port) = info.redis_port {
            command
                .env("REDIS_PORT", port.to_string())
                .env("CHEOPS_REDIS_BACKEND", format!("redis://127.0.0.1:{port}"));
        }
        if let Some((_, files)) = &info.tls {
            command
                .arg("--tls-cert")
                .arg(&files.cert)
                .arg("--tls-key")
                .arg(&files.key)
                .arg("--ca-file")
                .arg(&files.ca);
        }
        for peer in &self.nodes {
            if peer.info.site != info.site {
                command.arg("--peer").arg(format!(
                    "{}={},{}",
                    peer.info.site,
                    peer.info.peer_couch_url(),
                    peer.info.api_url()
                ));
            }
        }
        let log = info
            .dir
            .join(format!("daemon-{}.log", self.nodes[i].starts));
        self.nodes[i].starts += 1;
        self.nodes[i].daemon = Owned::spawn(&mut command, &log);
    }

    /// The `/health` status of node `i`'s daemon, `None` when it does not answer.
    pub async fn health_status(&self, i: usize) -> Option<u16> {
        let url = format!("{}/health", self.node(i).api_url());
        let response = self.http.get(url).send().await.ok()?;
        Some(response.status().as_u16())
    }

    /// The `/health` body of node `i`'s daemon as a reader gets it (error
    /// texts, deliveries and resources over size included), `None` when it
    /// does not answer.
    pub async fn health(&self, i: usize) -> Option<Value> {
        let url = format!("{}/health", self.node(i).api_url());
        let request = self.http.get(url).bearer_auth(self.read_token());
        request.send().await.ok()?.json().await.ok()
    }

    /// Node `i`'s `/metrics`, read with the read token as a scraper does
    /// (200, Prometheus's text format 0.0.4), as text.
    pub async fn metrics_text(&self, i: usize) -> String {
        let url = format!("{}/metrics", self.node(i).api_url());
        let response = self
            .http
            .get(url)
            .bearer_auth(self.read_token())
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.text().await.expect("a body")
    }

    /// The process id of node `i`'s daemon, `None` while it is stopped:
    /// for reading its resource use in `/proc`.
    pub fn daemon_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].daemon.pid()
    }

    /// The bytes sent to node `i`'s sidecar and received from it so far, by
    /// everyone, when the cluster counts traffic.
    pub fn sidecar_bytes(&self, i: usize) -> Option<(u64, u64)> {
        self.nodes[i]
            .counter
            .as_ref()
            .map(|(_, traffic)| traffic.bytes())
    }

    /// Node `i`'s sidecar's own log: one `[info]` line per HTTP request it
    /// answered.
    pub fn sidecar_log(&self, i: usize) -> PathBuf {
        self.node(i).dir.join("couchdb").join("log.txt")
    }

    /// Node `i`'s application, when the cluster was started with
    /// `http_app`.
    pub fn app(&self, i: usize) -> Option<&CounterApp> {
        self.nodes[i].app.as_ref()
    }

    /// The process id of node `i`'s sidecar (its start script execs the
    /// server), `None` while it is stopped.
    pub fn sidecar_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].sidecar.pid()
    }

    /// Kills node `i`'s daemon with SIGKILL (its sidecar keeps running).
    pub fn stop_daemon(&mut self, i: usize) {
        self.nodes[i].daemon.kill();
    }

    /// Asks node `i`'s daemon to stop (SIGTERM) and waits for it to exit.
    pub fn terminate_daemon(&mut self, i: usize) -> std::process::ExitStatus {
        self.nodes[i].daemon.terminate()
    }

    /// Waits until node `i`'s daemon answers healthy; fails at once if its
    /// daemon or sidecar exits meanwhile.
    pub async fn wait_healthy(&mut self, i: usize) {
        if let Err(why) = self.healthy(i).await {
            panic!("{why}");
        }
    }

    /// Waits until node `i`'s daemon answers healthy; the error says why it
    /// did not (a process exited, or the time ran out).
    pub async fn healthy(&mut self, i: usize) -> Result<(), String> {
        let site = self.node(i).site.clone();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while self.health_status(i).await != Some(200) {
            let node = &mut self.nodes[i];
            node.daemon.running(&format!("{site}'s daemon"))?;
            node.sidecar.running(&format!("{site}'s sidecar"))?;
            if let Some(redis) = &mut node.redis {
                redis.running(&format!("{site}'s redis-server"))?;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "timed out after {START_TIMEOUT:?} waiting for {site} to be healthy"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits until node `i`'s sidecar accepts connections.
    pub async fn sidecar_ready(&mut self, i: usize) -> Result<(), String> {
        let site = self.node(i).site.clone();
        let port = self.node(i).couch_port;
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            self.nodes[i]
                .sidecar
                .running(&format!("{site}'s sidecar"))?;
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "timed out after {START_TIMEOUT:?} waiting for {site}'s sidecar"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Sends `signal` (STOP, CONT…) to node `i`'s daemon or sidecar.
    pub fn signal(&self, i: usize, part: Process, signal: &str) -> Result<(), String> {
        let node = &self.nodes[i];
        let process = match part {
            Process::Daemon => &node.daemon,
            Process::Sidecar => &node.sidecar,
        };
        process
            .signal(signal)
            .map_err(|e| format!("{}'s {part}: {e}", node.info.site))
    }

    /// Sends an operation through node `i`; returns the HTTP status and
    /// either the reply lines or the error body.
    pub async fn exec(
        &self,
        i: usize,
        request: Exec<'_>,
    ) -> (u16, Result<Vec<ReplyDocument>, Value>) {
        // Names as written (`a/b`), as the CLI sends them: the node does not
        // decode the RFC 2231 form reqwest uses by default for such names.
        let mut form = Form::new().percent_encode_noop();
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
        for (name, value) in request.fields {
            form = form.text(name.to_string(), value.to_string());
        }
        let response = self.post(i, &format!("exec/{}", request.id), form).await;
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

    async fn post(&self, i: usize, path: &str, form: Form) -> reqwest::Response {
        let url = format!("{}/{path}", self.node(i).api_url());
        self.http
            .post(url)
            .bearer_auth(self.token())
            .multipart(form)
            .send()
            .await
            .expect("the API did not answer")
    }

    /// `/show` through node `i`; returns the HTTP status and the JSON answer.
    pub async fn show(
        &self,
        i: usize,
        id: &str,
        command: &str,
        sites: Option<&str>,
    ) -> (u16, Value) {
        let mut fields = vec![("command", command)];
        fields.extend(sites.map(|sites| ("sites", sites)));
        self.show_with(i, id, &fields).await
    }

    /// `POST /show/{id}` on node `i` with the form `fields`, in order.
    pub async fn show_with(&self, i: usize, id: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let mut form = Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        let response = self.post(i, &format!("show/{id}"), form).await;
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

impl Cluster {
    /// Every document of the nodes `on` (indexes), read at once.
    pub async fn snapshots(&self, on: &[usize]) -> Result<Vec<Snapshot>, String> {
        let reads = on.iter().map(|&i| async move {
            let info = self.node(i);
            Snapshot::read(&self.http, &info.site, &info.couch_url()).await
        });
        futures::future::join_all(reads).await.into_iter().collect()
    }

    /// Waits until resource `id` has converged on the nodes `on` (indexes),
    /// as [`check`] defines it, and stays so: every running
    /// daemon among them has handled every change of its database, and
    /// their databases still hold the same documents of `id` afterwards.
    /// Sites can agree while one of them still has work to do (running the
    /// block again after a merge, whose replies come next). Returns the
    /// document.
    pub async fn converged(&self, id: &str, on: &[usize]) -> Value {
        until(&format!("{id} to converge"), CONVERGE_TIMEOUT, || async {
            let before = self.snapshots(on).await?;
            let doc = check(&before, id)?;
            for &i in on {
                if self.nodes[i].daemon.pid().is_some() {
                    self.quiet(i).await?;
                }
            }
            let after = self.snapshots(on).await?;
            if !same_resource(&before, &after, id) {
                return Err(format!("{id} changed while the daemons were checked"));
            }
            Ok(doc)
        })
        .await
    }

    /// Whether node `i`'s daemon has nothing left to do (see
    /// [`quiet`]); what it still does when not.
    async fn quiet(&self, i: usize) -> Result<(), String> {
        let info = self.node(i);
        quiet(&self.http, &info.site, &info.api_url(), self.read_token()).await
    }
}

/// `cheops serve` arguments naming `site` as a peer that never answers (its
/// CouchDB and API on a closed port): a site an operation may name (a node
/// refuses sites it does not know) and that never replies.
pub fn absent_peer(site: &str) -> Vec<String> {
    vec![
        "--peer".to_owned(),
        format!("{site}=http://{ADMIN}@127.0.0.1:1/cheops,http://127.0.0.1:1"),
    ]
}

/// The variables of its environment a daemon passes to its commands: the
/// caller's choice (`CHEOPS_COMMAND_ENV`, which daemons inherit like every
/// `CHEOPS_*` variable), and the harness's own `NODE_DIR` and `REDIS_PORT`.
fn command_env() -> String {
    let mut names = std::env::var("CHEOPS_COMMAND_ENV").unwrap_or_default();
    if !names.trim().is_empty() {
        names.push(',');
    }
    names.push_str("NODE_DIR,REDIS_PORT");
    names
}

fn spawn_sidecar(info: &NodeInfo) -> Owned {
    let data = info.dir.join("couchdb");
    let mut command = Command::new(sidecar_script());
    command.arg(info.couch_port.to_string()).arg(&data);
    if let Some((_, files)) = &info.tls {
        // Its replications reach the peers' fronts: Node.js must trust the CA.
        command.env("NODE_EXTRA_CA_CERTS", &files.ca);
    }
    Owned::spawn(&mut command, &info.dir.join("sidecar.log"))
}

/// A `redis-server` of the node's own, keeping nothing on disk.
fn spawn_redis(info: &NodeInfo, port: u16) -> Owned {
    Owned::spawn(
        Command::new(redis_server())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&info.dir),
        &info.dir.join("redis.log"),
    )
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.daemon.kill();
            node.sidecar.kill();
            if let Some(redis) = &mut node.redis {
                redis.kill();
            }
        }
        if std::thread::panicking() {
            self.print_log_tails();
        } else if !self.keep_files {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Cluster {
    /// Prints, for a failed test, each daemon's warnings and last lines:
    /// CI keeps the test's output, not its files.
    fn print_log_tails(&self) {
        const WARNINGS: usize = 30;
        const LAST: usize = 15;
        eprintln!("cluster files kept in {}", self.root.display());
        for i in 0..self.nodes.len() {
            for log in self.daemon_logs(i) {
                let Ok(text) = std::fs::read_to_string(&log) else {
                    continue;
                };
                let lines: Vec<&str> = text.lines().collect();
                let warnings: Vec<&str> = lines
                    .iter()
                    .copied()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .collect();
                eprintln!(
                    "--- {}: {} lines, {} warnings, the last {WARNINGS} of them:",
                    log.display(),
                    lines.len(),
                    warnings.len()
                );
                let clip = |l: &str| l.chars().take(400).collect::<String>();
                for line in &warnings[warnings.len().saturating_sub(WARNINGS)..] {
                    eprintln!("{}", clip(line));
                }
                eprintln!("--- its last {LAST} lines:");
                for line in &lines[lines.len().saturating_sub(LAST)..] {
                    eprintln!("{}", clip(line));
                }
            }
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
    /// Other fields, in order (`kind`, `arg`, `header`, `body`).
    pub fields: &'a [(&'a str, &'a str)],
}

impl<'a> Exec<'a> {
    /// A well-formed request: one command of type `op_type`, no config, no file.
    pub fn new(id: &'a str, sites: &'a str, command: &'a [&'a str; 1], op_type: &'a str) -> Self {
        Exec {
            id,
            sites: Some(sites),
            commands: command,
            op_type: Some(op_type),
            ..Exec::default()
        }
    }
}
