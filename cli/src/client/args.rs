//! The flags of `cheops exec`, `http`, `redis`, `show` and `history`, each
//! with the example `--help` shows.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
#[command(after_long_help = EXEC_EXAMPLES)]
pub struct ExecArgs {
    /// The resource's id.
    ///
    /// Letters, digits, '-', '.', '_' and '~', not starting with '_'.
    /// Example: --id deployment-id
    #[arg(long)]
    pub id: String,

    /// The resource's sites, separated by '&'; the request goes to the first.
    ///
    /// Spaces around names are ignored. The sites become the resource's
    /// locations when it is created, and must stay the same afterwards.
    /// Example: --sites 'site1&site2&site3'
    #[arg(long)]
    pub sites: String,

    /// The shell command every site runs; `{path}` uploads a local file or
    /// directory.
    ///
    /// A `{path}` names a file or directory on this machine (relative to the
    /// current directory, or absolute). It is uploaded with the operation and
    /// written into the command's temporary directory on each site, where
    /// `{path}` stands for its location: a file is uploaded under its base
    /// name (`name.1`, `name.2`… when names repeat), a directory file by
    /// file with its tree (empty directories are not kept). A `{…}` that
    /// is empty, holds whitespace or one of `$ , {`, or follows a `$` is
    /// shell syntax and left as written (`${HOME}`, `{a,b}`,
    /// `awk '{ print $1 }'`); any other that names nothing local is an
    /// error, and nothing is sent.
    /// Example: --command "kubectl apply -f {recipe.yml}"
    #[arg(long)]
    pub command: String,

    /// The operation's type, which the resource's resolution matrix matches.
    ///
    /// Example: --type create
    #[arg(long = "type", value_name = "TYPE")]
    pub op_type: String,

    /// A JSON file with the resource's config (its resolution matrix).
    ///
    /// Normally given when the resource is created; it is checked before
    /// sending. Example: --config config.json, with config.json holding
    /// {"ResolutionMatrix": [{"Before": "create", "After": "create",
    /// "Result": "take-one"}]}
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the node's answer as it comes: one JSON reply document per line.
    ///
    /// Example: --json | jq -r .Output
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub node: NodeArgs,
}

const EXEC_EXAMPLES: &str = "\
Each reply prints as it arrives: [i/N] STATUS REQUESTID SITE<TAB>OUTPUT
On a terminal, a line on standard error shows the sites still awaited.

Exit status: 0 every site answered OK, 1 some answered KO, 2 some did not
answer in time (and none KO), 3 the node refused the request or could not be
reached, 64 the command line is wrong (nothing was sent).

Examples:
  cheops exec --id deployment-id --sites 'site1&site2&site3' \\
    --command \"kubectl apply -f {recipe.yml}\" --config config.json --type create
  cheops exec --id web --sites 'site1&site2' --type set \\
    --command 'cp -r {./site} /srv/www' --node http://127.0.0.1:8079";

/// What every operation sent needs besides what it runs.
#[derive(Args, Debug)]
pub struct OperationArgs {
    /// The resource's id.
    ///
    /// Example: --id cart
    #[arg(long)]
    pub id: String,

    /// The resource's sites, separated by '&'; the request goes to the first.
    ///
    /// Example: --sites 'site1&site2&site3'
    #[arg(long)]
    pub sites: String,

    /// The operation's type, which the resource's resolution matrix matches.
    ///
    /// Example: --type add
    #[arg(long = "type", value_name = "TYPE")]
    pub op_type: String,

    /// A JSON file with the resource's config (its resolution matrix).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the node's answer as it comes: one JSON reply document per line.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug)]
#[command(after_long_help = HTTP_EXAMPLES)]
pub struct HttpArgs {
    #[command(flatten)]
    pub operation: OperationArgs,

    /// The request's method.
    pub method: String,

    /// The path below each site's application URL (--http-backend).
    pub path: String,

    /// What the request carries, as httpie writes it: `field=value` (a
    /// JSON string field), `field:=json` (a JSON value), `name==value` (a
    /// query parameter), `Header:value` (a header), `@file` (the body, a
    /// file's bytes).
    #[arg(allow_hyphen_values = true)]
    pub items: Vec<String>,
}

const HTTP_EXAMPLES: &str = "\
Each site sends the request to its own application (its --http-backend URL
followed by PATH); a 2xx answer is OK. Replies print as for exec, and the
exit status is exec's.

Examples:
  cheops http --id cart --sites 'site1&site2' --type add POST /api/cart/items sku=A-42 qty:=2
  cheops http --id site --sites 'site1&site2' --type set PUT /pages/home @home.html Content-Type:text/html";

#[derive(Args, Debug)]
#[command(after_long_help = REDIS_EXAMPLES)]
pub struct RedisArgs {
    #[command(flatten)]
    pub operation: OperationArgs,

    /// The Redis command's name.
    pub command: String,

    /// Its arguments.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

const REDIS_EXAMPLES: &str = "\
Each site sends the command to its own Redis (its --redis-backend); it is OK
unless Redis answers an error, and the reply holds the answer as redis-cli
shows it. Replies print as for exec, and the exit status is exec's.

Examples:
  cheops redis --id counter --sites 'site1&site2' --type inc INCRBY counter 2
  cheops redis --id list --sites 'site1&site2' --type set LSET my-list 23 new-val";

#[derive(Args, Debug)]
#[command(after_long_help = SHOW_EXAMPLES)]
pub struct ShowArgs {
    /// The resource's id.
    ///
    /// Example: --id deployment-id
    #[arg(long)]
    pub id: String,

    /// The read-only shell command every site runs; `__ID__` stands for
    /// the id.
    ///
    /// It is not stored, not replicated and takes no files.
    /// Example: --command 'kubectl get deployment __ID__'
    #[arg(long, required_unless_present = "kind", conflicts_with = "kind")]
    pub command: Option<String>,

    /// Show with an HTTP request or a Redis command instead: the words
    /// after the flags are then `METHOD PATH ITEMS…` (as `cheops http`
    /// takes them) or `CMD ARG…` (as `cheops redis`), `__ID__` standing
    /// for the id in the path, header values and arguments.
    ///
    /// Example: --kind redis LRANGE __ID__ 0 -1
    #[arg(long, value_enum, requires = "words")]
    pub kind: Option<ShowKind>,

    /// With --kind: the request, or the Redis command and its arguments.
    #[arg(
        allow_hyphen_values = true,
        requires = "kind",
        conflicts_with = "command",
        value_name = "WORDS"
    )]
    pub words: Vec<String>,

    /// The sites to ask, separated by '&' (default: the resource's locations).
    ///
    /// Without --from or --node, the request goes to the first of them.
    /// Example: --sites 'site1&site2'
    #[arg(long)]
    pub sites: Option<String>,

    /// The site whose API asks the others (default: the first of --sites).
    ///
    /// Example: --from site2
    #[arg(long, value_name = "SITE")]
    pub from: Option<String>,

    /// Print the node's answer as is: a JSON object, site → {"Status", "Output"}.
    ///
    /// Example: --json | jq -r .site1.Output
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub node: NodeArgs,
}

const SHOW_EXAMPLES: &str = "\
Each site prints as `SITE  STATUS`, then its output indented.

Exit status: 0 every site answered OK, 1 some answered KO (or could not be
reached by the node), 2 some did not answer in time (and none KO), 3 the node
refused the request or could not be reached, 64 the command line is wrong.

Examples:
  cheops show --id deployment-id --from site1 --command 'kubectl get deployment __ID__'
  cheops show --id cart --kind http GET /api/carts/__ID__ Accept:application/json
  cheops show --id counter --kind redis GET __ID__";

/// The kinds of command `cheops show` runs besides shell commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShowKind {
    Http,
    Redis,
}

#[derive(Args, Debug)]
#[command(after_long_help = HISTORY_EXAMPLES)]
pub struct HistoryArgs {
    /// The resource's id.
    ///
    /// Example: --id deployment-id
    #[arg(long)]
    pub id: String,

    /// The site whose API is asked (any site of the resource: each holds
    /// the whole history once replication has caught up).
    ///
    /// Example: --from site2
    #[arg(long, value_name = "SITE")]
    pub from: Option<String>,

    /// Print the node's answer as it comes: one JSON object per operation
    /// and line, with every site's replies.
    ///
    /// Example: --json | jq -r '.Replies[] | .Site + " " + .Status'
    #[arg(long)]
    pub json: bool,

    /// With --json, include the attached files' contents (base64), not only
    /// their names and sizes.
    #[arg(long, requires = "json")]
    pub files: bool,

    #[command(flatten)]
    pub node: NodeArgs,
}

const HISTORY_EXAMPLES: &str = "\
Every operation ever accepted for the resource, oldest first, one line each:
TIME  REQUESTID  TYPE  COMMAND  SITE=STATUS…
The command is cut to its first line (and 60 characters); a site that ran
the operation more than once shows `×N`; `(in block)` ends the line of an
operation still in the resource's current block. The read token is enough
(--token-file).

Exit status: 0 the whole history was printed, 3 the node refused the request,
could not be reached or broke off, 64 the command line is wrong.

Examples:
  cheops history --id deployment-id --from site1
  cheops history --id counter --node http://10.0.0.1:8079 --json | jq .";

#[derive(Args, Debug)]
#[command(after_long_help = WAIT_EXAMPLES)]
pub struct WaitArgs {
    /// The resource's id.
    ///
    /// Example: --id deployment-id
    #[arg(long)]
    pub id: String,

    /// The operation's request id, as `cheops exec` prints it on each
    /// reply line (32 hexadecimal characters).
    ///
    /// Example: --request 3f1c9a0e5b7d4c2a8e6f1b3d5a7c9e0f
    #[arg(long, value_name = "REQUESTID")]
    pub request: String,

    /// Seconds to wait at most for every site's reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,

    /// The site whose API is asked (any site of the resource).
    ///
    /// Example: --from site2
    #[arg(long, value_name = "SITE")]
    pub from: Option<String>,

    /// Print the node's events about the operation as they come, one JSON
    /// object per line.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub node: NodeArgs,
}

const WAIT_EXAMPLES: &str = "\
Waits until every site of the resource has replied to the operation, and
prints each reply as it arrives: [i/N] STATUS REQUESTID SITE<TAB>OUTPUT
(the output's first KiB). For an exec whose sites did not all answer in
time. The read token is enough (--token-file).

Exit status: 0 every site replied OK, 1 some site replied KO, 2 not every
site replied within --timeout, 3 the node refused the request, could not be
reached or broke off, or the operation was refused when it was sent (it
never runs), 64 the command line is wrong.

Example:
  cheops wait --id deployment-id --request 3f1c9a0e5b7d4c2a8e6f1b3d5a7c9e0f --from site1 --timeout 600";

#[derive(Args, Debug)]
#[command(after_long_help = WATCH_EXAMPLES)]
pub struct WatchArgs {
    /// The resource's id; every resource of the node when left out.
    ///
    /// Example: --id deployment-id
    #[arg(long)]
    pub id: Option<String>,

    /// Start after this token (an event's seq); from the oldest event the
    /// node keeps when left out.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,

    /// The site whose API is asked.
    ///
    /// Example: --from site2
    #[arg(long, value_name = "SITE")]
    pub from: Option<String>,

    /// Print events as the node sends them, one JSON object per line.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub node: NodeArgs,
}

const WATCH_EXAMPLES: &str = "\
Prints what happens to the resource as it happens, one line per event:
SEQ  TIME  TYPE  RESOURCE  REQUESTID  [SITE STATUS]
with TYPE one of operation, reply, operation-complete and
operation-refused. Runs until
interrupted; when the node goes away it reconnects from the last event
printed. The read token is enough (--token-file).

Exit status: 3 the node refused the request (a --since it no longer keeps
is refused), 64 the command line is wrong.

Examples:
  cheops watch --id deployment-id --from site1
  cheops watch --node http://10.0.0.1:8079 --json | jq -c 'select(.type == \"reply\")'";

/// Where a site's API is when nothing else says: `{site}` is its name.
pub const DEFAULT_API_TEMPLATE: &str = "http://{site}:8079";

/// Where the node to talk to is: the same notions as `cheops serve`'s peer
/// map, so that one peers file serves both.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The API of the node to send the request to, whatever the sites.
    ///
    /// Wins over --from, --sites, --peer and the template.
    /// Example: --node http://10.0.0.1:8079
    #[arg(long, env = "CHEOPS_NODE", value_name = "URL")]
    pub node: Option<String>,

    /// Where a site's API is (repeatable); the format of `cheops serve --peer`.
    ///
    /// The CouchDB URL may be left out; only the API URL is used.
    /// Example: --peer site1=http://10.0.0.1:8079
    #[arg(long = "peer", value_name = "NAME=[COUCHDB_URL,]API_URL")]
    pub peers: Vec<String>,

    /// A JSON file of sites, the format of `cheops serve --peers-file`.
    ///
    /// Only "api" is used here. Example: --peers-file peers.json, with
    /// peers.json holding {"site1": {"couchdb": "http://…/cheops", "api":
    /// "http://10.0.0.1:8079"}}
    #[arg(long, env = "CHEOPS_PEERS_FILE", value_name = "FILE")]
    pub peers_file: Option<PathBuf>,

    /// API URL of a site not given by --peer or --peers-file; {site} is its
    /// name.
    ///
    /// Example: --api-template 'https://{site}.example.org:8079'
    #[arg(
        long,
        env = "CHEOPS_API_TEMPLATE",
        default_value = DEFAULT_API_TEMPLATE,
        value_name = "URL"
    )]
    pub api_template: String,

    /// A PEM file of CA certificates trusted, besides the built-in web PKI
    /// roots, for an https:// node.
    ///
    /// Example: --ca-file /etc/cheops/ca.pem
    #[arg(long, env = "CHEOPS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// A file holding the node's operator token, sent as `Authorization:
    /// Bearer`; or CHEOPS_TOKEN holds the token itself (the file wins).
    ///
    /// Never on the command line, where other users of the machine could
    /// read it. Example: --token-file .cheops-local/token
    #[arg(long, env = "CHEOPS_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// CHEOPS_TOKEN: the operator token itself (environment only).
    #[arg(skip = std::env::var("CHEOPS_TOKEN").ok())]
    pub token: Option<String>,
}
