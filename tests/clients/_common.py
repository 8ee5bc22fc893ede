"""Shared bits of the Python client scripts: arguments, x-sim-* headers, JSON output.

Every script prints ONE JSON document on stdout and nothing else; diagnostics go to stderr.
"""

import argparse
import json
import sys

# Small simulated times so a scenario takes well under a second.
DEFAULT_HEADERS = {
    "x-sim-seed": "42",
    "x-sim-think-ms": "40",
    "x-sim-tokens": "12",
    "x-sim-token-ms": "2",
}


def parse_args(scenarios):
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True, help="the SDK's base URL")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra or overriding request header, e.g. x-sim-sse-ids=1",
    )
    p.add_argument("scenario", choices=sorted(scenarios))
    args = p.parse_args()
    headers = dict(DEFAULT_HEADERS)
    for h in args.header:
        name, sep, value = h.partition("=")
        if not sep:
            p.error(f"--header wants NAME=VALUE, got {h!r}")
        headers[name.strip().lower()] = value
    return args, headers


def dump(obj):
    """A parsed SDK object as JSON-ready data, with every field the SDK parsed."""
    if isinstance(obj, list):
        return [dump(o) for o in obj]
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", warnings=False)
    return obj


def error_doc(e):
    """An SDK exception: its class, HTTP status and parsed body."""
    return {
        "error": {
            "class": type(e).__name__,
            "status_code": getattr(e, "status_code", None),
            "body": getattr(e, "body", None),
            "message": str(e),
        }
    }


def emit(doc):
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


def stream_outcome(make_stream):
    """Iterates a stream to its end or its first exception; reports where it stopped.

    Each item is announced on stderr (`aloud-test item N`) as it arrives, so a test driving a
    failing upstream knows when the client has everything before the failure.
    """
    items = 0
    try:
        for _ in make_stream():
            items += 1
            print(f"aloud-test item {items}", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - the class is what the test compares
        return {"raised": True, "class": type(e).__name__, "items": items, "message": str(e)[:500]}
    return {"raised": False, "class": None, "items": items}
