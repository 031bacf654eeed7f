"""``ponas nas``: ``info`` describes a space and splits it into the subspaces a pool would hand
out (5 of 3,125 and 25 of 625 for NAS-Bench-201, in text and JSON, disjoint and covering);
``train`` trains with a preset's pinned recipe and reports the validation score, parameter
count, training time and a weights hash equal to a direct ``train()`` call's, so what it prints is
what a retrain verification recomputes; progress goes to stderr (a redrawn bar on a terminal,
plain lines otherwise); bad input (N, genotype, seed, --out) exits 1 with a stable reason."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.engines.ponas.recipe import PRESETS as RECIPES
from consensus.engines.ponas.train import train
from consensus.engines.ponas.weights import load_weights, weights_hash
from node.cli import main
from node.cli_nas import ProgressBar

REPO = Path(__file__).resolve().parents[2]
GENOTYPE = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
SEED = 5


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def direct_hash() -> str:
    """The weights hash of the same training done by calling ``train()`` directly."""
    _, weights = train("nb201", GENOTYPE, RECIPES["regtest"], SEED)
    return weights_hash(weights).hex()


@pytest.mark.parametrize(("n", "size"), [(5, 3125), (25, 625)])
def test_info_subspaces_json(capsys: pytest.CaptureFixture[str], n: int, size: int) -> None:
    code, out, err = run(capsys, "nas", "info", "--task", "digits", "--subspaces", str(n), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["space"] == "nb201" and info["size"] == 15_625
    assert len(info["operations"]) == 5 and len(info["edges"]) == 6
    pieces = info["subspaces"]
    assert [p["index"] for p in pieces] == list(range(n))
    assert all(p["size"] == size == p["stop"] - p["start"] for p in pieces)
    assert pieces[0]["start"] == 0 and pieces[-1]["stop"] == 15_625
    assert all(a["stop"] == b["start"] for a, b in zip(pieces, pieces[1:]))
    # n = 5 fixes edge 0, n = 25 fixes edges 0 and 1: the rest are wildcards
    assert pieces[1]["description"] == (
        "nb201 |skip_connect~0|+|*~0|*~1|+|*~0|*~1|*~2|" if n == 5 else "nb201 |none~0|+|skip_connect~0|*~1|+|*~0|*~1|*~2|"
    )


def test_info_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "nas", "info", "--space", "nb201", "--subspaces", "5")
    assert code == 0, err
    assert re.search(r"^size\s+15,625 architectures$", out, re.M)
    assert "nor_conv_3x3" in out and "0->1" in out and "5 subspaces:" in out
    assert re.search(r"^\s+4\s+\[12500, 15625\)\s+3125\s+nb201 \|avg_pool_3x3~0\|", out, re.M)
    code, out, err = run(capsys, "nas", "info", "--space", "mlp")
    assert code == 0, err
    assert "340 architectures" in out and "subspaces" not in out


@pytest.mark.parametrize("n", ["0", "-3", "15626"])
def test_info_bad_subspace_count(capsys: pytest.CaptureFixture[str], n: str) -> None:
    code, out, err = run(capsys, "nas", "info", "--subspaces", n)
    assert code == 1 and out == ""
    assert err.startswith("error: bad-subspace: N must be 1..15625")


def test_info_non_integer_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nas", "info", "--subspaces", "five"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_train_regtest_prints_the_direct_hash(
    capsys: pytest.CaptureFixture[str], direct_hash: str, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "nas", "train", "--genotype", GENOTYPE, "--preset", "regtest", "--task", "digits", "--seed", str(SEED))
    assert code == 0, err
    m = re.search(r"^validation\s+(\d+) / 297 correct \((\d+\.\d\d)%\)$", out, re.M)
    assert m and 150 < int(m.group(1)) <= 297  # far above chance (about 30 of 297)
    assert re.search(r"^parameters\s+[\d,]+$", out, re.M)
    assert re.search(r"^training time\s+\d+\.\d\d s$", out, re.M)
    assert re.search(rf"^weights hash\s+{direct_hash}$", out, re.M)
    # stderr is not a terminal here: one plain progress line per epoch of the 3
    assert re.findall(r"^training epoch (\d)/3  loss \d+\.\d{4}", err, re.M) == ["1", "2", "3"]

    out_file = tmp_path / "w.safetensors"
    code, out, err = run(
        capsys, "nas", "train", "--genotype", GENOTYPE, "--preset", "regtest", "--task", "digits", "--seed", str(SEED),
        "--json", "--out", str(out_file),
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["weights_hash"] == direct_hash and report["recipe"]["name"] == "regtest"
    assert report["validation_total"] == 297 and report["seed"] == SEED and report["out"] == str(out_file)
    data = out_file.read_bytes()
    assert weights_hash(data).hex() == direct_hash and len(data) == report["weights_bytes"]
    load_weights(data, "nb201", GENOTYPE)  # canonical, loads as the declared architecture
    code, _, err = run(capsys, "nas", "train", "--genotype", GENOTYPE, "--preset", "regtest", "--task", "digits", "--out", str(out_file))
    assert code == 1 and err.startswith("error: file-exists:")  # never overwritten
    assert out_file.read_bytes() == data


@pytest.mark.parametrize(
    "genotype",
    [
        GENOTYPE.replace("nor_conv_3x3~0", "conv_3x3~0"),  # unknown operation
        GENOTYPE.replace("~2|", "~1|"),  # wrong node index
        " " + GENOTYPE,  # not the canonical spelling
        "mlp:64-32",  # a genotype of another space
        "",
    ],
)
def test_train_bad_genotype(capsys: pytest.CaptureFixture[str], genotype: str) -> None:
    code, out, err = run(capsys, "nas", "train", "--genotype", genotype, "--preset", "regtest", "--task", "digits")
    assert code == 1 and out == ""
    assert err.startswith("error: bad-genotype: ") and "training epoch" not in err


def test_info_describes_the_default_task(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "nas", "info")
    assert code == 0, err
    assert re.search(r"^task\s+mnist1d: 40-point sequences", out, re.M)
    assert re.search(r"^devnet\s+train 4,000, validation 1,000, test_set 20,000; recipe mnist1d-devnet; 20 rounds", out, re.M)
    assert re.search(r"^space\s+nb201-1d$", out, re.M) and re.search(r"^scoring\s+exact", out, re.M)
    code, out, err = run(capsys, "nas", "info", "--task", "digits", "--json")
    info = json.loads(out)
    assert code == 0 and info["space"] == "nb201" and info["task"]["task"] == "digits"
    assert info["task"]["test_set_size"] == 300


_CHILD_RETRAIN = """
import sys
from consensus.chain import genesis_block
from consensus.engines.ponas.verify import Verifier
from consensus.params import REFERENCE_GENESIS_TIME, preset_params
params = preset_params("regtest", genesis_time=REFERENCE_GENESIS_TIME)
verifier = Verifier(params.ponas, genesis=genesis_block(params).header.hash())
digest, _model = verifier.retrain(sys.argv[1], int(sys.argv[2]), height=1)
print(digest.hex())
"""


def test_train_mnist1d_prints_what_a_verifier_retrains(tmp_path: Path) -> None:
    """The default task, in processes of their own (exact training pins the kernels first): the
    weights hash ``nas train --preset regtest`` prints is the one a verifier's retrain gives on
    that preset's reference chain, in epoch 0."""
    cli = subprocess.run([sys.executable, "-m", "node", "nas", "train", "--genotype", GENOTYPE, "--preset", "regtest",
                          "--seed", str(SEED), "--json"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert report["space"] == "nb201-1d" and report["recipe"]["name"] == "mnist1d-regtest"
    assert report["validation_total"] == 100 and 15 < report["validation_correct"] <= 100  # chance: 10 (regtest: 320 samples, 2 epochs)
    child = subprocess.run([sys.executable, "-c", _CHILD_RETRAIN, GENOTYPE, str(SEED)], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert child.returncode == 0, child.stderr
    assert report["weights_hash"] == child.stdout.strip()
    other = subprocess.run([sys.executable, "-m", "node", "nas", "train", "--genotype", GENOTYPE, "--preset", "regtest",
                            "--seed", str(SEED + 1), "--epoch", "1", "--json"], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["weights_hash"] != report["weights_hash"]


def test_train_bad_seed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "nas", "train", "--genotype", GENOTYPE, "--preset", "regtest", "--task", "digits", "--seed", "-1")
    assert code == 1 and err.startswith("error: bad-seed: ")


def test_console_script_exit_code() -> None:
    """The installed ``ponas`` script exits 1 with the reason on stderr (no traceback)."""
    script = Path(sys.executable).with_name("ponas")
    if not script.exists():
        pytest.skip("the ponas console script is not installed beside this python")
    proc = subprocess.run([str(script), "nas", "info", "--subspaces", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: bad-subspace:") and "Traceback" not in proc.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_on_a_terminal() -> None:
    tty = _Terminal()
    bar = ProgressBar(tty)
    for epoch in range(1, 5):
        bar(epoch, 4, 1.0 / epoch)
    bar.close()
    text = tty.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")
    assert "[" + "#" * 24 + "] training epoch 4/4  loss 0.2500" in text
    plain = io.StringIO()
    bar = ProgressBar(plain)
    for epoch in range(1, 31):
        bar(epoch, 30, 0.5)
    bar.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("training epoch 30/30") and "\r" not in plain.getvalue()
