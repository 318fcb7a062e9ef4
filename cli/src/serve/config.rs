//! The daemon's configuration: flags with environment fallbacks, checked
//! before anything starts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cheops_api::auth::{Secret, Tokens};
use cheops_api::ApiConfig;
use cheops_chephren::{parse_origin, ChephrenConfig};
use cheops_replicator::{
    ClientOptions, DatabaseAccess, NodeConfig, SiteUrls, Sites, Templates,
    COUCHDB_MAX_DOCUMENT_SIZE, DEFAULT_MAX_REPLY_BYTES,
};
use clap::Args;

use super::logging::LogFormat;
use serde::Deserialize;

use super::listener::{Limits, Tls};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// This node's site name, as used in the `sites` of operations.
    #[arg(long, env = "MYFQDN")]
    site: String,

    /// Address the listeners bind to. Default: 0.0.0.0 (every interface)
    /// with an operator token or --insecure, else 127.0.0.1 only. An
    /// address other than loopback needs a token or --insecure.
    #[arg(long, env = "CHEOPS_LISTEN")]
    listen: Option<IpAddr>,

    /// File holding the operator token, which /exec, /show, /show_local,
    /// Chephren's API and the dump accept (as `Authorization: Bearer
    /// TOKEN`). Or CHEOPS_TOKEN holds the token itself; the file wins.
    /// Never on the command line.
    #[arg(long, env = "CHEOPS_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// CHEOPS_TOKEN: the operator token itself (read from the environment
    /// only).
    #[arg(skip = std::env::var("CHEOPS_TOKEN").ok())]
    token: Option<String>,

    /// File holding the read-only token: Chephren's API and the dump accept
    /// it, nothing else. Or CHEOPS_READ_TOKEN holds the token itself.
    #[arg(long, env = "CHEOPS_READ_TOKEN_FILE", value_name = "FILE")]
    read_token_file: Option<PathBuf>,

    /// CHEOPS_READ_TOKEN: the read-only token itself.
    #[arg(skip = std::env::var("CHEOPS_READ_TOKEN").ok())]
    read_token: Option<String>,

    /// File holding the node token, shared by the sites: /show sends it to
    /// the other sites' /show_local, which accepts it (and nothing else
    /// does). Without one, /show sends the operator token. Or
    /// CHEOPS_NODE_TOKEN holds the token itself.
    #[arg(long, env = "CHEOPS_NODE_TOKEN_FILE", value_name = "FILE")]
    node_token_file: Option<PathBuf>,

    /// CHEOPS_NODE_TOKEN: the node token itself.
    #[arg(skip = std::env::var("CHEOPS_NODE_TOKEN").ok())]
    node_token: Option<String>,

    /// Serve without any token on every interface: anyone who reaches the
    /// ports can run commands. Only for a network nobody else reaches.
    #[arg(long, env = "CHEOPS_INSECURE")]
    insecure: bool,

    /// Port of the Cheops API (/exec, /show, /show_local, /health).
    #[arg(long, env = "CHEOPS_API_PORT", default_value_t = 8079)]
    api_port: u16,

    /// Port of the dump listener (GET / lists the local database, for the
    /// read or operator token). Off unless given.
    #[arg(long, env = "CHEOPS_DUMP_PORT")]
    dump_port: Option<u16>,

    /// Port of Chephren, the web UI (/) and its API (/api/...).
    #[arg(long, env = "CHEOPS_CHEPHREN_PORT", default_value_t = 8080)]
    chephren_port: u16,

    /// A web origin allowed to read Chephren from a browser, such as
    /// http://laptop:8000 (repeatable, or comma-separated; * for any).
    /// Needed when the UI is served elsewhere or pointed at this node with
    /// ?node=; by default only pages this node serves may read it.
    #[arg(
        long = "chephren-cors-origin",
        env = "CHEOPS_CHEPHREN_CORS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    chephren_cors_origins: Vec<String>,

    /// The local CouchDB database, credentials included. Never logged with
    /// its credentials.
    #[arg(
        long,
        env = "CHEOPS_COUCHDB_URL",
        default_value = "http://admin:password@localhost:5984/cheops",
        hide_env_values = true
    )]
    couchdb_url: String,

    /// A peer site: NAME=COUCHDB_URL,API_URL (repeatable). For example
    /// site2=http://admin:password@10.0.0.2:5984/cheops,http://10.0.0.2:8079
    #[arg(long = "peer", value_name = "NAME=COUCHDB_URL,API_URL")]
    peers: Vec<String>,

    /// A JSON file of peers: {"site2": {"couchdb": "http://…/cheops", "api": "http://…:8079"}}.
    #[arg(long, env = "CHEOPS_PEERS_FILE")]
    peers_file: Option<PathBuf>,

    /// CouchDB URL of a site missing from the peers; {site} is its name,
    /// such as http://admin:password@{site}:5984/cheops. Unset (the
    /// default), an operation naming a site that is not a peer is refused:
    /// this node sends its credentials only where the operator said. Needs
    /// --api-template too.
    #[arg(long, env = "CHEOPS_COUCHDB_TEMPLATE", hide_env_values = true)]
    couchdb_template: Option<String>,

    /// API URL of a site missing from the peers; {site} is its name, such
    /// as http://{site}:8079. Needs --couchdb-template too.
    #[arg(long, env = "CHEOPS_API_TEMPLATE")]
    api_template: Option<String>,

    /// Seconds /exec waits for every site's reply before answering TIMEOUT.
    #[arg(long, env = "CHEOPS_REPLY_TIMEOUT", default_value_t = 30)]
    reply_timeout: u64,

    /// Largest request body accepted, in bytes (files included).
    #[arg(long, env = "CHEOPS_BODY_LIMIT", default_value_t = 64 * 1024 * 1024)]
    body_limit: usize,

    /// Largest resource document written, in bytes as JSON (operations and
    /// their attached files, base64): CouchDB 3's max_document_size. A
    /// larger one is refused with 413 and nothing stored.
    #[arg(long, env = "CHEOPS_MAX_DOCUMENT_SIZE", default_value_t = COUCHDB_MAX_DOCUMENT_SIZE)]
    max_document_size: usize,

    /// A variable of the daemon's environment that commands see (repeatable,
    /// or comma-separated; NAME* for every name starting with NAME), on top
    /// of PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TZ and
    /// TMPDIR. Commands see no other variable of the daemon's, and never a
    /// CHEOPS_* one, one whose name says it holds a secret (TOKEN, SECRET,
    /// PASSWORD, AUTH, API_KEY…) or a URL with a password: no credential of
    /// the daemon's reaches them. Example: --command-env KUBECONFIG
    #[arg(
        long = "command-env",
        env = "CHEOPS_COMMAND_ENV",
        value_name = "NAME",
        value_delimiter = ','
    )]
    command_env: Vec<String>,

    /// Seconds a command (of an operation, or of /show_local) may run;
    /// then it is killed with every process it started, and its reply is KO.
    #[arg(long, env = "CHEOPS_COMMAND_TIMEOUT", default_value_t = 300)]
    command_timeout: u64,

    /// Bytes of a command's output kept (standard output and error); the
    /// rest is dropped, a line saying how much ends the output.
    #[arg(long, env = "CHEOPS_COMMAND_OUTPUT_LIMIT", default_value_t = 1024 * 1024)]
    command_output_limit: usize,

    /// This site's application: HTTP operations are sent to this base URL,
    /// their path after it (http://127.0.0.1:8000). Without it, this site
    /// refuses HTTP operations at /exec and answers KO to those it is sent.
    #[arg(long, env = "CHEOPS_HTTP_BACKEND", value_name = "URL")]
    http_backend: Option<String>,

    /// This site's Redis: Redis operations are sent to it
    /// (redis://127.0.0.1:6379; redis://:PASSWORD@host:6379/0). Without
    /// it, this site refuses Redis operations at /exec and answers KO to
    /// those it is sent.
    #[arg(
        long,
        env = "CHEOPS_REDIS_BACKEND",
        value_name = "URL",
        hide_env_values = true
    )]
    redis_backend: Option<String>,

    /// Run no shell command: this site refuses shell operations at /exec,
    /// answers KO to those it is sent, and /show runs nothing here.
    #[arg(long, env = "CHEOPS_NO_SHELL")]
    no_shell: bool,

    /// How many resources may run operations at once, /show_local commands
    /// included (writing replies to CouchDB afterwards does not count).
    #[arg(long, env = "CHEOPS_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,

    /// Threads that run the daemon's own work (its listeners, the changes
    /// follower, the runner). One is enough: that work waits on CouchDB
    /// and on commands, which run in processes of their own, and a single
    /// thread spends no CPU handing tasks to another, CPU the sidecar
    /// and the application use better. Raise it for many clients over TLS.
    /// Writes to files run on threads of their own either way.
    #[arg(long, env = "CHEOPS_WORKER_THREADS", default_value_t = 1)]
    worker_threads: usize,

    /// Seconds between checks of the replications to peers (a deleted one
    /// is recreated; one crashing, in error or failed, too, after a wait
    /// that doubles; documents one could not write are sent again). Each
    /// check also reads the identity of the peer's database: a database
    /// created anew gets, within one check, a replication of its own and
    /// what its predecessor wrote.
    #[arg(long, env = "CHEOPS_REPLICATION_CHECK", default_value_t = 30)]
    replication_check: u64,

    /// Seconds between probes of each peer's CouchDB and API (liveness
    /// shown by Chephren; a peer back online has its replication restarted).
    #[arg(long, env = "CHEOPS_PEER_CHECK", default_value_t = 5)]
    peer_check: u64,

    /// Leave the database's members open, as the Go original sets its
    /// `_security`, so that a Go node sharing this database can query its
    /// views (it sends no credentials). Anyone who reaches CouchDB can then
    /// read and write the database. Off: admins only.
    #[arg(long, env = "CHEOPS_OPEN_MEMBERS")]
    open_members: bool,

    /// How log lines are written to standard error: text (coloured only
    /// on a terminal) or json (one object per line, for log shippers).
    #[arg(long, env = "CHEOPS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Directory of the node's own files: the journal of results, which
    /// keeps each operation's reply until CouchDB holds it, so that an
    /// operation that completed never runs again after a crash; and the
    /// changes feed, whose tokens stay valid across restarts. One per
    /// node; keep it across restarts. Relative paths start at the working
    /// directory.
    #[arg(long, env = "CHEOPS_DATA_DIR", default_value = "cheops-data")]
    data_dir: PathBuf,

    /// Largest reply stored, in bytes of JSON: a larger output is cut (the
    /// reply says so) to stay under CouchDB's max_document_size (8,000,000
    /// by default), which would refuse the reply on every attempt.
    #[arg(long, env = "CHEOPS_MAX_REPLY_BYTES", default_value_t = DEFAULT_MAX_REPLY_BYTES)]
    max_reply_bytes: usize,

    /// A JSON file of webhooks: the changes feed's events POSTed, signed
    /// (Standard Webhooks), to the URLs it names (README, "Hooks"). Read
    /// again on SIGHUP; a file that does not read is refused at start with
    /// the line at fault, and on SIGHUP leaves the hooks as they were.
    #[arg(long, env = "CHEOPS_HOOKS", value_name = "FILE")]
    hooks: Option<PathBuf>,

    /// Seconds each site standing by for an operation's completion waits,
    /// per turn, for the sites before it to deliver it to a hook.
    #[arg(long, env = "CHEOPS_HOOK_STANDBY", default_value_t = 30)]
    hook_standby: u64,

    /// Seconds any request to CouchDB may take. The changes feed is
    /// reopened (and /health answers 503) when it sends nothing, not even a
    /// heartbeat, for as long.
    #[arg(long, env = "CHEOPS_COUCHDB_TIMEOUT", default_value_t = 30)]
    couchdb_timeout: u64,

    /// A PEM file of CA certificates trusted, besides the built-in web PKI
    /// roots, for https:// CouchDB and peer URLs.
    #[arg(long, env = "CHEOPS_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,

    /// A PEM certificate chain: with --tls-key, every listener serves HTTPS
    /// instead of HTTP.
    #[arg(
        long,
        env = "CHEOPS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "CHEOPS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Seconds a client has to send a request's headers (and finish its TLS
    /// handshake), from connecting or from its previous response.
    #[arg(long, env = "CHEOPS_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,

    /// Seconds a request body may go without sending anything, and an
    /// answer may wait for the client to read it.
    #[arg(long, env = "CHEOPS_BODY_TIMEOUT", default_value_t = 30)]
    body_timeout: u64,

    /// Connections each listener serves at once; more wait, unaccepted,
    /// until one closes.
    #[arg(long, env = "CHEOPS_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
}

/// How the node guards its ports, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Tokens are required.
    Tokens,
    /// No token: loopback only.
    LoopbackOnly,
    /// No token, every address: `--insecure`.
    Insecure,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_addr: SocketAddr,
    /// The dump listener, when enabled.
    pub dump_addr: Option<SocketAddr>,
    pub chephren_addr: SocketAddr,
    /// This node's address as Chephren reports it, and its CORS origins.
    pub chephren: ChephrenConfig,
    pub node: NodeConfig,
    pub api: ApiConfig,
    pub log_format: LogFormat,
    /// Threads of the async runtime.
    pub worker_threads: usize,
    pub commands: CommandSettings,
    /// The listeners' certificate, when they serve HTTPS.
    pub tls: Option<Tls>,
    pub limits: Limits,
    /// The tokens every listener checks.
    pub tokens: Arc<Tokens>,
    pub exposure: Exposure,
    /// The hooks file, read again on SIGHUP.
    pub hooks_file: Option<PathBuf>,
}

/// How the daemon runs commands.
#[derive(Clone)]
pub struct CommandSettings {
    /// The variables of the daemon's environment commands see (values may
    /// be anything the operator passed on: never logged).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub output_limit: usize,
    /// Shell commands are run.
    pub shell: bool,
    /// The application's base URL, for HTTP operations.
    pub http: Option<String>,
    /// The Redis URL, for Redis operations (may hold a password: never
    /// shown).
    pub redis: Option<String>,
}

/// Names the variables passed to commands, never their values.
impl std::fmt::Debug for CommandSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandSettings")
            .field("env", &names)
            .field("timeout", &self.timeout)
            .field("output_limit", &self.output_limit)
            .field("shell", &self.shell)
            .field("http", &self.http)
            .field("redis", &self.redis.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Below this, a reply's fixed fields could leave no room for output.
const MIN_REPLY_BYTES: usize = 4096;

#[derive(Deserialize)]
struct PeerEntry {
    couchdb: String,
    api: String,
}

impl ServeArgs {
    pub fn validate(self) -> Result<Settings, String> {
        let site = self.site.trim().to_owned();
        if site.is_empty() {
            return Err("--site (or MYFQDN) must not be empty".into());
        }
        check_url(&self.couchdb_url, "--couchdb-url")?;
        if self.reply_timeout == 0 {
            return Err("--reply-timeout must be at least 1 second".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.worker_threads == 0 {
            return Err("--worker-threads must be at least 1".into());
        }
        if self.replication_check == 0 {
            return Err("--replication-check must be at least 1 second".into());
        }
        if self.peer_check == 0 {
            return Err("--peer-check must be at least 1 second".into());
        }
        if self.max_reply_bytes < MIN_REPLY_BYTES {
            return Err(format!(
                "--max-reply-bytes must be at least {MIN_REPLY_BYTES}"
            ));
        }
        if self.command_timeout == 0 {
            return Err("--command-timeout must be at least 1 second".into());
        }
        if self.command_output_limit == 0 {
            return Err("--command-output-limit must be at least 1 byte".into());
        }
        if self.max_document_size == 0 {
            return Err("--max-document-size must be at least 1 byte".into());
        }
        if let Some(url) = &self.http_backend {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("--http-backend {url:?} is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "--http-backend {url:?} is not an http:// or https:// URL"
                ));
            }
        }
        if let Some(url) = &self.redis_backend {
            let parsed = reqwest::Url::parse(url)
                .map_err(|_| "--redis-backend is not a URL (redis://host:6379)".to_owned())?;
            if !matches!(parsed.scheme(), "redis" | "rediss") {
                return Err("--redis-backend is not a redis:// or rediss:// URL".into());
            }
        }
        if self.hook_standby == 0 {
            return Err("--hook-standby must be at least 1 second".into());
        }
        let hooks = match &self.hooks {
            Some(path) => cheops_replicator::load_hooks(path).map_err(|e| format!("--{e}"))?,
            None => Vec::new(),
        };
        cheops_model::check_site_name(&site).map_err(|e| format!("--site (or MYFQDN): {e}"))?;
        let command_env = self
            .command_env
            .iter()
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
            .map(|name| check_env_name(name).map(|()| name.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        for (value, flag) in [
            (self.couchdb_timeout, "--couchdb-timeout"),
            (self.header_timeout, "--header-timeout"),
            (self.body_timeout, "--body-timeout"),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1 second"));
            }
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
            _ => None,
        };
        let extra_roots = match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
                ClientOptions::roots_from_pem(&pem)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
            }
            None => Vec::new(),
        };
        let client = ClientOptions {
            extra_roots,
            couch_timeout: Duration::from_secs(self.couchdb_timeout),
        };
        let peer_client = client
            .builder()
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };

        let tokens = Tokens::new(
            secret(
                &self.token_file,
                self.token.as_deref(),
                "--token-file",
                "CHEOPS_TOKEN",
            )?,
            secret(
                &self.read_token_file,
                self.read_token.as_deref(),
                "--read-token-file",
                "CHEOPS_READ_TOKEN",
            )?,
            secret(
                &self.node_token_file,
                self.node_token.as_deref(),
                "--node-token-file",
                "CHEOPS_NODE_TOKEN",
            )?,
        )?;
        let exposure = match (tokens.enabled(), self.insecure) {
            (true, true) => {
                return Err(
                    "--insecure (CHEOPS_INSECURE) turns authentication off, yet a token is given: drop one"
                        .into(),
                )
            }
            (true, false) => Exposure::Tokens,
            (false, true) => Exposure::Insecure,
            (false, false) => Exposure::LoopbackOnly,
        };
        let listen = match (self.listen, exposure) {
            (None, Exposure::LoopbackOnly) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (Some(ip), Exposure::LoopbackOnly) if !ip.is_loopback() => {
                return Err(format!(
                    "--listen {ip} would let anyone who reaches this machine run commands: give an operator token (--token-file or CHEOPS_TOKEN), or --insecure on a network nobody else reaches"
                ))
            }
            (Some(ip), _) => ip,
        };

        let cors_origins = self
            .chephren_cors_origins
            .iter()
            .filter(|origin| !origin.trim().is_empty())
            .map(|origin| parse_origin(origin).map_err(|e| format!("--chephren-cors-origin: {e}")))
            .collect::<Result<Vec<_>, _>>()?;

        let templates = match (self.couchdb_template, self.api_template) {
            (None, None) => None,
            (Some(couch), Some(api)) => {
                check_url(&couch, "--couchdb-template")?;
                check_url(&api, "--api-template")?;
                Some(Templates { couch, api })
            }
            _ => {
                return Err(
                    "--couchdb-template and --api-template go together: set both or neither".into(),
                )
            }
        };
        let mut sites = Sites::new(templates);
        if let Some(path) = &self.peers_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --peers-file {}: {e}", path.display()))?;
            let entries: BTreeMap<String, PeerEntry> = serde_json::from_str(&text)
                .map_err(|e| format!("--peers-file {}: {e}", path.display()))?;
            for (name, entry) in entries {
                check_peer_name(&name)?;
                sites.insert(name, peer_urls(entry.couchdb, entry.api)?);
            }
        }
        for peer in &self.peers {
            let (name, urls) = peer
                .split_once('=')
                .ok_or_else(|| format!("--peer {peer:?}: expected NAME=COUCHDB_URL,API_URL"))?;
            let (couch, api) = urls
                .split_once(',')
                .ok_or_else(|| format!("--peer {peer:?}: expected NAME=COUCHDB_URL,API_URL"))?;
            check_peer_name(name.trim())?;
            sites.insert(
                name.trim(),
                peer_urls(couch.trim().into(), api.trim().into())?,
            );
        }

        let tokens = Arc::new(match exposure {
            Exposure::Insecure => tokens.answering_any_host(),
            _ => tokens,
        });
        Ok(Settings {
            api_addr: SocketAddr::new(listen, self.api_port),
            dump_addr: self.dump_port.map(|port| SocketAddr::new(listen, port)),
            chephren_addr: SocketAddr::new(listen, self.chephren_port),
            // Listening everywhere, the node is known by its site name (as in
            // the original); else by the address it listens on.
            chephren: ChephrenConfig {
                address: if listen.is_unspecified() {
                    format!("{scheme}://{site}:{}", self.chephren_port)
                } else {
                    format!("{scheme}://{}", SocketAddr::new(listen, self.chephren_port))
                },
                cors_origins,
            },
            node: NodeConfig {
                site,
                couch_url: self.couchdb_url,
                sites,
                concurrency: self.concurrency,
                replication_check: Duration::from_secs(self.replication_check),
                peer_check: Duration::from_secs(self.peer_check),
                access: if self.open_members {
                    DatabaseAccess::OpenMembers
                } else {
                    DatabaseAccess::AdminsOnly
                },
                data_dir: self.data_dir,
                max_reply_bytes: self.max_reply_bytes,
                drain: super::OPERATIONS_DRAIN,
                max_document_size: self.max_document_size,
                client,
                hooks,
                hook_standby: Duration::from_secs(self.hook_standby),
            },
            commands: CommandSettings {
                env: cheops_backends::command_env(&command_env, std::env::vars_os()),
                timeout: Duration::from_secs(self.command_timeout),
                output_limit: self.command_output_limit,
                shell: !self.no_shell,
                http: self.http_backend,
                redis: self.redis_backend,
            },
            api: ApiConfig {
                reply_timeout: Duration::from_secs(self.reply_timeout),
                body_limit: self.body_limit,
                peer_client,
                peer_answer_limit: cheops_api::peer_answer_limit(self.command_output_limit),
                tokens: Arc::clone(&tokens),
                ..ApiConfig::default()
            },
            log_format: self.log_format,
            worker_threads: self.worker_threads,
            tls,
            limits: Limits {
                header_timeout: Duration::from_secs(self.header_timeout),
                body_timeout: Duration::from_secs(self.body_timeout),
                max_connections: self.max_connections,
            },
            tokens,
            exposure,
            hooks_file: self.hooks,
        })
    }
}

/// A peer's name is a site name: operations name it in their sites.
fn check_peer_name(name: &str) -> Result<(), String> {
    cheops_model::check_site_name(name).map_err(|e| format!("a peer's name: {e}"))
}

/// A variable name for --command-env: letters, digits and '_', with an
/// optional final '*'.
fn check_env_name(name: &str) -> Result<(), String> {
    let stem = name.strip_suffix('*').unwrap_or(name);
    if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "--command-env {name:?}: expected a variable name (letters, digits, '_'), or a prefix \
             ending with '*'"
        ));
    }
    if cheops_backends::may_hold_credential(stem, "") {
        return Err(format!(
            "--command-env {name:?}: commands never see CHEOPS_* variables, nor any whose name \
             says it holds a secret (TOKEN, SECRET, PASSWORD, AUTH, API_KEY…): give the command \
             a file to read instead"
        ));
    }
    Ok(())
}

/// A token from its file, else from its environment variable (empty is
/// none); errors name where it came from, never its value.
fn secret(
    file: &Option<PathBuf>,
    variable: Option<&str>,
    flag: &str,
    env: &str,
) -> Result<Option<Secret>, String> {
    // An empty variable is no token, as compose files leave optional ones.
    let variable = variable.filter(|v| !v.trim().is_empty());
    match (file, variable) {
        (Some(path), _) => read_secret(path)
            .map(Some)
            .map_err(|e| format!("{flag} {}: {e}", path.display())),
        (None, Some(value)) => Secret::new(value)
            .map(Some)
            .map_err(|e| format!("{env}: the token {e}")),
        (None, None) => Ok(None),
    }
}

fn read_secret(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    Secret::new(&text).map_err(|e| format!("the token {e}"))
}

fn peer_urls(couch: String, api: String) -> Result<SiteUrls, String> {
    check_url(&couch, "a peer's CouchDB URL")?;
    check_url(&api, "a peer's API URL")?;
    Ok(SiteUrls { couch, api })
}

fn check_url(url: &str, what: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        // Never echo the URL: it may hold credentials.
        Err(format!("{what} must start with http:// or https://"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn validate(extra: &[&str]) -> Result<Settings, String> {
        let argv = ["cheops", "--site", "site1"].iter().chain(extra);
        Serve::try_parse_from(argv)
            .expect("flags parse")
            .args
            .validate()
    }

    #[test]
    fn the_data_dir_and_the_reply_limit_reach_the_node() {
        let settings =
            validate(&["--data-dir", "/srv/cheops", "--max-reply-bytes", "100000"]).expect("valid");
        assert_eq!(settings.node.data_dir, PathBuf::from("/srv/cheops"));
        assert_eq!(settings.node.max_reply_bytes, 100_000);
        let defaults = validate(&[]).expect("valid");
        assert_eq!(defaults.node.data_dir, PathBuf::from("cheops-data"));
        assert_eq!(defaults.node.max_reply_bytes, DEFAULT_MAX_REPLY_BYTES);
    }

    #[test]
    fn a_reply_limit_too_small_for_any_output_is_refused() {
        let error = validate(&["--max-reply-bytes", "100"]).unwrap_err();
        assert!(error.contains("--max-reply-bytes"), "{error}");
    }

    #[test]
    fn one_worker_thread_unless_told_and_never_none() {
        assert_eq!(validate(&[]).expect("valid").worker_threads, 1);
        let settings = validate(&["--worker-threads", "4"]).expect("valid");
        assert_eq!(settings.worker_threads, 4);
        let error = validate(&["--worker-threads", "0"])
            .map(|_| ())
            .unwrap_err();
        assert!(error.contains("--worker-threads"), "{error}");
    }

    /// `--no-shell` leaves the node without a shell backend: shell
    /// operations are refused as any kind a site does not serve.
    #[test]
    fn shell_commands_are_served_unless_told_not_to() {
        let client = ClientOptions::default();
        let served = validate(&[]).expect("valid");
        assert!(super::super::backends(&served.commands, &client)
            .expect("backends")
            .shell
            .is_some());
        let none = validate(&["--no-shell"]).expect("valid");
        assert!(super::super::backends(&none.commands, &client)
            .expect("backends")
            .shell
            .is_none());
    }

    #[test]
    fn without_templates_only_peers_resolve() {
        let settings = validate(&[
            "--peer",
            "site2=http://a:p@10.0.0.2:5984/cheops,http://10.0.0.2:8079",
        ])
        .unwrap();
        let sites = &settings.node.sites;
        assert!(sites.urls("site2").is_some());
        assert_eq!(sites.urls("site3"), None);
    }

    #[test]
    fn templates_go_together() {
        let couch = "http://a:p@{site}:5984/cheops";
        let api = "http://{site}:8079";
        let settings = validate(&["--couchdb-template", couch, "--api-template", api]).unwrap();
        assert_eq!(
            settings.node.sites.api_url("site3").as_deref(),
            Some("http://site3:8079")
        );
        for args in [
            &["--couchdb-template", couch][..],
            &["--api-template", api][..],
            &[
                "--couchdb-template",
                "ftp://a:p@{site}/cheops",
                "--api-template",
                api,
            ][..],
        ] {
            let err = validate(args).map(|_| ()).expect_err("refused");
            assert!(err.contains("template"), "{args:?}: {err}");
            assert!(!err.contains("a:p"), "never echoes credentials: {err}");
        }
    }

    #[test]
    fn site_and_peer_names_follow_the_site_name_rule() {
        let site = Serve::try_parse_from(["cheops", "--site", "h:1"]).expect("flags parse");
        let err = site.args.validate().map(|_| ()).expect_err("refused");
        assert!(err.contains("--site"), "{err}");
        let err = validate(&["--peer", "h:1=http://h/cheops,http://h:8079"])
            .map(|_| ())
            .expect_err("refused");
        assert!(err.contains("peer"), "{err}");
    }

    #[test]
    fn command_settings_are_checked() {
        let settings = validate(&[
            "--command-env",
            "NODE_DIR,APP_*",
            "--command-timeout",
            "5",
            "--command-output-limit",
            "10",
        ])
        .unwrap();
        assert_eq!(settings.commands.timeout, Duration::from_secs(5));
        assert_eq!(settings.commands.output_limit, 10);
        for args in [
            &["--command-env", "A=B"][..],
            &["--command-env", "*"][..],
            &["--command-env", "CHEOPS_*"][..],
            &["--command-env", "GITHUB_TOKEN"][..],
            &["--command-env", "APP_PASSWORD*"][..],
            &["--command-timeout", "0"][..],
            &["--command-output-limit", "0"][..],
            &["--max-document-size", "0"][..],
        ] {
            assert!(validate(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn limits_and_timeouts_have_safe_defaults() {
        let settings = validate(&[]).expect("valid");
        assert_eq!(
            settings.limits,
            Limits {
                header_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(30),
                max_connections: 1024,
            }
        );
        assert_eq!(settings.node.client.couch_timeout, Duration::from_secs(30));
        assert!(settings.tls.is_none());
        assert!(settings.chephren.address.starts_with("http://"));
    }

    #[test]
    fn a_certificate_needs_its_key() {
        assert!(
            Serve::try_parse_from(["cheops", "--site", "site1", "--tls-cert", "cert.pem"]).is_err()
        );
        assert!(
            Serve::try_parse_from(["cheops", "--site", "site1", "--tls-key", "key.pem"]).is_err()
        );
    }

    #[test]
    fn bad_tls_files_and_zero_limits_are_refused() {
        let dir = std::env::temp_dir().join(format!("cheops-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not PEM").unwrap();
        let junk = junk.to_str().unwrap();
        let missing = dir.join("missing.pem");
        let missing = missing.to_str().unwrap();
        for (flags, expected) in [
            (vec!["--ca-file", junk], "--ca-file"),
            (vec!["--ca-file", missing], "cannot read --ca-file"),
            (vec!["--tls-cert", junk, "--tls-key", junk], "--tls-cert"),
            (vec!["--couchdb-timeout", "0"], "--couchdb-timeout"),
            (vec!["--header-timeout", "0"], "--header-timeout"),
            (vec!["--body-timeout", "0"], "--body-timeout"),
            (vec!["--max-connections", "0"], "--max-connections"),
        ] {
            let error = validate(&flags).unwrap_err();
            assert!(error.starts_with(expected), "{flags:?}: {error}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// `cheops serve` with `args`, and the token variables as given (the
    /// process environment is never read nor changed).
    fn parse(args: &[&str], token: Option<&str>, read_token: Option<&str>) -> ServeArgs {
        let mut all = vec!["serve", "--site", "site1"];
        all.extend_from_slice(args);
        let mut serve = Cli::try_parse_from(all).unwrap().serve;
        serve.token = token.map(str::to_owned);
        serve.read_token = read_token.map(str::to_owned);
        serve.node_token = None;
        serve
    }

    const TOKEN: Option<&str> = Some("operator-token-0123456789");

    #[test]
    fn without_a_token_the_node_listens_on_loopback_only() {
        let settings = parse(&[], None, None).validate().unwrap();
        assert_eq!(settings.exposure, Exposure::LoopbackOnly);
        assert!(settings.api_addr.ip().is_loopback());
        assert!(settings.chephren_addr.ip().is_loopback());
        assert!(!settings.tokens.enabled());

        let error = parse(&["--listen", "0.0.0.0"], None, None)
            .validate()
            .unwrap_err();
        assert!(
            error.contains("--insecure") && error.contains("--token-file"),
            "{error}"
        );
        assert!(parse(&["--listen", "::1"], None, None).validate().is_ok());
    }

    #[test]
    fn a_token_or_insecure_opens_every_interface() {
        let settings = parse(&[], TOKEN, None).validate().unwrap();
        assert_eq!(settings.exposure, Exposure::Tokens);
        assert!(settings.api_addr.ip().is_unspecified());
        assert!(settings.api.tokens.enabled());

        let settings = parse(&["--insecure"], None, None).validate().unwrap();
        assert_eq!(settings.exposure, Exposure::Insecure);
        assert!(settings.api_addr.ip().is_unspecified());
        assert!(parse(&["--insecure"], TOKEN, None).validate().is_err());
    }

    #[test]
    fn tokens_come_from_files_and_errors_never_quote_them() {
        let dir = std::env::temp_dir().join(format!("cheops-config-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "file-token-0123456789\n").unwrap();
        let path = file.to_str().unwrap();
        let settings = parse(&["--token-file", path], Some("env-token-0123456789"), None)
            .validate()
            .unwrap();
        assert_eq!(
            settings.tokens.operator().map(Secret::expose),
            Some("file-token-0123456789"),
            "the file wins over CHEOPS_TOKEN"
        );
        std::fs::write(&file, "too-short\n").unwrap();
        let error = parse(&["--token-file", path], None, None)
            .validate()
            .unwrap_err();
        assert!(
            error.contains("shorter") && !error.contains("too-short"),
            "{error}"
        );
        let error = parse(&[], None, Some("read-token-0123456789"))
            .validate()
            .unwrap_err();
        assert!(error.contains("operator token"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_dump_port_is_off_unless_given() {
        assert_eq!(parse(&[], TOKEN, None).validate().unwrap().dump_addr, None);
        let settings = parse(&["--dump-port", "7071"], TOKEN, None)
            .validate()
            .unwrap();
        assert_eq!(settings.dump_addr.map(|a| a.port()), Some(7071));
    }
}
