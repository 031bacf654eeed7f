"""The paper's score table builder (bench/paper/build_table.py, correlate.py).

Proves: a working file with a torn last line is read without it and truncated so that appends
start on a fresh line; a resumed build trains only the indices not yet done (in the committed
table or the working file) and rewrites a sorted gzip table; a table made with another recipe is
refused; Spearman with average ranks matches a hand-checked case (and scipy where installed);
and the real script, ``--limit 2`` on the regtest recipe, writes a readable table of two valid rows.
"""

from __future__ import annotations

import gzip
import json
import math
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

SPACE = get_space("nb201")


def fake_row(index: int) -> bt.Row:
    return bt.Row(index, SPACE.encode(index), index % 298, 297, index % 501, 500, 0.125)


def table_rows(path: pathlib.Path) -> list[list[str]]:
    with gzip.open(path, "rt") as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
    assert lines[0] == ",".join(bt.COLUMNS)
    return [line.split(",") for line in lines[1:]]


def test_read_partial_drops_torn_last_line(tmp_path: pathlib.Path) -> None:
    partial = tmp_path / "t.csv.gz.partial.csv"
    good = fake_row(7).line() + "garbage,line\n" + fake_row(3).line()
    partial.write_text(good + fake_row(9).line()[:25])
    rows, length = bt.read_partial(partial)
    assert sorted(rows) == [3, 7]
    assert rows[7] == fake_row(7)
    assert length == len(good.encode())


def test_resume_skips_done_indices(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "t.csv.gz"
    trained: list[int] = []

    def fake_train(index: int, recipe_list: list[int | str], seed: int, device: str) -> bt.Row:
        trained.append(index)
        return fake_row(index)

    monkeypatch.setattr(bt, "train_one", fake_train)
    # A first run trains 2 and writes the table; a later run's working file gains a row and a
    # torn line (killed mid-write).
    bt.build("regtest", out, [5, 1], progress_every=1e9)
    assert sorted(trained) == [1, 5]
    partial = bt.partial_path(out)
    with open(partial, "a") as f:
        f.write(fake_row(2).line() + fake_row(4).line()[:30])
    trained.clear()
    rows = bt.build("regtest", out, [1, 2, 3, 4, 5], progress_every=1e9)
    assert sorted(trained) == [3, 4]
    assert sorted(rows) == [1, 2, 3, 4, 5]
    got = table_rows(out)
    assert [int(r[0]) for r in got] == [1, 2, 3, 4, 5]
    assert all(bt.parse_row(r) == fake_row(int(r[0])) for r in got)
    lines = partial.read_text().splitlines()
    assert sorted(int(line.split(",")[0]) for line in lines) == [1, 2, 3, 4, 5]
    # A fresh checkout (no working file) resumes from the committed table alone.
    partial.unlink()
    trained.clear()
    bt.build("regtest", out, [1, 2, 3, 4, 5, 6], progress_every=1e9)
    assert trained == [6]
    meta = json.loads(bt.meta_path(out).read_text())
    assert meta["recipe"] == bt.RECIPES["regtest"].to_list() and meta["rows"] == 6
    # Another recipe or seed into the same table is refused.
    with pytest.raises(bt.TableError):
        bt.build("devnet", out, [7], progress_every=1e9)
    with pytest.raises(bt.TableError):
        bt.build("regtest", out, [7], seed=1, progress_every=1e9)


def test_limit_and_order(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bt, "train_one", lambda i, r, s, d: fake_row(i))
    rows = bt.build("regtest", tmp_path / "t.csv.gz", list(range(50)), limit=3, progress_every=1e9)
    assert len(rows) == 3
    assert bt.sample_indices(200) == bt.sample_indices(200) and len(set(bt.sample_indices(200))) == 200
    assert bt.parse_indices("0-3,10") == [0, 1, 2, 3, 10]


def test_spearman_average_ranks() -> None:
    assert correlate.average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert correlate.spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert correlate.spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties: ranks y = [1, 2, 3, 4.5, 3 -> ...]; hand-checked value (scipy.stats.spearmanr agrees).
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    assert correlate.spearman(x, y) == pytest.approx(0.8207826816681233)
    assert math.isnan(correlate.spearman([1, 1, 1], [1, 2, 3]))
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return
    a = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    b = [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4]
    assert correlate.spearman(a, b) == pytest.approx(float(spearmanr(a, b).statistic))


def test_script_limit_two_regtest(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "nb201.csv.gz"
    proc = subprocess.run(
        [sys.executable, str(PAPER / "build_table.py"), "--recipe", "regtest", "--limit", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(out)
    assert len(rows) == 2
    for fields in rows:
        row = bt.parse_row(fields)
        assert row is not None
        assert row.val_total == 297 and row.test_total == 500
        assert 0 < row.val_correct <= 297 and 0 < row.test_correct <= 500
        assert row.train_seconds > 0
    assert "rows" in proc.stderr  # progress on stderr
