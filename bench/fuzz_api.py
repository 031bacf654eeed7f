"""API fuzz of a real node with schemathesis, driven by the node's own OpenAPI document.

Run ``python bench/fuzz_api.py --max-examples 200`` (per route and generation mode).

A node (``node.service.Node``, regtest ``ponas`` parameters, one prefunded key, a transfer
waiting in its mempool) runs in this process on 127.0.0.1 with ``api_port=0``, its event
loop in a thread of its own. The document is fetched from ``GET /api/v1/openapi.json`` and
loaded with ``schemathesis.openapi.from_dict``; its warnings are printed. Then, for every
operation, schemathesis generates ``--max-examples`` requests that fit the schema (positive)
and as many that break it (negative), sent with the bearer token read from the datadir's
``.cookie`` (the open route ignores it). The routes the document does not list are called
with plain GETs. Finally a body nested 30,000 deep (60 KB: under the 64 KiB that an
unauthenticated call may send) is sent to every POST route and must be answered 400
``bad-json`` (it used to be a 500).

Printed: per route, requests sent, responses by status class, server errors (5xx: must be
0), and the total; every 5xx with a curl command that reproduces it and the node's logged
traceback. Exit status 1 if any 5xx was seen or the nested body was not a 400 ``bad-json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.builders

from bench._report import machine, table  # noqa: E402

NESTED = b"[" * 30_000 + b"]" * 30_000  # deeper than the parser's stack, under every body limit
UNDOCUMENTED_GETS = ["/api/v1/openapi.json", "/"]


class NodeThread:
    """A node whose event loop runs in a background thread; ``start`` and ``stop`` pair up."""

    def __init__(self, datadir: str) -> None:
        self.datadir = datadir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="node-loop", daemon=True)
        self.node: Any = None

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        from node.service import Node, NodeConfig
        from tests.builders import keys, transfer
        from tests.ponas_builders import ponas_params

        k = keys(2, seed=11)
        params = ponas_params(k[:1])
        self.thread.start()
        self.node = Node(NodeConfig(datadir=self.datadir, api_port=0), params)
        self.call(self.node.start())
        self.call(self.node.submit_tx(transfer(params, k[0], k[1].address, 5_000, 0)))

    def stop(self) -> None:
        try:
            if self.node is not None:
                self.call(self.node.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.node.api_port}"


class ApiErrors(logging.Handler):
    """Keeps what the API logged as a handler failure (the log line behind every 500)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@dataclass
class RouteStats:
    sent: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # curl commands of the 5xx, generation failures
    notes: list[str] = field(default_factory=list)
    conformance: Counter[str] = field(default_factory=Counter)  # check title -> cases (not a failure)

    def add(self, status: int, curl: str = "") -> None:
        self.sent += 1
        self.classes[f"{status // 100}xx"] += 1
        if status >= 500:
            self.errors.append(f"{status}: {curl}")


def fuzz_operation(op: Any, base_url: str, headers: dict[str, str], max_examples: int, stats: RouteStats,
                   seed: int) -> None:
    """``max_examples`` positive and as many negative cases of one operation."""
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    session = requests.Session()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @hseed(seed)
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=op.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            curl = case.as_curl_command(headers=headers, base_url=base_url) if response.status_code >= 500 else ""
            stats.add(response.status_code, curl)
            try:  # schemathesis's own checks: where the answers disagree with the document
                case.validate_response(response, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - a FailureGroup, or one failure
                for failure in getattr(exc, "exceptions", [exc]):
                    stats.conformance[getattr(failure, "title", type(failure).__name__)] += 1

        try:
            one()
        except Unsatisfiable:
            # No request can break a schema without parameters, or whose only parameters are
            # free strings in the path: nothing negative to send.
            stats.notes.append(f"no {mode.value} case possible")
        except Exception as exc:  # noqa: BLE001 - a generation failure is a finding, not the end
            stats.errors.append(f"generation failed ({mode.value}): {type(exc).__name__}: {str(exc)[:300]}")
    session.close()


def nested_body_checks(base_url: str, headers: dict[str, str], routes: list[str]) -> list[str]:
    """The deeply nested body on every POST route: each must be a 400 ``bad-json``."""
    import requests

    problems = []
    for path in routes:
        r = requests.post(base_url + path, data=NESTED, headers={**headers, "Content-Type": "application/json"},
                          timeout=60)
        reason = r.json().get("error", {}).get("reason") if r.headers.get("Content-Type", "").startswith(
            "application/json") else None
        line = f"nested body (30,000 deep) to POST {path}: {r.status_code} {reason}"
        print(line)
        if (r.status_code, reason) != (400, "bad-json"):
            problems.append(line)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-examples", type=int, default=25,
                    help="examples per route and per mode (positive, negative); default 25")
    ap.add_argument("--seed", type=int, default=None, help="Hypothesis's seed (default random, printed)")
    args = ap.parse_args(argv)
    import random

    import requests
    import schemathesis

    seed = random.randrange(2**32) if args.seed is None else args.seed
    api_log = ApiErrors()
    logging.getLogger("ponas.api").addHandler(api_log)
    logging.getLogger("ponas").setLevel(logging.WARNING)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ponas-apifuzz-") as tmp:
        node = NodeThread(str(Path(tmp) / "node"))
        node.start()
        try:
            base = node.base_url
            token = (Path(tmp) / "node" / ".cookie").read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            doc = requests.get(base + "/api/v1/openapi.json", timeout=30).json()
            schema = schemathesis.openapi.from_dict(doc)
            print(f"fuzz_api: schemathesis {schemathesis.SCHEMATHESIS_VERSION}, {args.max_examples} examples per "
                  f"route and mode, seed {seed}, node at {base}", flush=True)
            warnings = list(schema.iter_schema_warnings())
            for w in warnings:
                print(f"schema warning: {w}")
            stats: dict[str, RouteStats] = defaultdict(RouteStats)
            post_routes = []
            for result in schema.get_all_operations():
                try:
                    op = result.ok()
                except Exception as exc:  # noqa: BLE001 - the document is at fault: say what
                    print(f"schema error: {type(exc).__name__}: {exc}")
                    stats["(schema errors)"].errors.append(str(exc))
                    continue
                label = f"{op.method.upper()} {op.path}"
                if op.method.lower() == "post":
                    post_routes.append(op.path)
                t0 = time.monotonic()
                fuzz_operation(op, base, headers, args.max_examples, stats[label], seed)
                print(f"  {label}: {stats[label].sent} requests in {time.monotonic() - t0:.0f} s", flush=True)
            for path in UNDOCUMENTED_GETS:
                label = f"GET {path} (not in the document)"
                r = requests.get(base + path, timeout=30)
                stats[label].add(r.status_code, f"curl -X GET '{base}{path}'")
            nested = nested_body_checks(base, headers, post_routes)
        finally:
            node.stop()
    wall = time.monotonic() - started
    classes = ["2xx", "3xx", "4xx", "5xx"]
    rows = []
    for label, s in stats.items():
        rows.append((label, s.sent, *(s.classes.get(c, 0) for c in classes), s.classes.get("5xx", 0),
                     ", ".join(s.notes)))
    totals = [sum(r[i] for r in rows) for i in range(1, 7)]  # type: ignore[misc]
    rows.append(("total", *totals, ""))
    server_errors = totals[-1]
    failed = server_errors > 0 or bool(nested) or any(s.errors for s in stats.values())
    print(f"fuzz_api: {'FAIL' if failed else 'PASS'}")
    print(table(rows, ("route", "requests", *classes, "server errors", "note")))
    for label, s in stats.items():
        for e in s.errors[:5]:
            print(f"{label}: {e}")
    findings = [(label, title, n) for label, s in stats.items() for title, n in s.conformance.items()]
    if findings:
        print("schemathesis conformance findings (where answers and document disagree; informational, not failures):")
        print(table(findings, ("route", "check", "cases")))
    for rec in api_log.records[:3]:
        print(f"node log: {rec[:2000]}")
    print(f"nested-body check: {'PASS' if not nested else 'FAIL'}; schema warnings: {len(warnings)}")
    print(f"seed {seed}, wall {wall:.0f} s, machine {machine(True)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
