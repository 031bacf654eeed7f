"""The ``mnist1d`` built-in task wired into the chain (issue 17): parameters, data, exact checks.

Proves: the genesis parameters select the task (``digits`` stays the default and hashes as it
always did, an old genesis file without the task fields loads as digits, an unknown task or a
mnist1d chain with a score tolerance is refused with ``bad-task``, ``ponas genesis new --task
mnist1d`` writes one); a mnist1d chain's data (task parameters, training set and validation
split per epoch of ``epoch_rounds`` rounds, from the genesis hash; the round's test set from its
test key) are the same bytes in another process and change with the epoch; the pool reads the
task from the round object. And, in a fresh process (exact training must pin its kernels before
the process's first torch op, and this pytest process has run torch elsewhere): after the
engine's warm-up pins, a candidate trained by the pool's ``train_one`` with the pinned recipe is
scored by the miner exactly as the verifier scores it, is imported by a chain on LevelDB with
its retrain giving the same weights hash; a claim of score + 1 is refused ``bad-score``; weights
trained on the round's test set with the honest claim are refused ``retrain-mismatch``; the pool
manager's share check agrees (exact validation score, retrain by weights hash).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.chain import genesis_block
from consensus.engines.ponas import mnist1d
from consensus.engines.ponas.recipe import PRESETS as RECIPES
from consensus.errors import InvalidParams
from consensus.params import ChainParams, load_params, preset_params
from pool.rounds import MinerError, parse_round
from tests.builders import GENESIS_TIME
from tests.ponas_builders import BEACON, BEACON_CHAIN

REPO = Path(__file__).resolve().parents[2]


def mnist1d_params(preset: str = "regtest") -> ChainParams:
    return preset_params(preset, chain_id="ponas-mnist1d-test", beacon_pubkey=BEACON.public_key,
                         beacon_anchor=BEACON_CHAIN.anchor, genesis_time=GENESIS_TIME, task="mnist1d")


def chain_data(params: ChainParams) -> mnist1d.ChainData:
    pp = params.ponas
    return mnist1d.ChainData(genesis_block(params).header.hash(), pp.train_size, pp.validation_size,
                             pp.test_set_size, pp.epoch_rounds)


# --- parameters -------------------------------------------------------------------------------


def test_presets_select_the_task() -> None:
    assert preset_params("devnet", genesis_time=GENESIS_TIME).ponas.task == "mnist1d"  # the default
    digits = preset_params("devnet", genesis_time=GENESIS_TIME, task="digits")
    assert (digits.ponas.task, digits.ponas.space, digits.ponas.score_tolerance) == ("digits", "nb201", 3)
    dev = mnist1d_params("devnet").ponas
    assert (dev.task, dev.space, dev.recipe, dev.score_tolerance) == ("mnist1d", "nb201-1d", "mnist1d-devnet", 0)
    assert (dev.train_size, dev.test_set_size) == (4000, 20_000) and dev.epoch_rounds >= 1
    reg = mnist1d_params().ponas
    assert reg.recipe in RECIPES and reg.train_size < 1000 and reg.epoch_rounds >= 1
    assert RECIPES["mnist1d-devnet"].epochs == 3 and RECIPES["mnist1d-devnet"].batch_size == 64


def test_genesis_file_round_trip_and_old_files_load_as_digits() -> None:
    params = mnist1d_params()
    assert ChainParams.from_json(json.loads(json.dumps(params.to_json()))) == params
    digits = preset_params("regtest", genesis_time=GENESIS_TIME, task="digits")
    old = digits.to_json()
    for name in ("task", "train_size", "validation_size", "epoch_rounds"):
        del old["ponas"][name]  # a genesis file written before tasks existed
    loaded = ChainParams.from_json(old)
    assert loaded == digits and loaded.params_hash == digits.params_hash
    assert len(digits.ponas.to_value()) == 13  # digits encodes as before: its genesis hash is unchanged
    assert params.params_hash != replace(params, ponas=replace(params.ponas, epoch_rounds=5)).params_hash


@pytest.mark.parametrize("change", [
    {"task": "cifar"},
    {"score_tolerance": 3},  # mnist1d is exact
    {"space": "nb201"},
    {"epoch_rounds": 0},
])
def test_bad_mnist1d_params_are_refused(change: dict[str, object]) -> None:
    doc = mnist1d_params().to_json()
    doc["ponas"].update(change)
    with pytest.raises(InvalidParams) as err:
        ChainParams.from_json(doc)
    assert err.value.reason == "bad-task"


def test_digits_with_task_sizes_and_unknown_preset_task_are_refused() -> None:
    doc = preset_params("regtest", genesis_time=GENESIS_TIME, task="digits").to_json()
    doc["ponas"]["train_size"] = 100
    with pytest.raises(InvalidParams) as err:
        ChainParams.from_json(doc)
    assert err.value.reason == "bad-task"
    with pytest.raises(InvalidParams) as err:
        preset_params("regtest", task="cifar")
    assert err.value.reason == "bad-task"


def test_cli_genesis_new_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli import main

    out = tmp_path / "genesis.json"
    assert main(["genesis", "new", "--preset", "regtest", "--task", "mnist1d", "--out", str(out)]) == 0
    assert "task mnist1d" in capsys.readouterr().out
    params = load_params(str(out))
    assert params.ponas.task == "mnist1d" and params.ponas.recipe == "mnist1d-regtest"


# --- data ---------------------------------------------------------------------------------------

_CHILD_DATA = """
import json, sys
from consensus.engines.ponas import mnist1d
d = mnist1d.ChainData(bytes.fromhex(sys.argv[1]), *map(int, sys.argv[2:6]))
key = bytes.fromhex(sys.argv[6])
print(json.dumps([mnist1d.dataset_digest(*s).hex() for s in (d.train(0), d.validation(0), d.test(key, 0), d.train(1))]))
"""


def test_chain_data_is_the_same_in_another_process_and_changes_per_epoch() -> None:
    params = mnist1d_params()
    data = chain_data(params)
    key = BEACON_CHAIN.key(1)
    assert [mnist1d.epoch_of(h, 4) for h in (0, 1, 4, 5, 8, 9)] == [0, 0, 0, 1, 1, 2]
    train, validation, test = data.train(0), data.validation(0), data.test(key, 0)
    assert (len(train[1]), len(validation[1]), len(test[1])) == (320, 100, 200)
    assert data.task(0) != data.task(1)  # a new epoch draws new task parameters
    here = [mnist1d.dataset_digest(*s).hex() for s in (train, validation, test, data.train(1))]
    assert len(set(here)) == 4
    args = [data.genesis.hex(), str(data.train_size), str(data.validation_size), str(data.test_set_size),
            str(data.epoch_rounds), key.hex()]
    child = subprocess.run([sys.executable, "-c", _CHILD_DATA, *args], cwd=REPO, capture_output=True, text=True,
                           timeout=120, check=True)
    assert json.loads(child.stdout) == here
    assert mnist1d.ChainData.from_json(json.loads(json.dumps(data.to_json()))) == data


def test_pool_reads_the_task_from_the_round_object() -> None:
    base = {"height": 5, "parent": "00" * 32, "task_id": "00" * 32, "space": "nb201-1d", "recipe": "mnist1d-regtest",
            "phase": "commit", "opened": 1.0, "deadline": 9.0, "reveal_end": None, "commitments": 0,
            "max_commitments_per_key": 4, "test_set_size": 200, "close": None, "reward": 1}
    assert parse_round(base).chain_data(b"\x01" * 32) is None  # no task field: a digits chain
    rnd = parse_round({**base, "task": "mnist1d", "train_size": 320, "validation_size": 100, "epoch_rounds": 4})
    data = rnd.chain_data(b"\x01" * 32)
    assert data is not None and data.epoch(rnd.height) == 1 and data.test_set_size == 200
    with pytest.raises(MinerError):
        rnd.chain_data(None)
    with pytest.raises(MinerError):
        parse_round({**base, "task": "cifar"})


# --- exact verification, in a fresh process ----------------------------------------------------

_CHILD_ROUND = """
import hashlib, json, sys, tempfile
from consensus.chain import genesis_block
from consensus.engines.ponas.engine import PonasEngine
from consensus.errors import InvalidBlock
from consensus.params import preset_params
from consensus.state import genesis_accounts
from tests.builders import GENESIS_TIME, Clock, keys
from tests.ponas_builders import BEACON, BEACON_CHAIN, GENOTYPES, close_round, entry_with_weights, reveal

out = {}
miners = keys(2, seed=17)
params = preset_params("regtest", chain_id="ponas-mnist1d-test", beacon_pubkey=BEACON.public_key,
                       beacon_anchor=BEACON_CHAIN.anchor, genesis_time=GENESIS_TIME, task="mnist1d")
engine = PonasEngine(params)
engine.warm_up()  # pins the exact kernels: the first torch op of this process
from consensus.engines.ponas.exact import kernels_pinned
out["pinned"] = kernels_pinned()

from consensus.engines.ponas.recipe import PRESETS
from consensus.engines.ponas.train import score_sequences, train_sequences
from pool.manager import _check_weights
from pool.protocol import Share
from pool.rounds import round_scores, train_one

pp, data = params.ponas, engine.verifier.data
genesis = genesis_block(params)
accounts = genesis_accounts(params)
genotype, seed, epoch = GENOTYPES[0], 5, data.epoch(1)
result = train_one(pp.space, pp.recipe, genotype, seed, data=data, epoch=epoch)
honest = entry_with_weights(params, genesis.header, accounts, miners[0], genotype, seed, result.weights)
tx, ty = data.test(BEACON_CHAIN.key(1), epoch)  # the round's test key, known only after the close
_m, leaked_weights = train_sequences(genotype, PRESETS[pp.recipe], seed, tx, ty, space_name=pp.space)
leaked = entry_with_weights(params, genesis.header, accounts, miners[1], genotype, seed, leaked_weights)
close, commitments = close_round(params, genesis.header, [honest, leaked], key_index=1)

score = round_scores([result], pp.space, close.test_key, pp.test_set_size, data=data, epoch=epoch)[0]
out["score"] = score
out["verifier_score"] = engine.verifier.evaluate(result.weights, genotype, result.weights_hash, close.test_key, 1)
out["validation"] = result.validation

def verdict(entry, claimed):
    block = reveal(entry, close, commitments, claimed)
    try:
        v = engine.work_verdict(block, entry.weights)
    except InvalidBlock as exc:
        return exc.reason
    return {"score": v.score, "identical": v.identical, "retrained": v.retrained}

out["honest"] = verdict(honest, score)
out["plus_one"] = verdict(honest, score + 1)
leaked_score = engine.verifier.evaluate(leaked_weights, genotype, hashlib.sha256(leaked_weights).digest(),
                                        close.test_key, 1)
out["leaked_score"] = leaked_score
out["leaked"] = verdict(leaked, leaked_score)

from node.chain import Chain
from node.storage.kv import open_datadir
with tempfile.TemporaryDirectory() as tmp:
    dd = open_datadir(tmp, params.chain_id, genesis.header.hash())
    try:
        chain = Chain(dd.kv, params, engine=engine, clock=Clock())
        block = reveal(honest, close, commitments, score)
        chain.import_block(block, honest.weights)
        out["imported"] = chain.tip_hash == block.header.hash() and chain.height == 1
    finally:
        dd.close()

def share(weights, validation):
    return Share(1, 1, genotype, seed, validation, hashlib.sha256(weights).digest(), 1.0)
task = (pp.space, pp.recipe)
out["pool_honest"] = _check_weights(task, share(result.weights, result.validation), result.weights, True,
                                    (data, epoch))[0]
leaked_val = score_sequences(engine.verifier.retrain(genotype, seed, 1)[1], *data.validation(epoch))
out["pool_wrong_validation"] = _check_weights(task, share(leaked_weights, leaked_val + 1000), leaked_weights, False,
                                              (data, epoch))[0]
from consensus.engines.ponas.weights import load_weights
lv = score_sequences(load_weights(leaked_weights, pp.space, genotype), *data.validation(epoch))
out["pool_leaked"] = _check_weights(task, share(leaked_weights, lv), leaked_weights, True, (data, epoch))[0]
print(json.dumps(out))
"""


def test_mnist1d_round_is_verified_exactly() -> None:
    child = subprocess.run([sys.executable, "-c", _CHILD_ROUND], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["pinned"] is True
    assert out["score"] == out["verifier_score"] and 0 < out["score"] <= 200
    assert 0 <= out["validation"] <= 100
    assert out["honest"] == {"score": out["score"], "identical": True, "retrained": True}
    assert out["imported"] is True
    assert out["plus_one"] == "bad-score"
    assert 0 <= out["leaked_score"] <= 200  # its honest claim passes evaluation...
    assert out["leaked"] == "retrain-mismatch"  # ...and the exact retrain refuses it (whatever it scores)
    assert out["pool_honest"] is None
    assert out["pool_wrong_validation"] == "score-mismatch"
    assert out["pool_leaked"] == "retrain-mismatch"


def test_the_api_names_a_blocks_task_epoch_and_test_set_size() -> None:
    from consensus.types import Header
    from node.api import block_json

    params = mnist1d_params()  # regtest: epochs of 4 rounds, 200 test samples
    genesis = genesis_block(params)
    assert (block_json(genesis, params=params)["task_epoch"], block_json(genesis, params=params)["test_set_size"]) == (None, 200)
    for height, epoch in ((1, 0), (4, 0), (5, 1), (9, 2)):
        block = replace(genesis, header=replace(genesis.header, height=height))
        assert isinstance(block.header, Header)
        out = block_json(block, brief=True, params=params)
        assert (out["task_epoch"], out["test_set_size"]) == (epoch, 200) and params.ponas.task_epoch(height) == epoch
    digits = preset_params("regtest", genesis_time=GENESIS_TIME, task="digits")
    assert block_json(genesis_block(digits), params=digits)["task_epoch"] is None and digits.ponas.task_epoch(7) is None
    assert "task_epoch" not in block_json(genesis)  # without the chain's parameters: no scale to name
