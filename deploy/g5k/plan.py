"""What a Grid'5000 deployment of Cheops does, as plain data.

`plan()` returns the reservation to make and, for every node, the ordered
steps to apply there. `deploy.py` prints the plan (`--dry-run`) or hands the
same steps to enoslib, so a dry run shows exactly what a real run does.
Standard library only: a dry run needs no enoslib and no Grid'5000 access.

A step is one of:
  {"why": ..., "run": SHELL}                          a shell command, as root
  {"why": ..., "write": PATH, "content": TEXT,
   "mode": "0644", "owner": USER, "group": GROUP}     a file written whole
     (with "template" and "values" when the content is one of the
     repository's files with some settings changed: the description shows
     those rather than the whole file)
  {"why": ..., "upload": LOCAL_PATH, "to": PATH,
   "mode": "0755"}                                    a local file copied over
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT_TEMPLATE = REPO / "deploy/systemd/cheops.service"
ENV_TEMPLATE = REPO / "deploy/systemd/cheops.env"

# Apache CouchDB's Debian repository and its signing key.
COUCHDB_REPOSITORY = "https://apache.jfrog.io/artifactory/couchdb-deb/"
COUCHDB_KEY = "https://couchdb.apache.org/repo/keys.asc"
COUCHDB_KEYRING = "/usr/share/keyrings/couchdb-archive-keyring.gpg"
COUCHDB_PORT = 5984
COUCHDB_ADMIN = "admin"
# Read after the package's own files (local.d comes last, in name order).
COUCHDB_INI = "/opt/couchdb/etc/local.d/50-cheops.ini"
DEBCONF_ANSWERS = "/root/couchdb.debconf"

API_PORT = 8079
CHEOPS_BINARY = "/usr/local/bin/cheops"
CHEOPS_USER = "cheops"
UNIT_PATH = "/etc/systemd/system/cheops.service"
ENV_PATH = "/etc/cheops/cheops.env"
PEERS_PATH = "/etc/cheops/peers.json"
# The daemon's tokens (README, Security), one file each, the same on every
# site: the operator's (exec, show), the read-only one (Chephren, dump) and
# the one sites send each other (/show_local).
TOKEN_PATHS = {
    "CHEOPS_TOKEN_FILE": "/etc/cheops/token",
    "CHEOPS_READ_TOKEN_FILE": "/etc/cheops/read-token",
    "CHEOPS_NODE_TOKEN_FILE": "/etc/cheops/node-token",
}

MASK = "********"


@dataclass(frozen=True)
class Settings:
    """What the user chose (see deploy.py's options)."""

    g5k_site: str
    cluster: str
    nodes: int
    walltime: str
    job_name: str
    binary: str
    couchdb_password: str
    # The Erlang cookie the Debian package requires even for a single node.
    couchdb_cookie: str
    couchdb_secret: str
    # The daemons' operator, read-only and node tokens.
    token: str
    read_token: str
    node_token: str


@dataclass(frozen=True)
class Node:
    """One reserved machine and the Cheops site it runs."""

    site: str
    host: str

    def couchdb_url(self, settings):
        """This site's database as every site reaches it, credentials included."""
        return (
            f"http://{COUCHDB_ADMIN}:{settings.couchdb_password}@{self.host}:{COUCHDB_PORT}/cheops"
        )

    def api_url(self):
        return f"http://{self.host}:{API_PORT}"


def name_sites(hosts):
    """Sites `site1`…`siteN`, in the order of the host names, so that the
    same reservation always gives the same names."""
    return [Node(site=f"site{i}", host=host) for i, host in enumerate(sorted(hosts), 1)]


def placeholder_hosts(settings):
    """Host names shaped as Grid'5000 names its nodes, for a dry run (the
    reservation decides the real ones)."""
    return [
        f"{settings.cluster}-{i}.{settings.g5k_site}.grid5000.fr"
        for i in range(1, settings.nodes + 1)
    ]


def reservation(settings):
    """The Grid'5000 job: nodes of one cluster on the site's production
    network, in the standard environment (enoslib gives root access through
    sudo-g5k)."""
    return {
        "job_name": settings.job_name,
        "site": settings.g5k_site,
        "cluster": settings.cluster,
        "nodes": settings.nodes,
        "walltime": settings.walltime,
        "job_type": [],
        "network": "prod",
        "roles": ["cheops"],
    }


def plan(settings, nodes):
    """Everything a deployment does: the reservation, the steps every node
    runs (in parallel), then each node's own steps."""
    return {
        "reservation": reservation(settings),
        "every_node": couchdb_steps(settings) + cheops_steps(settings),
        "each_node": [
            {"site": node.site, "host": node.host, "steps": site_steps(settings, node, nodes)}
            for node in nodes
        ],
        "inventory": inventory(settings, nodes),
    }


def couchdb_steps(settings):
    """Apache CouchDB 3 from its Debian repository, as a single node
    listening on all interfaces, with an admin account (CouchDB 3 refuses
    to start without one)."""
    answers = "".join(
        f"couchdb couchdb/{key} {kind} {value}\ncouchdb couchdb/{key} seen true\n"
        for key, kind, value in [
            ("mode", "select", "standalone"),
            ("bindaddress", "string", "0.0.0.0"),
            ("cookie", "string", settings.couchdb_cookie),
            ("adminpass", "password", settings.couchdb_password),
            ("adminpass_again", "password", settings.couchdb_password),
        ]
    )
    ini = (
        "; Written by deploy/g5k: one CouchDB per Cheops site, reached by the\n"
        "; other sites for replication, hence every interface.\n"
        "[couchdb]\n"
        "; A single node creates its system databases (_users, _replicator) itself.\n"
        "single_node = true\n"
        "; As the daemon's --max-document-size: a resource it accepts is stored.\n"
        "max_document_size = 8000000\n"
        "\n"
        "[cluster]\n"
        "; One node: one copy of each shard (CouchDB warns of n=3 otherwise).\n"
        "n = 1\n"
        "\n"
        "[replicator]\n"
        "; Without nodelay each replication request waits ~40 ms (Nagle).\n"
        "socket_options = [{keepalive, true}, {nodelay, true}]\n"
        "\n"
        "[chttpd_auth]\n"
        "; Set before the first start: replication jobs logging in at once would\n"
        "; each make one, and the first would be refused (401) for minutes.\n"
        f"secret = {settings.couchdb_secret}\n"
        "\n"
        "[chttpd]\n"
        "bind_address = 0.0.0.0\n"
        f"port = {COUCHDB_PORT}\n"
        "\n"
        "[admins]\n"
        "; CouchDB replaces the password by its hash when it starts.\n"
        f"{COUCHDB_ADMIN} = {settings.couchdb_password}\n"
    )
    up = f"http://127.0.0.1:{COUCHDB_PORT}"
    return [
        {
            "why": "install what adding CouchDB's repository needs",
            "run": "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            "curl gnupg ca-certificates apt-transport-https",
        },
        {
            "why": "trust the key CouchDB's packages are signed with",
            "run": f"curl -fsSL {COUCHDB_KEY} | gpg --dearmor --yes -o {COUCHDB_KEYRING}",
        },
        {
            "why": "add Apache CouchDB's Debian repository for this Debian release",
            "run": ". /etc/os-release && echo "
            f'"deb [signed-by={COUCHDB_KEYRING}] {COUCHDB_REPOSITORY} $VERSION_CODENAME main" '
            "> /etc/apt/sources.list.d/couchdb.list",
        },
        {
            "why": "answer the package's questions: a standalone node on all "
            "interfaces, its Erlang cookie, the admin's password",
            "write": DEBCONF_ANSWERS,
            "content": answers,
            "mode": "0600",
            "owner": "root",
            "group": "root",
        },
        {
            "why": "install CouchDB 3 with those answers",
            "run": f"debconf-set-selections {DEBCONF_ANSWERS} && rm -f {DEBCONF_ANSWERS} && "
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y couchdb",
        },
        {
            "why": "make it a single node on all interfaces with the admin account, "
            "whatever an earlier install left",
            "write": COUCHDB_INI,
            "content": ini,
            "mode": "0640",
            "owner": "couchdb",
            "group": "couchdb",
        },
        {
            "why": "start CouchDB now and at every boot",
            "run": "systemctl enable couchdb && systemctl restart couchdb",
        },
        {
            "why": "wait until CouchDB answers",
            "run": wait_for(f"{up}/_up", "CouchDB"),
        },
        {
            "why": "check that the admin account works and the node is single",
            "run": f"curl -fsS -u {COUCHDB_ADMIN}:{settings.couchdb_password} "
            f"{up}/_node/_local/_config/couchdb/single_node | grep -q true",
        },
    ]


def cheops_steps(settings):
    """The `cheops` binary, its user and its systemd unit."""
    return [
        {
            "why": "create the user the daemon (and the commands it runs) runs as",
            "run": f"id -u {CHEOPS_USER} >/dev/null 2>&1 || useradd --system "
            f"--home-dir /var/lib/cheops --shell /usr/sbin/nologin {CHEOPS_USER}",
        },
        {
            "why": "install the cheops binary",
            "upload": settings.binary,
            "to": CHEOPS_BINARY,
            "mode": "0755",
        },
        {
            "why": "install the daemon's systemd unit (deploy/systemd/cheops.service)",
            "write": UNIT_PATH,
            "content": UNIT_TEMPLATE.read_text(),
            "template": str(UNIT_TEMPLATE.relative_to(REPO)),
            "values": {},
            "mode": "0644",
            "owner": "root",
            "group": "root",
        },
        {
            "why": "create the settings' folder, readable by the daemon only",
            "run": f"install -d -m 0750 -o root -g {CHEOPS_USER} /etc/cheops",
        },
    ] + [
        {
            "why": f"give the daemon its {what} token",
            "write": TOKEN_PATHS[variable],
            "content": value + "\n",
            "mode": "0640",
            "owner": "root",
            "group": CHEOPS_USER,
        }
        for variable, what, value in [
            ("CHEOPS_TOKEN_FILE", "operator", settings.token),
            ("CHEOPS_READ_TOKEN_FILE", "read-only", settings.read_token),
            ("CHEOPS_NODE_TOKEN_FILE", "node", settings.node_token),
        ]
    ]


def site_steps(settings, node, nodes):
    """This node's site name and peers, then the daemon started."""
    peers = {
        other.site: {"couchdb": other.couchdb_url(settings), "api": other.api_url()}
        for other in nodes
        if other.site != node.site
    }
    values = {
        "MYFQDN": node.site,
        "CHEOPS_COUCHDB_URL": (
            f"http://{COUCHDB_ADMIN}:{settings.couchdb_password}@127.0.0.1:{COUCHDB_PORT}/cheops"
        ),
        "CHEOPS_PEERS_FILE": PEERS_PATH,
        **TOKEN_PATHS,
    }
    return [
        {
            "why": f"configure site {node.site}: its name, its CouchDB and its tokens",
            "write": ENV_PATH,
            "content": render_env(ENV_TEMPLATE.read_text(), values),
            "template": str(ENV_TEMPLATE.relative_to(REPO)),
            "values": values,
            "mode": "0640",
            "owner": "root",
            "group": CHEOPS_USER,
        },
        {
            "why": f"tell {node.site} where its peers' CouchDB and API are",
            "write": PEERS_PATH,
            "content": json.dumps(peers, indent=2, sort_keys=True) + "\n",
            "mode": "0640",
            "owner": "root",
            "group": CHEOPS_USER,
        },
        {
            "why": "start the daemon now and at every boot",
            "run": "systemctl daemon-reload && systemctl enable cheops && systemctl restart cheops",
        },
        {
            "why": "wait until the daemon is healthy (CouchDB reached, changes followed)",
            "run": wait_for(f"http://127.0.0.1:{API_PORT}/health", "the Cheops daemon"),
        },
    ]


def inventory(settings, nodes):
    """Every site's URLs and tokens, for scenarios.py and for you. The same
    shape as a daemon's peers file, plus each site's host and tokens."""
    return {
        node.site: {
            "host": node.host,
            "couchdb": node.couchdb_url(settings),
            "api": node.api_url(),
            "token": settings.token,
            "read_token": settings.read_token,
        }
        for node in nodes
    }


def wait_for(url, what, seconds=120):
    """A command that waits for `url` to answer 2xx, failing after `seconds`."""
    return (
        f"for i in $(seq {seconds}); do curl -fsS -o /dev/null {url} && exit 0; sleep 1; done; "
        f"echo '{what} did not answer on {url} within {seconds} s' >&2; exit 1"
    )


def render_env(template, values):
    """The settings template with `values` set: each `KEY=` line, commented
    out or not, becomes `KEY=value`; the documentation around it stays."""
    text = template
    for key, value in values.items():
        line = re.compile(rf"^#?{re.escape(key)}=.*$", re.MULTILINE)
        if not line.search(text):
            raise ValueError(f"{key} is not in the settings template")
        text = line.sub(lambda _: f"{key}={value}", text, count=1)
    return text


def describe(the_plan, secrets):
    """The plan as text, every secret masked."""
    lines = []
    r = the_plan["reservation"]
    lines.append("== reserve (Grid'5000 API, through enoslib)")
    lines.append(
        f"job {r['job_name']!r} on {r['site']}: {r['nodes']} nodes of cluster {r['cluster']}, "
        f"walltime {r['walltime']}, job types {r['job_type']}, network {r['network']}, "
        f"role {r['roles'][0]}"
    )
    lines.append("")
    lines.append(f"== on every node ({len(the_plan['each_node'])}, in parallel)")
    lines.extend(describe_steps(the_plan["every_node"]))
    for node in the_plan["each_node"]:
        lines.append("")
        lines.append(f"== on {node['host']}: site {node['site']}")
        lines.extend(describe_steps(node["steps"]))
    lines.append("")
    lines.append("== then write the inventory (sites, hosts, URLs), for scenarios.py")
    lines.append(json.dumps(the_plan["inventory"], indent=2, sort_keys=True))
    text = "\n".join(lines) + "\n"
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def describe_steps(steps):
    for number, step in enumerate(steps, 1):
        yield f"[{number}] {step['why']}"
        if "run" in step:
            yield f"    $ {step['run']}"
        elif "write" in step:
            yield (
                f"    write {step['write']} (mode {step['mode']}, "
                f"owner {step['owner']}:{step['group']}):"
            )
            if "template" in step:
                changed = ", with:" if step["values"] else " as it is"
                yield f"    | {step['template']}{changed}"
                for key, value in step["values"].items():
                    yield f"    |   {key}={value}"
            else:
                for line in step["content"].splitlines():
                    yield f"    | {line}"
        else:
            yield f"    copy {step['upload']} to {step['to']} (mode {step['mode']})"
