"""The crash scenario shared by ``tests/functional/test_feature_crash.py`` and
``bench/soak_crash.py`` (after Bitcoin Core's crash tests).

A child process opens a datadir and mines a ``pow`` chain on whatever tip it finds, forever,
printing ``ACK height hash`` only after ``import_block`` returned (after its synced batch was
written). :func:`kill_once` starts it, SIGKILLs it at a moment drawn from the caller's RNG,
reopens the datadir and checks it (:func:`inconsistencies`, and that nothing acknowledged was
lost), and returns what it found as a :class:`KillOutcome` instead of asserting, so a test can
assert every field and a soak run can count them over a thousand kills.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from consensus.crypto import PrivateKey
from consensus.params import ChainParams
from node.chain import Chain, Status
from node.generate import open_chain
from tests.builders import keys, make_params
from tests.framework.procs import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_SEED = 3
N_KEYS = 4
TXS_PER_BLOCK = 3
#: Share of the kills aimed at start-up (imports, LevelDB open and log recovery, genesis).
STARTUP_SHARE = 0.2

Tip = tuple[int, bytes]


def chain_keys() -> list[PrivateKey]:
    return keys(N_KEYS, seed=KEY_SEED)


def chain_params() -> ChainParams:
    """The parameters the child uses too: deterministic keys, so both sides agree."""
    return make_params(chain_keys())


# The node under test: mines on whatever tip it finds, forever, and acknowledges each block
# only after import_block returned (that is, after its synced batch was written).
CHILD = textwrap.dedent(
    f"""
    import sys
    from node.generate import make_pow_block, open_chain
    from tests.builders import keys, make_params, transfer

    KEYS = keys({N_KEYS}, seed={KEY_SEED})
    PARAMS = make_params(KEYS)
    MINER = bytes(range(20))

    with open_chain(sys.argv[1], PARAMS) as chain:
        print("READY", chain.height, chain.tip_hash.hex(), "torch" in sys.modules, flush=True)
        while True:
            height = chain.height + 1
            sender, recipient = KEYS[height % len(KEYS)], KEYS[(height + 1) % len(KEYS)]
            nonce = chain.account(sender.address).nonce
            txs = [
                transfer(PARAMS, sender, recipient.address, 1_000 + i, nonce + i)
                for i in range({TXS_PER_BLOCK})
            ]
            block = make_pow_block(chain, MINER, txs, timestamp=chain.tip.timestamp + 1)
            result = chain.import_block(block)
            assert result.status == "connected", result
            print("ACK", block.header.height, result.new_tip.hex(), flush=True)
    """
)


def write_child(directory: Path) -> Path:
    """Write the child script into ``directory`` and return its path."""
    script = directory / "node_child.py"
    script.write_text(CHILD)
    return script


@dataclass
class Run:
    """What one child printed before it was killed (complete lines only). ``alive``: it was
    still running when the kill was sent (one that exited by itself is a failure)."""

    ready: Tip | None
    acks: list[Tip]
    stderr: str
    alive: bool = True
    returncode: int | None = None


def parse(stdout: bytes) -> tuple[Tip | None, list[Tip]]:
    ready: Tip | None = None
    acks: list[Tip] = []
    complete = stdout[: stdout.rfind(b"\n") + 1].decode()  # a line cut by the kill is not an ACK
    for line in complete.splitlines():
        word, *rest = line.split()
        if word == "READY":
            assert rest[2] == "False", "the node core imported torch; it must not"
            ready = (int(rest[0]), bytes.fromhex(rest[1]))
        elif word == "ACK":
            acks.append((int(rest[0]), bytes.fromhex(rest[1])))
    return ready, acks


def run_and_kill(script: Path, datadir: Path, rng: random.Random, errlog: Path) -> Run:
    """Start the node, kill it at a random point, return what it acknowledged."""
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(datadir)],
            stdout=subprocess.PIPE, stderr=err, cwd=REPO_ROOT, env=child_env(),
        )
        assert proc.stdout is not None
        head = b""
        try:
            if rng.random() < STARTUP_SHARE:
                # Kill during start-up: imports, LevelDB open and log recovery, genesis.
                time.sleep(rng.uniform(0.0, 0.15))
            else:
                # Kill after some acknowledged imports, a little into the next one.
                wanted = rng.randint(0, 10)
                seen = -1  # the READY line
                while seen < wanted:
                    line = proc.stdout.readline()
                    if not line:
                        break  # the child died by itself: reported below
                    head += line
                    seen += 1
                time.sleep(rng.uniform(0.0, 0.01))
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            tail = proc.stdout.read()
            proc.stdout.close()
            proc.wait()
    ready, acks = parse(head + tail)
    return Run(ready, acks, errlog.read_text(), alive, None if alive else proc.returncode)


def inconsistencies(chain: Chain) -> list[str]:
    """What is wrong with the reopened store, as messages (empty: it agrees with itself)."""
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    by_height = chain.by_height
    need(by_height[0] == chain.genesis_hash, "height 0 is not the genesis block")
    need(chain.tip_hash == by_height[-1], "the tip is not the last entry of the height index")
    need(chain.tip.hash() == chain.tip_hash, "the tip header does not hash to the tip hash")
    need(chain.height == chain.tip.height == len(by_height) - 1, "height, tip height and height index disagree")
    # Only canonical blocks were ever imported here: a torn batch would leave an extra entry.
    need(set(chain.index) == set(by_height), "the block index holds entries off the height index")
    for height, block_hash in enumerate(by_height):
        entry = chain.index.get(block_hash)
        if entry is None:
            problems.append(f"height {height}: not in the block index")
            continue
        need(entry.header.height == height, f"height {height}: the indexed header says {entry.header.height}")
        need(entry.status == Status.VALID, f"height {height}: status {entry.status}")
        if height:
            need(entry.header.parent == by_height[height - 1], f"height {height}: does not link to its parent")
    tip_block = chain.get_block(chain.tip_hash)
    if tip_block is None or tip_block.block_hash != chain.tip_hash:
        problems.append("the tip block is not stored")
    elif chain.height:  # the genesis coinbase is not in the transaction index (as in Bitcoin)
        for position, tx_hash in enumerate(tip_block.tx_hashes()):
            need(chain.find_tx(tx_hash) == (chain.tip_hash, position), f"tip tx {position} is not indexed")
    need(chain.state_root() == chain.tip.state_root, "the recomputed state root differs from the tip's")
    return problems


def check_consistent(chain: Chain) -> None:
    """The reopened store agrees with itself (raises ``AssertionError`` listing what does not)."""
    problems = inconsistencies(chain)
    assert not problems, "; ".join(problems)


@dataclass
class KillOutcome:
    """One kill and what the reopened datadir showed.

    ``lost``: acknowledged blocks no longer canonical at their height (must be empty).
    ``problems``: inconsistencies, a child that did not resume on the previous tip, a height
    outside ``[last ACK, last ACK + 1]``, a child that exited by itself, a datadir that did not
    reopen (must be empty). ``unacked_write``: the one block in flight was stored although
    never acknowledged (allowed). ``tip``: the reopened tip, the next kill's ``expected``.
    """

    run: Run
    tip: Tip | None
    lost: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unacked_write: bool = False

    @property
    def before_ready(self) -> bool:
        return self.run.ready is None


def kill_once(
    script: Path, datadir: Path, params: ChainParams, rng: random.Random, errlog: Path, expected: Tip | None
) -> KillOutcome:
    """Run the child on ``datadir``, kill it, reopen the datadir and check it. ``expected``:
    the tip found at the previous reopen (``None`` before the first)."""
    run = run_and_kill(script, datadir, rng, errlog)
    out = KillOutcome(run, expected)
    if not run.alive:
        out.problems.append(f"the node exited by itself (rc {run.returncode}):\n{run.stderr}")
    if run.ready is not None and expected is not None and run.ready != expected:
        out.problems.append("the node did not resume on the reopened tip")
    floor = run.acks[-1] if run.acks else run.ready or expected
    try:
        with open_chain(str(datadir), params) as chain:
            out.problems.extend(inconsistencies(chain))
            out.lost = [height for height, block_hash in run.acks if chain.hash_at(height) != block_hash]
            if floor is not None:
                if chain.height not in (floor[0], floor[0] + 1):
                    out.problems.append(f"height {chain.height} after last ACK at {floor[0]}")
                out.unacked_write = chain.height == floor[0] + 1
            out.tip = (chain.height, chain.tip_hash)
    except Exception as exc:  # noqa: BLE001 - a datadir that does not reopen is a finding
        out.problems.append(f"reopening failed: {type(exc).__name__}: {exc}")
    return out


__all__ = [
    "REPO_ROOT", "KEY_SEED", "N_KEYS", "TXS_PER_BLOCK", "STARTUP_SHARE", "CHILD", "Tip", "Run", "KillOutcome",
    "chain_keys", "chain_params", "write_child", "parse", "run_and_kill", "inconsistencies",
    "check_consistent", "kill_once",
]
