"""Schemathesis hooks for tests/tests/openapi.rs, which fuzzes a live node.

Safety first: the API runs shell commands, and schemathesis generates
arbitrary strings. Just before every request is sent, each value that the
node could run as a command is replaced by a harmless one; the rest of the
request stays as generated. The test runs the node with URL templates that
send anything addressed to another site to a closed port on 127.0.0.1, so
generated site names never make the node reach out either.

The module also adds the checks the built-in ones cannot do:
`exec_reply_lines_conform` validates the JSON Lines of `/exec` line by line
against the schema the node serves, `history_lines_conform` those of
`/history`, `changes_lines_conform` those of `/changes`, and
`every_operation_succeeds` fails the
run if some operation never answered 2xx (a run that only ever hit 400s
would prove little).

Environment: CHEOPS_FUZZ_SITE, the site name of the node under test;
CHEOPS_FUZZ_RESOURCE, a resource the test created on it.
"""

import ast
import json
import os
import threading
import zlib
from urllib.parse import unquote_plus

import jsonschema_rs
import schemathesis

# Some CPython versions (3.11.7 among them) keep ast.parse's recursion depth
# in state threads share: two threads parsing at once fail with
# "SystemError: AST constructor recursion depth mismatch". Hypothesis parses
# sources to describe lambdas, which schemathesis's workers may do at once;
# one parse at a time keeps a run from failing on it.
_AST_LOCK = threading.Lock()
_ast_parse = ast.parse


def _parse_alone(*args, **kwargs):
    with _AST_LOCK:
        return _ast_parse(*args, **kwargs)


ast.parse = _parse_alone

HARMLESS_COMMAND = "echo fuzz"
SITE = os.environ["CHEOPS_FUZZ_SITE"]
RESOURCE = os.environ["CHEOPS_FUZZ_RESOURCE"]
EXEC_PATH = "/exec/{id}"
HISTORY_PATH = "/history/{id}"
CHANGES_PATHS = ("/changes", "/changes/{id}")
# The longest a generated long poll or continuous feed may wait (ms).
CHANGES_WAIT = 200

# Built from the schema the node serves, once it is loaded.
REPLY_LINE = None
HISTORY_LINE = None
CHANGE_LINE = None


def _harmless(value):
    """`value` as a field that may be run: blank stays blank (it runs
    nothing, and exercises the node's handling of empty commands); anything
    else becomes HARMLESS_COMMAND. A list is a field given several times."""
    if isinstance(value, list):
        return [_harmless(item) for item in value]
    if isinstance(value, str) and all(c in " \t\r\n" for c in value):
        return value
    return HARMLESS_COMMAND


def _is_negative(case):
    """Whether schemathesis generated `case` to be refused."""
    meta = case.meta
    return meta is not None and meta.generation.mode.is_negative


def _may_name_command(field):
    """Whether the node could read `field` as the `command` field: any name
    that spells it, in any case and whatever escaping an encoder adds."""
    return "command" in unquote_plus(str(field)).lower()


def _bound_wait(case):
    """A long poll or a continuous feed waits CHANGES_WAIT at most: a
    continuous one without `timeout` would never end. A `timeout` that is
    not a number is left as generated (it may be the invalid part)."""
    query = case.query
    if not isinstance(query, dict) or query.get("feed") not in ("longpoll", "continuous"):
        return
    timeout = query.get("timeout")
    if timeout is None:
        query["timeout"] = CHANGES_WAIT
    elif isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > CHANGES_WAIT:
        query["timeout"] = CHANGES_WAIT


@schemathesis.hook
def before_call(context, case, kwargs):
    negative = _is_negative(case)
    if case.operation.path in CHANGES_PATHS:
        _bound_wait(case)
        if not negative:
            case._record_starting_state()
        return
    if case.operation.path == HISTORY_PATH:
        # Three in four valid ids (chosen by their content, as sites below)
        # become the resource the test created: a generated id almost never
        # names a resource, and only an existing one answers 200.
        params = case.path_parameters or {}
        id_ = params.get("id")
        if not negative and isinstance(id_, str) and zlib.crc32(id_.encode()) % 4 != 0:
            params["id"] = RESOURCE
            case._record_starting_state()
        return
    body = case.body
    if isinstance(body, dict):
        for field in list(body):
            if _may_name_command(field):
                body[field] = _harmless(body[field])
        # Three in four site lists of valid cases (chosen by their content,
        # so that a run stays reproducible from its seed) become this node
        # alone, the only site the fuzzed node knows: the node refuses any
        # site that is neither itself nor a configured peer, so a list that
        # kept its generated names would almost always be refused, and
        # schemathesis warns when an operation mostly rejects its data. The
        # fourth goes as generated, and must get the contract's answer (400
        # for a site the node does not know). A negative case keeps its
        # list: its invalid part may be that very list, and replacing it
        # would send a valid request schemathesis expects to be refused.
        sites = body.get("sites")
        if (
            not negative
            and isinstance(sites, str)
            and zlib.crc32(sites.encode()) % 4 != 0
        ):
            body["sites"] = SITE
        if not negative:
            # The edits above keep a valid case valid, but schemathesis
            # judges an edited body again, and judges every body with a
            # file in it invalid (4.32.5, `Case._validate_component`): a
            # valid request would become one it expects the node to refuse.
            # The case keeps the verdict it was generated with.
            case._record_starting_state()
    elif body is not None:
        # A body that is not a form (negative cases) is sent as raw bytes,
        # which a parser could still read as a `command` field.
        case.body = "fuzz"


@schemathesis.hook
def after_load_schema(context, schema):
    global REPLY_LINE
    components = schema.raw_schema["components"]
    REPLY_LINE = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/ReplyLine", "components": components},
        validate_formats=True,
    )
    global HISTORY_LINE
    HISTORY_LINE = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/HistoryLine", "components": components},
        validate_formats=True,
    )
    global CHANGE_LINE
    CHANGE_LINE = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/ChangeLine", "components": components},
        validate_formats=True,
    )


def _json_lines(text, validator, name):
    """The JSON lines of `text`, each checked against `validator`."""
    if not text.endswith("\n"):
        raise AssertionError(f"the answer does not end with a newline: {text!r}")
    lines = []
    for number, line in enumerate(text[:-1].split("\n"), 1):
        try:
            value = json.loads(line)
        except ValueError as error:
            raise AssertionError(f"line {number} is not JSON ({error}): {line!r}")
        problems = [str(e) for e in validator.iter_errors(value)]
        if problems:
            raise AssertionError(
                f"line {number} does not match {name}: {'; '.join(problems)}: {line!r}"
            )
        lines.append(value)
    return lines


@schemathesis.check
def history_lines_conform(ctx, response, case):
    """`/history` 200: one HistoryLine per line, each ending with a newline,
    oldest first. Its other answers are plain JSON."""
    if case.operation.path != HISTORY_PATH:
        return None
    if response.status_code != 200:
        return case.operation.validate_response(response, case=case)
    _json_lines(response.text, HISTORY_LINE, "HistoryLine")
    return True


@schemathesis.check
def changes_lines_conform(ctx, response, case):
    """`/changes` 200: one ChangeLine per line, the last a bookmark (or,
    for a continuous feed that fell behind, `gone`)."""
    if case.operation.path not in CHANGES_PATHS:
        return None
    if response.status_code != 200:
        return case.operation.validate_response(response, case=case)
    lines = _json_lines(response.text, CHANGE_LINE, "ChangeLine")
    if lines[-1]["type"] not in ("bookmark", "gone"):
        raise AssertionError(f"the answer does not end with a bookmark: {lines[-1]!r}")
    return True


@schemathesis.check
def exec_reply_lines_conform(ctx, response, case):
    """`/exec` 200: one ReplyLine per line, each ending with a newline, one
    per location of the resource. Its other answers are plain JSON, checked
    like every other operation's."""
    if case.operation.path != EXEC_PATH:
        return None
    if response.status_code != 200:
        return case.operation.validate_response(response, case=case)
    replies = _json_lines(response.text, REPLY_LINE, "ReplyLine")
    sites = sorted(reply["Site"] for reply in replies)
    locations = sorted(set(replies[0]["Locations"] or []))
    if sites != locations:
        raise AssertionError(
            f"one line per location expected: lines from {sites}, locations {locations}"
        )
    return True


@schemathesis.check
class every_operation_succeeds:
    """Fails the run if an operation tested never answered 2xx."""

    def __init__(self):
        self.tested = set()
        self.succeeded = set()

    def after_response(self, ctx, response, case):
        self.tested.add(case.operation.label)
        if 200 <= response.status_code < 300:
            self.succeeded.add(case.operation.label)

    def after_run(self, ctx):
        never = sorted(self.tested - self.succeeded)
        if never:
            raise AssertionError("never answered 2xx: " + ", ".join(never))
