"""The paper's table builder and correlation on the mnist1d task (bench/paper, ``--task mnist1d``).

Proves: the real script, in a fresh process (it pins the exact kernels before any torch
operation), trains two nb201-1d cells with the mnist1d-regtest recipe on the regtest preset's
chain data and writes a table of two valid rows whose meta file names the task, the epoch, the
genesis and the sample; a table refuses rows made for another epoch or test key; samples of one
seed are nested; and the correlation's measures (seed rho, top quarter, top tenth above the
median, top-k overlap between epochs) give hand-checked values on small fake tables.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAPER = ROOT / "bench" / "paper"
sys.path.insert(0, str(PAPER))

import build_table as bt  # noqa: E402
import correlate  # noqa: E402

from consensus.engines.ponas.space import get_space  # noqa: E402

SPACE = get_space("nb201-1d")
DATA = bt.Mnist1dData("regtest", "11" * 32, 320, 100, 0, bt.TEST_KEY, 200)


def test_script_two_cells_regtest(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "t.csv.gz"
    cmd = [sys.executable, str(PAPER / "build_table.py"), "--task", "mnist1d", "--recipe", "mnist1d-regtest",
           "--data-preset", "regtest", "--test-size", "200", "--sample", "2", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with gzip.open(out, "rt") as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
    assert lines[0] == ",".join(bt.COLUMNS)
    rows = [bt.parse_row(line.split(",")) for line in lines[1:]]
    assert [r.index for r in rows if r is not None] == bt.nested_sample(2)
    for row in rows:
        assert row is not None and row.genotype == SPACE.encode(row.index)
        assert row.val_total == 100 and row.test_total == 200 and row.train_seconds > 0
        assert 0 <= row.val_correct <= 100 and 0 < row.test_correct <= 200
    meta = json.loads(bt.meta_path(out).read_text())
    assert (meta["task"], meta["space"], meta["recipe_name"]) == ("mnist1d", "nb201-1d", "mnist1d-regtest")
    assert meta["data"]["epoch"] == 0 and meta["data"]["genesis"] == bt.mnist1d_data(0, "regtest").genesis
    assert meta["sample"]["n"] == 2 and meta["rows"] == 2


def test_table_refuses_other_data(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(index: int, recipe_list: list[int | str], seed: int, data: dict[str, object]) -> bt.Row:
        return bt.Row(index, SPACE.encode(index), index % 101, 100, index % 201, 200, 0.5)

    monkeypatch.setattr(bt, "train_one_mnist1d", fake)
    out = tmp_path / "t.csv.gz"
    bt.build("mnist1d-regtest", out, [3, 4], data=DATA, progress_every=1e9)
    assert sorted(bt.build("mnist1d-regtest", out, [3, 4, 5], data=DATA, progress_every=1e9)) == [3, 4, 5]
    for other in (dataclasses.replace(DATA, epoch=1), dataclasses.replace(DATA, test_key="other")):
        with pytest.raises(bt.TableError):
            bt.build("mnist1d-regtest", out, [6], data=other, progress_every=1e9)
    with pytest.raises(bt.TableError):  # a digits recipe or a digits table
        bt.build("regtest", tmp_path / "u.csv.gz", [6], data=DATA, progress_every=1e9)
    with pytest.raises(bt.TableError):
        bt.build("mnist1d-regtest", out, [6], progress_every=1e9)
    assert bt.default_out("mnist1d-devnet", dataclasses.replace(DATA, preset="devnet", test_size=5000)).name == (
        "nb201_mnist1d_devnet_e0.csv.gz"
    )
    assert bt.default_out("mnist1d-regtest", DATA, seed=1).name == "nb201_mnist1d_regtest_e0_seed1_regtestdata_test200.csv.gz"


def test_nested_sample() -> None:
    small, large = bt.nested_sample(200), bt.nested_sample(3000)
    assert len(set(large)) == 3000 and set(small) <= set(large) and small == sorted(small)
    assert bt.nested_sample(200, seed=1) != small


def rows(scores: dict[int, int]) -> dict[int, bt.Row]:
    return {i: bt.Row(i, SPACE.encode(i), s, 100, s, 100, 1.0) for i, s in scores.items()}


def test_correlation_measures() -> None:
    cells = list(range(8))
    a = rows({i: 50 + 5 * i for i in cells})  # seed A: 50..85
    b = rows({i: 50 + 5 * i for i in cells} | {0: 60, 2: 50})  # seed B: two low cells swapped
    m = correlate.seed_metrics(a, b, cells)
    assert m["rho_seeds"] == pytest.approx(correlate.spearman([60, 55, 50, 65, 70, 75, 80, 85], list(range(8))), abs=1e-4)
    assert m["top_quarter"] == 2 and m["rho_seeds_top_quarter"] == 1.0
    # top tenth of 8 is 1 cell (7: 85 on seed B); the median of seed B is (65 + 70) / 2.
    assert m["top_tenth"] == 1 and m["top_tenth_points"] == pytest.approx(85 - 67.5)
    assert correlate.top_cells(a, cells, 3) == [7, 6, 5]
    e = correlate.epoch_metrics({0: a, 1: rows({i: 90 - 5 * i for i in cells})}, cells, k=3)
    assert e["pairs"]["0-1"] == {"top_overlap": 0, "rho": -1.0}
