#!/usr/bin/env python3
"""Deploy Cheops on Grid'5000: reserve N nodes, install Apache CouchDB 3 and
the `cheops` daemon on each, give each node a site name and its peers, start
everything, and write an inventory of the sites for scenarios.py.

Run it from a Grid'5000 frontend, with enoslib installed
(`pip install --user -r deploy/g5k/requirements.txt`):

    python3 deploy/g5k/deploy.py --g5k-site rennes --cluster paravance \\
        --nodes 3 --binary target/release/cheops

`--dry-run` prints every action (reservation, commands, files and their
content) and touches nothing: it needs neither enoslib nor Grid'5000.
`--release` gives the reservation back.
"""

import argparse
import json
import os
import re
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan  # noqa: E402  (the path above makes the sibling module importable)

# What a password or cookie may hold: it goes into URLs, shell commands and
# ini files unquoted.
SAFE_SECRET = re.compile(r"^[A-Za-z0-9._~-]{8,}$")


def main(argv=None):
    args = parse_args(argv)
    settings = plan.Settings(
        g5k_site=args.g5k_site,
        cluster=args.cluster,
        nodes=args.nodes,
        walltime=args.walltime,
        job_name=args.job_name,
        # Absolute: ansible reads a relative one from elsewhere.
        binary=os.path.abspath(args.binary),
        couchdb_password=args.couchdb_password or secrets.token_urlsafe(18),
        couchdb_cookie=secrets.token_urlsafe(18),
        couchdb_secret=secrets.token_urlsafe(24),
        token=secrets.token_urlsafe(32),
        read_token=secrets.token_urlsafe(32),
        node_token=secrets.token_urlsafe(32),
    )
    secrets_to_mask = [
        settings.couchdb_password,
        settings.couchdb_cookie,
        settings.couchdb_secret,
        settings.token,
        settings.read_token,
        settings.node_token,
    ]
    if args.dry_run:
        nodes = plan.name_sites(plan.placeholder_hosts(settings))
        print("# dry run: nothing is reserved, installed or written; host names are")
        print("# placeholders (the reservation decides), secrets are masked.")
        print(plan.describe(plan.plan(settings, nodes), secrets_to_mask), end="")
        return 0

    en = import_enoslib()
    provider = g5k_provider(en, settings)
    if args.release:
        provider.destroy()
        print(f"released job {settings.job_name!r} on {settings.g5k_site}")
        return 0
    if not Path(settings.binary).is_file():
        sys.exit(
            f"{settings.binary} is not a file: build it first (cargo build --release) "
            "or give --binary"
        )
    roles, _networks = provider.init()
    hosts = {host.address: host for host in roles["cheops"]}
    nodes = plan.name_sites(hosts)
    the_plan = plan.plan(settings, nodes)
    print(plan.describe(the_plan, secrets_to_mask), end="", flush=True)
    apply(en, list(hosts.values()), the_plan["every_node"])
    for node in the_plan["each_node"]:
        apply(en, [hosts[node["host"]]], node["steps"])
    write_inventory(Path(args.inventory), the_plan["inventory"])
    print(f"\nall {len(nodes)} sites are up; inventory in {args.inventory}")
    print(f"next: python3 deploy/g5k/scenarios.py --inventory {args.inventory}")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--g5k-site", default="rennes", help="the Grid'5000 site to reserve on (%(default)s)")
    parser.add_argument("--cluster", default="paravance", help="a cluster of that site (%(default)s)")
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes, one site each (%(default)s)")
    parser.add_argument("--walltime", default="02:00:00", help="how long the reservation lasts (%(default)s)")
    parser.add_argument(
        "--job-name",
        default="cheops",
        help="the reservation's name: a second run with the same name reuses it (%(default)s)",
    )
    parser.add_argument(
        "--binary",
        default="target/release/cheops",
        help="the cheops binary to install, built for the nodes' Debian (%(default)s)",
    )
    parser.add_argument(
        "--couchdb-password",
        default=os.environ.get("CHEOPS_G5K_COUCHDB_PASSWORD"),
        help="the CouchDB admin's password on every node, at least 8 of A-Za-z0-9._~- "
        "(default: $CHEOPS_G5K_COUCHDB_PASSWORD, else a random one, written to the inventory)",
    )
    parser.add_argument(
        "--inventory",
        default="cheops-g5k.json",
        help="where to write the sites' hosts, URLs and tokens, credentials included (%(default)s)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="print every action without reserving or touching anything",
    )
    mode.add_argument("--release", action="store_true", help="give the reservation back")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.couchdb_password is not None and not SAFE_SECRET.match(args.couchdb_password):
        parser.error("--couchdb-password must be at least 8 of A-Za-z0-9._~-")
    return args


def import_enoslib():
    """enoslib, imported only for a real run: a dry run must work without it."""
    try:
        import enoslib
    except ImportError as error:
        sys.exit(
            f"cannot import enoslib ({error}): pip install --user -r deploy/g5k/requirements.txt "
            "(or use --dry-run to see what a deployment does)"
        )
    enoslib.init_logging()
    return enoslib


def g5k_provider(en, settings):
    r = plan.reservation(settings)
    network = en.G5kNetworkConf(type=r["network"], roles=["network"], site=r["site"])
    conf = (
        en.G5kConf.from_settings(
            job_name=r["job_name"], walltime=r["walltime"], job_type=r["job_type"]
        )
        .add_network_conf(network)
        .add_machine(
            roles=r["roles"], cluster=r["cluster"], nodes=r["nodes"], primary_network=network
        )
        .finalize()
    )
    return en.G5k(conf)


def apply(en, hosts, steps):
    """Runs `steps` on `hosts` (in parallel), in order; stops at the first failure."""
    with en.actions(roles=hosts) as p:
        for step in steps:
            if "run" in step:
                p.shell(step["run"], task_name=step["why"])
            elif "write" in step:
                p.copy(
                    dest=step["write"],
                    content=step["content"],
                    mode=step["mode"],
                    owner=step["owner"],
                    group=step["group"],
                    task_name=step["why"],
                )
            else:
                p.copy(src=step["upload"], dest=step["to"], mode=step["mode"], task_name=step["why"])


def write_inventory(path, inventory):
    """The inventory holds credentials: readable by its owner only."""
    path.write_text(json.dumps(inventory, indent=2, sort_keys=True) + "\n")
    path.chmod(0o600)


if __name__ == "__main__":
    sys.exit(main())
