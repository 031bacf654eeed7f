"""Watching a running devnet: a row per block (winner, architecture, score, payouts) as the
blocks come in, the wallet transfer of ``up --send``, and the summary at the end (printed, and
written to ``DIR/summary.json`` by the caller)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from consensus.types import COIN
from node import logs
from node.devnet.errors import DevnetError
from node.devnet.launcher import Launcher, child_env, http_json, log_tail, stopped_elsewhere
from node.devnet.manifest import Manifest
from node.devnet.plan import ponas_argv

AGREE_WAIT = 30.0  # seconds the summary waits for every node to hold the last block

_OPS = {"none": "-", "skip_connect": "s", "nor_conv_1x1": "1", "nor_conv_3x3": "3", "avg_pool_3x3": "p"}


def brief_genotype(genotype: str) -> str:
    """``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...`` -> ``3+s-+...`` (NB201), else as it is."""
    if genotype.startswith("|") and "~" in genotype:
        try:
            return "+".join("".join(_OPS[e.split("~")[0]] for e in node.strip("|").split("|"))
                            for node in genotype.split("+"))
        except KeyError:
            pass
    return genotype if len(genotype) <= 24 else genotype[:23] + "…"


def coins(units: int) -> str:
    return f"{units / COIN:,.2f}"  # display only


def fmt_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class RoundsView:
    """The blocks as rows, from a node's API, with names for the devnet's addresses."""

    COLUMNS = ("HEIGHT", "EPOCH", "WINNER", "ARCHITECTURE", "SCORE", "PAYOUTS", "TIME")

    def __init__(self, manifest: Manifest) -> None:
        self.names = {a: n for n, a in manifest.accounts.items()} | dict(manifest.aliases)
        self.members = {manifest.accounts[p.name] for p in manifest.with_role("member")}
        self.last_time: int | None = manifest.genesis_time
        self.rows: list[dict[str, Any]] = []

    def winner(self, miner: str | None) -> str:
        if miner is None:
            return "?"
        return self.names.get(miner, miner[:12] + "…")

    def add(self, block: dict[str, Any]) -> dict[str, Any]:
        header = block.get("header", {})
        payouts = [(self.names.get(p["address"], p["address"][:12] + "…"), p["amount"]) for p in block.get("payouts", [])]
        t = header.get("timestamp")
        row = {"height": block["height"], "hash": block.get("hash"), "winner": self.winner(block.get("miner")),
               "genotype": header.get("genotype", ""), "score": header.get("score"),
               "task_epoch": block.get("task_epoch"), "test_set_size": block.get("test_set_size"),
               "payouts": payouts, "members_paid": sum(1 for p in block.get("payouts", []) if p["address"] in self.members),
               "interval": (t - self.last_time) if isinstance(t, int) and self.last_time is not None else None}
        self.last_time = t if isinstance(t, int) else self.last_time
        self.rows.append(row)
        return row

    def cells(self, row: dict[str, Any], test_size: int) -> list[str]:
        """The row's columns; the score is correct answers out of the round's test set (the
        block's ``test_set_size``, else ``test_size``), the epoch the task's ("-": none)."""
        score = row["score"]
        size = row.get("test_set_size") or test_size
        pct = f" {100 * score / size:.1f}%" if isinstance(score, int) and size else ""
        epoch = row.get("task_epoch")
        pays = ", ".join(f"{n} {coins(a)}" for n, a in row["payouts"])
        return [str(row["height"]), "-" if epoch is None else str(epoch), row["winner"], brief_genotype(row["genotype"]),
                f"{score}/{size}{pct}", pays, "" if row["interval"] is None else f"{row['interval']}s"]


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


@dataclass
class Transfer:
    """``ponas wallet send --wait`` from alice to bob, as a child process."""

    proc: subprocess.Popen[bytes]
    log: str
    amount: str
    result: dict[str, Any] | None = None
    error: str | None = None

    @classmethod
    def start(cls, root: Path, manifest: Manifest, amount: str) -> Transfer:
        home = root / "home"
        log = str(root / "logs" / "transfer.log")
        argv = ponas_argv() + ["wallet", "send", manifest.accounts["bob"], amount, "--wallet", "alice",
                               "--home", str(home), "--password-file", str(home / "password"),
                               "--node", manifest.wallet_node, "--wait", "--json",
                               "--wait-timeout", str(6 * manifest.round_seconds)]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out,  # noqa: S603
                                    env=child_env())
        return cls(proc, log, amount)

    def poll(self) -> bool:
        """True once the transfer's process has ended (``result`` or ``error`` set)."""
        if self.proc.poll() is None:
            return False
        if self.result is None and self.error is None:
            out = self.proc.stdout.read() if self.proc.stdout else b""
            try:
                data = json.loads(out) if out.strip() else None
            except ValueError:
                data = None
            if self.proc.returncode == 0 and isinstance(data, dict):
                self.result = data
            else:
                self.error = f"`ponas wallet send` exited with status {self.proc.returncode}:\n{log_tail(self.log, 5)}"
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


def watch(root: Path, launcher: Launcher, rounds: int | None, send: str | None, out: TextIO,
          progress: logs.StatusLine) -> dict[str, Any]:
    """Print a row per block until ``rounds`` blocks are in (forever if None); returns the summary."""
    manifest = launcher.manifest
    apis = manifest.node_apis()
    api0 = apis[0][1]
    view = RoundsView(manifest)
    test_size = 0
    round_seconds = manifest.round_seconds
    stall = max(6 * round_seconds, 120)
    transfer = Transfer.start(root, manifest, send) if send else None
    status0 = http_json(f"{api0}/api/v1/status") or {}
    seen = first = int(status0.get("height", 0))
    if first > 0:  # a resumed devnet: the next block's time counts from its tip, not from genesis
        tip = http_json(f"{api0}/api/v1/blocks/{first}") or {}
        t = tip.get("header", {}).get("timestamp") if isinstance(tip, dict) else None
        view.last_time = t if isinstance(t, int) else None
    widths = (6, 5, 8, 18, 17, 60, 5)
    print(format_row(RoundsView.COLUMNS, widths), file=out, flush=True)
    t0 = last_block = time.monotonic()
    phase_said = None
    interrupted = False
    try:
        while True:
            launcher.check_alive()
            status = http_json(f"{api0}/api/v1/status")
            height = int(status["height"]) if isinstance(status, dict) and isinstance(status.get("height"), int) else seen
            rnd = status.get("round") if isinstance(status, dict) else None
            if isinstance(rnd, dict):
                test_size = int(rnd.get("test_set_size") or test_size)
            for h in range(seen + 1, height + 1):
                block = http_json(f"{api0}/api/v1/blocks/{h}")
                if not isinstance(block, dict):
                    height = h - 1
                    break
                row = view.add(block)
                progress.clear()
                print(format_row(view.cells(row, test_size), widths), file=out, flush=True)
                seen, last_block = h, time.monotonic()
            if transfer is not None and transfer.result is None and transfer.error is None and transfer.poll():
                progress.clear()
                print(transfer_line(transfer), file=out, flush=True)
            done_rounds = seen - first
            transfer_done = transfer is None or transfer.result is not None or transfer.error is not None
            if rounds is not None and done_rounds >= rounds and transfer_done:
                break
            if rounds is not None and done_rounds >= rounds + 3:
                break  # the transfer is late; the summary says so
            if time.monotonic() - last_block > stall:
                raise DevnetError("stalled", f"no block for {stall}s (tip at height {seen}); see the logs in {root / 'logs'}")
            if isinstance(rnd, dict):
                left = max(0.0, float(rnd.get("deadline") or 0) - time.time())
                reveal_end = rnd.get("reveal_end")
                phase = rnd.get("phase")
                if phase == "reveal" and reveal_end:
                    left = max(0.0, float(reveal_end) - time.time())
                text = (f"round {rnd.get('height')}: {phase}, {left:.0f}s left, {rnd.get('commitments', 0)} commitments"
                        f"  [{fmt_duration(time.monotonic() - t0)}]")
                if progress.tty:
                    progress(text)
                elif (rnd.get("height"), phase) != phase_said:
                    phase_said = (rnd.get("height"), phase)
                    progress(text)
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the summary of what came in, unless `down` stops us
        if stopped_elsewhere(root):
            raise
        interrupted = True
    finally:
        progress.clear()
        if transfer is not None:
            transfer.poll()
            transfer.stop()
    summary = summarise(manifest, view, first, seen, transfer, time.monotonic() - t0, test_size,
                        agree_wait=0.0 if interrupted else AGREE_WAIT)
    summary["interrupted"] = interrupted
    return summary


def transfer_line(transfer: Transfer) -> str:
    if transfer.result is not None:
        r = transfer.result
        return (f"transfer alice -> bob {transfer.amount} coins: confirmed in block {r.get('height')} "
                f"(tx {str(r.get('hash', ''))[:16]}…)")
    return f"transfer alice -> bob {transfer.amount} coins failed: {transfer.error}"


def summarise(manifest: Manifest, view: RoundsView, first: int, last: int, transfer: Transfer | None,
              seconds: float, test_size: int, agree_wait: float | None = None) -> dict[str, Any]:
    """The run's summary: blocks, wins, balances, and whether every node holds the same block at
    the lowest height they all reached (waiting up to ``agree_wait`` s, default ``AGREE_WAIT``,
    for nodes still behind)."""
    apis = manifest.node_apis()
    deadline = time.monotonic() + (AGREE_WAIT if agree_wait is None else agree_wait)
    while True:  # a node still retraining the last block connects it a few seconds after the others
        tips: dict[str, Any] = {}
        for name, api in apis:
            status = http_json(f"{api}/api/v1/status") or {}
            tips[name] = {"height": status.get("height"), "tip": status.get("tip")}
        behind = [t for t in tips.values() if isinstance(t["height"], int) and t["height"] < last]  # silent: no wait
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    # every node's block at the last watched height must be the same block
    agree_height = min([last] + [t["height"] for t in tips.values() if isinstance(t["height"], int)])
    hashes = {}
    for name, api in apis:
        block = http_json(f"{api}/api/v1/blocks/{agree_height}") if agree_height > 0 else {"hash": manifest.genesis}
        hashes[name] = block.get("hash") if isinstance(block, dict) else None
    agree = len(set(hashes.values())) == 1 and None not in hashes.values()
    balances = {}
    for name, address in manifest.accounts.items():
        if name == "pool":
            continue
        account = http_json(f"{apis[0][1]}/api/v1/accounts/{address}") or {}
        balances[name] = account.get("balance")
    wins: dict[str, int] = {}
    for row in view.rows:
        wins[row["winner"]] = wins.get(row["winner"], 0) + 1
    return {
        "rounds": last - first, "from_height": first, "to_height": last, "seconds": round(seconds, 1),
        "test_set_size": test_size, "blocks": view.rows, "wins": wins, "nodes": tips,
        "agree": {"height": agree_height, "hashes": hashes, "same": agree},
        "balances": balances,
        "transfer": None if transfer is None else {"amount": transfer.amount, "result": transfer.result, "error": transfer.error},
    }


def print_summary(summary: dict[str, Any], manifest: Manifest, out: TextIO) -> None:
    wins = ", ".join(f"{n} {k}" for n, k in sorted(summary["wins"].items(), key=lambda x: -x[1])) or "nobody"
    agree = summary["agree"]
    said = "interrupted after " if summary.get("interrupted") else ""
    n = summary["rounds"]
    print(f"\n{said}{n} block{'' if n == 1 else 's'} in {fmt_duration(summary['seconds'])}: won by {wins}", file=out)
    if agree["same"]:
        print(f"all {len(agree['hashes'])} nodes have block {agree['height']} "
              f"{next(iter(agree['hashes'].values()))[:16]}…", file=out)
    else:
        print(f"NODES DISAGREE at height {agree['height']}: {agree['hashes']}", file=out)
    pool_paid = sorted({r["members_paid"] for r in summary["blocks"] if r["winner"] == "pool"})
    if pool_paid:
        paid = str(pool_paid[0]) if len(pool_paid) == 1 else f"{pool_paid[0]} to {pool_paid[-1]}"
        print(f"each block the pool won paid {paid} of its members in the coinbase, and the pool's fee", file=out)
    print("balances:", file=out)
    for name, units in summary["balances"].items():
        print(f"  {name:<10} {manifest.accounts[name]}  {'?' if units is None else coins(units):>12}", file=out)
    t = summary["transfer"]
    if t is not None:
        if t["result"] is not None:
            print(f"transfer alice -> bob {t['amount']} coins: confirmed in block {t['result'].get('height')}", file=out)
        else:
            print(f"transfer alice -> bob {t['amount']} coins: NOT confirmed: {t['error'] or 'still pending'}", file=out)
    out.flush()

