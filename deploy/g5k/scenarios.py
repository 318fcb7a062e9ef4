#!/usr/bin/env python3
"""Scenario checks against deployed Cheops sites, over HTTP: each site's API
and each site's CouchDB, as an inventory written by deploy.py lists them
(`{"site1": {"api": URL, "couchdb": URL with credentials, "token": the
operator token}, ...}`; a site without a token is called without one).

    python3 deploy/g5k/scenarios.py --inventory cheops-g5k.json

Scenarios (every resource gets a fresh id, so they can run again):
  health       every site's /health answers 200
  exec         one operation on every site: one OK reply per site
  show         /show runs a command on every site of the resource
  concurrent   operations sent to every site at once on one resource
  convergence  after exec and concurrent, every site holds the same revision
               of each resource document, without conflicts, the same
               replies, and a reply from every site to every operation of
               its block

The commands run are `echo`s. Exit status 0 when every scenario passed.
Standard library only.
"""

import argparse
import base64
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit, urlunsplit
from urllib.request import Request, urlopen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", default="cheops-g5k.json", help="the sites' URLs")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="seconds to wait for a condition (replication, convergence)",
    )
    args = parser.parse_args(argv)
    with open(args.inventory) as file:
        sites = json.load(file)
    if not sites:
        sys.exit(f"{args.inventory} lists no site")
    run = Run(sites, args.timeout)
    passed = failed = 0
    for name, scenario in SCENARIOS:
        started = time.monotonic()
        try:
            detail = scenario(run)
        except Failure as failure:
            failed += 1
            print(f"FAIL {name}: {failure}", flush=True)
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - started:.1f} s): {detail}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


class Failure(Exception):
    """A scenario's expectation that did not hold."""


class Run:
    """The sites under test and what the scenarios leave for the later ones."""

    def __init__(self, sites, timeout):
        self.sites = sites
        self.names = sorted(sites)
        self.timeout = timeout
        self.token = uuid.uuid4().hex[:8]
        # Resources whose convergence the last scenario checks.
        self.resources = []

    def resource(self, what):
        resource = f"scenario-{what}-{self.token}"
        self.resources.append(resource)
        return resource

    def exec(self, site, resource, command, op_type):
        """POST /exec through `site`: the reply lines."""
        status, body = http(
            "POST",
            f"{self.sites[site]['api']}/exec/{resource}",
            form=[
                ("sites", "&".join(self.names)),
                ("command", command),
                ("type", op_type),
            ],
            token=self.sites[site].get("token"),
        )
        if status != 200:
            raise Failure(f"/exec through {site} answered {status}: {body.decode(errors='replace')}")
        return [json.loads(line) for line in body.decode().splitlines() if line]

    def couch(self, site, path):
        """A JSON document of `site`'s database."""
        status, body = http("GET", f"{self.sites[site]['couchdb']}/{path}")
        if status != 200:
            raise Failure(f"{site}'s CouchDB answered {status} to {path}: {body[:200]!r}")
        return json.loads(body)

    def eventually(self, what, check):
        """Polls `check` (returning None while not yet) until it returns a
        value, failing with its last complaint after the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                value = check()
                if value is not None:
                    return value
                reason = "not yet"
            except Failure as failure:
                reason = str(failure)
            if time.monotonic() > deadline:
                raise Failure(f"{what} not within {self.timeout:.0f} s: {reason}")
            time.sleep(0.5)


def health(run):
    for site in run.names:
        status, body = http("GET", f"{run.sites[site]['api']}/health")
        if status != 200:
            raise Failure(f"{site} is not healthy ({status}): {body.decode(errors='replace')}")
    return f"{len(run.names)} sites healthy"


def exec_on_all_sites(run):
    resource = run.resource("exec")
    replies = run.exec(run.names[0], resource, "echo hello from $(hostname)", "set")
    check_replies(replies, run.names, "OK")
    return f"{len(replies)} replies OK through {run.names[0]}"


def show(run):
    resource = run.resources[0]
    via = run.sites[run.names[-1]]
    status, body = http(
        "POST",
        f"{via['api']}/show/{resource}",
        form=[("command", "echo __ID__")],
        token=via.get("token"),
    )
    if status != 200:
        raise Failure(f"/show answered {status}: {body.decode(errors='replace')}")
    answers = json.loads(body)
    if sorted(answers) != run.names:
        raise Failure(f"/show answered for {sorted(answers)}, not {run.names}")
    for site, answer in answers.items():
        if answer != {"Status": "OK", "Output": f"{resource}\n"}:
            raise Failure(f"{site} answered {answer}")
    return f"{len(answers)} sites ran it"


def concurrent(run):
    """One operation through every site at once: each site must reply to
    every one of them (in whichever order the sites agree on)."""
    resource = run.resource("concurrent")
    run.exec(run.names[0], resource, "echo start", "set")

    def send(site):
        return run.exec(site, resource, f"echo from {site}", "add")

    with ThreadPoolExecutor(len(run.names)) as pool:
        answers = list(pool.map(send, run.names))
    for site, replies in zip(run.names, answers):
        check_replies(replies, run.names, "OK")
    return f"{len(answers)} operations, each replied OK by {len(run.names)} sites"


def convergence(run):
    for resource in run.resources:
        run.eventually(f"{resource} to converge", lambda: converged(run, resource))
    return f"{len(run.resources)} resources identical on {len(run.names)} sites"


def converged(run, resource):
    """The resource document, when every site holds the same revision of it
    without conflicts, the same replies, and one from every site to every
    operation of its block; None while not."""
    docs = {site: run.couch(site, f"{resource}?conflicts=true") for site in run.names}
    revs = {site: doc["_rev"] for site, doc in docs.items()}
    if len(set(revs.values())) != 1:
        raise Failure(f"revisions differ: {revs}")
    for site, doc in docs.items():
        if doc.get("_conflicts"):
            raise Failure(f"{site} has conflicts {doc['_conflicts']}")
    replies = {site: replies_of(run, site, resource) for site in run.names}
    first = replies[run.names[0]]
    for site, theirs in replies.items():
        if theirs != first:
            raise Failure(f"{site} holds other replies than {run.names[0]}")
    replied = {(reply["RequestId"], reply["Site"]) for reply in first.values()}
    for operation in docs[run.names[0]]["Operations"] or []:
        for site in run.names:
            if (operation["RequestId"], site) not in replied:
                raise Failure(f"no reply from {site} to {operation['RequestId']} yet")
    return docs[run.names[0]]


def replies_of(run, site, resource):
    """The replies stored on `site` for `resource`, by document id and revision."""
    rows = run.couch(site, "_all_docs?include_docs=true")["rows"]
    return {
        (row["id"], row["doc"]["_rev"]): row["doc"]
        for row in rows
        if row.get("doc", {}).get("Type") == "REPLY" and row["doc"].get("ResourceId") == resource
    }


def check_replies(replies, sites, status):
    """One reply per site, each with `status`."""
    by_site = sorted(reply["Site"] for reply in replies)
    if by_site != sorted(sites):
        raise Failure(f"replies from {by_site}, expected one from each of {sorted(sites)}")
    for reply in replies:
        if reply["Status"] != status:
            raise Failure(f"{reply['Site']} replied {reply['Status']}: {reply['Output']!r}")


def http(method, url, form=None, token=None):
    """(status, body) of a request; credentials in the URL become basic
    authentication (CouchDB), a token a bearer one (a Cheops API); a form is
    sent as multipart/form-data, as the CLI does."""
    parts = urlsplit(url)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if parts.username is not None:
        credentials = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    data = None
    if form is not None:
        boundary = uuid.uuid4().hex
        data = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{quote(name)}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
            for name, value in form
        ) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    request = Request(url, data=data, headers=headers, method=method)
    try:
        with urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except HTTPError as error:
        return error.code, error.read()
    except URLError as error:
        raise Failure(f"{method} {url}: {error.reason}")


SCENARIOS = [
    ("health", health),
    ("exec", exec_on_all_sites),
    ("show", show),
    ("concurrent", concurrent),
    ("convergence", convergence),
]

if __name__ == "__main__":
    sys.exit(main())
