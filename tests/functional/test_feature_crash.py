"""Crash safety of the datadir, with real processes (after Bitcoin Core's crash tests).

What it proves:

* A node killed with SIGKILL at a random moment (while opening, importing, or writing a
  synced batch) leaves a datadir that reopens cleanly and is consistent: the tip, the
  canonical height index and the block index agree, every canonical block links to its
  parent, the tip block and its transaction index are stored, and the state root recomputed
  from the stored accounts equals the tip header's. Nothing acknowledged is lost: every block
  for which ``import_block`` returned is still canonical at its height, and at most the one
  block in flight was added without acknowledgement. The node then resumes on that tip.
* A datadir is exclusive: a second process gets ``datadir-locked``.
* A datadir of another chain (another genesis, or another chain id) is refused with
  ``wrong-chain`` and left byte for byte as it was.

The kill schedule is drawn from a seeded RNG; the seed is printed (run pytest with ``-s`` to
see it) and ``PONAS_CRASH_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from consensus.chain import genesis_block
from consensus.crypto import PrivateKey
from consensus.params import ChainParams
from node.chain import Chain, Status
from node.generate import generate, open_chain
from node.storage import StorageError, open_datadir
from tests.builders import keys, make_params

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_SEED = 3
N_KEYS = 4
ITERATIONS = 40
TXS_PER_BLOCK = 3


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


@dataclass
class Run:
    """What one child printed before it was killed (complete lines only)."""

    ready: tuple[int, bytes] | None
    acks: list[tuple[int, bytes]]
    stderr: str


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def parse(stdout: bytes) -> tuple[tuple[int, bytes] | None, list[tuple[int, bytes]]]:
    ready: tuple[int, bytes] | None = None
    acks: list[tuple[int, bytes]] = []
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
            if rng.random() < 0.2:
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
    stderr = errlog.read_text()
    assert alive, f"the node exited by itself (rc {proc.returncode}):\n{stderr}"
    ready, acks = parse(head + tail)
    return Run(ready, acks, stderr)


def check_consistent(chain: Chain) -> None:
    """The reopened store agrees with itself."""
    by_height = chain.by_height
    assert by_height[0] == chain.genesis_hash
    assert chain.tip_hash == by_height[-1]
    assert chain.tip.hash() == chain.tip_hash
    assert chain.height == chain.tip.height == len(by_height) - 1
    # Only canonical blocks were ever imported here: a torn batch would leave an extra entry.
    assert set(chain.index) == set(by_height)
    for height, block_hash in enumerate(by_height):
        entry = chain.index[block_hash]
        assert entry.header.height == height
        assert entry.status == Status.VALID
        if height:
            assert entry.header.parent == by_height[height - 1]
    tip_block = chain.get_block(chain.tip_hash)
    assert tip_block is not None and tip_block.block_hash == chain.tip_hash
    if chain.height:  # the genesis coinbase is not in the transaction index (as in Bitcoin)
        for position, tx_hash in enumerate(tip_block.tx_hashes()):
            assert chain.find_tx(tx_hash) == (chain.tip_hash, position)
    assert chain.state_root() == chain.tip.state_root


def test_killed_node_keeps_every_acknowledged_block_and_a_consistent_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("PONAS_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed {seed} (PONAS_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    params = chain_params()
    script = tmp_path / "node_child.py"
    script.write_text(CHILD)
    datadir = tmp_path / "node"
    expected: tuple[int, bytes] | None = None  # the tip found at the last reopen
    unacked_writes = startup_kills = 0
    started = time.monotonic()
    for iteration in range(ITERATIONS):
        run = run_and_kill(script, datadir, rng, tmp_path / "child.err")
        if run.ready is None:
            startup_kills += 1
        elif expected is not None:
            assert run.ready == expected, f"iteration {iteration}: the node did not resume on the reopened tip"
        floor = run.acks[-1] if run.acks else run.ready or expected
        with open_chain(str(datadir), params) as chain:
            check_consistent(chain)
            for height, block_hash in run.acks:
                assert chain.hash_at(height) == block_hash, f"iteration {iteration}: ACKed block {height} lost"
            if floor is not None:
                assert chain.height in (floor[0], floor[0] + 1), (
                    f"iteration {iteration}: height {chain.height} after last ACK at {floor[0]}"
                )
                unacked_writes += chain.height == floor[0] + 1
            expected = (chain.height, chain.tip_hash)
        print(f"iteration {iteration}: {len(run.acks)} ACKs, reopened at height {expected[0]}")
    assert expected is not None and expected[0] > 0, "no block was ever imported"
    print(
        f"{ITERATIONS} kills in {time.monotonic() - started:.1f} s: final height {expected[0]}, "
        f"{startup_kills} during start-up, {unacked_writes} with a written but unacknowledged block"
    )


# --- exclusivity and identity of a datadir ---------------------------------------------------


OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys
    from consensus.chain import genesis_block
    from node.storage import StorageError, open_datadir
    from tests.builders import keys, make_params

    params = make_params(keys({n}, seed={seed}))
    try:
        open_datadir(sys.argv[1], params.chain_id, genesis_block(params).header.hash())
    except StorageError as exc:
        print(exc.reason)
    else:
        print("opened")
    """
).format(n=N_KEYS, seed=KEY_SEED)


def files_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with the SHA-256 of its contents."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_open_datadir_is_exclusive_to_one_process(tmp_path: Path) -> None:
    params = chain_params()
    datadir = tmp_path / "node"
    with open_chain(str(datadir), params) as chain:
        generate(chain, 2, chain_keys()[0].address)
        other = subprocess.run(
            [sys.executable, "-c", OPEN_IN_CHILD, str(datadir)],
            capture_output=True, text=True, cwd=REPO_ROOT, env=child_env(), timeout=60,
        )
        assert other.stdout.strip() == "datadir-locked", other.stderr
    # Once closed, the datadir opens again.
    other = subprocess.run(
        [sys.executable, "-c", OPEN_IN_CHILD, str(datadir)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=child_env(), timeout=60,
    )
    assert other.stdout.strip() == "opened", other.stderr


@pytest.mark.parametrize("other", ["another-genesis", "another-chain-id"])
def test_datadir_of_another_chain_is_refused_and_left_unchanged(tmp_path: Path, other: str) -> None:
    params = chain_params()
    datadir = tmp_path / "node"
    with open_chain(str(datadir), params) as chain:
        generate(chain, 3, chain_keys()[0].address)
    before = files_digest(datadir)
    if other == "another-genesis":
        foreign = make_params(keys(N_KEYS + 1, seed=KEY_SEED))  # same chain id, other prefunds
    else:
        foreign = make_params(chain_keys(), chain_id="ponas-other")
    assert genesis_block(foreign).header.hash() != genesis_block(params).header.hash()
    with pytest.raises(StorageError) as refused:
        open_datadir(str(datadir), foreign.chain_id, genesis_block(foreign).header.hash())
    assert refused.value.reason == "wrong-chain"
    with pytest.raises(StorageError) as refused:
        with open_chain(str(datadir), foreign):
            pass
    assert refused.value.reason == "wrong-chain"
    assert files_digest(datadir) == before
    # And the refusal left no lock behind: the right chain still opens.
    with open_chain(str(datadir), params) as chain:
        assert chain.height == 3
