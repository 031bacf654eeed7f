"""Chain parameters and the genesis file.

Chain parameters are consensus: every node of a chain must hold the same ones, so the genesis
header commits to their hash (in ``extra``) and the genesis hash identifies the chain. They
are kept apart from a node's runtime configuration (ports, datadir, peers). The genesis file
is JSON for people to read; its canonical encoding is what is hashed.

Presets:
* ``regtest`` - seconds per round, tiny budgets: for tests.
* ``devnet``  - about one block a minute on a CPU: for the demo and local networks.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from consensus.codec import Codec
from consensus.crypto import format_address, parse_address
from consensus.errors import ConsensusError, InvalidParams
from consensus.types import COIN, MAX_AMOUNT, ZERO_HASH, Hash32, Payout, PubKey32

GENESIS_FORMAT = 1
ENGINES = ("pow", "ponas")
TASKS = ("digits", "mnist1d")
"""The built-in tasks: scikit-learn's digits (the first one, kept for comparison) and the
procedurally generated MNIST-1D (:mod:`consensus.engines.ponas.mnist1d`)."""
DEFAULT_TASK = "mnist1d"
"""The task of a new chain when none is named (``preset_params``, ``ponas genesis new``,
``ponas devnet up``)."""
REFERENCE_GENESIS_TIME = 1_700_000_000
"""The genesis time of a preset's reference chain (``preset_params(preset, task=...,
genesis_time=REFERENCE_GENESIS_TIME)``, default beacon): the ``mnist1d`` data that ``ponas nas
train --preset`` trains on and that bench/paper's score tables were built on, so a table row can
be reproduced without a genesis file."""
_DIGITS_FIELDS = 13  # PonasParams' fields before ``task``: a digits chain encodes only these


@dataclass(frozen=True, slots=True)
class PowParams(Codec):
    """The classic hash engine: ``hash(header) <= target(bits)``."""

    limit_bits: int  # the easiest target allowed
    initial_bits: int
    target_spacing: int  # seconds per block
    retarget_interval: int  # blocks between retargets
    no_retarget: bool


@dataclass(frozen=True, slots=True)
class PonasParams(Codec):
    """The deep-learning engine's round and verification settings (section 4 of the design)."""

    beacon_pubkey: PubKey32
    beacon_anchor: Hash32  # key_0 of the beacon's hash chain: key_h = H(key_(h+1))
    commit_window: int  # seconds from a round's open to its close
    reveal_window: int  # seconds from the close to the round's end
    closer_timeout: int  # seconds past the deadline before the beacon takes over
    max_commitments_per_key: int
    max_weights_bytes: int
    score_tolerance: int  # in test samples
    test_set_size: int
    space: str  # the built-in task's search space ("nb201")
    recipe: str  # name of the built-in task's pinned training recipe
    policy: str  # "retrain": the best candidate is retrained to catch test-set leakage; or "evaluate"
    data_split_hash: Hash32  # the public train / validation / held-out split
    # The built-in task (``TASKS``). ``digits``: the three sizes below are 0 (the digits split
    # fixes its data). ``mnist1d``: per epoch of ``epoch_rounds`` rounds, a training set of
    # ``train_size`` and a validation split of ``validation_size`` samples generated from the
    # genesis hash and the epoch, a fresh test set of ``test_set_size`` from each round's key
    # (consensus.engines.ponas.mnist1d.ChainData); scores and retrained weights compared exactly.
    task: str = "digits"
    train_size: int = 0
    validation_size: int = 0
    epoch_rounds: int = 0
    # The backup closer's public key (zero: none). It holds the beacon's hash chain too, with a
    # signing key of its own, and closes an attempt (or signs its reveal set) only when the
    # beacon has been silent for ``closer_timeout`` seconds. Added later: a genesis without a
    # backup encodes, and hashes, as before it existed (``LATER_FIELDS``).
    backup_pubkey: PubKey32 = bytes(32)

    LATER_FIELDS: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.policy not in ("retrain", "evaluate"):
            raise InvalidParams("bad-policy", "policy is retrain or evaluate")
        if self.commit_window < 1 or self.reveal_window < 1 or self.closer_timeout < 1:
            raise InvalidParams("bad-window", "round windows are positive seconds")
        if self.max_commitments_per_key < 1 or self.test_set_size < 1 or self.score_tolerance < 0:
            raise InvalidParams("bad-limits", "commitment bound, test set size or tolerance out of range")
        if self.task not in TASKS:
            raise InvalidParams("bad-task", f"task {self.task!r} is not one of {TASKS}")
        if self.backup_pubkey == self.beacon_pubkey and any(self.backup_pubkey):
            raise InvalidParams("bad-backup", "the backup closer has a key of its own")
        sizes = (self.train_size, self.validation_size, self.epoch_rounds)
        if self.task == "digits":
            if sizes != (0, 0, 0):
                raise InvalidParams("bad-task", "digits: train_size, validation_size and epoch_rounds are 0 "
                                    "(the digits split fixes the data)")
            return
        if not all(1 <= v <= 1_000_000 for v in (*sizes, self.test_set_size)):
            raise InvalidParams("bad-task", "mnist1d: train_size, validation_size, epoch_rounds and test_set_size "
                                "are 1..1,000,000")
        if self.score_tolerance != 0:
            raise InvalidParams("bad-task", "mnist1d: scores are bit-exact, score_tolerance is 0")
        if self.space != "nb201-1d":
            raise InvalidParams("bad-task", "mnist1d: the space is nb201-1d (the network for sequences)")

    def task_epoch(self, height: int) -> int | None:
        """The task epoch of the round at ``height`` (``mnist1d``: rounds ``1..E`` are epoch 0,
        as :func:`consensus.engines.ponas.mnist1d.epoch_of`); None for ``digits``, which has one
        fixed task."""
        if self.task == "digits":
            return None
        from consensus.engines.ponas.mnist1d import epoch_of

        return epoch_of(height, self.epoch_rounds)

    def to_value(self) -> list[Any]:
        """The canonical value; a ``digits`` chain encodes only the fields it had before tasks
        existed, so its parameters (and genesis) hash as they always did."""
        value = Codec.to_value(self)
        return value[:_DIGITS_FIELDS] if self.task == "digits" else value

    @classmethod
    def from_value(cls, value: Any) -> PonasParams:  # type: ignore[override]
        if isinstance(value, list) and len(value) == _DIGITS_FIELDS:
            value = [*value, "digits", 0, 0, 0]
        return super(PonasParams, cls).from_value(value)


@dataclass(frozen=True, slots=True)
class ChainParams(Codec):
    chain_id: str
    engine: str
    genesis_time: int
    prefunds: tuple[Payout, ...]
    initial_subsidy: int
    halving_interval: int
    max_block_txs: int
    max_block_bytes: int
    max_future_secs: int
    pow: PowParams
    ponas: PonasParams

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InvalidParams("bad-engine", f"engine must be one of {ENGINES}")
        if not self.chain_id or len(self.chain_id) > 64:
            raise InvalidParams("bad-chain-id", "chain_id is 1 to 64 characters")
        if not 0 <= self.initial_subsidy <= MAX_AMOUNT or self.halving_interval < 1:
            raise InvalidParams("bad-subsidy", "subsidy or halving interval out of range")
        if sum(p.amount for p in self.prefunds) > MAX_AMOUNT:
            raise InvalidParams("bad-prefund", "prefunds overflow")
        addresses = [p.address for p in self.prefunds]
        if addresses != sorted(set(addresses)):
            raise InvalidParams("bad-prefund", "prefunds must be in address order, each address once")
        if self.max_block_txs < 1 or self.max_block_bytes < 1024:
            raise InvalidParams("bad-limits", "block limits too small")

    def subsidy(self, height: int) -> int:
        """Block subsidy at ``height``: halves every ``halving_interval`` blocks, like Bitcoin."""
        halvings = height // self.halving_interval
        return 0 if halvings >= 63 else self.initial_subsidy >> halvings

    @property
    def params_hash(self) -> bytes:
        return self.hash()

    # --- JSON -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        def conv(obj: Any) -> Any:
            if isinstance(obj, bytes):
                return obj.hex()
            if isinstance(obj, dict):
                return {k: conv(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [conv(v) for v in obj]
            return obj

        data = conv(asdict(self))
        data["prefunds"] = {format_address(p.address): p.amount for p in self.prefunds}
        return {"format": GENESIS_FORMAT, **data}

    @classmethod
    def from_json(cls, data: Any) -> ChainParams:
        """Parse a genesis document; every problem is an :class:`InvalidParams` with a reason."""
        if not isinstance(data, dict):
            raise InvalidParams("bad-genesis", "the genesis file holds a JSON object")
        data = dict(data)
        if data.pop("format", None) != GENESIS_FORMAT:
            raise InvalidParams("bad-genesis", f"unknown genesis format (want {GENESIS_FORMAT})")
        try:
            prefunds = data.get("prefunds", {})
            if not isinstance(prefunds, dict):
                raise InvalidParams("bad-prefund", "prefunds maps addresses to amounts")
            parsed = [Payout(parse_address(a), _int(v, "prefund")) for a, v in prefunds.items()]
            data["prefunds"] = tuple(sorted(parsed, key=lambda p: p.address))
            data["pow"] = _sub(PowParams, data.get("pow"))
            ponas = data.get("ponas")
            if isinstance(ponas, dict) and "task" not in ponas:  # a genesis file from before tasks
                ponas = {**ponas, "task": "digits", "train_size": 0, "validation_size": 0, "epoch_rounds": 0}
            if isinstance(ponas, dict) and "backup_pubkey" not in ponas:  # from before the backup closer
                ponas = {**ponas, "backup_pubkey": bytes(32).hex()}
            data["ponas"] = _sub(PonasParams, ponas)
            return _build(cls, data)
        except InvalidParams:
            raise
        except ConsensusError as exc:
            raise InvalidParams(exc.reason, exc.detail) from None


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams("bad-genesis", f"{name} must be an integer")
    return value


def _sub(kind: Any, data: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidParams("bad-genesis", f"missing section for {kind.__name__}")
    data = dict(data)
    for f in fields(kind):
        if f.type in ("PubKey32", "Hash32") and isinstance(data.get(f.name), str):
            try:
                data[f.name] = bytes.fromhex(data[f.name])
            except ValueError:
                raise InvalidParams("bad-genesis", f"{f.name} must be hex") from None
    return _build(kind, data)


def _build(kind: Any, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(kind)}
    missing, unknown = names - data.keys(), data.keys() - names
    if missing or unknown:
        raise InvalidParams("bad-genesis", f"{kind.__name__}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    value = [data[f.name] for f in fields(kind)]
    value = [v.to_value() if isinstance(v, Codec) else ([x.to_value() for x in v] if isinstance(v, tuple) else v) for v in value]
    later = list(fields(kind))[len(value) - getattr(kind, "LATER_FIELDS", 0):]
    for f in reversed(later):  # JSON names every field; the encoding leaves out later ones at their default
        if value[-1] != f.default:
            break
        value.pop()
    try:
        return kind.from_value(value)
    except ConsensusError as exc:
        raise InvalidParams(exc.reason if exc.reason != "bad-field" else "bad-genesis", exc.detail) from None


def load_params(path: str) -> ChainParams:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InvalidParams("no-genesis", f"no genesis file at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParams("bad-genesis", f"{path} is not JSON: {exc}") from None
    return ChainParams.from_json(data)


def save_params(params: ChainParams, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(params.to_json(), fh, indent=2, sort_keys=False)
        fh.write("\n")


# --- presets ----------------------------------------------------------------------------------

REGTEST_POW = PowParams(
    limit_bits=0x207FFFFF, initial_bits=0x207FFFFF, target_spacing=1, retarget_interval=10, no_retarget=True
)
DEVNET_POW = PowParams(
    limit_bits=0x207FFFFF, initial_bits=0x1F0FFFFF, target_spacing=60, retarget_interval=20, no_retarget=False
)


def _ponas(preset: str, beacon_pubkey: bytes, beacon_anchor: bytes, split_hash: bytes, task: str) -> PonasParams:
    if task == "mnist1d":
        # Sizes: 4,000 training samples (the 1-D network's measured setting, ~3 s a training on one
        # core), a fresh 20,000-sample test set each round (measured: two test sets of 5,000 rank
        # the best 20 cells at rho 0.77, of 20,000 at 0.97; docs/task.md); task parameters
        # redrawn every 20 rounds (about 20 minutes of devnet). Regtest: a few hundred samples,
        # epochs of 4 rounds.
        if preset == "regtest":
            return PonasParams(
                beacon_pubkey, beacon_anchor, commit_window=8, reveal_window=4, closer_timeout=20,
                max_commitments_per_key=4, max_weights_bytes=1 << 20, score_tolerance=0, test_set_size=200,
                space="nb201-1d", recipe="mnist1d-regtest", policy="retrain", data_split_hash=split_hash,
                task="mnist1d", train_size=320, validation_size=100, epoch_rounds=4,
            )
        # The reveal window is 30 s (digits: 15): after the close a miner scores its commitments
        # on the round's 20,000 fresh samples, best validation first, to choose what to reveal
        # (about 2 s each on one core with the pinned kernels; digits: 0.02 s; it reveals the
        # best it scored in time); nodes score only after the window (lazy verification).
        return PonasParams(
            beacon_pubkey, beacon_anchor, commit_window=45, reveal_window=30, closer_timeout=60,
            max_commitments_per_key=8, max_weights_bytes=4 << 20, score_tolerance=0, test_set_size=20_000,
            space="nb201-1d", recipe="mnist1d-devnet", policy="retrain", data_split_hash=split_hash,
            task="mnist1d", train_size=4000, validation_size=1000, epoch_rounds=20,
        )
    if task != "digits":
        raise InvalidParams("bad-task", f"task {task!r} is not one of {TASKS}")
    if preset == "regtest":
        return PonasParams(
            beacon_pubkey, beacon_anchor, commit_window=8, reveal_window=4, closer_timeout=20,
            max_commitments_per_key=4, max_weights_bytes=1 << 20, score_tolerance=3, test_set_size=200,
            space="nb201", recipe="regtest", policy="retrain", data_split_hash=split_hash,
        )
    return PonasParams(
        beacon_pubkey, beacon_anchor, commit_window=45, reveal_window=15, closer_timeout=60,
        max_commitments_per_key=8, max_weights_bytes=4 << 20, score_tolerance=3, test_set_size=300,
        space="nb201", recipe="devnet", policy="retrain", data_split_hash=split_hash,
    )


PRESETS = ("regtest", "devnet")


def preset_params(
    preset: str,
    *,
    engine: str = "ponas",
    chain_id: str | None = None,
    prefunds: dict[bytes, int] | None = None,
    beacon_pubkey: bytes = bytes(32),
    beacon_anchor: bytes = ZERO_HASH,
    data_split_hash: bytes | None = None,
    genesis_time: int | None = None,
    task: str | None = None,
    backup_pubkey: bytes = bytes(32),
) -> ChainParams:
    """Parameters for a preset; ``genesis_time`` defaults to now (a parameter, for tests).

    ``task`` is the built-in task (``TASKS``; default :data:`DEFAULT_TASK`). ``data_split_hash``
    defaults to the hash of this installation's digits split (recorded for either task: the
    engine checks it)."""
    if preset not in PRESETS:
        raise InvalidParams("bad-preset", f"preset must be one of {PRESETS}")
    if data_split_hash is None:
        from consensus.engines.ponas.data import split_hash

        data_split_hash = split_hash()
    return ChainParams(
        chain_id=chain_id or f"ponas-{preset}",
        engine=engine,
        genesis_time=int(time.time()) if genesis_time is None else genesis_time,
        prefunds=tuple(Payout(a, v) for a, v in sorted((prefunds or {}).items())),
        initial_subsidy=50 * COIN,
        halving_interval=150 if preset == "regtest" else 210_000,
        max_block_txs=4_000,
        max_block_bytes=2_000_000,
        max_future_secs=7200 if preset == "devnet" else 600,
        pow=REGTEST_POW if preset == "regtest" else DEVNET_POW,
        ponas=replace(_ponas(preset, beacon_pubkey, beacon_anchor, data_split_hash, task or DEFAULT_TASK),
                      backup_pubkey=backup_pubkey),
    )


__all__ = [
    "ChainParams", "PowParams", "PonasParams", "preset_params", "load_params", "save_params",
    "PRESETS", "TASKS", "DEFAULT_TASK", "REFERENCE_GENESIS_TIME",
]
