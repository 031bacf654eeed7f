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

The scenario (the child that mines and acknowledges, the kill, the checks after reopening) is
``tests.framework.crash``, shared with ``bench/soak_crash.py``, which runs it a thousand times.
The kill schedule is drawn from a seeded RNG; the seed is printed (run pytest with ``-s`` to
see it) and ``PONAS_CRASH_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from consensus.chain import genesis_block
from node.generate import generate, open_chain
from node.storage import StorageError, open_datadir
from tests.builders import keys, make_params
from tests.framework.crash import (
    KEY_SEED,
    N_KEYS,
    REPO_ROOT,
    Tip,
    chain_keys,
    chain_params,
    kill_once,
    write_child,
)
from tests.framework.procs import child_env

ITERATIONS = 40


def test_killed_node_keeps_every_acknowledged_block_and_a_consistent_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("PONAS_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed {seed} (PONAS_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    params = chain_params()
    script = write_child(tmp_path)
    datadir = tmp_path / "node"
    expected: Tip | None = None  # the tip found at the last reopen
    unacked_writes = startup_kills = 0
    started = time.monotonic()
    for iteration in range(ITERATIONS):
        out = kill_once(script, datadir, params, rng, tmp_path / "child.err", expected)
        run = out.run
        assert run.alive, f"iteration {iteration}: the node exited by itself (rc {run.returncode}):\n{run.stderr}"
        if run.ready is None:
            startup_kills += 1
        elif expected is not None:
            assert run.ready == expected, f"iteration {iteration}: the node did not resume on the reopened tip"
        # The reopened store agrees with itself (tip, height index, block index, parent links,
        # the tip block and its tx index, the state root) and reopened at all.
        assert not out.problems, f"iteration {iteration}: " + "; ".join(out.problems)
        assert not out.lost, f"iteration {iteration}: ACKed blocks {out.lost} lost"
        # At most the one block in flight was written without an ACK (else a problem above).
        unacked_writes += out.unacked_write
        expected = out.tip
        assert expected is not None
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
